"""The global LSTM forecaster: it learns a known-in-advance promotion effect, keeps the protocol, is reproducible."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from agents.forecasting.data import panel_from_arrays
from agents.forecasting.lstm import LSTMForecaster

TINY = dict(hidden=16, layers=1, max_horizon=14, context=14, batch_size=128, windows_per_epoch=1024,
            max_epochs=6, patience=3, device="cpu", threads=1, verbose=False)


@pytest.fixture(scope="module")
def fitted(promotion_panel):
    """A small model fitted once on the promotion panel."""
    panel, future, promo = promotion_panel()
    model = LSTMForecaster(**{**TINY, "max_epochs": 15, "patience": 5})
    model.fit(panel)
    return model, panel, future, promo


def test_learns_the_promotion_effect_better_than_a_constant(fitted):
    model, panel, future, promo = fitted
    forecast = model.predict(14)
    constant = np.nanmean(panel.values, axis=1)[:, None]
    mae, mae_constant = np.abs(forecast.mean - future).mean(), np.abs(constant - future).mean()
    assert mae < 0.75 * mae_constant
    # promotion days (demand x3) are forecast well above the others
    assert forecast.mean[promo == 1].mean() > 2 * forecast.mean[promo == 0].mean()


def test_shapes_non_negative_and_sorted_quantiles(fitted):
    model, panel, _, _ = fitted
    forecast = model.predict(5)
    assert forecast.mean.shape == (panel.n, 5) and forecast.quantiles.shape == (panel.n, 5, 3)
    assert (forecast.mean >= 0).all() and (forecast.quantiles >= 0).all()
    assert (np.diff(forecast.quantiles, axis=2) >= 0).all()
    assert np.isfinite(forecast.quantiles).all()


def test_clear_errors(promotion_panel):
    with pytest.raises(RuntimeError, match="fit"):
        LSTMForecaster(**TINY).predict(3)
    panel, _, _ = promotion_panel(n=4, t=80, future=30)
    model = LSTMForecaster(**{**TINY, "max_epochs": 1})
    model.fit(panel)
    with pytest.raises(ValueError, match="max_horizon 14"):
        model.predict(20)
    short = panel_from_arrays(panel.values, future=3, covariates=panel.covariates[:, :83],
                              covariate_names=("promotion",))
    model.fit(short)
    with pytest.raises(ValueError, match="covariates"):
        model.predict(5)


def test_deterministic_for_a_seed(promotion_panel):
    panel, _, _ = promotion_panel(n=6, t=120)
    forecasts = []
    for _ in range(2):
        model = LSTMForecaster(**{**TINY, "max_epochs": 2, "seed": 3})
        model.fit(panel)
        forecasts.append(model.predict(14))
    assert np.array_equal(forecasts[0].mean, forecasts[1].mean)
    assert np.array_equal(forecasts[0].quantiles, forecasts[1].quantiles)


def test_late_starts(promotion_panel):
    panel, _, _ = promotion_panel(n=6, t=160)
    values = panel.values.copy()
    values[1, :60] = np.nan    # starts late, still has training windows
    values[2, :150] = np.nan   # too short for a full context: forecast all the same
    late = panel_from_arrays(values, future=14, covariates=panel.covariates, covariate_names=("promotion",))
    model = LSTMForecaster(**{**TINY, "max_epochs": 2})
    model.fit(late)
    forecast = model.predict(14)
    assert np.isfinite(forecast.mean).all() and (forecast.mean >= 0).all()
    assert np.isfinite(forecast.quantiles).all()


def test_warm_start_refit_runs_fewer_epochs(promotion_panel):
    panel, _, _ = promotion_panel(n=6, t=160)
    model = LSTMForecaster(**{**TINY, "max_epochs": 4, "patience": 10, "refit_epochs": 2})
    model.fit(panel.until(150, 14))
    weights = model.network
    assert model.epochs_run == 4
    model.fit(panel)
    assert model.epochs_run == 2 and model.network is weights
    assert model.predict(14).mean.shape == (6, 14)
    cold = LSTMForecaster(**{**TINY, "max_epochs": 4, "patience": 10, "refit_epochs": 2, "warm_start": False})
    cold.fit(panel.until(150, 14))
    cold.fit(panel)
    assert cold.epochs_run == 4


def test_monthly_series_without_covariates_or_categories():
    rng = np.random.default_rng(1)
    months = np.arange(96)
    values = rng.poisson(20 * (1 + 0.5 * np.sin(2 * np.pi * months / 12)), (3, 96)).astype(float)
    panel = panel_from_arrays(values, start="2015-01-01", freq="MS")
    assert panel.freq.season_length == 12 and panel.covariates.shape[2] == 0
    model = LSTMForecaster(**{**TINY, "context": None, "max_horizon": 12, "max_epochs": 10, "patience": 10})
    model.fit(panel)
    forecast = model.predict(12)  # no covariates: the horizon may run past the known future
    assert forecast.mean.shape == (3, 12) and (forecast.quantiles >= 0).all()
    # the yearly pattern carries on past the panel's last date (the calendar of the future months is known)
    truth = 20 * (1 + 0.5 * np.sin(2 * np.pi * np.arange(96, 108) / 12))
    assert np.corrcoef(forecast.mean.mean(axis=0), truth)[0, 1] > 0.8


def trend_panel(n: int = 20, t: int = 240, future: int = 14, seed: int = 0):
    """Poisson demand (weekly pattern) whose level rises 1% a day: x11 over the history."""
    rng = np.random.default_rng(seed)
    days = np.arange(t + future)
    mean = rng.uniform(3, 8, (n, 1)) * 1.01 ** days * (1 + 0.2 * np.sin(2 * np.pi * days / 7))
    demand = rng.poisson(mean).astype(float)
    return panel_from_arrays(demand[:, :t], future=future), demand[:, t:]


def test_window_scaling_follows_a_trend_better_than_series_scaling():
    panel, future = trend_panel()
    mae = {}
    for scaling in ("window", "series"):
        model = LSTMForecaster(**{**TINY, "max_epochs": 10, "patience": 10, "scaling": scaling})
        model.fit(panel)
        mae[scaling] = np.abs(model.predict(14).mean - future).mean()
    assert mae["window"] < 0.8 * mae["series"], mae


def test_window_scale_reads_only_the_context():
    panel, _ = trend_panel(n=4, t=120)
    model = LSTMForecaster(**{**TINY, "max_epochs": 1})
    model.fit(panel)
    f = dict(model._inputs)
    rows, origins = torch.arange(4).repeat(3), torch.tensor([14] * 4 + [60] * 4 + [120] * 4)
    scale = model._window_scale(f, rows, origins)
    values = panel.values / f["scale"].numpy()[:, None]
    expected = [np.abs(values[r, o - 14:o]).mean() for r, o in zip(rows.tolist(), origins.tolist())]
    np.testing.assert_allclose(scale.numpy(), np.maximum(expected, 0.1), rtol=1e-5)
    # values at and after each window's first target step change nothing
    for key in ("value", "observed"):
        f[key] = f[key].clone()
    f["value"][:, 60:] = 1e6
    assert torch.equal(model._window_scale(f, rows[:8], origins[:8]), scale[:8])
    # an all-zero context is floored, not divided by zero
    f["value"][:, :14] = 0.0
    assert model._window_scale(f, rows[:4], origins[:4]).tolist() == pytest.approx([0.1] * 4)


def test_bad_scaling():
    with pytest.raises(ValueError, match="scaling 'global' is not allowed; allowed: window, series"):
        LSTMForecaster(scaling="global")


@pytest.mark.parametrize("setting, allowed", [
    ({"max_epochs": 0}, "an integer >= 1"),
    ({"hidden": 2.5}, "an integer >= 1"),
    ({"max_horizon": None}, "an integer >= 1"),
    ({"context": 0}, "null or an integer >= 1"),
    ({"threads": True}, "null or an integer >= 1"),
    ({"seed": -1}, "an integer >= 0"),
    ({"dropout": 1.0}, r"a number in \[0, 1\)"),
    ({"lr": 0}, "a number > 0"),
    ({"levels": []}, r"a non-empty list of numbers in \(0, 1\)"),
    ({"levels": [0.1, 1.0]}, r"a non-empty list of numbers in \(0, 1\)"),
    ({"warm_start": 1}, "true or false"),
    ({"verbose": "no"}, "true or false"),
    ({"device": "gpu"}, "auto, cpu, cuda or cuda:N"),
    ({"trend": "linear"}, "none, window"),
])
def test_a_bad_keyword_is_one_value_error_naming_it(setting, allowed):
    """Every keyword is checked on creation, in the message form the factory maps to `forecaster.KEY`."""
    (key, value), = setting.items()
    with pytest.raises(ValueError, match=rf"^LSTMForecaster: {key} {re.escape(repr(value))} is not allowed; "
                                         rf"allowed: {allowed}$"):
        LSTMForecaster(**setting)


def test_a_bad_keyword_is_one_spec_error_through_the_factory():
    from agents.forecasting.factory import forecaster_factory
    from twin.config import SpecError

    with pytest.raises(SpecError, match=r"^forecaster\.max_epochs: LSTMForecaster: max_epochs 0 is not allowed"):
        forecaster_factory({"name": "lstm", "max_epochs": 0})


def test_good_keywords_are_kept():
    model = LSTMForecaster(levels=[0.9, 0.1], device="cpu", context=None, threads=1, lr=1, dropout=0)
    assert model.levels == (0.1, 0.9) and model.device.type == "cpu" and model.lr == 1


def linear_trend_panel(n: int = 8, t: int = 144, future: int = 12, seed: int = 0):
    """Monthly values on a steady line (level 50-100, rising 0.5-1.5 a month) plus a yearly sine (amplitude 8)
    and noise (sd 1); no covariates."""
    rng = np.random.default_rng(seed)
    months = np.arange(t + future)
    mean = rng.uniform(50, 100, (n, 1)) + rng.uniform(0.5, 1.5, (n, 1)) * months + 8 * np.sin(2 * np.pi * months / 12)
    values = mean + rng.normal(0, 1, mean.shape)
    return panel_from_arrays(values[:, :t], start="2010-01-01", freq="MS"), values[:, t:]


TREND_TINY = {**TINY, "context": None, "max_horizon": 12, "max_epochs": 8, "patience": 8}


@pytest.fixture(scope="module")
def trend_models():
    """The same small LSTM fitted on the linear-trend panel with trend "none" and "window"."""
    panel, future = linear_trend_panel()
    models = {}
    for trend in ("none", "window"):
        models[trend] = LSTMForecaster(**{**TREND_TINY, "trend": trend})
        models[trend].fit(panel)
    return models, panel, future


def test_a_trend_line_follows_a_steady_trend(trend_models):
    models, _, future = trend_models
    mae = {trend: np.abs(model.predict(12).mean[:, -1] - future[:, -1]).mean() for trend, model in models.items()}
    assert mae["window"] < 0.3 * mae["none"], mae


def test_the_trend_line_reads_only_the_context(trend_models):
    models, panel, _ = trend_models
    model = models["window"]
    f = {k: v.clone() for k, v in model._inputs.items()}
    context, n = model._context, panel.n
    rows, origins = torch.arange(n).repeat(2), torch.tensor([context + 10] * n + [100] * n)
    before = model._batch(f, rows, origins, 12)
    # the line is the least-squares line through the context (steps -context..-1 before the first target step)
    values = f["value"].numpy()
    for r, o, start, slope in zip(rows.tolist(), origins.tolist(), before[2][:, 0].tolist(),
                                  (before[2][:, 1] - before[2][:, 0]).tolist()):
        fitted_slope, fitted_start = np.polyfit(np.arange(-context, 0), values[r, o - context:o], 1)
        assert (start, slope) == pytest.approx((fitted_start, fitted_slope), rel=1e-3, abs=1e-5)
    # values at and after each window's first target step change nothing: the line, the unit, the inputs
    f["value"][:, context + 10:] = 1e3
    f["level"][:, context + 10:] = 1e3
    f["observed"][:, context + 10:] = False
    after = model._batch(f, rows[:n], origins[:n], 12)
    for got, expected in zip([*after[0], after[1], after[2]], [*before[0], before[1], before[2]]):
        assert torch.equal(got, expected[:n])


def test_bad_trend_is_one_spec_error_naming_the_key():
    from agents.forecasting.factory import forecaster_factory
    from twin.config import SpecError

    with pytest.raises(SpecError, match=r"^forecaster\.trend: .*'linear' is not allowed; allowed: none, window"):
        forecaster_factory({"name": "lstm", "trend": "linear"})


def test_a_trend_model_serves_as_it_forecasts(trend_models, tmp_path):
    """The exported model carries the line: the saved forecaster (onnxruntime) forecasts as predict and
    predict_from do, on the fitted history and on another one."""
    from agents.forecasting.saved import load_forecaster, save_forecaster

    models, panel, _ = trend_models
    model = models["window"]
    save_forecaster(model, "lstm", panel, tmp_path / "lstm")
    loaded = load_forecaster(tmp_path / "lstm")
    np.testing.assert_allclose(loaded.forecast(panel, 12).mean, model.predict(12).mean, rtol=0, atol=1e-3)
    other, _ = linear_trend_panel(n=3, t=100, seed=5)
    expected = model.predict_from(other, 12)
    np.testing.assert_allclose(loaded.forecast(other, 12).mean, expected.mean, rtol=0, atol=1e-3)
    np.testing.assert_allclose(loaded.forecast(other, 12).quantiles, expected.quantiles, rtol=0, atol=1e-3)
    assert expected.mean[:, -1].mean() > expected.mean[:, 0].mean()  # the new history's trend carries on
