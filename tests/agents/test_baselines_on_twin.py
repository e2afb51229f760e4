"""agents' baseline policies on the twin: reproducible, common random numbers, step() == run(), invariants hold.

The twin's and the scenarios' own tests (tests/twin/test_determinism.py, test_properties.py,
tests/scenarios/test_scenarios.py) run the twin's OrderUpTo at the levels of BaseStock.from_stats; the first tests
here check that those are the same levels and the same orders, and that the `base_stock` policy of the catalog
(conf/policy/base_stock.yaml) builds them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.baselines.catalog import PolicySpec
from agents.baselines.policies import SS, BaseStock, EchelonBaseStock, ReorderPointEOQ, ShockAwareBaseStock
from twin import CapacityCut, DemandShock, Engine, SpecError, SupplierOutage, network_from_dict
from twin.coverage import protection_periods
from twin.state import orders_up_to
from twin.stats import DemandStats
from twin.testing import (
    OrderUpTo,
    assert_identical,
    check_common_random_numbers,
    check_determinism,
    check_kpis,
    check_step_matches_run,
    run_with_invariants,
    two_dc_network,
    two_dc_shocks,
)

HORIZON = 60
CONF = Path(__file__).resolve().parents[2] / "conf"


def lost_sales_chain() -> dict:
    """supplier -> DC -> 2 stores with lost sales, capacities and a fixed order cost: EOQ batches meet caps."""
    return {
        "name": "capped",
        "skus": {"items": [{"name": "a", "dist": "poisson", "mean": 8, "fixed_order_cost": 10},
                           {"name": "b", "dist": "normal", "mean": 3, "cv": 0.5, "fixed_order_cost": 1}]},
        "nodes": [{"name": "sup", "kind": "supplier", "supply_capacity": 40},
                  {"name": "dc", "kind": "dc", "parent": "sup", "lead_time": {"mean": 2}, "storage_capacity": 120},
                  {"name": "s0", "kind": "store", "parent": "dc", "unmet": "lost", "lane_capacity": 15,
                   "lead_time": {"dist": "poisson", "mean": 1}},
                  {"name": "s1", "kind": "store", "parent": "dc", "lead_time": {"mean": 0}}],
    }


@pytest.fixture(scope="module")
def net():
    return network_from_dict(two_dc_network())


@pytest.fixture(scope="module")
def stats(net):
    return DemandStats.of(net, horizon=HORIZON, seed=0)


SHOCKS = two_dc_shocks()


def base_stock(stats):
    return BaseStock.from_stats(stats)


def rop(stats, net):
    holding = np.broadcast_to(net.skus.holding_cost, stats.mean.shape)
    fixed = np.broadcast_to(net.skus.fixed_order_cost, stats.mean.shape)
    return ReorderPointEOQ.from_stats(stats, fixed, holding)


def run(net, policy, seed, shocks=SHOCKS, per_sku_series=True):
    engine = Engine(net, horizon=HORIZON, seed=seed, shocks=shocks, invariants="error",
                    per_sku_series=per_sku_series)
    return engine, engine.run(policy)


def test_base_stock_is_the_twin_tests_order_up_to(net, stats):
    """BaseStock.from_stats has the levels the twin's tests give OrderUpTo, and both order alike."""
    mu, sd = stats.over(protection_periods(stats.lead_time_mean, 1))
    policy = base_stock(stats)
    np.testing.assert_array_equal(policy.levels, mu + 1.65 * sd)
    a = run(net, policy, 3)[1]
    b = run(net, OrderUpTo(mu + 1.65 * sd), 3)[1]
    assert a.kpis == b.kpis
    assert_identical(a.sku_series, b.sku_series)


def test_the_catalog_base_stock_has_the_scenario_tests_levels():
    network = network_from_dict(yaml.safe_load((CONF / "network" / "paper_5x20.yaml").read_text()))
    policy = PolicySpec.from_dict(yaml.safe_load((CONF / "policy" / "base_stock.yaml").read_text())).build(
        network, 100, seed=0)
    stats = DemandStats.of(network, 100, seed=0)
    mu, sd = stats.over(protection_periods(stats.lead_time_mean, 1))
    assert isinstance(policy, BaseStock)
    np.testing.assert_array_equal(policy.levels, mu + 1.65 * sd)


