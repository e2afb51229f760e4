"""Validated specifications of a supply network: nodes, lanes, SKUs, demand and costs.

A `NetworkSpec` is what the engine runs. Build one with `network_from_dict` from
a plain mapping (YAML, Hydra) or directly from the dataclasses; both validate,
and a bad value raises `SpecError` naming the key and what is allowed.

The network is a forest of trees: suppliers are roots with unlimited stock
(unless capped or in outage), every other node has exactly one parent, and only
leaves ("stores") face customer demand. A serial chain is the special case of
one child per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from twin.config import ConfigReader, SpecError, check_number
from twin.rationing import RULES

NODE_KINDS = ("supplier", "dc", "store")
UNMET = ("backorder", "lost")
LEAD_TIME_DISTS = ("deterministic", "gamma", "lognormal", "poisson", "empirical")
DEMAND_DISTS = ("poisson", "negative_binomial", "normal", "zero_inflated_poisson")
RATIONING_RULES = RULES.names  # twin/rationing.py owns the rules
INVARIANT_MODES = ("off", "warn", "error")


@dataclass(frozen=True)
class LeadTimeSpec:
    """Lead time of a lane in whole days: deterministic or drawn per shipment."""

    dist: str = "deterministic"
    mean: float = 1.0
    cv: float = 0.0
    values: tuple[int, ...] = ()
    probs: tuple[float, ...] = ()

    def validate(self, key: str) -> None:
        if self.dist not in LEAD_TIME_DISTS:
            raise SpecError(f"{key}.dist: {self.dist!r} is not allowed; allowed: {', '.join(LEAD_TIME_DISTS)}")
        check_number(f"{key}.mean", self.mean, low=0)
        check_number(f"{key}.cv", self.cv, low=0, high=5)
        if self.cv > 0 and self.dist not in ("gamma", "lognormal"):
            raise SpecError(f"{key}.cv: {self.cv:g} has no effect on a {self.dist} lead time (only gamma and "
                            f"lognormal lead times use cv); allowed: 0 or left out, or dist gamma or lognormal")
        if self.dist != "empirical":
            for attr in ("values", "probs"):
                if getattr(self, attr):
                    raise SpecError(f"{key}.{attr}: only an empirical lead time uses values and probs, this one is "
                                    f"{self.dist}; allowed: left out, or dist empirical")
        elif self.mean != LeadTimeSpec.mean:
            raise SpecError(f"{key}.mean: an empirical lead time is drawn from values and probs, mean "
                            f"{self.mean:g} would be ignored; allowed: left out (the mean follows from values "
                            f"and probs)")
        if self.dist in ("gamma", "lognormal") and (self.mean <= 0 or self.cv <= 0):
            raise SpecError(f"{key}: a {self.dist} lead time needs mean > 0 and cv > 0; "
                            f"allowed: mean > 0 and cv in (0, 5]")
        if self.dist == "empirical":
            if not self.values or len(self.values) != len(self.probs):
                raise SpecError(f"{key}: an empirical lead time needs 'values' and 'probs' of equal, non-zero length")
            for i, v in enumerate(self.values):
                if int(v) != v or v < 0:
                    raise SpecError(f"{key}.values[{i}]: {v!r} is not allowed; allowed: whole days >= 0")
            for i, p in enumerate(self.probs):
                check_number(f"{key}.probs[{i}]", p, low=0, high=1)
            if abs(sum(self.probs) - 1) > 1e-6:
                raise SpecError(f"{key}.probs: must sum to 1, got {sum(self.probs):g}; "
                                f"allowed: probabilities summing to 1")

    @property
    def expected_days(self) -> float:
        """Mean lead time in days (after rounding for the discrete laws is ignored)."""
        if self.dist == "empirical":
            return float(np.dot(self.values, self.probs))
        if self.dist == "deterministic":
            return float(round(self.mean))
        return float(self.mean)

    @property
    def variance(self) -> float:
        """Variance of the lead time in days^2, by the same convention as `expected_days` (the law's, before its
        draws are rounded to whole days): 0 deterministic, mean Poisson, (cv mean)^2 gamma and lognormal, and
        the variance of the values under their probabilities for an empirical law."""
        if self.dist == "deterministic":
            return 0.0
        if self.dist == "empirical":
            values, probs = np.asarray(self.values, float), np.asarray(self.probs)
            return float(probs @ values**2 - (probs @ values) ** 2)
        if self.dist == "poisson":
            return float(self.mean)
        return float((self.cv * self.mean) ** 2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` lead times in whole days (non-negative integers)."""
        if self.dist == "deterministic":
            return np.full(n, int(round(self.mean)), dtype=np.int64)
        if self.dist == "gamma":
            shape = 1.0 / self.cv**2
            draws = rng.gamma(shape, self.mean / shape, n)
        elif self.dist == "lognormal":
            sigma2 = np.log1p(self.cv**2)
            draws = rng.lognormal(np.log(self.mean) - sigma2 / 2, np.sqrt(sigma2), n)
        elif self.dist == "poisson":
            draws = rng.poisson(self.mean, n)
        else:
            draws = rng.choice(np.asarray(self.values), size=n, p=np.asarray(self.probs))
        return np.rint(draws).astype(np.int64)

    @classmethod
    def from_reader(cls, r: ConfigReader) -> LeadTimeSpec:
        if r.data.get("dist") == "empirical" and r.has("mean"):
            raise SpecError(f"{r.key('mean')}: an empirical lead time is drawn from values and probs, mean would be "
                            f"ignored; allowed: left out (the mean follows from values and probs)")
        spec = cls(
            dist=r.choice("dist", LEAD_TIME_DISTS, "deterministic"),
            mean=r.number("mean", 1.0, low=0),
            cv=r.number("cv", 0.0, low=0, high=5),
            values=tuple(int(v) for v in r.numbers("values", (), low=0)),
            probs=r.numbers("probs", (), low=0, high=1),
        )
        r.done()
        spec.validate(r.path)
        return spec


