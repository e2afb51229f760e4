"""Forecast error metrics over arrays of actuals and forecasts (any shape; NaN actuals are skipped).

MAPE is undefined where the actual is zero: those points are left out, and the
result is NaN when none is left (intermittent demand). sMAPE and MASE are the
usual stand-ins: sMAPE counts a point where both are zero as no error, MASE
scales the MAE by the in-sample MAE of the seasonal naive forecast.

MAE, RMSE, MAPE, sMAPE, the pinball loss and coverage are utilsforecast's
losses (`utilsforecast.losses`, the ones `utilsforecast.evaluation.evaluate`
runs on a backtest's cv.csv), applied to all the points at once as one series:
every point counts the same, as in the README's definitions. utilsforecast's
MAPE and sMAPE are fractions, and its sMAPE is half the README's (|a - f| /
(|a| + |f|), 0 to 1): they are scaled to percent here. MASE stays hand-written
(see `mase`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _valid(actual: np.ndarray, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actual, forecast = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    if actual.shape != forecast.shape:
        raise ValueError(f"metrics: actual {actual.shape} and forecast {forecast.shape} differ in shape")
    keep = np.isfinite(actual)
    return actual[keep], forecast[keep]


def _one_series(actual: np.ndarray, **columns: np.ndarray) -> pd.DataFrame:
    """The points as one series of utilsforecast's frame: unique_id, y and one column per forecast."""
    return pd.DataFrame({"unique_id": np.zeros(actual.size, dtype=np.int64), "y": actual,
                         **{name: np.asarray(values, dtype=float) for name, values in columns.items()}})


def _loss(loss: str, actual: np.ndarray, forecast: np.ndarray) -> float:
    """utilsforecast.losses.<loss> of the finite actuals and their forecasts, pooled (NaN when none)."""
    from utilsforecast import losses

    a, f = _valid(actual, forecast)
    if not a.size:
        return float("nan")
    return float(getattr(losses, loss)(_one_series(a, f=f), models=["f"])["f"].iloc[0])


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error."""
    return _loss("mae", actual, forecast)


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error (of all the points pooled; utilsforecast's evaluate takes it per series)."""
    return _loss("rmse", actual, forecast)


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error in percent, over the points with a non-zero actual (NaN if none)."""
    # utilsforecast divides by NaN where the actual is 0, and pandas' mean skips those points
    return 100 * _loss("mape", actual, forecast)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent (0 to 200): 2|a - f| / (|a| + |f|), a point where both are 0 counting 0."""
    return 200 * _loss("smape", actual, forecast)  # utilsforecast's: |a - f| / (|a| + |f|), 0 where both are 0


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
    # Hand-written: utilsforecast.losses.mase works out the scale from a training frame itself and divides by a
    # zero scale (a flat history) giving inf, where the README leaves such a series out (naive_scale: NaN).
    scaled = scaled_errors(actual, forecast, scale)
    scaled = scaled[np.isfinite(scaled)]
    return float(np.mean(scaled)) if scaled.size else float("nan")


def scaled_errors(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each point's absolute error over its series' `scale` (rows of `actual`, any trailing axes): the terms that
    `mase` averages (NaN or inf where the actual, the forecast or the scale is missing; `mase` skips them)."""
    actual, forecast = np.atleast_2d(np.asarray(actual, float)), np.atleast_2d(np.asarray(forecast, float))
    scale = np.asarray(scale, dtype=float).reshape(-1, *([1] * (actual.ndim - 1)))
    with np.errstate(all="ignore"):
        return np.abs(actual - forecast) / scale


def quantile_loss(actual: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...]) -> float:
    """Mean pinball loss over the levels: for level q, max(q (a - f), (q - 1)(a - f)), averaged over points
    and levels (quantiles has one more trailing axis than actual, one entry per level)."""
    from utilsforecast import losses

    actual = np.asarray(actual, dtype=float)
    by_level = []
    for i, q in enumerate(levels):
        a, f = _valid(actual, np.asarray(quantiles)[..., i])
        by_level.append(float(losses.quantile_loss(_one_series(a, f=f), models={"q": "f"}, q=q)["q"].iloc[0])
                        if a.size else np.nan)
    return float(np.mean(by_level))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside [lower, upper] (NaN actuals skipped)."""
    from utilsforecast import losses

    actual = np.asarray(actual, dtype=float)
    keep = np.isfinite(actual)
    if not keep.any():
        return float("nan")
    frame = _one_series(actual[keep], **{"f-lo-80": np.asarray(lower)[keep], "f-hi-80": np.asarray(upper)[keep]})
    return float(losses.coverage(frame, models=["f"], level=80)["f"].iloc[0])  # both ends inside, as here