def test_the_shock_aware_base_stock_holds_its_disrupted_levels_only_while_a_shock_is_in_force(net, stats):
    """Day by day under one shock of each kind: the orders are those of the calm levels on days without a
    disruption in force and of the disrupted levels on days with one (none before it begins); with no shocks the
    run is the calm base-stock's."""
    calm, disrupted = BaseStock.from_stats(stats, {"store": 1.0, "dc": 1.0}), BaseStock.from_stats(stats, {
        "store": 4.0, "dc": 5.0})
    policy = ShockAwareBaseStock.from_stats(stats, {"store": 1.0, "dc": 1.0}, {"store": 4.0, "dc": 5.0})
    engine = Engine(net, horizon=HORIZON, seed=2, shocks=SHOCKS, invariants="error")
    is_supplier = engine.topology.is_supplier
    used = []
    while not engine.done:
        snapshot = engine.snapshot()
        in_force = any(s.start <= snapshot.day < s.end for s in SHOCKS)
        expected = orders_up_to((disrupted if in_force else calm).levels, snapshot.inventory_position, is_supplier)
        orders = policy.act(snapshot)
        np.testing.assert_array_equal(orders, expected)
        used.append(in_force)
        engine.step(orders)
    assert 0 < sum(used) < len(used)  # both level sets were used
    assert run(net, policy, 2, shocks=())[1].kpis == run(net, calm, 2, shocks=())[1].kpis
    assert run(net, policy, 2)[1].kpis != run(net, calm, 2)[1].kpis
    with pytest.raises(TypeError, match="expected a twin Snapshot"):
        policy.act(engine.state())


def test_the_catalog_shock_aware_base_stock_reads_both_sets_of_safety_factors():
    network = network_from_dict(yaml.safe_load((CONF / "network" / "paper_5x20.yaml").read_text()))
    data = yaml.safe_load((CONF / "policy" / "shock_aware_base_stock.yaml").read_text())
    spec = PolicySpec.from_dict(data)
    assert spec.to_dict() == data and PolicySpec.from_dict(spec.to_dict()) == spec
    policy = spec.build(network, 100, seed=0)
    stats = DemandStats.of(network, 100, seed=0)
    assert isinstance(policy, ShockAwareBaseStock)
    np.testing.assert_array_equal(policy.calm, BaseStock.from_stats(stats, data["z"]).levels)
    np.testing.assert_array_equal(policy.disrupted, BaseStock.from_stats(stats, data["z_disrupted"]).levels)
    assert (policy.disrupted >= policy.calm).all() and (policy.disrupted > policy.calm).any()
    # a kind left out of z_disrupted keeps its calm z (no reaction there), not the default 1.65
    partial = PolicySpec.from_dict({"name": "shock_aware_base_stock", "z": {"store": 2.0, "dc": 4.0},
                                    "z_disrupted": {"store": 5.0}})
    assert partial.z_disrupted == {"store": 5.0, "dc": 4.0}
    assert PolicySpec.from_dict({"name": "shock_aware_base_stock", "z": {"dc": 4.0}}).z_disrupted == {
        "store": 1.65, "dc": 4.0}
    with pytest.raises(SpecError, match="policy: unknown key 'z_disrupted'; allowed: name, z"):
        PolicySpec.from_dict({"name": "base_stock", "z_disrupted": {"store": 5.0}})
    with pytest.raises(SpecError, match="policy.z_disrupted.dc: 99"):
        PolicySpec.from_dict({"name": "shock_aware_base_stock", "z_disrupted": {"dc": 99}})