@dataclass(frozen=True)
class NodeSpec:
    """One node: a supplier, a distribution centre or a store.

    `lead_time`, `lane_capacity` and `in_transit_holding` describe the lane *into*
    this node from its parent. Cost factors multiply the SKU's base costs.

    A supplier is a root outside the network: it has only `name`, `kind`,
    `supply_capacity` (units per day, all SKUs) and `region`; it has no inbound
    lane, no storage limit and no costs. `supply_capacity` belongs to suppliers
    only, `demand_scale` to stores only.

    `backorder_factor` defaults to 1.0 here, but a mapping read by
    `network_from_dict` (explicit `nodes` or a generated `layout`) defaults it to
    1.0 for stores and 0.0 for DCs: a DC's backlog to its stores is the same
    shortage the store already pays its own backorder penalty for, so charging
    it again at the DC would count it twice. An explicit value still wins.
    """

    name: str
    kind: str
    parent: str | None = None
    backup_parent: str | None = None
    lead_time: LeadTimeSpec = field(default_factory=LeadTimeSpec)
    unmet: str = "backorder"
    storage_capacity: float | None = None
    lane_capacity: float | None = None
    supply_capacity: float | None = None
    holding_factor: float = 1.0
    backorder_factor: float = 1.0
    lost_sale_factor: float = 1.0
    in_transit_holding: float = 0.0
    demand_scale: float = 1.0
    region: str = "all"


# Allowed [low, high] of every numeric SKU attribute (None: unbounded), shared by SkuCatalog.validate and the
# reader of listed items and generated profiles.
SKU_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "mean": (0, None), "cv": (0, 10), "dispersion": (1e-9, None), "zero_prob": (0, 0.999),
    "holding_cost": (0, None), "backorder_cost": (0, None), "lost_sale_cost": (0, None),
    "fixed_order_cost": (0, None), "unit_cost": (0, None), "price": (1e-9, None),
    "price_elasticity": (0, 20), "weather_sensitivity": (-5, 5),
}


