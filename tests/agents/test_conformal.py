"""Conformal calibration: the 80% band covers 80% on held-out origins where the base's does not, without look-ahead."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agents.forecasting.backtest import BacktestPlan, backtest
from agents.forecasting.classical import MovingAverage, SeasonalNaive
from agents.forecasting.conformal import (
    BAND_FLOOR,
    Conformal,
    clipped_levels,
    conformal_offsets,
    expected_coverage,
    pooling_windows,
)
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.factory import FORECASTERS, forecaster_factory
from twin.config import SpecError


def coverages(values: np.ndarray, base: str | dict) -> dict[str, float]:
    """80% coverage of the base and of its conformal wrapper over 3 held-out origins, horizon 28."""
    panel = panel_from_arrays(values)
    plan = BacktestPlan.of(panel, horizons=(28,), n_origins=3, step=28)
    conformal = {"name": "conformal", "base": base, "origins": 4, "step": 28, "max_horizon": 28}
    result = backtest(panel, {"base": forecaster_factory(base), "conformal": forecaster_factory(conformal)}, plan)
    return {row["forecaster"]: row["coverage_80"] for row in result.scores()}


def test_a_too_wide_band_is_calibrated():
    # constant level + iid Normal(0, 10): seasonal naive widens its band by sqrt(2) every week ahead (a random
    # walk's rule), far too wide for white noise past the first week
    values = 100 + np.random.default_rng(0).normal(0, 10, (300, 400))
    cover = coverages(values, "seasonal_naive")
    assert cover["base"] > 0.88, cover
    assert abs(cover["conformal"] - 0.80) < 0.05, cover


def test_a_too_narrow_band_is_calibrated():
    # a random-walk level + Normal(0, 5) noise: the moving average's flat band from one-step residuals is too
    # narrow weeks ahead, as the level drifts away
    rng = np.random.default_rng(1)
    values = 200 + np.cumsum(rng.normal(0, 1.5, (300, 400)), axis=1) + rng.normal(0, 5, (300, 400))
    cover = coverages(values, {"name": "moving_average", "window": 28})
    assert cover["base"] < 0.74, cover
    assert abs(cover["conformal"] - 0.80) < 0.05, cover


def test_a_band_scale_covers_quiet_and_noisy_series_alike():
    # the same level, noise sd 2 on half the series and 20 on the other half: with one scale per series (its mean,
    # the same for all) the pooled errors give every series the same band, too wide for the quiet half and too
    # narrow for the noisy one; scaled by the base's own band (each series' residual spread) both get 80%
    rng = np.random.default_rng(8)
    noise = np.where(np.arange(300)[:, None] < 150, 2.0, 20.0)
    panel = panel_from_arrays(100 + noise * rng.normal(0, 1, (300, 400)))
    plan = BacktestPlan.of(panel, horizons=(28,), n_origins=3, step=28)
    spec = {"name": "conformal", "base": "moving_average", "origins": 4, "step": 28, "max_horizon": 28}
    result = backtest(panel, {scale: forecaster_factory({**spec, "scale": scale}) for scale in ("series", "band")},
                      plan)
    for scale, run in result.runs.items():
        inside = (result.actual >= run.quantiles[..., 0]) & (result.actual <= run.quantiles[..., -1])
        quiet, noisy = inside[:, :150].mean(), inside[:, 150:].mean()
        if scale == "series":
            assert quiet > 0.95 and noisy < 0.65, (quiet, noisy)
        else:
            assert abs(quiet - 0.80) < 0.05 and abs(noisy - 0.80) < 0.05, (quiet, noisy)


def test_a_base_with_an_empty_band_gets_the_floor():
    # a constant series: the moving average's band is empty, so scale="band" falls back to BAND_FLOOR x its mean
    values = np.full((4, 120), 10.0)
    values[:, 100:] = 12.0  # the last windows' errors are 2
    model = Conformal(MovingAverage, origins=2, step=7, max_horizon=7, scale="band", pool_steps=False)
    model.fit(panel_from_arrays(values))
    assert model.calibration_errors.tolist() == [8] * 7  # 4 series x 2 origins: none lost to a division by 0
    assert np.isfinite(model.offsets).all()
    quantiles = model.predict(7).quantiles
    assert np.isfinite(quantiles).all() and (np.diff(quantiles, axis=-1) >= 0).all()


class Spy(MovingAverage):
    """A moving average that keeps every history it was fitted on."""

    fitted: list = []

    def fit(self, history):
        Spy.fitted.append(history)
        super().fit(history)


def test_calibration_reads_only_prefixes_of_the_fit_history():
    values = 50 + np.random.default_rng(2).normal(0, 5, (20, 200))
    history = panel_from_arrays(values).until(150)
    Spy.fitted = []
    model = Conformal(Spy, origins=3, step=10, max_horizon=14)
    model.fit(history)
    assert model.calibration_origins == (116, 126, 136)  # the last window [136, 150) ends with the history
    lengths = [h.length for h in Spy.fitted]
    assert lengths == [116, 126, 136, 150]
    for fitted in Spy.fitted:
        np.testing.assert_array_equal(fitted.values, values[:, :fitted.length])
        assert len(fitted.dates) <= 150  # neither values nor dates past the fit history
    forecast = model.predict(20)  # longer than calibrated: the last step's offsets carry on
    assert forecast.mean.shape == (20, 20)
    np.testing.assert_allclose(forecast.quantiles[:, 13], forecast.quantiles[:, 19])


@pytest.mark.parametrize("scale", ["none", "series", "band"])
def test_the_mean_is_the_bases_and_the_quantiles_follow_the_offsets(scale):
    # quantiles = the base's mean + the offsets times the scale of each point: 1, the series' mean absolute value,
    # or the base's own band there (floored); seasonal naive's band widens with every season ahead, so "band" must
    # follow it step by step, past max_horizon too (the last step's offsets)
    values = 10 + np.random.default_rng(3).normal(0, 1, (30, 120))
    panel = panel_from_arrays(values)
    base, model = SeasonalNaive(), Conformal(SeasonalNaive(), origins=2, step=7, max_horizon=14, scale=scale)
    base.fit(panel)
    model.fit(panel)
    own, forecast = base.predict(21), model.predict(21)
    np.testing.assert_array_equal(forecast.mean, own.mean)
    band = own.quantiles[..., -1] - own.quantiles[..., 0]
    assert (band[:, 13] > band[:, 0]).all()  # the base's band does widen
    mean_absolute = np.mean(np.abs(values), axis=1)[:, None]
    expected_scale = {"none": np.ones_like(band), "series": np.broadcast_to(mean_absolute, band.shape),
                      "band": np.maximum(band, BAND_FLOOR * mean_absolute)}[scale]
    offsets = model.offsets[np.minimum(np.arange(21), 13)]
    np.testing.assert_allclose(forecast.quantiles, own.mean[..., None] + offsets[None] * expected_scale[..., None])


def test_auto_as_the_base_is_calibrated_and_keeps_its_mean():
    # forecaster=conformal forecaster.base=auto: auto (here over two cheap candidates) validates inside every
    # calibration history; the conformal forecast keeps auto's mean, so only the band changes
    values = 100 + np.random.default_rng(4).normal(0, 10, (300, 400))
    auto = {"name": "auto", "candidates": ["seasonal_naive", {"name": "moving_average", "window": 28}],
            "max_horizon": 28}
    panel = panel_from_arrays(values)
    plan = BacktestPlan.of(panel, horizons=(28,), n_origins=3, step=28)
    conformal = {"name": "conformal", "base": auto, "origins": 4, "step": 28, "max_horizon": 28}
    result = backtest(panel, {"base": forecaster_factory(auto), "conformal": forecaster_factory(conformal)}, plan)
    np.testing.assert_allclose(result.runs["conformal"].mean, result.runs["base"].mean)
    cover = {row["forecaster"]: row["coverage_80"] for row in result.scores()}
    assert abs(cover["conformal"] - 0.80) < 0.05, cover
    model = forecaster_factory({"name": "conformal", "base": "auto", "max_horizon": 12})()
    assert model._fresh().max_horizon == 12  # the base validates as far ahead as it is calibrated


def test_gradient_boosting_as_the_base_keeps_its_mean():
    values = 30 + np.random.default_rng(5).normal(0, 3, (6, 160))
    panel = panel_from_arrays(values)
    gb = {"name": "gradient_boosting", "max_iter": 20, "quantile_max_iter": 20}
    base = forecaster_factory(gb)()
    model = forecaster_factory({"name": "conformal", "base": gb, "origins": 2, "max_horizon": 14})()
    base.fit(panel)
    model.fit(panel)
    forecast = model.predict(14)
    np.testing.assert_allclose(forecast.mean, base.predict(14).mean)
    # 6 series x 2 origins = 12 errors per step, whose 10-90% band covers 84.6% in expectation: each step pools
    # 5 steps' errors (60: 80.3%), the first and last ones steps 0-4 and 9-13
    assert model.calibration_errors.tolist() == [60] * 14
    assert (np.diff(forecast.quantiles, axis=-1) >= 0).all()


def test_too_few_calibration_errors_warn(caplog):
    # one series: 4 origins give 4 errors per step, so the 0.1/0.9 levels take the smallest/largest of them and
    # the band covers (4 - 1) / (4 + 1) = 60% in expectation; 9 origins reach the 80%
    assert clipped_levels(4, (0.1, 0.5, 0.9)) == (0.1, 0.9)
    assert clipped_levels(9, (0.1, 0.5, 0.9)) == ()
    assert expected_coverage(4, 0.1, 0.9) == pytest.approx(0.6)
    assert expected_coverage(9, 0.1, 0.9) == pytest.approx(0.8)
    assert expected_coverage(99, 0.1, 0.9) == pytest.approx(0.8)
    panel = panel_from_arrays(50 + np.random.default_rng(6).normal(0, 5, (1, 200)))
    with caplog.at_level(logging.WARNING, logger="agents.forecasting.conformal"):
        Conformal(MovingAverage, origins=4, step=7, max_horizon=7, pool_steps=False).fit(panel)
    assert "4 calibration errors" in caplog.text and "60%" in caplog.text, caplog.text
    caplog.clear()
    model = Conformal(MovingAverage, origins=9, step=7, max_horizon=7, pool_steps=False)
    with caplog.at_level(logging.WARNING, logger="agents.forecasting.conformal"):
        model.fit(panel)
    assert caplog.text == ""
    assert model.calibration_errors.tolist() == [9] * 7
    caplog.clear()  # pooled (the default), 4 origins: each step borrows its neighbours' errors, no warning
    model = Conformal(MovingAverage, origins=4, step=7, max_horizon=7)
    with caplog.at_level(logging.INFO, logger="agents.forecasting.conformal"):
        model.fit(panel)
    assert "WARNING" not in caplog.text and "on the errors of 5 steps around it (20)" in caplog.text, caplog.text
    assert model.calibration_errors.tolist() == [20] * 7  # 5 steps' (12: 84.6% expected, 20: 81.0%)
    caplog.clear()  # one step ahead only: nothing to borrow, so the warning stays
    with caplog.at_level(logging.WARNING, logger="agents.forecasting.conformal"):
        Conformal(MovingAverage, origins=4, step=7, max_horizon=1).fit(panel)
    assert "(1 series x 4 origins)" in caplog.text and "60%" in caplog.text, caplog.text
    caplog.clear()  # two steps: pooled, and still too few
    with caplog.at_level(logging.WARNING, logger="agents.forecasting.conformal"):
        Conformal(MovingAverage, origins=4, step=7, max_horizon=2).fit(panel)
    assert "neighbouring steps pooled" in caplog.text and "78%" in caplog.text, caplog.text


def test_pooling_windows_reach_the_nominal_coverage():
    levels = (0.1, 0.5, 0.9)
    # 4 errors per step: 1 step 60%, 3 steps (12) 84.6%, 5 steps (20) 81.0%: 5, cut at the ends and widened on
    # the other side
    windows = pooling_windows(np.full(7, 4), levels)
    assert [(w.start, w.stop) for w in windows] == [(0, 5), (0, 5), (0, 5), (1, 6), (2, 7), (2, 7), (2, 7)]
    assert pooling_windows(np.full(5, 400), levels) == [slice(j, j + 1) for j in range(5)]  # 80.05%: its own
    # too few in all: the whole horizon, the closest it gets
    assert pooling_windows(np.array([1, 1, 1]), levels) == [slice(0, 3)] * 3
    # steps without errors (a series that starts late, NaN errors) borrow like the others; none anywhere: their own
    windows = pooling_windows(np.array([0, 4, 4, 4, 4, 4, 0]), levels)
    assert [(w.start, w.stop) for w in windows] == [(0, 6), (0, 6), (0, 6), (1, 6), (1, 7), (1, 7), (1, 7)]
    assert pooling_windows(np.zeros(3, dtype=int), levels) == [slice(j, j + 1) for j in range(3)]
    # one level has no band: every count is at its nominal coverage (0), nothing pools
    assert pooling_windows(np.full(4, 2), (0.5,)) == [slice(j, j + 1) for j in range(4)]
    # the outer two levels decide: 0.05/0.95 from 10 / 20 / 30 / 40 / 50 errors covers 81.8 / 90.5 / 93.5 / 90.2 /
    # 92.2%, so an end step takes 2 steps (20), the next 4 (40: 3 is off by 3.5 points), the middle one all 5
    windows = pooling_windows(np.full(5, 10), (0.05, 0.5, 0.95))
    assert [(w.start, w.stop) for w in windows] == [(0, 2), (0, 4), (0, 5), (1, 5), (3, 5)]


def test_one_series_is_calibrated_in_expectation():
    # 300 independent single series of white noise, each calibrated on its own 4 origins and scored on the next 7
    # points: each step's 4 errors give a band from their smallest to their largest (60% in expectation); pooled
    # over neighbouring steps (20 errors, exchangeable here) it covers 80%
    rng = np.random.default_rng(11)
    inside = {True: [], False: []}
    for _ in range(300):
        values = 50 + rng.normal(0, 5, (1, 107))
        history = panel_from_arrays(values).until(100)
        for pool in inside:
            model = Conformal(MovingAverage, origins=4, step=7, max_horizon=7, pool_steps=pool)
            model.fit(history)
            band = model.predict(7).quantiles[0]
            inside[pool].append(np.mean((values[0, 100:] >= band[:, 0]) & (values[0, 100:] <= band[:, -1])))
    assert abs(np.mean(inside[False]) - 0.60) < 0.05, np.mean(inside[False])
    assert abs(np.mean(inside[True]) - 0.81) < 0.04, np.mean(inside[True])


def test_finite_sample_quantile():
    scores = np.arange(1.0, 11.0)  # n = 10
    # 0.9: ceil(11 * 0.9) = 10th; 0.5: ceil(5.5) = 6th; 0.1: floor(1.1) = 1st
    np.testing.assert_array_equal(conformal_offsets(scores, (0.1, 0.5, 0.9)), [1.0, 6.0, 10.0])
    assert np.isnan(conformal_offsets(np.array([np.nan]), (0.5,))).all()


@pytest.mark.parametrize(("spec", "key"), [
    ({"origins": 0}, "forecaster.origins"),
    ({"step": -1}, "forecaster.step"),
    ({"max_horizon": 0}, "forecaster.max_horizon"),
    ({"scale": "log"}, "forecaster.scale"),
    ({"pool_steps": "yes"}, "forecaster.pool_steps"),
    ({"window": 3}, "forecaster.window"),
    ({"base": "crystal_ball"}, "forecaster.base.name"),
    ({"base": {"name": "moving_average", "window": 0}}, "forecaster.base.window"),
])
def test_bad_parameters_name_the_key(spec, key):
    with pytest.raises(SpecError, match=f"^{key}: "):
        forecaster_factory({"name": "conformal", **spec})


def test_registered_and_too_short_a_history_is_an_error():
    assert "conformal" in FORECASTERS.allowed()
    model = forecaster_factory({"name": "conformal", "base": "moving_average", "max_horizon": 60})()
    with pytest.raises(ValueError, match="max_horizon"):
        model.fit(panel_from_arrays(np.ones((2, 50))))


def test_an_origin_too_early_for_the_base_is_left_out(caplog):
    # auto validates inside each calibration history and needs max_horizon (21) + 14 periods of it: the two
    # earliest origins (24, 31) leave it too little, so they are dropped with a warning instead of crashing the fit
    values = 50 + np.random.default_rng(7).normal(0, 5, (20, 80))
    auto = {"name": "auto", "candidates": ["seasonal_naive", "moving_average"]}
    model = forecaster_factory({"name": "conformal", "base": auto, "origins": 6, "step": 7, "max_horizon": 21})()
    with caplog.at_level(logging.WARNING, logger="agents.forecasting.conformal"):
        model.fit(panel_from_arrays(values))
    assert model.calibration_origins == (38, 45, 52, 59), model.calibration_origins
    assert caplog.text.count("origin left out") == 2, caplog.text
    assert model.calibration_errors.tolist() == [20 * 4] * 21
    assert model.predict(21).quantiles.shape == (20, 21, 3)
    too_short = forecaster_factory({"name": "conformal", "base": auto, "origins": 1, "max_horizon": 21})()
    with pytest.raises(ValueError, match="cannot be fitted at any calibration origin"):
        too_short.fit(panel_from_arrays(values[:, :40]))
