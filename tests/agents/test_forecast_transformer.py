"""The global Transformer forecaster: it learns a season and a known-in-advance covariate, sees no values after
its origin, keeps the protocol, is reproducible, and rejects bad settings naming the key."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from agents.forecasting.backtest import BacktestPlan, backtest
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.factory import forecaster_factory
from agents.forecasting.transformer import TransformerForecaster
from twin.config import SpecError

TINY = dict(d_model=16, heads=2, layers=1, feedforward=32, max_horizon=14, context=14, batch_size=128,
            windows_per_epoch=1024, max_epochs=6, patience=3, device="cpu", threads=1, verbose=False)


def promotion_panel(n: int = 20, t: int = 240, future: int = 14, seed: int = 0):
    """Poisson demand with a weekly pattern (+-40%), tripled on random promotion days known in advance."""
    rng = np.random.default_rng(seed)
    promo = (rng.random((n, t + future)) < 0.15).astype(np.float32)
    level = rng.uniform(3, 8, (n, 1))
    mean = level * (1 + 0.4 * np.sin(2 * np.pi * np.arange(t + future) / 7)) * (1 + 2.0 * promo)
    demand = rng.poisson(mean).astype(float)
    panel = panel_from_arrays(demand[:, :t], future=future, covariates=promo[..., None], covariate_names=("promotion",),
                              categories={"store": np.arange(n) % 4})
    return panel, demand[:, t:], promo[:, t:]


@pytest.fixture(scope="module")
def fitted():
    """A small Transformer fitted once on the promotion panel."""
    panel, future, promo = promotion_panel()
    model = TransformerForecaster(**{**TINY, "max_epochs": 15, "patience": 5})
    model.fit(panel)
    return model, panel, future, promo


def test_learns_season_and_covariate_better_than_seasonal_naive(fitted):
    model, panel, future, promo = fitted
    forecast = model.predict(14)
    naive = np.tile(panel.values[:, -7:], 2)  # last week, repeated
    mae, mae_naive = np.abs(forecast.mean - future).mean(), np.abs(naive - future).mean()
    assert mae < 0.75 * mae_naive, (mae, mae_naive)
    # promotion days (demand x3) are forecast well above the others
    assert forecast.mean[promo == 1].mean() > 2 * forecast.mean[promo == 0].mean()
    # the weekly pattern: on days without promotion the forecast follows the true weekly shape
    weekly = 1 + 0.4 * np.sin(2 * np.pi * np.arange(240, 254) / 7)
    plain = np.where(promo == 0, forecast.mean, np.nan)
    assert np.corrcoef(np.nanmean(plain, axis=0), weekly)[0, 1] > 0.8


def test_quantiles_ordered_shapes_and_shorter_horizons(fitted):
    model, panel, _, _ = fitted
    full, short = model.predict(14), model.predict(5)
    assert short.mean.shape == (panel.n, 5) and short.quantiles.shape == (panel.n, 5, 3)
    assert (full.mean >= 0).all() and (full.quantiles >= 0).all() and np.isfinite(full.quantiles).all()
    assert (np.diff(full.quantiles, axis=2) >= 0).all()
    assert (full.quantiles[..., 2] > full.quantiles[..., 0]).mean() > 0.9  # a band, not a point
    # step k attends to steps up to k only: a shorter horizon is the start of the longer one
    np.testing.assert_allclose(short.mean, full.mean[:, :5], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="horizon 15"):
        model.predict(15)


def test_values_after_the_origin_do_not_reach_the_forecast():
    rng = np.random.default_rng(5)
    days = 140
    promotion = (rng.random((4, days)) < 0.2).astype(float)
    mean = 10 * (1 + 0.3 * np.sin(2 * np.pi * np.arange(days) / 7)) * (1 + promotion)
    values = rng.poisson(mean).astype(float)
    panel = panel_from_arrays(values, covariates=promotion[..., None], covariate_names=("promo",),
                              categories={"sku": [0, 1, 0, 1]})
    plan = BacktestPlan.of(panel, horizons=(7, 14), n_origins=2, step=7)
    changed = values.copy()
    changed[:, plan.origins[0]:] = rng.poisson(5 * mean[:, plan.origins[0]:])  # a different future
    make = forecaster_factory({"name": "transformer", **TINY, "max_epochs": 2, "windows_per_epoch": 256})
    first = backtest(panel, {"t": make}, plan).runs["t"]
    second = backtest(replace(panel, values=changed), {"t": make}, plan).runs["t"]
    # the first origin saw none of the changed values (the second one saw a week of them, legitimately)
    np.testing.assert_array_equal(first.mean[0], second.mean[0])
    np.testing.assert_array_equal(first.quantiles[0], second.quantiles[0])
    assert not np.array_equal(first.mean[1], second.mean[1])


def test_deterministic_for_a_seed():
    panel, _, _ = promotion_panel(n=6, t=120)
    forecasts = []
    for seed in (3, 3, 4):
        model = TransformerForecaster(**{**TINY, "max_epochs": 2, "seed": seed})
        model.fit(panel)
        forecasts.append(model.predict(14))
    assert np.array_equal(forecasts[0].mean, forecasts[1].mean)
    assert np.array_equal(forecasts[0].quantiles, forecasts[1].quantiles)
    assert not np.array_equal(forecasts[0].mean, forecasts[2].mean)  # the seed matters


def test_monthly_series_without_covariates_and_a_trend_line():
    rng = np.random.default_rng(1)
    months = np.arange(96)
    values = rng.poisson(20 * (1 + 0.5 * np.sin(2 * np.pi * months / 12)), (3, 96)).astype(float)
    panel = panel_from_arrays(values, start="2015-01-01", freq="MS")
    for trend in ("none", "window"):
        model = TransformerForecaster(**{**TINY, "context": None, "max_horizon": 12, "max_epochs": 2,
                                         "trend": trend})
        model.fit(panel)
        forecast = model.predict(12)
        assert forecast.mean.shape == (3, 12) and np.isfinite(forecast.quantiles).all()


@pytest.mark.parametrize("spec, message", [
    ({"hidden": 64}, r"^forecaster\.hidden: unknown key for forecaster 'transformer'; allowed: context, "),
    ({"d_model": 30}, r"^forecaster\.d_model: .*d_model 30 is not allowed with heads 4; allowed: a multiple"),
    ({"dropout": 1.5}, r"^forecaster\.dropout: .*1\.5 is not allowed; allowed: a number in \[0, 1\)"),
    ({"patch": 0}, r"^forecaster\.patch: .*0 is not allowed; allowed: null or an integer >= 1"),
    ({"trend": "linear"}, r"^forecaster\.trend: .*'linear' is not allowed; allowed: none, window"),
    ({"device": "tpu"}, r"^forecaster\.device: .*'tpu' is not allowed; allowed: auto, cpu, cuda"),
    ({"warm_start": "yes"}, r"^forecaster\.warm_start: .*'yes' is not allowed; allowed: true or false"),
])
def test_a_bad_setting_is_one_spec_error_naming_the_key(spec, message):
    with pytest.raises(SpecError, match=message):
        forecaster_factory({"name": "transformer", **spec})
    with pytest.raises(TypeError, match="hidden is not a setting"):
        TransformerForecaster(hidden=64)


def test_saving_is_refused_clearly(fitted, tmp_path):
    from agents.forecasting.saved import save_forecaster

    model, panel, _, _ = fitted
    with pytest.raises(SpecError, match="'transformer' cannot be saved; allowed: .*lstm"):
        save_forecaster(model, "transformer", panel, tmp_path / "t")
    with pytest.raises(NotImplementedError, match="cannot be exported"):
        model.export_onnx(str(tmp_path / "t.onnx"), panel)
