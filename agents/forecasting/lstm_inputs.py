"""The LSTM forecaster's inputs in numpy only: what `agents.forecasting.lstm` trains on and what a saved LSTM
(agents.forecasting.saved, an ONNX network run by onnxruntime) forecasts from, without torch.

`input_arrays` turns a panel into per-period arrays (the fitted normalisation applied); `last_window` gathers,
for every series, the inputs of the one window that starts right after the panel's last value (the forecast
window). The arithmetic after the gather (window scale, trend line, log1p, the network, scaling back) happens in
the model (`lstm._Serving`, exported to ONNX), so numpy only indexes here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from agents.forecasting.base import SeriesPanel
from agents.forecasting.features import calendar_features, series_scale

MIN_WINDOW_SCALE = 0.1  # the floor of a window's scale, relative to its series' scale

# the inputs of the serving model (lstm._Serving), in order: name -> dtype
SERVING_INPUTS = {"level": np.float32, "past_known": np.float32, "context_value": np.float32,
                  "context_observed": np.float32, "future_known": np.float32, "reference_value": np.float32,
                  "codes": np.int64, "log_scale": np.float32, "scale": np.float32}
SERVING_OUTPUTS = ("mean", "quantiles")


@dataclass(frozen=True)
class Normalisation:
    """What a fit learns about its inputs besides the weights: covariate mean and sd, the mean and sd of the
    series' log scales, the context length and the season (the lag of the reference value)."""

    cov_mean: np.ndarray  # (k,)
    cov_std: np.ndarray   # (k,)
    scale_mean: float
    scale_std: float
    context: int
    season: int

    def to_json(self) -> dict:
        return {"cov_mean": [float(x) for x in self.cov_mean], "cov_std": [float(x) for x in self.cov_std],
                "scale_mean": float(self.scale_mean), "scale_std": float(self.scale_std),
                "context": int(self.context), "season": int(self.season)}

    @classmethod
    def from_json(cls, data: dict) -> Normalisation:
        return cls(cov_mean=np.asarray(data["cov_mean"], np.float64), cov_std=np.asarray(data["cov_std"], np.float64),
                   scale_mean=float(data["scale_mean"]), scale_std=float(data["scale_std"]),
                   context=int(data["context"]), season=int(data["season"]))


def rolling(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Causal rolling mean and std (n, T) over the last `window` periods up to each one; NaN are skipped."""
    observed = np.isfinite(values)
    x = np.where(observed, values, 0.0)

    def window_sum(a: np.ndarray) -> np.ndarray:
        total = np.concatenate([np.zeros((len(a), 1)), np.cumsum(a, axis=1)], axis=1)
        return total[:, 1:] - total[:, :-1][:, np.maximum(np.arange(a.shape[1]) - window + 1, 0)]

    count, total, squares = window_sum(observed.astype(float)), window_sum(x), window_sum(x * x)
    with np.errstate(all="ignore"):
        mean = total / count
        std = np.sqrt(np.maximum(squares - total * mean, 0.0) / (count - 1))
    return np.where(count > 0, mean, 0.0), np.where(count > 1, std, 0.0)


def rolling_windows(season: int) -> tuple[int, int]:
    """The lengths of the short and the long rolling window of the level inputs."""
    return max(season, 2), max(4 * season, 8)


def level_lags(season: int) -> np.ndarray:
    """How far back of its step each level input (value, lag, rolling mean, sd, mean, sd) reads on average; NaN
    for the sds (a spread, not a level). The LSTM's trend option subtracts its line at that point."""
    short, long = rolling_windows(season)
    return np.array([0.0, season, (short - 1) / 2, np.nan, (long - 1) / 2, np.nan])


def input_arrays(history: SeriesPanel, max_horizon: int, norm: Normalisation) -> dict[str, np.ndarray]:
    """Per-step level inputs "level" (n, T, 6: value, lag, two rolling means and sds, over the series' scale, not
    yet logged), known inputs "known" (n, T + max_horizon, G: calendar and normalised covariates, zero where not
    known), category "codes" (n, c), normalised "log_scale" (n,), "scale" (n,), the series-scaled values
    "value" (NaN as 0), "observed" (n, T) and "target" (series-scaled, NaN kept); float32, but codes (int64) and
    observed (bool)."""
    n, t = history.values.shape
    season = history.freq.season_length
    scale = series_scale(history.values)
    scaled = history.values / scale[:, None]
    lag = np.full_like(scaled, np.nan)
    lag[:, season:] = scaled[:, :-season]
    short, long = rolling_windows(season)
    level = np.stack([scaled, lag, *rolling(scaled, short), *rolling(scaled, long)], axis=2)
    level = np.nan_to_num(level, nan=0.0)  # divided by each window's scale and logged later

    # known inputs up to T + max_horizon: the calendar (dates extended past the panel's), the covariates where
    # known (zero after)
    width = t + max_horizon
    dates = history.dates
    if len(dates) < width:
        dates = dates.append(pd.date_range(dates[-1], periods=width - len(dates) + 1, freq=history.freq.alias)[1:])
    stop = min(len(history.dates), width)
    cov = np.nan_to_num((history.covariates[:, :stop] - norm.cov_mean) / norm.cov_std)
    known = np.zeros((n, width, 4 + cov.shape[2]), np.float32)
    known[:, :, :4] = calendar_features(dates[:width], history.freq)[None]
    known[:, :stop, 4:] = cov

    codes = np.stack([np.asarray(c, np.int64) for c in history.categories.values()], axis=1) if \
        history.categories else np.zeros((n, 0), np.int64)
    log_scale = (np.log(scale) - norm.scale_mean) / norm.scale_std
    f32 = np.float32
    return {"level": level.astype(f32), "known": known, "codes": codes, "log_scale": log_scale.astype(f32),
            "scale": scale.astype(f32), "value": np.nan_to_num(scaled).astype(f32), "observed": np.isfinite(scaled),
            "target": scaled.astype(f32)}


def last_window(arrays: dict[str, np.ndarray], norm: Normalisation, horizon: int) -> dict[str, np.ndarray]:
    """The serving model's inputs (SERVING_INPUTS) for the window of every series that starts right after its
    last value and runs `horizon` steps (known inputs must reach that far): the same indexing as the LSTM's
    `_batch` at origin T, positions before the first period clamped to it (and not counted as observed)."""
    n, t = arrays["value"].shape
    back = np.arange(t - norm.context, t)
    index = np.maximum(back, 0)
    ahead = t + np.arange(horizon)
    earlier = np.maximum(t + np.arange(horizon) % norm.season - norm.season, 0)
    out = {"level": arrays["level"][:, index], "past_known": arrays["known"][:, index],
           "context_value": arrays["value"][:, index],
           "context_observed": (arrays["observed"][:, index] & (back >= 0)[None, :]).astype(np.float32),
           "future_known": arrays["known"][:, ahead], "reference_value": arrays["value"][:, earlier],
           "codes": arrays["codes"], "log_scale": arrays["log_scale"][:, None], "scale": arrays["scale"]}
    return {k: np.ascontiguousarray(v, dtype=SERVING_INPUTS[k]) for k, v in out.items()}