@dataclass(frozen=True)
class SkuCatalog:
    """Per-SKU parameters as arrays of length n_sku (one entry per SKU).

    `mean` is the base demand per store-day before seasonality, promotions and
    the store's `demand_scale`; costs are per unit (holding and backorder per
    unit-day).
    """

    name: tuple[str, ...]
    group: tuple[str, ...]
    dist: tuple[str, ...]
    mean: np.ndarray
    cv: np.ndarray
    dispersion: np.ndarray
    zero_prob: np.ndarray
    holding_cost: np.ndarray
    backorder_cost: np.ndarray
    lost_sale_cost: np.ndarray
    fixed_order_cost: np.ndarray
    unit_cost: np.ndarray
    price: np.ndarray
    price_elasticity: np.ndarray
    weather_sensitivity: np.ndarray

    @property
    def n(self) -> int:
        return len(self.name)

    def validate(self, key: str) -> None:
        n = self.n
        if n == 0:
            raise SpecError(f"{key}: no SKUs; allowed: at least 1")
        for attr in ("group", "dist"):
            if len(getattr(self, attr)) != n:
                raise SpecError(f"{key}.{attr}: expected {n} entries, got {len(getattr(self, attr))}")
        for i, d in enumerate(self.dist):
            if d not in DEMAND_DISTS:
                raise SpecError(f"{key}[{i}].dist: {d!r} is not allowed; allowed: {', '.join(DEMAND_DISTS)}")
        for attr, (low, high) in SKU_LIMITS.items():
            values = np.asarray(getattr(self, attr), dtype=float)
            if values.shape != (n,):
                raise SpecError(f"{key}.{attr}: expected {n} values, got shape {values.shape}")
            for i, v in enumerate(values):
                check_number(f"{key}[{i}].{attr}", v, low=low, high=high)


@dataclass(frozen=True)
class PromotionSpec:
    """Random promotions: each SKU starts one with `weekly_probability` each week."""

    weekly_probability: float = 0.0
    duration_days: int = 7
    discount: float = 0.2
    extra_lift: float = 1.0


@dataclass(frozen=True)
class HolidaySpec:
    """A holiday: demand multiplied by `lift` from day-of-year `day` for `duration_days`."""

    name: str
    day: int
    lift: float
    duration_days: int = 1


