"""Shocks: disruptions that change the network's parameters over a window of days.

Each shock is a class with a window `[start, end)` (days) and an `apply` method
that folds its effect into a `ShockEffects`. The engine runs every shock as a
SimPy process that switches it on at the start of day `start` and off at the
start of day `end`, and recomputes the effects from the set of active shocks
(so overlapping shocks compose by multiplication, whatever their order).
A scenario such as COVID-2020 is simply a tuple of shocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from twin.config import ConfigReader, SpecError
from twin.registry import Registry
from twin.spec import NetworkSpec, NodeSpec


@dataclass
class ShockEffects:
    """Multipliers and switches in force on one day (arrays indexed by node, and by SKU where shown)."""

    demand: np.ndarray          # (nodes, SKUs) multiplier on store demand
    lead_time: np.ndarray       # (nodes,) multiplier on lead times of shipments *from* this node
    capacity: np.ndarray        # (nodes,) multiplier on storage, inbound lane and supply capacities
    shut: np.ndarray            # (nodes,) True: the node ships nothing (outage or closure)
    reroute: np.ndarray         # (nodes,) True: a shut node's customers order from their backup instead

    @classmethod
    def neutral(cls, n_nodes: int, n_sku: int) -> ShockEffects:
        return cls(demand=np.ones((n_nodes, n_sku)), lead_time=np.ones(n_nodes), capacity=np.ones(n_nodes),
                   shut=np.zeros(n_nodes, dtype=bool), reroute=np.zeros(n_nodes, dtype=bool))


@dataclass(frozen=True)
class Shock:
    """Base class: a window of days [start, end) during which the shock is active."""

    start: int
    end: int

    def validate(self, network: NetworkSpec, key: str) -> None:
        if self.start < 0 or self.end <= self.start:
            raise SpecError(f"{key}: window [{self.start}, {self.end}) is empty or negative; "
                            f"allowed: 0 <= start < end")

    def apply(self, effects: ShockEffects, network: NetworkSpec) -> None:
        raise NotImplementedError


def _check_nodes(network: NetworkSpec, names: tuple[str, ...], kinds: tuple[str, ...], key: str) -> None:
    allowed = [n.name for n in network.nodes if n.kind in kinds]
    for name in names:
        if name not in allowed:
            raise SpecError(f"{key}: {name!r} is not a {' or '.join(kinds)} of network {network.name!r}; "
                            f"allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class DemandShock(Shock):
    """Store demand multiplied by `multiplier` (a surge above 1, a dip below) for chosen SKU groups and regions."""

    multiplier: float = 1.0
    groups: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()

    def validate(self, network: NetworkSpec, key: str) -> None:
        super().validate(network, key)
        if not (0 <= self.multiplier <= 100):
            raise SpecError(f"{key}.multiplier: {self.multiplier:g} is out of range; allowed: [0, 100]")
        known_groups = sorted(set(network.skus.group))
        for g in self.groups:
            if g not in known_groups:
                raise SpecError(f"{key}.groups: {g!r} is not a SKU group; allowed: {', '.join(known_groups)}")
        known_regions = sorted({n.region for n in network.nodes if n.kind == "store"})
        for r in self.regions:
            if r not in known_regions:
                raise SpecError(f"{key}.regions: {r!r} is not a store region; allowed: {', '.join(known_regions)}")

    def apply(self, effects: ShockEffects, network: NetworkSpec) -> None:
        rows = [i for i, n in enumerate(network.nodes)
                if n.kind == "store" and (not self.regions or n.region in self.regions)]
        cols = [k for k, g in enumerate(network.skus.group) if not self.groups or g in self.groups]
        effects.demand[np.ix_(rows, cols)] *= self.multiplier


@dataclass(frozen=True)
class LeadTimeShock(Shock):
    """Lead times of shipments from `sources` (all nodes when empty) multiplied by `multiplier`."""

    multiplier: float = 1.0
    sources: tuple[str, ...] = ()

    def validate(self, network: NetworkSpec, key: str) -> None:
        super().validate(network, key)
        if not (0 <= self.multiplier <= 50):
            raise SpecError(f"{key}.multiplier: {self.multiplier:g} is out of range; allowed: [0, 50]")
        _check_nodes(network, self.sources, ("supplier", "dc"), f"{key}.sources")

    def apply(self, effects: ShockEffects, network: NetworkSpec) -> None:
        for i, n in enumerate(network.nodes):
            if not self.sources or n.name in self.sources:
                effects.lead_time[i] *= self.multiplier


@dataclass(frozen=True)
class SupplierOutage(Shock):
    """A supplier ships nothing; orders to it wait in its backlog until the outage ends."""

    supplier: str = ""

    def validate(self, network: NetworkSpec, key: str) -> None:
        super().validate(network, key)
        _check_nodes(network, (self.supplier,), ("supplier",), f"{key}.supplier")

    def apply(self, effects: ShockEffects, network: NetworkSpec) -> None:
        effects.shut[network.index(self.supplier)] = True


@dataclass(frozen=True)
class DcClosure(Shock):
    """A DC ships nothing; its customers re-route new orders to their backup DC, or are starved."""

    dc: str = ""
    reroute: bool = True

    def validate(self, network: NetworkSpec, key: str) -> None:
        super().validate(network, key)
        _check_nodes(network, (self.dc,), ("dc",), f"{key}.dc")
        if self.reroute:
            orphans = [n.name for n in network.nodes if n.parent == self.dc and n.backup_parent is None]
            if orphans:
                raise SpecError(f"{key}.reroute: {orphans[0]!r} has no backup_parent to re-route to; "
                                f"allowed: give every customer of {self.dc!r} a backup_parent, or reroute: false")

    def apply(self, effects: ShockEffects, network: NetworkSpec) -> None:
        i = network.index(self.dc)
        effects.shut[i] = True
        effects.reroute[i] |= self.reroute


@dataclass(frozen=True)
class CapacityCut(Shock):
    """A node's storage, inbound-lane and supply capacities multiplied by `factor` (in [0, 1])."""

    node: str = ""
    factor: float = 0.5

    def validate(self, network: NetworkSpec, key: str) -> None:
        super().validate(network, key)
        _check_nodes(network, (self.node,), ("supplier", "dc", "store"), f"{key}.node")
        if not (0 <= self.factor <= 1):
            raise SpecError(f"{key}.factor: {self.factor:g} is out of range; allowed: [0, 1]")
        if not _cuttable(network.nodes[network.index(self.node)]):
            cuttable = [n.name for n in network.nodes if _cuttable(n)]
            raise SpecError(f"{key}.node: {self.node!r} has no capacity to cut; allowed: a supplier with a "
                            f"supply_capacity, or a dc or store with a storage_capacity or lane_capacity "
                            f"({', '.join(cuttable) or 'none in this network'})")

    def apply(self, effects: ShockEffects, network: NetworkSpec) -> None:
        effects.capacity[network.index(self.node)] *= self.factor


