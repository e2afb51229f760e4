"""Split-conformal calibration of any forecaster's quantiles on rolling-origin residuals inside its history.

A forecaster's own band (in-sample residuals, a growth rule) can be far too
narrow or too wide. `Conformal` wraps it: at fit time it backtests the base on
a few rolling origins inside the history it was given (the last calibration
window ends at the history's end, so nothing after it is read) and keeps the
signed errors y - mean per step ahead, each divided by a scale; at predict time
it puts each quantile level q at mean + scale x the conformal quantile of those
scaled errors at that step. The mean is the base's, unchanged.

The scale of an error, or of a forecast point (`scale`):
- `series`: the series' mean absolute value (pooled, series of any volume
  share one set of errors);
- `band`: the width of the base's own band at that point (its highest minus its
  lowest quantile), at least BAND_FLOOR x the series' mean absolute value:
  normalised conformal, where the calibrated band keeps the base's shape (wide
  on busy days, promotions and holidays, narrow on quiet ones) and only its
  width is corrected; a base with one quantile level has no band, so it reduces
  to `series`;
- `none`: 1, errors in the data's units.
At fit time a scale reads the history before that calibration origin and the
forecast made there; at predict time the whole fit history and the final
forecast.

The conformal quantile of level q is the k-th smallest of the n errors with
k = ceil((n + 1) q) for q >= 0.5 and k = floor((n + 1) q) for q < 0.5 (the
finite-sample correction of split conformal; clipped to [1, n]).

The correction needs enough errors per step: with n of them the band between
the 0.1 and 0.9 levels covers (k_hi - k_lo) / (n + 1) in expectation, which is
0.8 for n = 9, 19, 29, ..., up to 2 / (n + 1) more in between (0.895 for
n = 18); below 9 the ranks are clipped to the smallest and largest error and
the band covers only (n - 1) / (n + 1) (60% for n = 4, e.g. one series and 4
origins). So by default (`pool_steps`) a step whose errors give a band whose
expected coverage is more than POOL_TOLERANCE from its nominal one borrows the
errors of its neighbouring steps, 1, 2, ... either side, as far as the first
window whose count is within POOL_TOLERANCE (or, failing that, the closest);
with 0.1/0.9 levels a count pools unless it is 9, 19-20, 29-30, 39-41, ... or
179 or more (100 series x 4 origins keep their own). Pooling adds errors, not
windows: where an error persists across the steps of a window (a level the
base misses) the pooled errors of one series are worth about its windows.
`calibration_errors` holds the count each step's offsets came from; `fit` logs
which steps were pooled, and a warning when even pooled the ranks are clipped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from agents.forecasting.backtest import DEFAULT_HORIZONS
from agents.forecasting.base import Forecast, Forecaster, SeriesPanel, check_horizon, sorted_quantiles
from agents.forecasting.features import series_scale

log = logging.getLogger("agents.forecasting.conformal")

SCALES = ("series", "band", "none")
BAND_FLOOR = 0.01  # scale="band": the smallest scale, as a fraction of the series' mean absolute value (a base
                  # whose band is empty, e.g. on a constant series, still gets a band). Small, so that a quiet
                  # series' narrow band is kept (10% undid the point on 2%-noise series); the cost: an error
                  # where the base's band collapsed becomes a large score, which the pooled ranks absorb only
                  # while such points are few
POOL_TOLERANCE = 0.01  # pool_steps: how far the band's expected coverage from its n errors may be from nominal


def conformal_ranks(n: int, levels: tuple[float, ...]) -> list[int]:
    """The split-conformal rank (1-based, unclipped) of each level among `n` scores."""
    return [math.ceil((n + 1) * q) if q >= 0.5 else math.floor((n + 1) * q) for q in levels]


def conformal_offsets(scores: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """(levels,) split-conformal quantiles of `scores` (NaN dropped); NaN where there is no score."""
    values = np.sort(scores[np.isfinite(scores)])
    n = len(values)
    if n == 0:
        return np.full(len(levels), np.nan)
    return values[np.clip(conformal_ranks(n, levels), 1, n) - 1]


def clipped_levels(n: int, levels: tuple[float, ...]) -> tuple[float, ...]:
    """The levels whose split-conformal rank among `n` scores falls outside [1, n] (too few scores for them)."""
    return tuple(q for q, k in zip(levels, conformal_ranks(n, levels)) if not 1 <= k <= n)


def expected_coverage(n: int, low: float, high: float) -> float:
    """Expected coverage of the band between levels `low` and `high` from `n` exchangeable scores, ranks clipped
    to [1, n] as `conformal_offsets` clips them: (k_high - k_low) / (n + 1)."""
    k_low, k_high = np.clip(conformal_ranks(n, (low, high)), 1, n)
    return float(k_high - k_low) / (n + 1)


def pooling_windows(counts: np.ndarray, levels: tuple[float, ...]) -> list[slice]:
    """For each step, the steps whose errors calibrate it: itself, widened by 1, 2, ... neighbours either side
    (cut at the ends) until the band between the lowest and highest level has an expected coverage from that many
    errors within POOL_TOLERANCE of its nominal one (else the window closest to it, the smallest such).
    `counts`: (horizon,) the finite errors per step."""
    low, high = min(levels), max(levels)
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    windows = []
    for j in range(len(counts)):
        best, best_gap = None, math.inf
        for radius in range(len(counts)):
            window = slice(max(0, j - radius), min(len(counts), j + radius + 1))
            n = int(cumulative[window.stop] - cumulative[window.start])
            gap = abs(expected_coverage(n, low, high) - (high - low)) if n else math.inf
            if gap < best_gap - 1e-12:  # a tie in floating point keeps the narrower window
                best, best_gap = window, gap
            if gap <= POOL_TOLERANCE or (window.start == 0 and window.stop == len(counts)):
                break
        windows.append(best if best is not None else slice(j, j + 1))  # no errors anywhere: its own (none)
    return windows


def count_range(values: np.ndarray) -> str:
    """The range of some counts as text for a log line, e.g. 4 or 4-6."""
    low, high = int(np.min(values)), int(np.max(values))
    return str(low) if low == high else f"{low}-{high}"


class Conformal:
    """Any forecaster with its quantiles replaced by split-conformal ones from rolling-origin residuals.

    `base`: the forecaster (an instance, refitted at every calibration origin,
    or a function that builds a fresh one). `origins` calibration origins,
    `step` periods apart (default `max_horizon`), the last one `max_horizon`
    periods before the history's end; origins that would leave less than
    max(2 seasons, 8) periods of history are dropped (an error if none is
    left), as are those where the base cannot be fitted (a ValueError, e.g.
    auto, which validates inside that shorter history; logged; an error if
    none is left). `max_horizon`: the steps calibrated (default: the longest
    default backtest horizon of the frequency); a longer forecast reuses the
    last step's offsets (with "band" times the base's band at each later step,
    so its width keeps following the base's). `scale`: "series" (errors
    relative to each series' mean absolute value, pooled over series), "band"
    (relative to the base's own band at each point, floored) or "none" (in the
    data's units); the module docstring says more. `pool_steps`: a step whose count of errors puts its
    band's expected coverage off nominal borrows its neighbours' (default); False: each step its own errors.
    """

    name = "conformal"

    def __init__(self, base: Forecaster | Callable[[], Forecaster], origins: int = 4, step: int | None = None,
                 max_horizon: int | None = None, scale: str = "series", pool_steps: bool = True) -> None:
        if not (hasattr(base, "fit") and hasattr(base, "predict")) and not callable(base):
            raise ValueError(f"Conformal: base {base!r} is not a forecaster; allowed: a forecaster config")
        if isinstance(origins, bool) or not isinstance(origins, int) or origins < 1:
            raise ValueError(f"Conformal: origins {origins!r} is not allowed; allowed: an integer >= 1")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
            raise ValueError(f"Conformal: step {step!r} is not allowed; allowed: an integer >= 1 or null")
        if max_horizon is not None and (isinstance(max_horizon, bool) or not isinstance(max_horizon, int)
                                        or max_horizon < 1):
            raise ValueError(f"Conformal: max_horizon {max_horizon!r} is not allowed; allowed: an integer >= 1 "
                             f"or null")
        if scale not in SCALES:
            raise ValueError(f"Conformal: scale {scale!r} is not allowed; allowed: {', '.join(map(repr, SCALES))}")
        if not isinstance(pool_steps, bool):
            raise ValueError(f"Conformal: pool_steps {pool_steps!r} is not allowed; allowed: true or false")
        self.base = base
        self.origins = origins
        self.step = step
        self.max_horizon = max_horizon
        self.scale = scale
        self.pool_steps = pool_steps
        self.calibration_origins: tuple[int, ...] = ()
        self.calibration_errors: np.ndarray | None = None  # (max_horizon,) the errors each step's offsets came from
        self.offsets: np.ndarray | None = None  # (max_horizon, levels) scaled conformal offsets
        self.levels: tuple[float, ...] = ()
        self._model: Forecaster | None = None
        self._history: SeriesPanel | None = None

    def _fresh(self) -> Forecaster:
        """The base: the same instance each time, or a new one from its builder."""
        if hasattr(self.base, "fit") and hasattr(self.base, "predict") and not isinstance(self.base, type):
            return self.base  # type: ignore[return-value]
        return self.base()  # type: ignore[operator]

    def _scale(self, forecast: Forecast, values: np.ndarray) -> np.ndarray:
        """(n, horizon) the scale of each error of `forecast`, made after the observed `values` (n, T)."""
        if self.scale == "none":
            return np.ones_like(forecast.mean)
        mean_absolute = series_scale(values)[:, None]
        if self.scale == "series":
            return np.broadcast_to(mean_absolute, forecast.mean.shape)
        band = np.nan_to_num(forecast.quantiles[..., -1] - forecast.quantiles[..., 0])
        return np.maximum(band, BAND_FLOOR * mean_absolute)

    def fit(self, history: SeriesPanel) -> None:
        """Backtest the base on the calibration origins inside `history`, keep the offsets, fit it on all of it."""
        horizon = self.max_horizon or DEFAULT_HORIZONS[history.freq.name][-1]
        step = self.step or horizon
        min_train = max(2 * history.freq.season_length, 8)
        last = history.length - horizon
        origins = tuple(o for o in (last - step * i for i in reversed(range(self.origins))) if o >= min_train)
        if not origins:
            raise ValueError(f"Conformal: a history of {history.length} periods is too short for a calibration "
                             f"origin with max_horizon {horizon} and {min_train} periods before it; allowed: a "
                             f"smaller max_horizon or a longer history")
        scores, levels, kept = [], None, []
        for origin in origins:
            model = self._fresh()
            try:
                model.fit(history.until(origin, future=horizon))
            except ValueError as error:  # a base that needs more history (auto validates inside it): left out
                log.warning("conformal: the base cannot be fitted on the %d periods before calibration origin %d "
                            "(%s); origin left out", origin, origin, error)
                last_error = error
                continue
            forecast = model.predict(horizon)
            levels = forecast.levels if levels is None else levels
            actual = history.values[:, origin: origin + horizon]
            scores.append((actual - forecast.mean) / self._scale(forecast, history.values[:, :origin]))
            kept.append(origin)
        if not scores:
            raise ValueError(f"Conformal: the base cannot be fitted at any calibration origin {list(origins)} of a "
                             f"history of {history.length} periods ({last_error}); allowed: fewer origins, a smaller "
                             f"max_horizon or a longer history")
        origins = tuple(kept)
        stacked = np.concatenate(scores, axis=0)  # (origins x n, horizon)
        counts = np.isfinite(stacked).sum(axis=0)
        windows = pooling_windows(counts, levels) if self.pool_steps else [slice(j, j + 1) for j in range(horizon)]
        self.offsets = np.stack([conformal_offsets(stacked[:, w].ravel(), levels) for w in windows])
        self.calibration_errors = np.array([counts[w].sum() for w in windows])
        widths = np.array([w.stop - w.start for w in windows])
        if widths.max() > 1:
            log.info("conformal: %s errors per step (%d series x %d origins), whose %g-%g band is more than %g "
                     "point from its nominal coverage in expectation: each step calibrated on the errors of %s "
                     "steps around it (%s)", count_range(counts), history.n, len(origins), min(levels), max(levels),
                     100 * POOL_TOLERANCE, count_range(widths), count_range(self.calibration_errors))
        fewest = int(self.calibration_errors.min())
        if fewest and clipped_levels(fewest, levels):
            log.warning("conformal: %d calibration errors at a step (%d series x %d origins%s) are too few for "
                        "the levels %s, which take the smallest or largest error: the band from %g to %g covers "
                        "%.0f%% in expectation, not %.0f%%; allowed: more origins (one series needs 9 errors for "
                        "the 0.1/0.9 levels)", fewest, history.n, len(origins),
                        ", neighbouring steps pooled" if widths.max() > 1 else "", list(clipped_levels(fewest, levels)),
                        min(levels), max(levels), 100 * expected_coverage(fewest, min(levels), max(levels)),
                        100 * (max(levels) - min(levels)))
        self.levels = levels
        self.calibration_origins = origins
        self._model = self._fresh()
        self._model.fit(history)
        self._history = history

    def predict(self, horizon: int) -> Forecast:
        """The base's mean; quantiles at mean + scale x the calibrated offset of each step (the base's own
        quantiles at a step without calibration errors; with scale "band" the scale is the base's band of
        this forecast)."""
        history = check_horizon(self.name, horizon, self._history)
        forecast = self._model.predict(horizon)
        if forecast.levels != self.levels:
            raise ValueError(f"Conformal: the base forecast levels {forecast.levels}, calibrated on {self.levels}")
        steps = np.minimum(np.arange(horizon), len(self.offsets) - 1)
        offsets = self.offsets[steps]  # (horizon, levels)
        scaled = offsets[None, :, :] * self._scale(forecast, history.values)[..., None]
        quantiles = sorted_quantiles(forecast.mean, np.nan_to_num(scaled))
        missing = np.isnan(offsets).any(axis=1)  # no calibration error at that step: keep the base's band
        quantiles[:, missing] = forecast.quantiles[:, missing]
        return Forecast(mean=forecast.mean, quantiles=quantiles, levels=forecast.levels)