@dataclass(frozen=True)
class DemandSpec:
    """Calendar effects shared by all SKUs, and how demand is drawn."""

    weekly: tuple[float, ...] = (1.0,) * 7
    yearly_amplitude: float = 0.0
    yearly_peak_day: int = 355
    trend_per_year: float = 0.0
    promotion: PromotionSpec = field(default_factory=PromotionSpec)
    holidays: tuple[HolidaySpec, ...] = ()
    weather_ar: float = 0.8
    weather_sd: float = 0.0
    truncate_normal: bool = True
    integer_units: bool = True


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network: nodes (in topological order: parents first), SKUs and rules."""

    name: str
    nodes: tuple[NodeSpec, ...]
    skus: SkuCatalog
    demand: DemandSpec = field(default_factory=DemandSpec)
    rationing: str = "proportional"
    backlog_first: bool = True

    def __post_init__(self) -> None:
        validate_network(self)

    @cached_property  # a spec is frozen: built once (a served request looks names up many times)
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.node_names)}

    def index(self, name: str) -> int:
        """The position of node `name` (ValueError if the network has none of that name)."""
        try:
            return self._positions[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a node of network {self.name!r}") from None

    def nodes_of_kind(self, kind: str) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.kind == kind)


def validate_network(spec: NetworkSpec) -> None:
    """Raise SpecError naming the first bad value of a network."""
    key = "network"
    if not spec.nodes:
        raise SpecError(f"{key}.nodes: empty; allowed: at least one supplier and one store")
    if spec.rationing not in RATIONING_RULES:
        raise SpecError(f"{key}.rationing: {spec.rationing!r} is not allowed; allowed: {', '.join(RATIONING_RULES)}")
    seen: dict[str, NodeSpec] = {}
    for i, node in enumerate(spec.nodes):
        nkey = f"{key}.nodes[{i}]"
        if not node.name or node.name in seen:
            raise SpecError(f"{nkey}.name: {node.name!r} is empty or used twice; allowed: a unique name")
        if node.kind not in NODE_KINDS:
            raise SpecError(f"{nkey}.kind: {node.kind!r} is not allowed; allowed: {', '.join(NODE_KINDS)}")
        if node.kind == "supplier":
            if node.parent is not None:
                raise SpecError(f"{nkey}.parent: a supplier has no parent; allowed: null")
            _check_supplier(node, nkey)
        else:
            if node.parent is None or node.parent not in seen:
                known = ", ".join(seen) or "(none yet)"
                raise SpecError(f"{nkey}.parent: {node.parent!r} is not a node listed before {node.name!r}; "
                                f"allowed: {known}")
            if seen[node.parent].kind == "store":
                raise SpecError(f"{nkey}.parent: {node.parent!r} is a store; stores cannot supply other nodes")
        if node.backup_parent is not None:
            suppliers = [n for n, spec_ in seen.items() if spec_.kind != "store" and n != node.parent]
            if node.kind == "supplier" or node.backup_parent not in suppliers:
                raise SpecError(f"{nkey}.backup_parent: {node.backup_parent!r} is not allowed; allowed: another "
                                f"supplier or dc listed before {node.name!r} ({', '.join(suppliers) or 'none'})")
        if node.unmet not in UNMET:
            raise SpecError(f"{nkey}.unmet: {node.unmet!r} is not allowed; allowed: {', '.join(UNMET)}")
        node.lead_time.validate(f"{nkey}.lead_time")
        for attr in ("storage_capacity", "lane_capacity", "supply_capacity"):
            value = getattr(node, attr)
            if value is not None:
                check_number(f"{nkey}.{attr}", value, low=0, low_open=True)
        for attr in ("holding_factor", "backorder_factor", "lost_sale_factor", "in_transit_holding", "demand_scale"):
            check_number(f"{nkey}.{attr}", getattr(node, attr), low=0)
        if node.supply_capacity is not None and node.kind != "supplier":
            raise SpecError(_misplaced(f"{nkey}.supply_capacity", node.kind))
        if node.demand_scale != 1 and node.kind != "store":
            raise SpecError(_misplaced(f"{nkey}.demand_scale", node.kind))
        seen[node.name] = node
    parents = {n.parent for n in spec.nodes}
    for i, node in enumerate(spec.nodes):
        if node.kind == "store" and node.name in parents:
            raise SpecError(f"{key}.nodes[{i}]: store {node.name!r} has children; stores must be leaves")
        if node.kind == "dc" and node.name not in parents:
            raise SpecError(f"{key}.nodes[{i}]: dc {node.name!r} supplies no node; allowed: a dc with at least one "
                            f"child (or make it a store)")
    if not spec.nodes_of_kind("store"):
        raise SpecError(f"{key}.nodes: no stores; allowed: at least one node of kind 'store'")
    if spec.rationing == "fcfs" and not spec.backlog_first:
        raise SpecError(f"{key}.backlog_first: false has no effect with rationing fcfs (first-come-first-served "
                        f"always serves orders by age, oldest first); allowed: true, or rationing proportional or "
                        f"priority")
    spec.skus.validate(f"{key}.skus")
    validate_demand(spec.demand, f"{key}.demand")


SUPPLIER_KEYS = ("name", "kind", "supply_capacity", "region")
SUPPLIER_COSTS = {"holding_factor": 0.0, "backorder_factor": 0.0, "lost_sale_factor": 0.0}  # outside the network


def _misplaced(key: str, kind: str) -> str:
    """The message for a node key that does nothing on a node of this kind."""
    attr = key.rsplit(".", 1)[-1]
    if kind == "supplier":
        return (f"{key}: a supplier is a root outside the network (no inbound lane, no storage limit, no costs), "
                f"so {attr} does nothing on it; allowed on a supplier: {', '.join(SUPPLIER_KEYS)}")
    if attr == "supply_capacity":
        return (f"{key}: only a supplier has a supply_capacity, this node is a {kind}; allowed on a {kind}: "
                f"storage_capacity (what it may hold) or lane_capacity (what its inbound lane carries per day)")
    if attr == "demand_scale":
        return f"{key}: only stores face customer demand, this node is a {kind}; allowed on a {kind}: 1 or left out"
    if attr == "lost_sale_factor":
        return (f"{key}: only a store loses sales (a {kind} with unmet: lost cancels what it cannot supply, at no "
                f"penalty of its own); allowed on a {kind}: left out")
    raise AssertionError(attr)


def _check_supplier(node: NodeSpec, key: str) -> None:
    """A supplier has only a name, a kind, a supply capacity and a region: reject anything set beyond them.

    Cost factors of suppliers are zero in the engine, so 0 and the dataclass default (1, not set) pass.
    """
    default = NodeSpec(name=node.name, kind=node.kind)
    for attr in ("backup_parent", "lead_time", "unmet", "storage_capacity", "lane_capacity", "in_transit_holding",
                 "demand_scale"):
        if getattr(node, attr) != getattr(default, attr):
            raise SpecError(_misplaced(f"{key}.{attr}", "supplier"))
    for attr in ("holding_factor", "backorder_factor", "lost_sale_factor"):
        if getattr(node, attr) not in (0, getattr(default, attr)):
            raise SpecError(_misplaced(f"{key}.{attr}", "supplier"))


def validate_demand(d: DemandSpec, key: str) -> None:
    weekly = d.weekly
    if len(weekly) != 7:
        raise SpecError(f"{key}.weekly: expected 7 numbers (Monday..Sunday), got {len(weekly)}")
    for i, w in enumerate(weekly):
        check_number(f"{key}.weekly[{i}]", w, low=0)
    if sum(weekly) <= 0:
        raise SpecError(f"{key}.weekly: all zero; allowed: non-negative numbers with a positive sum")
    check_number(f"{key}.yearly_amplitude", d.yearly_amplitude, low=0, high=0.99)
    check_number(f"{key}.trend_per_year", d.trend_per_year, low=-0.9, high=10)
    check_number(f"{key}.weather_ar", d.weather_ar, low=0, high=0.999)
    check_number(f"{key}.weather_sd", d.weather_sd, low=0, high=3)
    p = d.promotion
    check_number(f"{key}.promotion.weekly_probability", p.weekly_probability, low=0, high=1)
    check_number(f"{key}.promotion.discount", p.discount, low=0, high=0.95)
    check_number(f"{key}.promotion.extra_lift", p.extra_lift, low=0)
    check_number(f"{key}.promotion.duration_days", p.duration_days, low=1, high=365)
    for i, h in enumerate(d.holidays):
        check_number(f"{key}.holidays[{i}].day", h.day, low=0, high=364)
        check_number(f"{key}.holidays[{i}].lift", h.lift, low=0)
        check_number(f"{key}.holidays[{i}].duration_days", h.duration_days, low=1, high=60)


# ---------------------------------------------------------------------------
# Building specs from plain mappings
# ---------------------------------------------------------------------------

def network_from_dict(data: dict, path: str = "network") -> NetworkSpec:
    """Build and validate a NetworkSpec from a mapping (explicit `nodes` or a generated `layout`)."""
    r = ConfigReader(data, path)
    name = r.text("name", "network")
    skus = skus_from_reader(r.child("skus"))
    demand = demand_from_reader(r.child("demand"))
    if r.has("nodes") and r.has("layout"):
        raise SpecError(f"{path}: give either 'nodes' (an explicit tree) or 'layout' (a generated one), not both")
    if r.has("nodes"):
        nodes = tuple(node_from_reader(c) for c in r.children("nodes"))
    elif r.has("layout"):
        nodes = layout_from_reader(r.child("layout"))
    else:
        raise SpecError(f"{path}: missing 'nodes' or 'layout'; allowed: one of the two")
    rationing = r.choice("rationing", RATIONING_RULES, "proportional")
    backlog_first = r.flag("backlog_first", True)
    r.done()
    return NetworkSpec(name=name, nodes=nodes, skus=skus, demand=demand, rationing=rationing,
                       backlog_first=backlog_first)


NODE_FIELDS = ("holding_factor", "backorder_factor", "lost_sale_factor", "in_transit_holding", "demand_scale")


def node_from_reader(r: ConfigReader) -> NodeSpec:
    """One explicit node; DCs default to backorder_factor 0 (see NodeSpec), keys a kind does not use are errors."""
    kind = r.choice("kind", NODE_KINDS)
    if kind == "supplier":
        for name in r.data:
            if name not in (*SUPPLIER_KEYS, "parent") and name in NODE_KEYS:
                if r.has(name):
                    raise SpecError(_misplaced(r.key(name), kind))
                r.raw(name)  # null: the same as left out
        node = NodeSpec(name=r.text("name"), kind=kind, parent=r.text("parent", optional=True),
                        supply_capacity=r.number("supply_capacity", low=0, low_open=True, optional=True),
                        region=r.text("region", "all"), **SUPPLIER_COSTS)
        r.done()
        return node
    _reject_misplaced(r, kind)
    defaults = {"in_transit_holding": 0.0, "backorder_factor": 0.0 if kind == "dc" else 1.0}
    node = NodeSpec(
        name=r.text("name"),
        kind=kind,
        parent=r.text("parent", optional=True),
        backup_parent=r.text("backup_parent", optional=True),
        lead_time=LeadTimeSpec.from_reader(r.child("lead_time")),
        unmet=r.choice("unmet", UNMET, "backorder"),
        storage_capacity=r.number("storage_capacity", low=0, low_open=True, optional=True),
        lane_capacity=r.number("lane_capacity", low=0, low_open=True, optional=True),
        region=r.text("region", "all"),
        **{f: r.number(f, defaults.get(f, 1.0), low=0) for f in NODE_FIELDS},
    )
    r.done()
    return node


NODE_KEYS = ("name", "kind", "parent", "backup_parent", "lead_time", "unmet", "storage_capacity", "lane_capacity",
             "supply_capacity", "region", *NODE_FIELDS)


def _reject_misplaced(r: ConfigReader, kind: str) -> None:
    """supply_capacity belongs to suppliers; demand_scale (other than 1) and lost_sale_factor to stores."""
    if r.has("supply_capacity"):
        raise SpecError(_misplaced(r.key("supply_capacity"), kind))
    if kind != "store" and r.has("demand_scale"):
        value = r.raw("demand_scale")
        if isinstance(value, bool) or value != 1:
            raise SpecError(_misplaced(r.key("demand_scale"), kind))
    if kind != "store" and r.has("lost_sale_factor"):
        raise SpecError(_misplaced(r.key("lost_sale_factor"), kind))


def layout_from_reader(r: ConfigReader) -> tuple[NodeSpec, ...]:
    """A generated two-echelon tree: suppliers -> DCs -> stores (stores dealt round-robin to DCs)."""
    n_sup = r.integer("suppliers", 1, low=1, high=100)
    n_dc = r.integer("dcs", 5, low=1, high=1000)
    n_store = r.integer("stores", 20, low=1, high=100000)
    regions = r.sequence("regions", ["north", "south", "east", "west", "central"])
    dc = r.child("dc")
    store = r.child("store")
    _reject_misplaced(dc, "dc")
    _reject_misplaced(store, "store")
    dc_lt = LeadTimeSpec.from_reader(dc.child("lead_time"))
    store_lt = LeadTimeSpec.from_reader(store.child("lead_time"))
    dc_unmet = dc.choice("unmet", UNMET, "backorder")
    store_unmet = store.choice("unmet", UNMET, "backorder")
    dc_cap = dc.number("storage_capacity", low=0, low_open=True, optional=True)
    store_cap = store.number("storage_capacity", low=0, low_open=True, optional=True)
    lane_cap = store.number("lane_capacity", low=0, low_open=True, optional=True)
    dc_factors = {f: dc.number(f, {"holding_factor": 0.5, "backorder_factor": 0.0}.get(
        f, 0.0 if f == "in_transit_holding" else 1.0), low=0) for f in NODE_FIELDS if f != "demand_scale"}
    store_factors = {f: store.number(f, 0.0 if f == "in_transit_holding" else 1.0, low=0)
                     for f in NODE_FIELDS if f != "demand_scale"}
    scale_low, scale_high = store.numbers("demand_scale", (0.6, 1.4), low=0, length=2)
    backup = store.flag("backup_dc", True)
    if backup and n_dc == 1 and store.has("backup_dc"):
        raise SpecError(f"{store.key('backup_dc')}: true needs a second DC to fall back on, this layout has dcs: 1; "
                        f"allowed: false, or dcs >= 2")
    dc.done()
    store.done()
    r.done()
    nodes = [NodeSpec(name=f"supplier_{i}", kind="supplier", **SUPPLIER_COSTS) for i in range(n_sup)]
    for d in range(n_dc):
        nodes.append(NodeSpec(name=f"dc_{d}", kind="dc", parent=f"supplier_{d % n_sup}", lead_time=dc_lt,
                              unmet=dc_unmet, storage_capacity=dc_cap, region=str(regions[d % len(regions)]),
                              **dc_factors))
    width = len(str(n_store - 1))
    for s in range(n_store):
        d = s % n_dc
        scale = scale_low + (scale_high - scale_low) * ((s * 7919) % 97) / 96  # spread, no RNG needed
        nodes.append(NodeSpec(
            name=f"store_{s:0{width}d}", kind="store", parent=f"dc_{d}",
            backup_parent=f"dc_{(d + 1) % n_dc}" if backup and n_dc > 1 else None,
            lead_time=store_lt, unmet=store_unmet, storage_capacity=store_cap, lane_capacity=lane_cap,
            demand_scale=round(scale, 3), region=str(regions[d % len(regions)]), **store_factors))
    return tuple(nodes)


SKU_RANGES = ("mean", "cv", "dispersion", "zero_prob", "holding_cost", "backorder_cost", "lost_sale_cost",
              "fixed_order_cost", "unit_cost", "price", "price_elasticity", "weather_sensitivity")
SKU_DEFAULTS = {"mean": 5.0, "cv": 0.3, "dispersion": 5.0, "zero_prob": 0.0, "holding_cost": 0.05,
                "backorder_cost": 1.0, "lost_sale_cost": 2.0, "fixed_order_cost": 0.0, "unit_cost": 0.0,
                "price": 10.0, "price_elasticity": 1.5, "weather_sensitivity": 0.0}


# demand parameters that only one law uses: giving one for another law would be silently ignored
LAW_PARAMETERS = {"cv": "normal", "dispersion": "negative_binomial", "zero_prob": "zero_inflated_poisson"}


def _reject_unused_law_parameters(r: ConfigReader, dist: str) -> None:
    for attr, law in LAW_PARAMETERS.items():
        if dist != law and r.has(attr):
            raise SpecError(f"{r.key(attr)}: only the {law} demand law uses {attr}, this SKU's law is {dist}; "
                            f"allowed: left out (or dist: {law})")


def skus_from_reader(r: ConfigReader) -> SkuCatalog:
    """SKUs either listed (`items`) or drawn from `profiles` (fast/slow/intermittent movers)."""
    if r.has("items"):
        rows = []
        for c in r.children("items"):
            row = {"name": c.text("name"), "group": c.text("group", "general"),
                   "dist": c.choice("dist", DEMAND_DISTS, "poisson")}
            for attr in SKU_RANGES:
                low, high = SKU_LIMITS[attr]
                row[attr] = c.number(attr, SKU_DEFAULTS[attr], low=low, high=high)
            _reject_unused_law_parameters(c, row["dist"])
            c.done()
            rows.append(row)
        r.done()
        return catalog_from_rows(rows, r.path)
    count = r.integer("count", 50, low=1, high=1_000_000)
    seed = r.integer("seed", 0, low=0)
    groups = [str(g) for g in r.sequence("groups", ["staples", "fresh", "general"])]
    if not groups:
        raise SpecError(f"{r.key('groups')}: empty; allowed: at least one group name")
    profiles = r.child("profiles")
    names = list(profiles.data) or ["default"]
    shares, params = [], []
    for name in names:
        p = profiles.child(name)
        shares.append(p.number("share", 1.0, low=0))
        dist = p.choice("dist", DEMAND_DISTS, "poisson")
        ranges = {attr: profile_range(p, attr) for attr in SKU_RANGES}
        _reject_unused_law_parameters(p, dist)
        p.done()
        params.append((name, dist, ranges))
    profiles.done()
    r.done()
    total = sum(shares)
    if total <= 0:
        raise SpecError(f"{r.key('profiles')}: shares sum to 0; allowed: non-negative shares with a positive sum")
    rng = np.random.default_rng(seed)
    counts = np.floor(np.asarray(shares) / total * count).astype(int)
    counts[np.argmax(shares)] += count - counts.sum()
    rows = []
    for (pname, dist, ranges), c in zip(params, counts):
        for _ in range(c):
            row = {"name": f"sku_{len(rows):04d}", "group": groups[int(rng.integers(len(groups)))], "dist": dist,
                   "profile": pname}
            for attr in SKU_RANGES:
                low, high = ranges[attr]
                row[attr] = float(rng.uniform(low, high))
            rows.append(row)
    return catalog_from_rows(rows, r.path)


def profile_range(p: ConfigReader, attr: str) -> tuple[float, float]:
    """A profile's [low, high] range of one SKU attribute (a single number: that value), checked before any draw."""
    low, high = SKU_LIMITS[attr]
    if isinstance(p.raw(attr, None), (list, tuple)):
        lo, hi = p.numbers(attr, length=2, low=low, high=high)
        if lo > hi:
            raise SpecError(f"{p.key(attr)}: [{lo:g}, {hi:g}] is reversed; allowed: [low, high] with low <= high")
        return lo, hi
    value = p.number(attr, SKU_DEFAULTS[attr], low=low, high=high)
    return value, value