def test_same_seed_gives_identical_kpis_and_series_with_the_echelon_base_stock(net, stats):
    make = EchelonBaseStock.from_stats
    result = check_determinism(net, lambda: make(stats), HORIZON, 11, SHOCKS)
    _, again = run(net, make(stats), 11)
    assert result.kpis == again.kpis  # exact dict equality, floats included
    for key, series in result.series.items():
        assert np.array_equal(series, again.series[key]), key
    assert result.kpis["network"]["demand"] > 0


def test_base_stock_and_rop_see_the_same_demand_and_lead_times(net, stats):
    a, b = check_common_random_numbers(net, base_stock(stats), rop(stats, net), HORIZON, 5, SHOCKS)
    stores = [i for i, n in enumerate(net.nodes) if n.kind == "store"]
    np.testing.assert_array_equal(a.sku_series["demand"][:, stores], b.sku_series["demand"][:, stores])
    # the policies really differ: different orders, different costs
    assert not np.array_equal(a.sku_series["ordered"], b.sku_series["ordered"])
    assert a.kpis["network"]["cost_total"] != b.kpis["network"]["cost_total"]
    assert a.kpis["network"]["demand"] == b.kpis["network"]["demand"]


def test_stepping_with_the_echelon_base_stock_orders_equals_run(net, stats):
    make = EchelonBaseStock.from_stats
    ran = check_step_matches_run(net, lambda: make(stats), HORIZON, 21, SHOCKS)
    policy = make(stats)
    engine = Engine(net, horizon=HORIZON, seed=21, shocks=SHOCKS, invariants="error", per_sku_series=True)
    days = 0
    while not engine.done:
        engine.step(policy.act(engine.state()))
        days += 1
    stepped = engine.result(policy=type(policy).__name__)
    assert days == HORIZON
    assert stepped.kpis == ran.kpis
    assert_identical(stepped.series, ran.series)
    assert stepped.meta == ran.meta


@st.composite
def baseline_runs(draw):
    """(network, baseline policy with random levels or built from demand statistics, seed, shocks, warmup)."""
    data = draw(st.sampled_from([two_dc_network(), lost_sales_chain()]))
    network = network_from_dict(data)
    n, k = len(network.nodes), network.skus.n
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    high = draw(st.floats(1, 80, allow_subnormal=False))
    kind = draw(st.sampled_from(["base", "echelon", "ss", "rop", "stats"]))
    if kind == "base":
        policy = BaseStock(rng.uniform(0, high, (n, k)))
    elif kind == "echelon":
        policy = EchelonBaseStock(rng.uniform(0, 2 * high, (n, k)))
    elif kind == "ss":
        s = rng.uniform(-5, high, (n, k))
        policy = SS(s, s + rng.uniform(0, high, (n, k)))
    elif kind == "rop":
        policy = ReorderPointEOQ(rng.uniform(-5, high, (n, k)), rng.uniform(0, high, (n, k)))
    else:
        stats = DemandStats.of(network, horizon=HORIZON, seed=0)
        fixed = np.broadcast_to(network.skus.fixed_order_cost, stats.mean.shape)
        holding = np.broadcast_to(network.skus.holding_cost, stats.mean.shape)
        policy = draw(st.sampled_from([BaseStock.from_stats(stats), EchelonBaseStock.from_stats(stats),
                                       SS.from_stats(stats, fixed, holding),
                                       ReorderPointEOQ.from_stats(stats, fixed, holding)]))
    shocks = draw(st.sampled_from([(), SHOCKS if data["name"] == "crn" else (
        DemandShock(start=5, end=25, multiplier=3.0), CapacityCut(start=10, end=40, node="dc", factor=0.3),
        SupplierOutage(start=30, end=35, supplier="sup"))]))
    return network, policy, draw(st.integers(0, 2**32 - 1)), shocks, draw(st.integers(0, HORIZON - 1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(baseline_runs())
def test_baseline_policies_keep_the_twins_invariants(case):
    """Every baseline, at any levels: the ledger balances every day, no state goes negative, KPIs are sane."""
    network, policy, seed, shocks, warmup = case
    result = run_with_invariants(network, policy, HORIZON, seed, shocks, warmup=warmup)
    assert result.violations == []
    check_kpis(result.kpis)