def _cuttable(node: NodeSpec) -> bool:
    """Whether a capacity cut on this node changes anything: a capacity the engine applies for its kind.

    A supplier's cut scales its supply_capacity; a dc's or store's scales its storage and inbound lane capacity.
    """
    if node.kind == "supplier":
        return node.supply_capacity is not None
    return node.storage_capacity is not None or node.lane_capacity is not None


SHOCK_TYPES: Registry[type[Shock]] = Registry("type", {
    "demand": DemandShock,
    "lead_time": LeadTimeShock,
    "supplier_outage": SupplierOutage,
    "dc_closure": DcClosure,
    "capacity_cut": CapacityCut,
})


def shock_from_dict(data: dict, network: NetworkSpec, key: str) -> Shock:
    """Build and validate one shock from a mapping with a `type` key (see SHOCK_TYPES)."""
    r = ConfigReader(data, key)
    cls = SHOCK_TYPES.resolve(r.raw("type"), r.key("type"))
    kwargs = {"start": r.integer("start", low=0), "end": r.integer("end", low=1)}
    for name, f in cls.__dataclass_fields__.items():
        if name in ("start", "end"):
            continue
        default = f.default
        if isinstance(default, tuple):
            kwargs[name] = tuple(str(v) for v in r.sequence(name, default))
        elif isinstance(default, bool):
            kwargs[name] = r.flag(name, default)
        elif isinstance(default, float):
            kwargs[name] = r.number(name, default)
        else:
            kwargs[name] = r.text(name, default or None)
    r.done()
    shock = cls(**kwargs)
    shock.validate(network, key)
    return shock


def shock_to_dict(shock: Shock) -> dict:
    """A shock as the plain mapping `shock_from_dict` reads."""
    kind = next(k for k, cls in SHOCK_TYPES.items() if type(shock) is cls)
    return {"type": kind, **{f.name: list(v) if isinstance(v := getattr(shock, f.name), tuple) else v
                             for f in dataclasses.fields(shock)}}
