"""Two forecasters on the same backtest points: the ratio of their MASE and its 95% CI by a paired bootstrap over
cutoffs.

The steps after one origin share its history and its fit, so they are not
independent draws: the bootstrap resamples whole origins (cutoffs), the same
ones for both forecasters (`scipy.stats.bootstrap`, `paired=True`, percentile
interval, a fixed seed). The ratio of a resample is computed as scores.csv
computes MASE at horizon h, each forecaster's scaled errors pooled over every
finite point of the resampled cutoffs (all series, steps 1..h), then one mean
over the other, so a cutoff with more points weighs more, as it does there.

The percentile interval is BCa's simpler sibling: BCa is undefined when every
resample gives the same ratio (A = 2 x B everywhere: the interval is [2, 2]) and
its jackknife rests on as few points as there are cutoffs. With n cutoffs the
bootstrap sees only resamples of those n origins; with 3-10 of them the interval
is coarse and, as any bootstrap on a handful of units, tends to be too narrow
rather than too wide. Below `MIN_CUTOFFS` (3) there is no interval (None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.forecasting.backtest import BacktestResult

CONFIDENCE = 0.95
MIN_CUTOFFS = 3
N_RESAMPLES = 9999
SEED = 0


@dataclass(frozen=True)
class RatioCI:
    """MASE of A over MASE of B, its confidence interval (None with fewer than `MIN_CUTOFFS` cutoffs), and the
    number of cutoffs it rests on."""

    ratio: float
    low: float | None
    high: float | None
    cutoffs: int

    @property
    def verdict(self) -> str:
        """`better` (A below B: the interval's top under 1), `worse` (its bottom above 1), `tie`, or `n/a` (no
        interval)."""
        if self.low is None or self.high is None or not (np.isfinite(self.low) and np.isfinite(self.high)):
            return "n/a"
        return "better" if self.high < 1 else "worse" if self.low > 1 else "tie"


def mase_ratio(a: np.ndarray, b: np.ndarray, cutoffs: Sequence | np.ndarray | None = None, *,
               confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> RatioCI:
    """MASE of A / MASE of B from per-point scaled absolute errors (`metrics.scaled_errors`) of two forecasters on
    the same points, with a paired bootstrap interval over cutoffs.

    `a` and `b` have the same shape: cutoffs on axis 0 (any trailing axes: series, steps), or one axis of points
    with `cutoffs` giving each point's cutoff. Non-finite errors are skipped, each forecaster's separately (as
    `metrics.mase` skips them). Fewer than `MIN_CUTOFFS` cutoffs with a finite error: the ratio, no interval.
    """
    from scipy import stats

    sums_a, counts_a, sums_b, counts_b = _by_cutoff(a, b, cutoffs)
    ratio = float(_ratio(sums_a, counts_a, sums_b, counts_b))
    n = len(sums_a)
    if n < MIN_CUTOFFS:
        return RatioCI(ratio=ratio, low=None, high=None, cutoffs=n)
    with np.errstate(all="ignore"):
        result = stats.bootstrap((sums_a, counts_a, sums_b, counts_b), _ratio, paired=True, vectorized=True,
                                 confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                                 rng=np.random.default_rng(seed))
    low, high = (float(x) for x in result.confidence_interval)
    return RatioCI(ratio=ratio, low=low, high=high, cutoffs=n)


def _by_cutoff(a: np.ndarray, b: np.ndarray, cutoffs: Sequence | np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cutoff: the sum and the number of finite errors of A, then of B (cutoffs with none dropped)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"mase_ratio: a {a.shape} and b {b.shape} differ in shape")
    if cutoffs is not None:
        labels = np.asarray(cutoffs)
        if a.ndim != 1 or labels.shape != a.shape:
            raise ValueError(f"mase_ratio: with cutoffs, a and b are one axis of points as long as cutoffs "
                             f"({labels.shape}); got {a.shape}")
        _, group = np.unique(labels, return_inverse=True)
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
        a = [a[order][i:j] for i, j in zip(starts, [*starts[1:], a.size])]
        b = [b[order][i:j] for i, j in zip(starts, [*starts[1:], b.size])]
    elif a.ndim == 0:
        raise ValueError("mase_ratio: a and b need an axis of cutoffs")
    else:
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    sums_a, counts_a, sums_b, counts_b = (np.array([_sum(x) for x in a]), np.array([_count(x) for x in a]),
                                          np.array([_sum(x) for x in b]), np.array([_count(x) for x in b]))
    keep = (counts_a > 0) | (counts_b > 0)
    return sums_a[keep], counts_a[keep], sums_b[keep], counts_b[keep]


def _sum(x: np.ndarray) -> float:
    return float(np.sum(x[np.isfinite(x)]))


def _count(x: np.ndarray) -> float:
    return float(np.count_nonzero(np.isfinite(x)))


def _ratio(sums_a: np.ndarray, counts_a: np.ndarray, sums_b: np.ndarray, counts_b: np.ndarray,
           axis: int = -1) -> np.ndarray:
    """Pooled mean of A over pooled mean of B (vectorised over leading axes, for the bootstrap)."""
    with np.errstate(all="ignore"):
        return (np.sum(sums_a, axis=axis) / np.sum(counts_a, axis=axis)) / (np.sum(sums_b, axis=axis)
                                                                              / np.sum(counts_b, axis=axis))


BEST_SINGLE = "best single"


def paired_rows(result: BacktestResult, subject: str, *, exclude: Sequence[str] = ("oracle",),
                confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> list[dict]:
    """Per horizon, `subject` against every other forecaster of the backtest: MASE of each, the ratio, its
    interval, the cutoffs, the verdict; then a `best single` row, against the one (not in `exclude`: the
    oracle is no forecaster one could pick) with the lowest MASE at that horizon in hindsight.

    Each row: forecaster, horizon, versus (a forecaster's name or `best single`), compared (the forecaster it
    is), mase, mase_compared, ratio, ci_low, ci_high, cutoffs, verdict. [] when there is nothing to compare.
    """
    others = [name for name in result.runs if name != subject]
    if subject not in result.runs or not others:
        return []
    errors = {name: result.scaled_errors(name) for name in result.runs}
    rows = []
    for h in result.plan.horizons:
        at = []
        for name in others:
            ci = mase_ratio(errors[subject][..., :h], errors[name][..., :h], confidence=confidence,
                            n_resamples=n_resamples, seed=seed)
            at.append({"forecaster": subject, "horizon": h, "versus": name, "compared": name,
                       "mase": _pooled(errors[subject][..., :h]), "mase_compared": _pooled(errors[name][..., :h]),
                       "ratio": ci.ratio, "ci_low": ci.low, "ci_high": ci.high, "cutoffs": ci.cutoffs,
                       "verdict": ci.verdict})
        singles = [r for r in at if r["compared"] not in exclude and np.isfinite(r["mase_compared"])]
        rows += at
        if singles:
            rows.append({**min(singles, key=lambda r: r["mase_compared"]), "versus": BEST_SINGLE})
    return rows


def _pooled(errors: np.ndarray) -> float:
    finite = errors[np.isfinite(errors)]
    return float(finite.mean()) if finite.size else float("nan")
