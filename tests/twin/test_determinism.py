"""Reproducibility: same seed => same run; common random numbers across policies; step() == run().

The policy is the twin's own OrderUpTo at base-stock levels from the demand statistics; the same checks with
the echelon base-stock and the reorder point of agents/baselines are in tests/agents/test_baselines_on_twin.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin import DemandShock, Engine, network_from_dict
from twin.coverage import protection_periods
from twin.stats import DemandStats
from twin.testing import (
    OrderUpTo,
    assert_identical,
    check_common_random_numbers,
    check_determinism,
    check_step_matches_run,
    two_dc_network,
    two_dc_shocks,
)

HORIZON = 60


@pytest.fixture(scope="module")
def net():
    return network_from_dict(two_dc_network())


@pytest.fixture(scope="module")
def stats(net):
    return DemandStats.of(net, horizon=HORIZON, seed=0)


SHOCKS = two_dc_shocks()


Z = 1.65  # the baselines' default safety factor (agents/baselines/safety.py)


def base_stock(stats):
    """Order up to the mean demand over the protection period (lead time + 1 day) plus Z standard deviations of
    it: the levels of agents' BaseStock.from_stats(stats), which tests/agents/test_baselines_on_twin.py checks."""
    mu, sd = stats.over(protection_periods(stats.lead_time_mean, 1))
    return OrderUpTo(mu + Z * sd)


def run(net, policy, seed, shocks=SHOCKS, per_sku_series=True):
    engine = Engine(net, horizon=HORIZON, seed=seed, shocks=shocks, invariants="error",
                    per_sku_series=per_sku_series)
    return engine, engine.run(policy)


def test_same_seed_gives_identical_kpis_and_series(net, stats):
    result = check_determinism(net, lambda: base_stock(stats), HORIZON, 11, SHOCKS)
    _, again = run(net, base_stock(stats), 11)
    assert result.kpis == again.kpis  # exact dict equality, floats included
    for key, series in result.series.items():
        assert np.array_equal(series, again.series[key]), key
    assert result.kpis["network"]["demand"] > 0


def test_different_seeds_differ(net, stats):
    _, a = run(net, base_stock(stats), 1)
    _, b = run(net, base_stock(stats), 2)
    assert a.kpis != b.kpis
    assert not np.array_equal(a.sku_series["demand"], b.sku_series["demand"])
    engine_a, _ = run(net, base_stock(stats), 1)
    engine_b, _ = run(net, base_stock(stats), 2)
    assert not np.array_equal(engine_a.lead_times, engine_b.lead_times)


def test_two_policies_see_the_same_demand_and_lead_times(net, stats):
    """Common random numbers with the twin's own policy at two sets of levels (with agents' reorder point:
    tests/agents/test_baselines_on_twin.py)."""
    flat = OrderUpTo(np.full((len(net.nodes), net.skus.n), 5.0))
    a, b = check_common_random_numbers(net, base_stock(stats), flat, HORIZON, 5, SHOCKS)
    stores = [i for i, n in enumerate(net.nodes) if n.kind == "store"]
    np.testing.assert_array_equal(a.sku_series["demand"][:, stores], b.sku_series["demand"][:, stores])
    # the policies really differ: different orders, different costs
    assert not np.array_equal(a.sku_series["ordered"], b.sku_series["ordered"])
    assert a.kpis["network"]["cost_total"] != b.kpis["network"]["cost_total"]
    assert a.kpis["network"]["demand"] == b.kpis["network"]["demand"]


def test_lead_time_draws_do_not_depend_on_the_policy(net, stats):
    engine_a, _ = run(net, base_stock(stats), 8)
    engine_b, _ = run(net, OrderUpTo(np.full((len(net.nodes), net.skus.n), 5.0)), 8)
    np.testing.assert_array_equal(engine_a.lead_times, engine_b.lead_times)
    assert engine_a.lead_times.shape == (len(net.nodes), HORIZON)
    # one draw per lane per day, whether or not anything was shipped that day
    assert engine_a.lead_times[1:].std() > 0


def test_demand_of_a_store_does_not_depend_on_other_nodes(stats):
    """Streams are keyed by node name: adding a store changes no other store's draws."""
    small = network_from_dict(two_dc_network())
    large = network_from_dict(two_dc_network(extra_store=True))
    _, a = run(small, OrderUpTo(np.zeros((len(small.nodes), 3))), 3, shocks=())
    _, b = run(large, OrderUpTo(np.zeros((len(large.nodes), 3))), 3, shocks=())
    np.testing.assert_array_equal(a.sku_series["demand"][:, 3:7], b.sku_series["demand"][:, 3:7])


def test_the_twin_leaves_the_global_rng_alone(net, stats):
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    run(net, base_stock(stats), 4)
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_stepping_with_the_policy_orders_equals_run(net, stats):
    ran = check_step_matches_run(net, lambda: base_stock(stats), HORIZON, 21, SHOCKS)
    policy = base_stock(stats)
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


def test_warmup_changes_kpis_not_draws(net, stats):
    _, full = run(net, base_stock(stats), 9)
    engine = Engine(net, horizon=HORIZON, seed=9, shocks=SHOCKS, warmup=20, invariants="error", per_sku_series=True)
    warm = engine.run(base_stock(stats))
    assert_identical(full.series, warm.series)
    assert warm.kpis["network"]["demand"] < full.kpis["network"]["demand"]
    assert warm.kpis["network"]["demand"] == pytest.approx(full.series["demand"][20:, 3:].sum())


def test_scenarios_keep_common_random_numbers_outside_their_shocks(net, stats):
    """A demand shock changes demand only while it lasts: the days after it see the baseline's draws."""
    policy = base_stock(stats)
    surge = (DemandShock(start=10, end=20, multiplier=3.0),)
    runs = [Engine(net, horizon=HORIZON, seed=4, shocks=shocks, per_sku_series=True).run(policy)
            for shocks in ((), surge)]
    base, shocked = (r.sku_series["demand"] for r in runs)
    stores = [i for i, name in enumerate(runs[0].meta["nodes"]) if name[0] == "s" and name[1:].isdigit()]
    assert np.array_equal(base[:10, stores], shocked[:10, stores])
    assert np.array_equal(base[20:, stores], shocked[20:, stores])
    assert shocked[10:20, stores].sum() > 2 * base[10:20, stores].sum()