def catalog_from_rows(rows: list[dict], key: str) -> SkuCatalog:
    """A SkuCatalog from one mapping per SKU (validated)."""
    arrays = {attr: np.array([row[attr] for row in rows], dtype=float) for attr in SKU_RANGES}
    catalog = SkuCatalog(name=tuple(row["name"] for row in rows), group=tuple(row["group"] for row in rows),
                         dist=tuple(row["dist"] for row in rows), **arrays)
    catalog.validate(key)
    return catalog


def demand_from_reader(r: ConfigReader) -> DemandSpec:
    promo = r.child("promotion")
    promotion = PromotionSpec(
        weekly_probability=promo.number("weekly_probability", 0.0, low=0, high=1),
        duration_days=promo.integer("duration_days", 7, low=1, high=365),
        discount=promo.number("discount", 0.2, low=0, high=0.95),
        extra_lift=promo.number("extra_lift", 1.0, low=0),
    )
    promo.done()
    holidays = []
    for c in r.children("holidays"):
        holidays.append(HolidaySpec(name=c.text("name", "holiday"), day=c.integer("day", low=0, high=364),
                                    lift=c.number("lift", low=0), duration_days=c.integer("duration_days", 1, low=1,
                                                                                          high=60)))
        c.done()
    spec = DemandSpec(
        weekly=r.numbers("weekly", (1.0,) * 7, low=0, length=7),
        yearly_amplitude=r.number("yearly_amplitude", 0.0, low=0, high=0.99),
        yearly_peak_day=r.integer("yearly_peak_day", 355, low=0, high=365),
        trend_per_year=r.number("trend_per_year", 0.0, low=-0.9, high=10),
        promotion=promotion,
        holidays=tuple(holidays),
        weather_ar=r.number("weather_ar", 0.8, low=0, high=0.999),
        weather_sd=r.number("weather_sd", 0.0, low=0, high=3),
        truncate_normal=r.flag("truncate_normal", True),
        integer_units=r.flag("integer_units", True),
    )
    r.done()
    return spec
