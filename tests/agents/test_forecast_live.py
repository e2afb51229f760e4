"""Live forecasts in the twin: what a refitted forecaster sees, that no future demand reaches it, and the
forecast-driven base-stock policy.

The runs through experiments.simulate and experiments.evaluate are tested in tests/experiments (test_simulate.py,
test_evaluate.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.baselines.forecast_policy import ForecastBaseStock
from agents.forecasting.base import QUANTILE_LEVELS, Forecast, SeriesPanel
from agents.forecasting.classical import SeasonalNaive
from agents.forecasting.live import OracleForecaster, Refitting, forecaster_from_name
from twin.config import SpecError
from twin.coverage import protection_periods
from twin.demand import draw_variance
from twin.engine import Engine
from twin.shocks import DemandShock
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small():
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))


class LastWeek:
    """A spy forecaster: the mean of the last 7 values, flat; keeps every history it was fitted on."""

    name = "last_week"
    seen: list[SeriesPanel] = []

    def fit(self, history: SeriesPanel) -> None:
        LastWeek.seen.append(history)
        self.level = history.values[:, -7:].mean(axis=1)

    def predict(self, horizon: int) -> Forecast:
        mean = np.repeat(self.level[:, None], horizon, axis=1)
        spread = np.sqrt(mean)[..., None] * np.array([-1.28, 0.0, 1.28])
        return Forecast(mean=mean, quantiles=np.maximum(mean[..., None] + spread, 0), levels=QUANTILE_LEVELS)


class LastWeekDeployed(LastWeek):
    """LastWeek that also forecasts from a new history without refitting (what `refit_every=0` needs): the
    level fitted stays, scaled by how the last week moved against it; keeps every history it forecast from."""

    forecast_from: list[SeriesPanel] = []

    def predict_from(self, history: SeriesPanel, horizon: int) -> Forecast:
        LastWeekDeployed.forecast_from.append(history)
        ratio = history.values[:, -7:].mean(axis=1) / np.maximum(self.level, 1e-9)
        fitted = self.level
        self.level = fitted * ratio
        try:
            return self.predict(horizon)
        finally:
            self.level = fitted


def run_live(network, shocks=(), days=70, refit_every=7, make=LastWeek):
    """Forecasts over the next 3 days at every decision point of a run placing no orders."""
    engine = Engine(network, horizon=days, seed=3, shocks=shocks)
    live = Refitting(make, "last_week", refit_every=refit_every)
    live.attach(engine)
    periods = np.full(engine.n_nodes, 3)
    forecasts = []
    while not engine.done:
        forecasts.append(live.over(engine.day, periods))
        engine.step(np.zeros((engine.n_nodes, engine.n_sku)))
    return engine, live, np.array(forecasts)


def test_a_refit_sees_the_demand_of_the_days_before_it_and_no_later_day(small):
    LastWeek.seen = []
    engine, live, _ = run_live(small)
    assert live.fit_days == list(range(0, 70, 7))
    stores = np.flatnonzero(engine.topology.is_store)
    for day, history in zip(live.fit_days, LastWeek.seen):
        assert history.length == 365 + day  # the year before the run, then the run up to yesterday
        run_part = history.values[:, 365:].reshape(len(stores), engine.n_sku, day)
        expected = np.moveaxis(engine.demand_log[:day, stores, :], 0, -1)
        np.testing.assert_array_equal(run_part, expected)
        assert history.future == min(7 + 30, 70 - day)  # covariates (the plan) ahead, never values


def test_fit_once_fits_on_the_year_before_and_forecasts_weekly_from_the_demand_seen(small):
    """refit_every=0: one fit, on the year before the run; every 7 days after, the fitted model forecasts from
    the history up to yesterday (no training), and no later demand reaches it."""
    LastWeek.seen, LastWeekDeployed.forecast_from = [], []
    engine, live, forecasts = run_live(small, refit_every=0, make=LastWeekDeployed)
    assert live.fit_days == [0] and len(LastWeek.seen) == 1 and LastWeek.seen[0].length == 365
    days = list(range(7, 70, 7))
    assert [h.length - 365 for h in LastWeekDeployed.forecast_from] == days
    stores = np.flatnonzero(engine.topology.is_store)
    for day, history in zip(days, LastWeekDeployed.forecast_from):
        run_part = history.values[:, 365:].reshape(len(stores), engine.n_sku, day)
        np.testing.assert_array_equal(run_part, np.moveaxis(engine.demand_log[:day, stores, :], 0, -1))
    surge = DemandShock(start=40, end=70, multiplier=3.0)
    _, _, shocked = run_live(small, shocks=(surge,), refit_every=0, make=LastWeekDeployed)
    np.testing.assert_array_equal(forecasts[:40], shocked[:40])
    assert (shocked[49:] > 1.5 * forecasts[49:]).mean() > 0.9  # re-forecast on day 49 from 9 surge days


def test_fit_once_needs_a_forecaster_that_forecasts_without_refitting():
    with pytest.raises(SpecError, match=r"env.forecast_refit_every: 0 \(fit once\).*'seasonal_naive' cannot"):
        forecaster_from_name("seasonal_naive", refit_every=0)
    with pytest.raises(SpecError, match=r"env.forecast_refit_every: -1 is not allowed"):
        forecaster_from_name("gradient_boosting", refit_every=-1)
    assert forecaster_from_name("gradient_boosting", refit_every=0).refit_every == 0


def test_no_future_demand_reaches_the_forecast(small):
    """Two runs alike until a demand surge on day 40: every forecast made before day 40 is identical, and
    the surge does reach the forecasts once it is observed (the test could fail both ways)."""
    surge = DemandShock(start=40, end=70, multiplier=3.0)
    _, _, calm = run_live(small)
    _, _, shocked = run_live(small, shocks=(surge,))
    np.testing.assert_array_equal(calm[:40], shocked[:40])
    assert (shocked[49:] > 1.5 * calm[49:]).mean() > 0.9  # refitted on day 49 with 9 surge days seen


def test_stores_add_up_to_their_dc(small):
    engine, live, forecasts = run_live(small, days=20)
    topo = engine.topology
    for j in np.flatnonzero(~topo.is_store & ~topo.is_supplier):
        below = np.flatnonzero(topo.descendants[j] & topo.is_store)
        np.testing.assert_allclose(forecasts[:, j], forecasts[:, below].sum(axis=1), rtol=1e-5)


def test_oracle_spread_is_the_demand_laws(small):
    engine = Engine(small, horizon=30, seed=1)
    oracle = OracleForecaster()
    oracle.attach(engine)
    store = int(np.flatnonzero(engine.topology.is_store)[0])
    name = engine.topology.names[store]
    periods = np.full(engine.n_nodes, 4)
    mean = engine.demand_model.mean_matrix(name)[5:9]
    expected = np.sqrt(draw_variance(mean, small.skus).sum(axis=0))
    np.testing.assert_allclose(oracle.spread(5, periods)[store], expected, rtol=1e-5)
    np.testing.assert_allclose(oracle.over(5, periods)[store], mean.sum(axis=0), rtol=1e-5)


def test_forecast_base_stock_orders_up_to_forecast_plus_safety(small):
    engine = Engine(small, horizon=200, seed=2, warmup=30)
    policy = ForecastBaseStock(OracleForecaster(), z={"store": 1.65, "dc": 1.65})
    policy.attach(engine)
    state = engine.state_for(policy)
    levels = policy.levels(state)
    orders = policy.act(state)
    expected = np.maximum(levels - state.inventory_position, 0)
    expected[engine.topology.is_supplier] = 0
    np.testing.assert_allclose(orders, expected)
    result = engine.run(policy)
    assert result.kpis["network"]["fill_rate"] > 0.9  # it keeps the stores stocked


def test_forecast_base_stock_uses_its_disrupted_safety_factors_only_while_a_shock_is_in_force(small):
    """z_disrupted on the days a disruption is in force (none before it begins, none after it ends), z otherwise:
    day by day the levels of a policy with z or with z_disrupted throughout, on the same snapshots."""
    shock = DemandShock(start=20, end=30, multiplier=2.0)
    engine = Engine(small, horizon=45, seed=2, shocks=(shock,))
    calm, disrupted = {"store": 1.0, "dc": 1.0}, {"store": 4.0, "dc": 6.0}
    reacting = ForecastBaseStock(OracleForecaster(), z=calm, z_disrupted=disrupted)
    always_calm, always_disrupted = ForecastBaseStock(OracleForecaster(), z=calm), ForecastBaseStock(
        OracleForecaster(), z=disrupted)
    for policy in (reacting, always_calm, always_disrupted):
        policy.attach(engine)
    while not engine.done:
        snapshot = engine.snapshot()
        expected = always_disrupted if shock.start <= snapshot.day < shock.end else always_calm
        np.testing.assert_array_equal(reacting.levels(snapshot), expected.levels(snapshot))
        engine.step(reacting.act(snapshot))
    assert not np.array_equal(always_calm.levels(snapshot), always_disrupted.levels(snapshot))


def test_forecast_base_stock_must_be_attached(small):
    engine = Engine(small, horizon=5, seed=2)
    with pytest.raises(RuntimeError, match="attach"):
        ForecastBaseStock(OracleForecaster()).act(engine.snapshot())


def test_live_forecaster_names_are_checked():
    with pytest.raises(SpecError, match="env.forecaster: 'crystal_ball' is not allowed"):
        forecaster_from_name("crystal_ball")
    with pytest.raises(SpecError, match="history_days"):
        Refitting(LastWeek, "x", history_days=100)


def test_agents_observe_the_live_forecast_of_a_learned_forecaster(small):
    """env.forecaster picks the forecast in the observation: a refitted seasonal naive, not the oracle."""
    from agents.envs.core import EnvConfig, SupplyChainSim

    learned = SupplyChainSim(EnvConfig(network=small, forecaster="seasonal_naive", episode_days=30))
    oracle = SupplyChainSim(EnvConfig(network=small, forecaster="oracle", episode_days=30))
    feature = learned.config.obs_spec.feature_names.index("forecast_lead_review")
    for sim in (learned, oracle):
        sim.reset(seed=1)
        for _ in range(9):
            obs, _, _ = sim.step(np.full((len(sim.controlled), sim.n_sku), 5))
    assert isinstance(learned.forecaster, Refitting) and learned.forecaster.fit_days == [0, 7]
    periods = protection_periods(learned.engine.topology.lead_time_mean, 1)
    expected = learned.forecaster.over(9, periods)[learned.controlled] / learned.scale[learned.controlled]
    np.testing.assert_allclose(learned.observe()[:, :, feature], expected, rtol=1e-5)
    assert not np.allclose(learned.observe()[:, :, feature], oracle.observe()[:, :, feature])


def test_window_sums_past_the_end_of_the_run_count_the_daily_level():
    from agents.forecasting.live import _window_sums

    cumulative = np.arange(6, dtype=float)[:, None, None] * np.ones((1, 1, 2))  # 5 days of 1 per day
    after = np.full((1, 2), 3.0)
    np.testing.assert_array_equal(_window_sums(cumulative, 3, np.array([4]), after), [[2 + 2 * 3.0] * 2])
    np.testing.assert_array_equal(_window_sums(cumulative, 8, np.array([2]), after), [[2 * 3.0] * 2])


def test_a_learned_forecaster_refuses_a_run_started_from_a_snapshot(small):
    engine = Engine(small, horizon=60, seed=0)
    for _ in range(20):
        engine.step(np.zeros((engine.n_nodes, engine.n_sku)))
    started = Engine(small, horizon=60, seed=0, start=engine.snapshot())
    forecaster = Refitting(lambda: SeasonalNaive(), "seasonal_naive")
    with pytest.raises(SpecError, match="starts from a snapshot of day 20, and a learned forecaster needs"):
        forecaster.attach(started)
