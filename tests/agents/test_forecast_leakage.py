"""No forecaster in a backtest can see the values after its origin: changing them changes no forecast."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from agents.forecasting.backtest import BacktestPlan, backtest
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.factory import forecaster_factory

SPECS = {
    "seasonal_naive": {},
    "moving_average": {"window": 7},
    "ets": {},
    "arima": {},
    "gradient_boosting": {"max_iter": 20, "quantile_max_iter": 10},
    "glm": {"trend_min_years": 0},
    "lstm": {"hidden": 8, "layers": 1, "max_epochs": 2, "windows_per_epoch": 256, "max_horizon": 14,
             "verbose": False},
    "ensemble": {"members": ["seasonal_naive", "moving_average"]},
    "oracle": {},
    "conformal": {"base": "moving_average", "origins": 2, "step": 7, "max_horizon": 14},
    "auto": {"candidates": ["seasonal_naive", {"name": "moving_average", "window": 7}, "tsb"], "max_horizon": 14,
             "origins": 2, "step": 7},
}


@pytest.fixture(scope="module")
def panels():
    rng = np.random.default_rng(5)
    days, future = 140, 0
    promotion = (rng.random((4, days)) < 0.2).astype(float)
    mean = 10 * (1 + 0.3 * np.sin(2 * np.pi * np.arange(days) / 7)) * (1 + promotion)
    values = rng.poisson(mean).astype(float)
    panel = panel_from_arrays(values, future=future, covariates=promotion[..., None], covariate_names=("promo",),
                              categories={"sku": [0, 1, 0, 1]}, oracle_mean=mean)
    plan = BacktestPlan.of(panel, horizons=(7, 14), n_origins=2, step=7)
    changed = values.copy()
    changed[:, plan.origins[0]:] = rng.poisson(5 * mean[:, plan.origins[0]:])  # a different future
    return panel, replace(panel, values=changed), plan


@pytest.mark.parametrize("name", list(SPECS))
def test_values_after_the_origin_do_not_reach_the_forecast(panels, name):
    panel, changed, plan = panels
    make = forecaster_factory({"name": name, **SPECS[name]})
    first = backtest(panel, {name: make}, plan).runs[name]
    second = backtest(changed, {name: make}, plan).runs[name]
    # the first origin saw none of the changed values (the second one saw a week of them, legitimately)
    np.testing.assert_array_equal(first.mean[0], second.mean[0])
    np.testing.assert_array_equal(first.quantiles[0], second.quantiles[0])
    assert not np.array_equal(first.quantiles[1], second.quantiles[1]) or name == "oracle"
