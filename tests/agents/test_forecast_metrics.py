"""Forecast metrics against values worked out by hand, and the rolling-origin backtest's bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.forecasting import metrics
from agents.forecasting.backtest import BacktestPlan, backtest
from agents.forecasting.base import Forecast, SeriesPanel
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.oracle import TrueMean

ACTUAL = np.array([2.0, 0.0, 4.0, 5.0])
FORECAST = np.array([1.0, 1.0, 4.0, 7.0])


def test_point_metrics_match_hand_computed_values():
    assert metrics.mae(ACTUAL, FORECAST) == pytest.approx((1 + 1 + 0 + 2) / 4)
    assert metrics.rmse(ACTUAL, FORECAST) == pytest.approx(math.sqrt((1 + 1 + 0 + 4) / 4))
    # MAPE leaves out the zero actual: (1/2 + 0/4 + 2/5) / 3
    assert metrics.mape(ACTUAL, FORECAST) == pytest.approx(100 * (0.5 + 0 + 0.4) / 3)
    # sMAPE: 2|a-f| / (|a|+|f|) = 2/3, 2/1, 0, 4/12
    assert metrics.smape(ACTUAL, FORECAST) == pytest.approx(100 * (2 / 3 + 2 + 0 + 1 / 3) / 4)
    assert math.isnan(metrics.mape(np.zeros(3), np.ones(3)))
    assert metrics.smape(np.zeros(2), np.zeros(2)) == 0.0
    assert metrics.mae(np.array([1.0, np.nan]), np.array([2.0, 100.0])) == 1.0  # NaN actuals are skipped


def test_mase_scales_by_the_in_sample_seasonal_naive_error():
    history = np.array([[1.0, 2.0, 4.0, 3.0, 5.0]])  # season 2: |4-1|, |3-2|, |5-4| -> scale 5/3
    scale = metrics.naive_scale(history, 2)
    assert scale[0] == pytest.approx(5 / 3)
    assert metrics.mase(ACTUAL[None, :], FORECAST[None, :], scale) == pytest.approx(1.0 / (5 / 3))
    assert math.isnan(metrics.naive_scale(np.ones((1, 5)), 1)[0])  # a flat history: MASE undefined


def test_quantile_loss_and_coverage_match_hand_computed_values():
    actual = np.array([10.0, 20.0])
    quantiles = np.array([[8.0, 12.0], [21.0, 25.0]])  # levels 0.1, 0.9
    # level 0.1: errors 2, -1 -> 0.1*2, 0.9*1; level 0.9: errors -2, -5 -> 0.1*2, 0.1*5
    expected = np.mean([np.mean([0.2, 0.9]), np.mean([0.2, 0.5])])
    assert metrics.quantile_loss(actual, quantiles, (0.1, 0.9)) == pytest.approx(expected)
    assert metrics.coverage(actual, quantiles[:, 0], quantiles[:, 1]) == 0.5


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.mae(np.ones(3), np.ones(4))


class Spy:
    """Forecasts the last value; records how much history it was given."""

    name = "spy"
    lengths: list[int] = []

    def fit(self, history: SeriesPanel) -> None:
        Spy.lengths.append(history.length)
        self.last = history.values[:, -1]

    def predict(self, horizon: int) -> Forecast:
        mean = np.repeat(self.last[:, None], horizon, axis=1)
        return Forecast(mean=mean, quantiles=np.repeat(mean[..., None], 3, axis=-1))


def test_rolling_origins_see_only_the_past_and_score_the_next_periods():
    values = np.arange(100.0)[None, :].repeat(2, axis=0)
    panel = panel_from_arrays(values, oracle_mean=values)
    plan = BacktestPlan.of(panel, horizons=(5, 10), n_origins=3, step=7)
    assert plan.origins == (76, 83, 90)
    Spy.lengths = []
    result = backtest(panel, {"spy": Spy, "oracle": TrueMean}, plan)
    assert Spy.lengths == [76, 83, 90]
    rows = {(r["forecaster"], r["horizon"]): r for r in result.scores()}
    # the last value is origin - 1; the errors at steps 1..h are 1..h
    assert rows["spy", 5]["mae"] == pytest.approx(3.0)
    assert rows["spy", 10]["mae"] == pytest.approx(5.5)
    assert rows["oracle", 10]["mae"] == 0.0 and math.isnan(rows["spy", 10]["mae_vs_oracle"])  # oracle MAE 0
    np.testing.assert_allclose(result.mae_by_step()["spy"], np.arange(1, 11))


def test_a_plan_too_long_for_the_data_names_the_settings():
    panel = panel_from_arrays(np.ones((1, 40)))
    with pytest.raises(ValueError, match="too few for 3 origins 30 apart, horizon 30"):
        BacktestPlan.of(panel, horizons=(7, 30), n_origins=3)
    assert BacktestPlan.of(panel_from_arrays(np.ones((1, 40)), freq="MS"), n_origins=1).horizons == (3, 6, 12)
