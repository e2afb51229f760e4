"""Forecast error metrics over arrays of actuals and forecasts (any shape; NaN actuals are skipped).

MAPE is undefined where the actual is zero: those points are left out, and the
result is NaN when none is left (intermittent demand). sMAPE and MASE are the
usual stand-ins: sMAPE counts a point where both are zero as no error, MASE
scales the MAE by the in-sample MAE of the seasonal naive forecast.
"""

from __future__ import annotations

import numpy as np


def _valid(actual: np.ndarray, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actual, forecast = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    if actual.shape != forecast.shape:
        raise ValueError(f"metrics: actual {actual.shape} and forecast {forecast.shape} differ in shape")
    keep = np.isfinite(actual)
    return actual[keep], forecast[keep]


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error."""
    a, f = _valid(actual, forecast)
    return float(np.mean(np.abs(a - f))) if a.size else float("nan")


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error."""
    a, f = _valid(actual, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2))) if a.size else float("nan")


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error in percent, over the points with a non-zero actual (NaN if none)."""
    a, f = _valid(actual, forecast)
    nonzero = a != 0
    if not nonzero.any():
        return float("nan")
    return float(100 * np.mean(np.abs((a[nonzero] - f[nonzero]) / a[nonzero])))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent (0 to 200): 2|a - f| / (|a| + |f|), a point where both are 0 counting 0."""
    a, f = _valid(actual, forecast)
    if not a.size:
        return float("nan")
    denominator = np.abs(a) + np.abs(f)
    ratio = np.divide(2 * np.abs(a - f), denominator, out=np.zeros_like(a), where=denominator > 0)
    return float(100 * np.mean(ratio))


def naive_scale(history: np.ndarray, season_length: int) -> np.ndarray:
    """Per series (rows of `history`), the in-sample MAE of the seasonal naive forecast y_t = y_{t-m} (MASE's scale).

    NaN where a series has no pair of observations a season apart, or where that MAE is zero.
    """
    history = np.atleast_2d(np.asarray(history, dtype=float))
    m = max(int(season_length), 1)
    if history.shape[1] <= m:
        return np.full(history.shape[0], np.nan)
    diff = np.abs(history[:, m:] - history[:, :-m])
    with np.errstate(all="ignore"):
        scale = np.nanmean(diff, axis=1)
    return np.where(scale > 0, scale, np.nan)


def mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> float:
    """Mean absolute scaled error: each series' absolute errors (rows) over its `scale` (from `naive_scale`),
    averaged over every point of the series whose scale is defined."""
    actual, forecast = np.atleast_2d(np.asarray(actual, float)), np.atleast_2d(np.asarray(forecast, float))
    scale = np.asarray(scale, dtype=float).reshape(-1, *([1] * (actual.ndim - 1)))
    scaled = np.abs(actual - forecast) / scale
    scaled = scaled[np.isfinite(scaled)]
    return float(np.mean(scaled)) if scaled.size else float("nan")


def quantile_loss(actual: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...]) -> float:
    """Mean pinball loss over the levels: for level q, max(q (a - f), (q - 1)(a - f)), averaged over points
    and levels (quantiles has one more trailing axis than actual, one entry per level)."""
    actual = np.asarray(actual, dtype=float)
    losses = []
    for i, q in enumerate(levels):
        a, f = _valid(actual, np.asarray(quantiles)[..., i])
        error = a - f
        losses.append(np.mean(np.maximum(q * error, (q - 1) * error)) if a.size else np.nan)
    return float(np.mean(losses))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside [lower, upper] (NaN actuals skipped)."""
    actual = np.asarray(actual, dtype=float)
    keep = np.isfinite(actual)
    if not keep.any():
        return float("nan")
    a = actual[keep]
    return float(np.mean((a >= np.asarray(lower)[keep]) & (a <= np.asarray(upper)[keep])))
