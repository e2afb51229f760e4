"""Features shared by the learned forecasters: calendar encodings and per-series scale."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from agents.forecasting.base import Frequency


def calendar_features(dates: pd.DatetimeIndex, freq: Frequency) -> np.ndarray:
    """(T, 4) float32: sin/cos of the position in the season and in the year (zeros where they do not apply).

    Daily data: day of week and day of year; weekly: week of year (twice);
    monthly: month; quarterly: quarter; yearly: none.
    """
    t = len(dates)
    out = np.zeros((t, 4), dtype=np.float32)
    if freq.season_length > 1:
        if freq.name == "daily":
            phase = dates.dayofweek.to_numpy() / 7
        elif freq.name == "hourly":
            phase = dates.hour.to_numpy() / 24
        elif freq.name == "weekly":
            phase = (dates.isocalendar().week.to_numpy().astype(float) - 1) / 52
        elif freq.name == "monthly":
            phase = (dates.month.to_numpy() - 1) / 12
        else:  # quarterly
            phase = (dates.quarter.to_numpy() - 1) / 4
        out[:, 0] = np.sin(2 * np.pi * phase)
        out[:, 1] = np.cos(2 * np.pi * phase)
    if freq.name in ("daily", "hourly", "weekly"):
        year = (dates.dayofyear.to_numpy() - 1) / 365.25
        out[:, 2] = np.sin(2 * np.pi * year)
        out[:, 3] = np.cos(2 * np.pi * year)
    return out


def series_scale(values: np.ndarray) -> np.ndarray:
    """(n,) mean absolute value of each series' observations (NaN ignored), at least a small positive floor."""
    with warnings.catch_warnings():  # a series with no observation yet: "Mean of empty slice", floored below
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmean(np.abs(values), axis=1)
    return np.where(np.isfinite(scale) & (scale > 1e-6), scale, 1.0)
