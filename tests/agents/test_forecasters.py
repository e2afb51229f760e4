"""The forecasters: exact on patterns they should reproduce, sensible on noisy series, honest about their intervals."""

from __future__ import annotations

import numpy as np
import pytest

from agents.forecasting.base import Forecast
from agents.forecasting.classical import AutoARIMA, AutoETS, MovingAverage, SeasonalNaive
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.ensemble import Ensemble
from agents.forecasting.features import calendar_features
from agents.forecasting.glm import PoissonGLM
from agents.forecasting.tree import GradientBoosting

PATTERN = np.array([3.0, 5, 9, 4, 6, 8, 2])


def small_tree(**kwargs) -> GradientBoosting:
    """A quick tree model for tests."""
    return GradientBoosting(**{"max_iter": 60, "quantile_max_iter": 40, **kwargs})


FACTORIES = {
    "seasonal_naive": SeasonalNaive,
    "moving_average": MovingAverage,
    "ets": AutoETS,
    "arima": AutoARIMA,
    "gradient_boosting": small_tree,
    "glm": PoissonGLM,
    "ensemble": lambda: Ensemble([SeasonalNaive(), MovingAverage()]),
}


def check_valid(forecast: Forecast, n: int, h: int) -> None:
    """Shapes, finite, non-negative, quantiles non-decreasing in level."""
    assert forecast.mean.shape == (n, h)
    assert forecast.quantiles.shape == (n, h, len(forecast.levels))
    assert np.isfinite(forecast.mean).all() and np.isfinite(forecast.quantiles).all()
    assert (forecast.mean >= 0).all() and (forecast.quantiles >= 0).all()
    assert (np.diff(forecast.quantiles, axis=-1) >= -1e-9).all()


