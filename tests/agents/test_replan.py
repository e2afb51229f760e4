"""Rolling re-planning (agents/baselines/replan.py): what a review sees, and that it sees nothing a planner could
not know on its day.

Leakage is tested as for the live forecasters (test_forecast_live.py): two runs alike until day D and different
after it must make identical decisions before D, and the difference must reach the decisions once it is
observable (so each test could fail both ways). The run through experiments.evaluate is tested in
tests/experiments/test_evaluate.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines.replan import PathForecast, ReplanSpec, RollingReplanner, fork_seeds
from agents.forecasting.live import OracleForecaster, forecaster_from_name
from twin.config import SpecError
from twin.engine import Engine
from twin.shocks import DcClosure, DemandShock, LeadTimeShock, SupplierOutage
from twin.spec import network_from_dict
from twin.state import orders_up_to
from twin.testing import two_dc_network

SPEC = ReplanSpec(every=7, paths=2, lookahead=12, grid=(0.0, 2.0, 4.0), search="coordinate", max_rounds=1,
                  fill_target=None)
D = 24  # the day the runs of a leakage test part


@pytest.fixture(scope="module")
def network():
    return network_from_dict(two_dc_network())


def stock(network, days=8.0):
    """A few days of demand on hand everywhere, so the forks start from a working network."""
    on_hand = np.full((len(network.nodes), network.skus.n), days * 3.0)
    on_hand[[nd.kind == "supplier" for nd in network.nodes]] = 0
    return on_hand


def run(network, shocks=(), days=42, spec=SPEC, seed=11, forecaster="seasonal_naive"):
    """A run of the replanner; returns it and the engine."""
    engine = Engine(network, horizon=days, seed=seed, shocks=shocks, initial_on_hand=stock(network), invariants="off")
    replanner = RollingReplanner(network, forecaster_from_name(forecaster), spec)
    replanner.attach(engine)
    engine.run(replanner)
    return replanner, engine


def without_timing(decisions):
    return [{k: v for k, v in d.items() if k != "seconds"} for d in decisions]


@pytest.fixture(scope="module")
def calm(network):
    return run(network)


@pytest.mark.parametrize("later", [
    DemandShock(start=D, end=42, multiplier=3.0),                    # more demand after D
    LeadTimeShock(start=D, end=42, multiplier=3.0),                   # slower supply after D
    DcClosure(start=D, end=42, dc="dc0", reroute=True),               # a DC closed after D
], ids=["demand_surge", "lead_time", "dc_closure"])
def test_a_shock_after_day_d_changes_no_decision_before_d(network, calm, later):
    quiet, _ = calm
    shocked, _ = run(network, shocks=(later,))
    before = [d for d in quiet.decisions if d["day"] < D]
    assert [d["day"] for d in before] == [0, 7, 14, 21]
    assert without_timing(shocked.decisions[:len(before)]) == without_timing(before)
    # once it is in force (and, for demand, observed) it reaches the paths: the test can fail both ways
    after = without_timing(shocked.decisions[len(before):])
    assert after != without_timing(quiet.decisions[len(before):])


def test_demand_seen_after_day_d_reaches_the_next_review_through_the_forecast(network, calm):
    """A demand dip from D on: no decision before D moves, and the review of day 28, whose forecaster has seen
    four days of it, plans lower DC levels on cheaper paths (the dip reaches the forks through the forecast)."""
    quiet, _ = calm
    dip, _ = run(network, shocks=(DemandShock(start=D, end=42, multiplier=0.2),))
    assert without_timing(dip.decisions[:4]) == without_timing(quiet.decisions[:4])
    assert dip.decisions[4]["day"] == 28
    assert dip.decisions[4]["level_dc"] < 0.9 * quiet.decisions[4]["level_dc"]
    assert dip.decisions[4]["expected_cost_per_day"] < 0.9 * quiet.decisions[4]["expected_cost_per_day"]


def test_the_forks_hold_todays_disruptions_until_their_announced_end_and_start_no_later_shock(network):
    today = LeadTimeShock(start=5, end=20, multiplier=2.0)
    later = SupplierOutage(start=22, end=30, supplier="sup")
    engine = Engine(network, horizon=60, seed=3, shocks=(today, later), initial_on_hand=stock(network))
    replanner = RollingReplanner(network, forecaster_from_name("seasonal_naive"),
                                 ReplanSpec(every=100, paths=1, lookahead=20, grid=(1.0,)))
    replanner.attach(engine)
    while engine.day < 14:
        engine.step(replanner.act(engine.snapshot()))
    snapshot = engine.snapshot()
    fork = replanner.fork(snapshot, replanner.path_forecast(snapshot), seed=fork_seeds(3, 14, 1)[0])
    assert fork.shocks == (today,) and later not in fork.shocks
    assert fork.horizon == 14 + 20
    zero = np.zeros((fork.n_nodes, fork.n_sku))
    while fork.day < 20:
        assert fork.effects.lead_time.max() == 2.0  # held on until its announced end
        fork.step(zero)
    assert fork.effects.lead_time.max() == 1.0 and not fork.effects.shut.any()  # ended; the outage never began
    while not fork.done:
        fork.step(zero)
        assert not fork.effects.shut.any()


def test_fork_seeds_are_fresh_and_not_the_runs_streams(network):
    seeds = fork_seeds(11, 21, 4)
    assert seeds == fork_seeds(11, 21, 4)                    # reproducible
    assert len(set(seeds)) == 4 and 11 not in seeds          # one per path, never the run's seed
    assert not set(seeds) & set(fork_seeds(11, 28, 4))       # new each review
    assert not set(seeds) & set(fork_seeds(12, 21, 4))       # and each run
    # the fork's draws are not the run's own future draws: the same expected demand gives other values, whereas
    # a fork seeded with the run's seed would replay them (the check can fail)
    engine = Engine(network, horizon=40, seed=11, initial_on_hand=stock(network))
    replanner = RollingReplanner(network, forecaster_from_name("seasonal_naive"), SPEC)
    replanner.attach(engine)
    while engine.day < 21:
        engine.step(replanner.act(engine.snapshot()))
    snapshot = engine.snapshot()
    path = replanner.path_forecast(snapshot)
    fork = replanner.fork(snapshot, path, seeds[0])
    replay = replanner.fork(snapshot, path, 11)
    mean = np.full(network.skus.n, 5.0)
    for day in range(21, 33):
        for store in ("s0", "s1", "s2", "s3"):
            own = engine.demand_model.draw(store, day, mean)
            np.testing.assert_array_equal(replay.demand_model.draw(store, day, mean), own)
            assert not np.array_equal(fork.demand_model.draw(store, day, mean), own)


def test_fork_demand_is_the_forecast_ended_at_the_announced_end(network):
    surge = DemandShock(start=0, end=26, multiplier=2.0, groups=("food",))
    engine = Engine(network, horizon=60, seed=5, shocks=(surge,), initial_on_hand=stock(network))
    forecast = RollingReplanner(network, forecaster_from_name("seasonal_naive"), ReplanSpec(lookahead=14))
    as_is = RollingReplanner(network, forecaster_from_name("seasonal_naive"),
                             ReplanSpec(lookahead=14, demand_shocks="forecast"))
    forecast.attach(engine)
    as_is.attach(engine)
    while engine.day < 21:
        engine.step(forecast.act(engine.snapshot()))
    snapshot = engine.snapshot()
    path = forecast.path_forecast(snapshot)
    announced, plain = forecast.fork(snapshot, path, 1), as_is.fork(snapshot, path, 1)
    row, food = network.index("s0"), [k for k, g in enumerate(network.skus.group) if g == "food"]
    for day in range(21, 35):
        expected = path.daily(day)[row]
        np.testing.assert_allclose(plain.demand_model.mean("s0", day, 2.0), expected)  # no multiplier on top
        if day < surge.end:  # the engine passes the day's multiplier: the forecast as it is
            np.testing.assert_allclose(announced.demand_model.mean("s0", day, surge_effect(network, row)), expected)
        else:  # after the announced end, the surge is taken out of the forecast
            out = announced.demand_model.mean("s0", day, None)
            np.testing.assert_allclose(out[food], expected[food] / 2.0)
            others = [k for k in range(network.skus.n) if k not in food]
            np.testing.assert_allclose(out[others], expected[others])


def surge_effect(network, row):
    multiplier = np.ones(network.skus.n)
    multiplier[[k for k, g in enumerate(network.skus.group) if g == "food"]] = 2.0
    return multiplier


def test_path_forecast_answers_as_the_live_forecaster_on_its_day(network):
    engine = Engine(network, horizon=40, seed=2, initial_on_hand=stock(network))
    live = forecaster_from_name("seasonal_naive")
    live.attach(engine)
    for _ in range(9):
        live.over(engine.day, np.ones(engine.n_nodes, dtype=np.int64))
        engine.step(np.zeros((engine.n_nodes, engine.n_sku)))
    path = PathForecast.from_live(live, 9, 20, engine.n_nodes)
    periods = np.array([0, 3, 5, 2, 2, 4, 7])
    np.testing.assert_allclose(path.over(9, periods), live.over(9, periods), rtol=1e-9)
    np.testing.assert_allclose(path.spread(9, periods), live.spread(9, periods), rtol=1e-9)
    np.testing.assert_allclose(path.over(12, periods), path.over(9, periods + 3) - path.over(9, np.full(7, 3)))
    with pytest.raises(ValueError, match="before the forecast's origin"):
        path.over(8, periods)


def test_a_review_picks_the_cheapest_candidate_reaching_the_fill_target_and_orders_with_it(network):
    spec = ReplanSpec(every=7, paths=2, lookahead=12, grid=(0.0, 1.5, 3.0), search="grid", fill_target=0.97)
    engine = Engine(network, horizon=30, seed=4, shocks=(LeadTimeShock(start=10, end=30, multiplier=2.0),),
                    initial_on_hand=stock(network))
    replanner = RollingReplanner(network, forecaster_from_name("seasonal_naive"), spec)
    replanner.attach(engine)
    while engine.day < 14:
        engine.step(replanner.act(engine.snapshot()))
    snapshot = engine.snapshot()
    orders = replanner.act(snapshot)
    decision = replanner.decisions[-1]
    assert decision["day"] == 14 and len(replanner.decisions) == 3
    assert len(replanner.candidates) == 9  # the whole grid, store x dc
    chosen = (decision["expected_cost_per_day"], decision["expected_fill_rate"])
    assert replanner.candidates[(("dc", decision["z_dc"]), ("store", decision["z_store"]))] == chosen
    meeting = [(cost, fill) for cost, fill in replanner.candidates.values() if fill >= 0.97]
    if meeting:
        assert decision["meets_target"] and chosen[0] == min(cost for cost, _ in meeting)
    else:
        assert not decision["meets_target"] and chosen[1] == max(f for _, f in replanner.candidates.values())
    assert decision["disruptions"] == "LeadTimeShock[10,30)"
    # the live orders: forecast over lead time + review plus the chosen z times its spread
    from agents.forecasting.live import forecast_over_protection

    f = forecast_over_protection(snapshot, replanner.forecaster, 1, with_spread=True)
    z = np.array([{"store": decision["z_store"], "dc": decision["z_dc"]}.get(nd.kind, 0.0)
                  for nd in network.nodes])[:, None]
    expected = orders_up_to(f.mean + z * f.spread, snapshot.inventory_position, replanner.is_supplier)
    np.testing.assert_allclose(orders, expected)
    # no review between reviews
    engine.step(orders)
    replanner.act(engine.snapshot())
    assert len(replanner.decisions) == 3


def test_decisions_are_kept_per_run(network, calm):
    replanner, _ = calm
    assert [d["day"] for d in replanner.decisions] == [0, 7, 14, 21, 28, 35]
    for d in replanner.decisions:
        assert d["z_store"] in SPEC.grid and d["z_dc"] in SPEC.grid
        assert 0 <= d["expected_fill_rate"] <= 1 and d["expected_cost_per_day"] >= 0
        assert d["paths"] == 2 and d["lookahead"] == 12 and d["meets_target"] is None
    engine = Engine(replanner.network, horizon=8, seed=12, initial_on_hand=stock(replanner.network))
    replanner.attach(engine)
    engine.run(replanner)
    assert [d["day"] for d in replanner.decisions] == [0, 7]
    assert [r["seed"] for r in replanner.decision_log] == [11] * 6 + [12] * 2


def test_the_oracle_replanner_is_labelled_an_upper_bound(network):
    assert "upper bound" in RollingReplanner(network, OracleForecaster()).name
    assert RollingReplanner(network, forecaster_from_name("seasonal_naive")).name == "replan:seasonal_naive"


def test_the_replanner_must_be_attached(network):
    engine = Engine(network, horizon=5, seed=1)
    with pytest.raises(RuntimeError, match="attach"):
        RollingReplanner(network, OracleForecaster()).act(engine.snapshot())


@pytest.mark.parametrize(("data", "message"), [
    ({"every": 0}, "replan.every"),
    ({"grid": [1.0, 11.0]}, r"replan.grid\[1\]"),
    ({"grid": []}, "replan.grid: empty"),
    ({"fill_target": 0}, "replan.fill_target"),
    ({"search": "random"}, "replan.search"),
    ({"demand_shocks": "oracle"}, "replan.demand_shocks"),
    ({"paths": 2, "path": 3}, "unknown key 'path'"),
])
def test_replan_settings_are_checked(data, message):
    with pytest.raises(SpecError, match=message):
        ReplanSpec.from_dict(data)
    assert ReplanSpec.from_dict({"grid": [3, 1, 1]}).grid == (1.0, 3.0)
    assert ReplanSpec.from_dict({}).fill_target == 0.99
    assert ReplanSpec.from_dict({"fill_target": None}).fill_target is None  # null: the cheapest forks
