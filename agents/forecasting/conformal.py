"""Split-conformal calibration of any forecaster's quantiles on rolling-origin residuals inside its history.

A forecaster's own band (in-sample residuals, a growth rule) can be far too
narrow or too wide. `Conformal` wraps it: at fit time it backtests the base on
a few rolling origins inside the history it was given (the last calibration
window ends at the history's end, so nothing after it is read), keeps the
signed errors y - mean per step ahead, each divided by its series' scale
(the mean absolute value before that origin) so that series of any volume
pool, and at predict time puts each quantile level q at mean + scale x the
conformal quantile of those errors at that step: the k-th smallest of n with
k = ceil((n + 1) q) for q >= 0.5 and k = floor((n + 1) q) for q < 0.5 (the
finite-sample correction of split conformal; clipped to [1, n]). The mean is
the base's, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from agents.forecasting.backtest import DEFAULT_HORIZONS
from agents.forecasting.base import Forecast, Forecaster, SeriesPanel, check_horizon, sorted_quantiles
from agents.forecasting.features import series_scale

SCALES = ("series", "none")


def conformal_offsets(scores: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """(levels,) split-conformal quantiles of `scores` (NaN dropped); NaN where there is no score."""
    values = np.sort(scores[np.isfinite(scores)])
    n = len(values)
    if n == 0:
        return np.full(len(levels), np.nan)
    ranks = [math.ceil((n + 1) * q) if q >= 0.5 else math.floor((n + 1) * q) for q in levels]
    return values[np.clip(ranks, 1, n) - 1]


class Conformal:
    """Any forecaster with its quantiles replaced by split-conformal ones from rolling-origin residuals.

    `base`: the forecaster (an instance, refitted at every calibration origin,
    or a function that builds a fresh one). `origins` calibration origins,
    `step` periods apart (default `max_horizon`), the last one `max_horizon`
    periods before the history's end; origins that would leave less than
    max(2 seasons, 8) periods of history are dropped (an error if none is
    left). `max_horizon`: the steps calibrated (default: the longest default
    backtest horizon of the frequency); a longer forecast reuses the last
    step's offsets. `scale`: "series" (errors relative to each series' mean
    absolute value, pooled over series) or "none" (in the data's units).
    """

    name = "conformal"

    def __init__(self, base: Forecaster | Callable[[], Forecaster], origins: int = 4, step: int | None = None,
                 max_horizon: int | None = None, scale: str = "series") -> None:
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
        self.base = base
        self.origins = origins
        self.step = step
        self.max_horizon = max_horizon
        self.scale = scale
        self.calibration_origins: tuple[int, ...] = ()
        self.offsets: np.ndarray | None = None  # (max_horizon, levels) scaled conformal offsets
        self.levels: tuple[float, ...] = ()
        self._model: Forecaster | None = None
        self._history: SeriesPanel | None = None

    def _fresh(self) -> Forecaster:
        """The base: the same instance each time, or a new one from its builder."""
        if hasattr(self.base, "fit") and hasattr(self.base, "predict") and not isinstance(self.base, type):
            return self.base  # type: ignore[return-value]
        return self.base()  # type: ignore[operator]

    def _scale(self, values: np.ndarray) -> np.ndarray:
        """(n,) each series' scale for the errors: its mean absolute value, or 1."""
        return series_scale(values) if self.scale == "series" else np.ones(values.shape[0])

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
        scores, levels = [], None
        for origin in origins:
            model = self._fresh()
            model.fit(history.until(origin, future=horizon))
            forecast = model.predict(horizon)
            levels = forecast.levels if levels is None else levels
            actual = history.values[:, origin: origin + horizon]
            scores.append((actual - forecast.mean) / self._scale(history.values[:, :origin])[:, None])
        stacked = np.concatenate(scores, axis=0)  # (origins x n, horizon)
        self.offsets = np.stack([conformal_offsets(stacked[:, j], levels) for j in range(horizon)])
        self.levels = levels
        self.calibration_origins = origins
        self._model = self._fresh()
        self._model.fit(history)
        self._history = history

    def predict(self, horizon: int) -> Forecast:
        """The base's mean; quantiles at mean + scale x the calibrated offset of each step (the base's own
        quantiles at a step without calibration errors)."""
        history = check_horizon(self.name, horizon, self._history)
        forecast = self._model.predict(horizon)
        if forecast.levels != self.levels:
            raise ValueError(f"Conformal: the base forecast levels {forecast.levels}, calibrated on {self.levels}")
        steps = np.minimum(np.arange(horizon), len(self.offsets) - 1)
        offsets = self.offsets[steps]  # (horizon, levels)
        scaled = offsets[None, :, :] * self._scale(history.values)[:, None, None]
        quantiles = sorted_quantiles(forecast.mean, np.nan_to_num(scaled))
        missing = np.isnan(offsets).any(axis=1)  # no calibration error at that step: keep the base's band
        quantiles[:, missing] = forecast.quantiles[:, missing]
        return Forecast(mean=forecast.mean, quantiles=quantiles, levels=forecast.levels)