def smooth_seasonal(n: int, t: int, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """(n, t) daily series with a weekly season, different levels and small normal noise."""
    rng = np.random.default_rng(seed)
    days = np.arange(t)
    base = 20 + 5 * np.sin(2 * np.pi * days / 7) + 2 * np.cos(4 * np.pi * days / 7)
    return base[None, :] * rng.uniform(0.5, 2.0, (n, 1)) + rng.normal(0, noise, (n, t))


@pytest.mark.parametrize("horizon", [7, 30, 60])
def test_seasonal_naive_repeats_a_pure_season_exactly(horizon):
    values = np.tile(PATTERN, 20)[None, :]
    model = SeasonalNaive()
    model.fit(panel_from_arrays(values))
    forecast = model.predict(horizon)
    expected = np.tile(PATTERN, 20)[:horizon]  # the history is whole seasons, so the future starts the pattern again
    np.testing.assert_allclose(forecast.mean[0], expected)
    for j in range(len(forecast.levels)):
        np.testing.assert_allclose(forecast.quantiles[0, :, j], expected)  # no residuals: a point forecast


def test_seasonal_naive_intervals_widen_with_seasons_ahead():
    rng = np.random.default_rng(1)
    values = np.tile(PATTERN, 30)[None, :] * 10 + rng.normal(0, 2, (1, 210))
    model = SeasonalNaive()
    model.fit(panel_from_arrays(np.maximum(values, 0)))
    width = np.diff(model.predict(21).quantiles[0][:, [0, -1]], axis=1)[:, 0]
    np.testing.assert_allclose(width[7:14] / width[:7], np.sqrt(2))
    np.testing.assert_allclose(width[14:] / width[:7], np.sqrt(3))


def test_moving_average_of_a_constant_is_that_constant_with_no_spread():
    model = MovingAverage(window=10)
    model.fit(panel_from_arrays(np.full((2, 50), 4.0)))
    forecast = model.predict(15)
    np.testing.assert_allclose(forecast.mean, 4.0)
    np.testing.assert_allclose(forecast.quantiles, 4.0)


def test_moving_average_is_the_mean_of_the_last_window():
    values = np.arange(100, dtype=float)[None, :]
    model = MovingAverage(window=28)
    model.fit(panel_from_arrays(values))
    np.testing.assert_allclose(model.predict(3).mean, values[0, -28:].mean())


@pytest.mark.parametrize("factory", [AutoETS, AutoARIMA], ids=["ets", "arima"])
def test_statistical_models_forecast_a_smooth_seasonal_series(factory):
    values = smooth_seasonal(3, 308)
    train, future = values[:, :280], values[:, 280:]
    model = factory()
    model.fit(panel_from_arrays(train))
    forecast = model.predict(28)
    check_valid(forecast, 3, 28)
    relative_mae = np.abs(forecast.mean - future).mean() / future.mean()
    assert relative_mae < 0.05, relative_mae  # the season is 30% of the level, the noise about 2%


@pytest.mark.parametrize("factory", [AutoETS, AutoARIMA], ids=["ets", "arima"])
def test_statistical_models_follow_a_linear_trend(factory):
    rng = np.random.default_rng(2)
    days = np.arange(220)
    values = (10 + 0.5 * days + rng.normal(0, 0.5, 220))[None, :]
    model = factory(season_length=1)
    model.fit(panel_from_arrays(values[:, :200]))
    forecast = model.predict(20)
    assert np.all(np.diff(forecast.mean[0]) > 0.2)  # still rising at about 0.5 a day
    assert np.abs(forecast.mean - values[:, 200:]).mean() < 2.0  # level ~110: within 2%


@pytest.mark.parametrize("name", list(FACTORIES))
def test_intervals_cover_fresh_poisson_draws(name):
    rng = np.random.default_rng(3)
    n, t, h = 12, 300, 14
    values = rng.poisson(20.0, (n, t + h)).astype(float)
    model = FACTORIES[name]()
    model.fit(panel_from_arrays(values[:, :t]))
    forecast = model.predict(h)
    check_valid(forecast, n, h)
    lo, hi = forecast.quantile(0.1), forecast.quantile(0.9)
    coverage = ((values[:, t:] >= lo) & (values[:, t:] <= hi)).mean()
    assert 0.6 <= coverage <= 0.95, coverage  # nominal 0.8 (Poisson draws are discrete: ties count as covered)
    # the mean is learned, not just the spread (seasonal naive repeats one noisy week: |N(0, sqrt 20)| ~ 3.6,
    # the ensemble half of that)
    bound = {"seasonal_naive": 5, "ensemble": 3}.get(name, 1.5)
    assert np.abs(forecast.mean - 20).mean() < bound, name


def promotion_panel(n: int = 30, t: int = 400, h: int = 28, seed: int = 4):
    """Poisson demand with a weekly season, doubled on random promotion days known in advance."""
    rng = np.random.default_rng(seed)
    days = np.arange(t + h)
    promotion = (rng.random((n, t + h)) < 0.15).astype(float)
    rate = (8 + 3 * np.sin(2 * np.pi * days / 7))[None, :] * rng.uniform(0.5, 2.0, (n, 1)) * (1 + promotion)
    values = rng.poisson(rate).astype(float)
    panel = panel_from_arrays(values[:, :t], future=h, covariates=promotion[:, :, None],
                              covariate_names=("promotion",), categories={"region": np.arange(n) % 3})
    return panel, values[:, t:], rate[:, t:]


def test_gradient_boosting_learns_a_promotion_effect():
    panel, future, rate = promotion_panel()
    errors = {}
    for model in (small_tree(), MovingAverage()):
        model.fit(panel)
        forecast = model.predict(28)
        check_valid(forecast, panel.n, 28)
        errors[model.name] = np.abs(forecast.mean - future).mean()
    assert errors["gradient_boosting"] < 0.8 * errors["moving_average"], errors
    # and its promotion-day forecasts are about double its other days'
    model = small_tree()
    model.fit(panel)
    mean = model.predict(28).mean
    promoted = panel.covariates[:, panel.length:, 0] > 0
    ratio = (mean[promoted] / rate[promoted]).mean() / (mean[~promoted] / rate[~promoted]).mean()
    assert 0.8 < ratio < 1.25, ratio


def test_gradient_boosting_needs_covariates_for_the_whole_horizon():
    panel, _, _ = promotion_panel(n=5, t=120, h=10)
    model = small_tree()
    model.fit(panel)
    with pytest.raises(ValueError, match="covariates"):
        model.predict(11)


def test_gradient_boosting_without_covariates_forecasts_past_the_known_dates():
    model = small_tree()
    model.fit(panel_from_arrays(smooth_seasonal(4, 200)))
    check_valid(model.predict(21), 4, 21)


def test_gradient_boosting_reads_lags_longer_than_its_longest_window():
    # lag 7 and 14 with a 3-period window: the lags reach past the window (this used to raise IndexError)
    values = np.tile(np.tile(PATTERN, 30), (3, 1))
    model = small_tree(lags=(7, 14), windows=(3,), max_iter=200)
    model.fit(panel_from_arrays(values))
    forecast = model.predict(14)
    check_valid(forecast, 3, 14)
    np.testing.assert_allclose(forecast.mean, np.tile(np.tile(PATTERN, 2), (3, 1)), rtol=0.05)


def test_gradient_boosting_lag_features_read_the_right_periods():
    # lag 5 with a 3-period window: the old feature window (the longest window, 3) read lag 2 here without an error
    values = np.tile(np.arange(1.0, 61.0), (2, 1))
    panel = panel_from_arrays(values)
    model = small_tree(lags=(1, 5), windows=(3,))
    model.fit(panel)
    _, scaled, static, buffer = model._series(panel)
    rows, times = np.array([0, 1]), np.array([20, 40])
    x = model._features(buffer, rows, times, calendar_features(panel.dates, panel.freq), panel.covariates, static)
    np.testing.assert_allclose(x[:, 0], scaled[rows, times - 1], rtol=1e-6)
    np.testing.assert_allclose(x[:, 1], scaled[rows, times - 5], rtol=1e-6)
    np.testing.assert_allclose(x[:, 2], scaled[rows, times - 2], rtol=1e-6)  # the mean of t-3..t-1 of a line


def test_gradient_boosting_is_deterministic_for_a_seed():
    panel, _, _ = promotion_panel(n=10, t=200, h=14)
    forecasts = []
    for seed in (7, 7, 8):
        model = small_tree(seed=seed, max_train_rows=1000)  # subsampled: the seed matters
        model.fit(panel)
        forecasts.append(model.predict(14))
    np.testing.assert_array_equal(forecasts[0].mean, forecasts[1].mean)
    np.testing.assert_array_equal(forecasts[0].quantiles, forecasts[1].quantiles)
    assert not np.array_equal(forecasts[0].mean, forecasts[2].mean)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_series_that_start_late_are_forecast(name):
    values = smooth_seasonal(4, 200, seed=5)
    values[1, :120] = np.nan  # 80 observations
    values[2, :195] = np.nan  # 5 observations: less than one season for the seasonal models
    values[3, :198] = np.nan  # 2 observations
    values = np.maximum(values, 0)
    panel = panel_from_arrays(values, categories={"sku": np.arange(4)})
    model = FACTORIES[name]()
    model.fit(panel)
    forecast = model.predict(10)
    check_valid(forecast, 4, 10)
    for i in range(4):  # each forecast is near its own series' level, not its neighbours'
        level = values[i][~np.isnan(values[i])].mean()
        assert abs(forecast.mean[i].mean() - level) < 0.5 * level, (i, forecast.mean[i].mean(), level)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("name", list(FACTORIES))
def test_zero_series_and_series_not_started_yet(name):
    values = np.full((3, 120), 6.0)
    values[1] = 0.0
    values[2] = np.nan  # no observation yet: any finite forecast will do
    model = FACTORIES[name]()
    model.fit(panel_from_arrays(values))
    forecast = model.predict(10)
    check_valid(forecast, 3, 10)
    assert np.abs(forecast.mean[0] - 6).max() < 0.5 and forecast.mean[1].max() < 0.5


@pytest.mark.parametrize("name", list(FACTORIES))
def test_predict_before_fit_is_an_error(name):
    with pytest.raises(RuntimeError, match="fit"):
        FACTORIES[name]().predict(5)


def test_ensemble_lies_between_its_members():
    rng = np.random.default_rng(6)
    values = np.maximum(np.tile(PATTERN, 20)[None, :] * rng.uniform(1, 3, (5, 1)) + rng.normal(0, 1, (5, 140)), 0)
    panel = panel_from_arrays(values)
    members = [SeasonalNaive(), MovingAverage()]
    ensemble = Ensemble(members)
    ensemble.fit(panel)
    forecast = ensemble.predict(30)
    check_valid(forecast, 5, 30)
    naive, average = members[0].predict(30), members[1].predict(30)
    for field in ("mean", "quantiles"):
        a, b, e = getattr(naive, field), getattr(average, field), getattr(forecast, field)
        assert (e >= np.minimum(a, b) - 1e-9).all() and (e <= np.maximum(a, b) + 1e-9).all()
    np.testing.assert_allclose(forecast.mean, (naive.mean + average.mean) / 2)


def test_inverse_error_weights_favour_the_better_member():
    values = np.tile(PATTERN, 20)[None, :] * np.array([[1.0], [2.0]])  # a pure season: seasonal naive is exact
    ensemble = Ensemble([SeasonalNaive(), MovingAverage()], weights="inverse_error")
    ensemble.fit(panel_from_arrays(values))
    assert ensemble.member_weights.sum() == pytest.approx(1.0)
    assert ensemble.member_weights[0] > 0.99
    np.testing.assert_allclose(ensemble.predict(14).mean, values[:, :14], rtol=1e-3)


def test_ensemble_rejects_unknown_weights():
    with pytest.raises(ValueError, match="weights"):
        Ensemble([SeasonalNaive()], weights="best")


@pytest.mark.parametrize(("freq", "season"), [("MS", 12), ("QS", 4)])
def test_monthly_and_quarterly_series(freq, season):
    rng = np.random.default_rng(7)
    pattern = rng.uniform(5, 15, season)
    periods = 6 * season
    pure = np.tile(pattern, 6)[None, :]
    panel = panel_from_arrays(pure, start="2015-01-01", freq=freq)
    assert panel.freq.season_length == season
    naive = SeasonalNaive()
    naive.fit(panel)
    np.testing.assert_allclose(naive.predict(2 * season).mean[0], np.tile(pattern, 2))
    noisy = np.maximum(np.tile(pattern, 6)[None, :] * np.array([[1.0], [2.0]]) + rng.normal(0, 0.2, (2, periods)), 0)
    noisy_panel = panel_from_arrays(noisy, start="2015-01-01", freq=freq)
    for model in (AutoETS(), AutoARIMA(), small_tree(), MovingAverage(window=season)):
        model.fit(noisy_panel)
        forecast = model.predict(season)
        check_valid(forecast, 2, season)
        if model.name in ("ets", "arima"):  # the seasonal models find the season
            expected = np.tile(pattern, 1)[None, :] * np.array([[1.0], [2.0]])
            assert np.abs(forecast.mean - expected).mean() / expected.mean() < 0.1, model.name
