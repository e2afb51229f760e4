"""Property tests of the twin: for random small networks, policies, shocks and seeds, the ledger balances.

Each example builds a network from a plain mapping (1-2 suppliers, 1-3 DCs in trees
up to supplier -> dc -> dc -> store, 1-5 stores, 1-4 SKUs), draws a policy and a set
of shocks, and runs it with `twin.testing.run_with_invariants`: invariants='error'
(the ledger balances at every node every day), and at every decision point no
state is negative, in-transit stock equals the pending shipments, and units bought
== on hand + in transit + sold. KPIs must be sane.

The policies are the twin's own order streams (OrderUpTo and small ones below), so the twin is tested without
agents/; tests/agents/test_baselines_on_twin.py runs agents' baseline policies through the same checks.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin import CapacityCut, DcClosure, DemandShock, LeadTimeShock, SupplierOutage, network_from_dict
from twin.coverage import protection_periods
from twin.state import orders_up_to
from twin.stats import DemandStats
from twin.testing import (
    OrderUpTo,
    check_common_random_numbers,
    check_determinism,
    check_kpis,
    check_ledger,
    run_with_invariants,
)

# TWIN_PROPERTY_EXAMPLES=2000 for a long bug hunt; the default keeps each test to a second or two
EXAMPLES = int(os.environ.get("TWIN_PROPERTY_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REGIONS = ("north", "south")
GROUPS = ("food", "toys")


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

def floats(low: float, high: float) -> st.SearchStrategy[float]:
    """Plain floats in [low, high], no subnormals (5e-324 units of demand only make KPI ratios overflow)."""
    return st.floats(low, high, allow_subnormal=False)


def lead_times() -> st.SearchStrategy[dict]:
    deterministic = st.builds(lambda m: {"dist": "deterministic", "mean": m},
                              st.sampled_from([0, 0, 1, 2, 3, 0.4, 1.5]))
    gamma = st.builds(lambda m, cv: {"dist": "gamma", "mean": m, "cv": cv},
                      floats(0.2, 3), floats(0.1, 1.5))
    lognormal = st.builds(lambda m, cv: {"dist": "lognormal", "mean": m, "cv": cv},
                          floats(0.2, 3), floats(0.1, 1.0))
    poisson = st.builds(lambda m: {"dist": "poisson", "mean": m}, floats(0, 3))

    def empirical(pairs):
        values = sorted({v for v, _ in pairs})
        weights = np.array([sum(w for v, w in pairs if v == value) for value in values], dtype=float)
        probs = weights / weights.sum()
        probs[-1] = 1 - probs[:-1].sum()
        return {"dist": "empirical", "values": values, "probs": [float(p) for p in probs]}

    emp = st.lists(st.tuples(st.integers(0, 4), st.integers(1, 5)), min_size=1, max_size=4).map(empirical)
    return st.one_of(deterministic, gamma, lognormal, poisson, emp)


def sku_items(n: int) -> st.SearchStrategy[list[dict]]:
    item = st.fixed_dictionaries({
        "group": st.sampled_from(GROUPS),
        "dist": st.sampled_from(["poisson", "negative_binomial", "normal", "zero_inflated_poisson"]),
        "mean": st.one_of(st.just(0.0), floats(0.05, 8)),
        "cv": floats(0, 1),
        "dispersion": floats(0.5, 10),
        "zero_prob": floats(0, 0.9),
        "holding_cost": floats(0, 1),
        "backorder_cost": floats(0, 5),
        "lost_sale_cost": floats(0, 5),
        "fixed_order_cost": floats(0, 10),
        "unit_cost": floats(0, 2),
        "weather_sensitivity": floats(-0.5, 0.5),
    })
    law_parameters = {"cv": "normal", "dispersion": "negative_binomial", "zero_prob": "zero_inflated_poisson"}

    def keep_used(row: dict) -> dict:  # a parameter its law does not use is a config error
        return {key: value for key, value in row.items() if law_parameters.get(key, row["dist"]) == row["dist"]}

    return st.lists(item, min_size=n, max_size=n).map(
        lambda rows: [{"name": f"sku{k}", **keep_used(row)} for k, row in enumerate(rows)])


def demand_blocks() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({
        "weekly": st.lists(floats(0.2, 2), min_size=7, max_size=7),
        "yearly_amplitude": floats(0, 0.5),
        "promotion": st.fixed_dictionaries({"weekly_probability": st.sampled_from([0, 0, 0.3]),
                                            "extra_lift": floats(1, 3)}),
        "weather_sd": st.sampled_from([0, 0, 0.5]),
        "integer_units": st.booleans(),
        "truncate_normal": st.just(True),
    })


def maybe(strategy: st.SearchStrategy, p_none: int = 2) -> st.SearchStrategy:
    """None most of the time (p_none in p_none + 1), else a value."""
    return st.one_of(*([st.none()] * p_none), strategy)


@st.composite
def network_dicts(draw) -> dict:
    """A random small tree as the mapping `network_from_dict` reads."""
    n_sup = draw(st.integers(1, 2))
    n_dc = draw(st.integers(1, 3))
    nodes: list[dict] = []
    for s in range(n_sup):
        nodes.append({"name": f"sup{s}", "kind": "supplier",
                      "supply_capacity": draw(maybe(floats(5, 200), 3))})
    dc_depth: dict[str, int] = {}
    for d in range(n_dc):
        options = [f"sup{s}" for s in range(n_sup)] + [name for name, depth in dc_depth.items() if depth == 1]
        parent = draw(st.sampled_from(options))
        dc_depth[f"dc{d}"] = 1 if parent.startswith("sup") else 2
        nodes.append({"name": f"dc{d}", "kind": "dc", "parent": parent})
    dc_names = list(dc_depth)
    leaves = [d for d in dc_names if not any(n.get("parent") == d for n in nodes)]
    n_store = draw(st.integers(max(1, len(leaves)), 5))
    for s in range(n_store):
        parent = leaves[s] if s < len(leaves) else draw(st.sampled_from(dc_names + ["sup0"]))
        nodes.append({"name": f"store{s}", "kind": "store", "parent": parent, "region": draw(st.sampled_from(REGIONS)),
                      "demand_scale": draw(floats(0.5, 1.5))})
    for i, node in enumerate(nodes):
        if node["kind"] == "supplier":
            continue
        node["lead_time"] = draw(lead_times())
        node["unmet"] = draw(st.sampled_from(["backorder", "lost"]))
        node["storage_capacity"] = draw(maybe(floats(5, 150), 3))
        node["lane_capacity"] = draw(maybe(floats(3, 80), 3))
        node["holding_factor"] = draw(floats(0, 2))
        node["in_transit_holding"] = draw(floats(0, 1))
        backups = [n["name"] for n in nodes[:i] if n["kind"] != "store" and n["name"] != node["parent"]]
        if backups and draw(st.booleans()):
            node["backup_parent"] = draw(st.sampled_from(backups))
    n_sku = draw(st.integers(1, 4))
    demand = draw(demand_blocks())
    rationing = draw(st.sampled_from(["proportional", "priority", "fcfs"]))
    return {
        "name": "random",
        "skus": {"items": draw(sku_items(n_sku))},
        "demand": demand,
        "nodes": [{k: v for k, v in n.items() if v is not None} for n in nodes],
        "rationing": rationing,
        "backlog_first": True if rationing == "fcfs" else draw(st.booleans()),  # fcfs always serves oldest first
    }


@st.composite
def shock_lists(draw, data: dict, horizon: int) -> list:
    """0-3 shocks on the network `data`; a DC closure with reroute gives its customers a backup_parent."""
    nodes = data["nodes"]
    suppliers = [n["name"] for n in nodes if n["kind"] == "supplier"]
    dcs = [n["name"] for n in nodes if n["kind"] == "dc"]
    regions = sorted({n["region"] for n in nodes if n["kind"] == "store"})
    groups = sorted({item["group"] for item in data["skus"]["items"]})
    shocks = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, horizon))
        window = {"start": start, "end": draw(st.integers(start + 1, horizon + 5))}
        kind = draw(st.sampled_from(["demand", "lead_time", "outage", "closure", "capacity"]))
        if kind == "demand":
            shocks.append(DemandShock(**window, multiplier=draw(floats(0, 5)),
                                      groups=tuple(draw(st.lists(st.sampled_from(groups), unique=True))),
                                      regions=tuple(draw(st.lists(st.sampled_from(regions), unique=True)))))
        elif kind == "lead_time":
            shocks.append(LeadTimeShock(**window, multiplier=draw(floats(0, 4)),
                                        sources=tuple(draw(st.lists(st.sampled_from(suppliers + dcs), unique=True)))))
        elif kind == "outage":
            shocks.append(SupplierOutage(**window, supplier=draw(st.sampled_from(suppliers))))
        elif kind == "closure":
            dc = draw(st.sampled_from(dcs))
            reroute = draw(st.booleans())
            if reroute:
                for i, node in enumerate(nodes):
                    if node.get("parent") == dc and "backup_parent" not in node:
                        options = [n["name"] for n in nodes[:i] if n["kind"] != "store" and n["name"] != dc]
                        node["backup_parent"] = draw(st.sampled_from(options))
            shocks.append(DcClosure(**window, dc=dc, reroute=reroute))
        else:
            capped = [n["name"] for n in nodes
                      if any(n.get(c) is not None for c in ("storage_capacity", "lane_capacity", "supply_capacity"))]
            if capped:  # a cut needs a finite capacity to cut
                shocks.append(CapacityCut(**window, node=draw(st.sampled_from(capped)), factor=draw(floats(0, 1))))
    return shocks


class RandomOrders:
    """Random order vectors (what an untrained RL agent might do), drawn from its own generator."""

    def __init__(self, seed: int, high: float, p_order: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.high, self.p_order = high, p_order

    def act(self, state) -> np.ndarray:
        shape = state.on_hand.shape
        orders = self.rng.uniform(0, self.high, shape) * (self.rng.random(shape) < self.p_order)
        orders[state.topology.is_supplier] = 0.0
        return orders


class EchelonOrderUpTo(OrderUpTo):
    """Order up to fixed levels of the echelon inventory position (the node and everything below it)."""

    def act(self, state) -> np.ndarray:
        return orders_up_to(self.levels, state.echelon_inventory_position, state.topology.is_supplier)


class MinMax:
    """When the inventory position is at or below s, order up to S: large orders now and then."""

    def __init__(self, s: np.ndarray, S: np.ndarray) -> None:
        self.s, self.S = s, S

    def act(self, state) -> np.ndarray:
        position = state.inventory_position
        orders = np.maximum(np.where(position <= self.s, self.S - position, 0.0), 0.0)
        orders[state.topology.is_supplier] = 0.0
        return orders


class Batches:
    """When the inventory position is at or below a reorder point, order whole batches of q to lift it above."""

    def __init__(self, reorder_point: np.ndarray, q: np.ndarray) -> None:
        self.reorder_point, self.q = reorder_point, np.maximum(q, 1e-9)

    def act(self, state) -> np.ndarray:
        position = state.inventory_position
        batches = np.floor((self.reorder_point - position) / self.q) + 1
        orders = np.where(position <= self.reorder_point, batches * self.q, 0.0)
        orders[state.topology.is_supplier] = 0.0
        return orders


@st.composite
def policies(draw, network) -> object:
    """Order-up-to (installation or echelon), (s, S) or batch orders with random levels, order-up-to levels from
    the demand statistics, or random orders."""
    n, k = len(network.nodes), network.skus.n
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["base", "echelon", "ss", "rop", "stats", "random"]))
    high = draw(floats(1, 80))
    if kind == "base":
        return OrderUpTo(rng.uniform(0, high, (n, k)))
    if kind == "echelon":
        return EchelonOrderUpTo(rng.uniform(0, 2 * high, (n, k)))
    if kind == "ss":
        s = rng.uniform(-5, high, (n, k))
        return MinMax(s, s + rng.uniform(0, high, (n, k)))
    if kind == "rop":
        return Batches(rng.uniform(-5, high, (n, k)), rng.uniform(0, high, (n, k)))
    if kind == "stats":
        stats = DemandStats.of(network, horizon=60, seed=0)
        mu, sd = stats.over(protection_periods(stats.lead_time_mean, 1))
        levels = mu + 1.65 * sd  # base-stock levels (lead time + 1 day, z = 1.65)
        return draw(st.sampled_from([OrderUpTo(levels), EchelonOrderUpTo(levels)]))
    return RandomOrders(int(rng.integers(2**31)), high, draw(floats(0.1, 1)))


@st.composite
def cases(draw):
    """(network, policy, horizon, seed, shocks, warmup)."""
    data = draw(network_dicts())
    horizon = draw(st.integers(5, 45))
    shocks = draw(shock_lists(data, horizon))
    network = network_from_dict(data)
    policy = draw(policies(network))
    seed = draw(st.integers(0, 2**32 - 1))
    warmup = draw(st.integers(0, horizon - 1))
    return network, policy, horizon, seed, shocks, warmup


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

@SETTINGS
@given(cases())
def test_ledger_balances_and_nothing_is_created_or_lost(case):
    network, policy, horizon, seed, shocks, warmup = case
    result = run_with_invariants(network, policy, horizon, seed, shocks, warmup=warmup)
    assert result.violations == []
    assert result.series["on_hand"].shape == (horizon, len(network.nodes))
    # fractional units may leave float residue of an ulp or so, never real negative stock
    assert result.sku_series["on_hand"].min() >= -1e-9
    assert result.sku_series["backorders"].min() >= -1e-9
    # nothing created or lost: supplier shipments == stock held + in transit + sold, to the unit, every day
    store = np.array([n.kind == "store" for n in network.nodes])
    supplier = np.array([n.kind == "supplier" for n in network.nodes])
    s = result.series
    bought = np.cumsum(s["outflow"][:, supplier].sum(axis=1))
    held = s["on_hand"][:, ~supplier].sum(axis=1) + s["in_transit"].sum(axis=1)
    sold = np.cumsum(s["outflow"][:, store].sum(axis=1))
    np.testing.assert_allclose(bought, held + sold, rtol=1e-9, atol=1e-6)


@SETTINGS
@given(cases())
def test_kpis_are_sane(case):
    network, policy, horizon, seed, shocks, warmup = case
    result = run_with_invariants(network, policy, horizon, seed, shocks, warmup=warmup)
    kpis = result.kpis
    check_kpis(kpis)
    blocks = [kpis["network"], *kpis["echelons"].values(), *kpis["nodes"].values()]
    for block in blocks:
        for key in ("fill_rate", "cycle_service_level"):
            assert block[key] is None or -1e-12 <= block[key] <= 1.0 + 1e-12, (key, block[key])
        for key, value in block.items():
            if key.startswith("cost_"):
                assert value >= -1e-9, (key, value)  # fractional units leave float residue of an ulp
        assert block["lost_units"] <= block["demand"] + 1e-6
    net = kpis["network"]
    parts = sum(net[f"cost_{c}"] for c in ("holding", "backorder", "lost_sale", "ordering", "in_transit"))
    assert np.isclose(net["cost_total"], parts, rtol=1e-12, atol=1e-9)
    store_demand = sum(kpis["nodes"][n.name]["demand"] for n in network.nodes if n.kind == "store")
    assert np.isclose(net["demand"], store_demand)


@SETTINGS
@given(cases())
def test_unmet_rule_is_respected(case):
    """Lost-sales nodes carry no backorders (a DC only what capacity held back); backordering nodes lose nothing."""
    network, policy, horizon, seed, shocks, warmup = case
    result = run_with_invariants(network, policy, horizon, seed, shocks, warmup=warmup)
    capped = {n.name for n in network.nodes if n.storage_capacity is not None or n.lane_capacity is not None}
    for i, node in enumerate(network.nodes):
        customers_capped = any(n.parent == node.name or n.backup_parent == node.name for n in network.nodes
                               if n.name in capped)
        if node.kind != "supplier" and node.unmet == "lost" and not customers_capped:
            assert result.series["backorders"][:, i].max() == 0, node.name
        if node.unmet == "backorder":
            assert result.series["lost"][:, i].max() == 0, node.name


@settings(max_examples=max(1, EXAMPLES * 3 // 4), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(0, 2**32 - 1))
def test_same_seed_same_run_and_common_random_numbers(case, policy_seed):
    network, policy, horizon, seed, shocks, warmup = case

    def fresh():
        """The policy as it was before the run (random orders restart their own stream)."""
        if isinstance(policy, RandomOrders):
            return RandomOrders(policy_seed, policy.high, policy.p_order)
        return policy

    check_determinism(network, fresh, horizon, seed, shocks, warmup=warmup)
    other = RandomOrders(policy_seed, 30.0, 0.5)
    a, b = check_common_random_numbers(network, policy, other, horizon, seed, shocks)
    check_ledger(a, network)
    check_ledger(b, network)
