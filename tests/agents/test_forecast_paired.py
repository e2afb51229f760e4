"""The MASE ratio of two forecasters on the same points and its paired bootstrap interval over cutoffs
(agents/forecasting/paired.py), against values worked out by hand and a small backtest's scores."""

from __future__ import annotations

import numpy as np
import pytest

from agents.forecasting import paired
from agents.forecasting.backtest import BacktestPlan, backtest
from agents.forecasting.base import Forecast, SeriesPanel
from agents.forecasting.classical import SeasonalNaive
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.oracle import TrueMean


def test_the_ratio_is_the_pooled_mean_of_a_over_that_of_b():
    a = np.array([[1.0, 2.0], [3.0, np.nan], [2.0, 2.0]])  # 3 cutoffs x 2 points; the NaN is skipped
    b = np.array([[2.0, 2.0], [2.0, 2.0], [1.0, 1.0]])
    # A: (1 + 2 + 3 + 2 + 2) / 5 = 2; B: 10 / 6; pooled over points, not a mean of per-cutoff ratios
    ci = paired.mase_ratio(a, b)
    assert ci.ratio == pytest.approx(2 / (10 / 6))
    assert ci.cutoffs == 3 and ci.low <= ci.ratio <= ci.high
    # the same points as one axis with a cutoff label each, in any order
    labels = np.repeat(["2001", "2002", "2003"], 2)
    order = np.random.default_rng(0).permutation(6)
    flat = paired.mase_ratio(a.reshape(-1)[order], b.reshape(-1)[order], labels[order])
    assert (flat.ratio, flat.low, flat.high, flat.cutoffs) == pytest.approx((ci.ratio, ci.low, ci.high, 3))


def test_a_forecaster_twice_as_far_off_everywhere_has_ratio_two_and_interval_two():
    b = np.random.default_rng(1).uniform(0.1, 3.0, (6, 4, 5))  # 6 cutoffs x 4 series x 5 steps
    ci = paired.mase_ratio(2 * b, b)
    assert ci.ratio == pytest.approx(2.0)
    assert ci.low == pytest.approx(2.0) and ci.high == pytest.approx(2.0)
    assert ci.verdict == "worse" and paired.mase_ratio(b, 2 * b).verdict == "better"


def test_the_interval_widens_with_the_spread_between_origins():
    b = np.ones((8, 10))
    pattern = np.array([-1.0, 1.0, -0.5, 0.5, -0.8, 0.8, -0.2, 0.2])[:, None]  # zero mean: the ratio stays 1.1
    widths = []
    for spread in (0.05, 0.2, 0.5):
        ci = paired.mase_ratio((1.1 + spread * pattern) * b, b)
        assert ci.ratio == pytest.approx(1.1)
        widths.append(ci.high - ci.low)
    assert 0 < widths[0] < widths[1] < widths[2]
    assert paired.mase_ratio((1.1 + 0.05 * pattern) * b, b).verdict == "worse"
    assert paired.mase_ratio((1.1 + 0.5 * pattern) * b, b).verdict == "tie"


def test_fewer_than_three_cutoffs_give_the_ratio_and_no_interval():
    ci = paired.mase_ratio(np.array([[1.0, 3.0], [2.0, 2.0]]), np.ones((2, 2)))
    assert ci.ratio == pytest.approx(2.0) and ci.low is None and ci.high is None
    assert ci.cutoffs == 2 and ci.verdict == "n/a"
    # a cutoff with no finite error in either does not count
    nothing = np.full((1, 2), np.nan)
    assert paired.mase_ratio(np.vstack([np.ones((2, 2)), nothing]), np.vstack([np.ones((2, 2)), nothing])).low is None


def test_the_interval_is_reproducible():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 2, (5, 12)), rng.uniform(0, 2, (5, 12))
    first, again = paired.mase_ratio(a, b), paired.mase_ratio(a, b)
    assert (first.low, first.high) == (again.low, again.high)  # a fixed seed (5 cutoffs: 126 distinct resamples)


class Drift:
    """The last value plus a small drift (no quantiles beyond the mean)."""

    def fit(self, history: SeriesPanel) -> None:
        self.last = history.values[:, -1]

    def predict(self, horizon: int) -> Forecast:
        mean = self.last[:, None] + 0.3 * np.arange(1, horizon + 1)
        return Forecast(mean=mean, quantiles=np.stack([mean - 3, mean, mean + 3], axis=-1))


def test_paired_rows_of_a_backtest_match_its_mase_scores():
    rng = np.random.default_rng(3)
    truth = 10 + 3 * np.sin(np.arange(120) * 2 * np.pi / 7)[None, :] + rng.uniform(0, 5, (3, 1))
    panel = panel_from_arrays(rng.poisson(truth).astype(float), oracle_mean=truth)
    plan = BacktestPlan.of(panel, horizons=(3, 7), n_origins=4, step=5)
    result = backtest(panel, {"drift": Drift, "naive": lambda: SeasonalNaive(), "oracle": TrueMean}, plan)
    mase = {(r["forecaster"], r["horizon"]): r["mase"] for r in result.scores()}
    rows = paired.paired_rows(result, "drift", n_resamples=999)
    assert [(r["horizon"], r["versus"]) for r in rows] == [
        (h, v) for h in (3, 7) for v in ("naive", "oracle", paired.BEST_SINGLE)]
    for r in rows:
        assert r["ratio"] == pytest.approx(mase["drift", r["horizon"]] / mase[r["compared"], r["horizon"]])
        assert r["mase"] == pytest.approx(mase["drift", r["horizon"]])
        assert r["cutoffs"] == 4 and r["ci_low"] <= r["ratio"] <= r["ci_high"]
        if r["versus"] == paired.BEST_SINGLE:
            assert r["compared"] == "naive"  # the oracle is no forecaster to pick
    assert paired.paired_rows(result, "missing") == [] and paired.paired_rows(
        backtest(panel, {"drift": Drift}, plan), "drift") == []
