"""The forecaster protocol: fit on a panel of history, predict a horizon as a mean and quantiles.

A `SeriesPanel` holds many regular series on one date index, their known
covariates (also for some periods past the last value: promotions planned,
prices set, holidays), and static categories per series (SKU, store, region).
`panel.until(end, future)` is the only view a forecaster is given: values before
`end`, covariates up to `end + future`. That is what keeps future demand away
from it, in backtests and in live twin runs alike.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import pandas as pd

QUANTILE_LEVELS = (0.1, 0.5, 0.9)
PERIODS_PER_YEAR = {"daily": 365.25, "weekly": 52.18, "monthly": 12, "quarterly": 4, "yearly": 1, "hourly": 8766}


@dataclass(frozen=True)
class Frequency:
    """A regular sampling frequency: pandas alias, a readable name and the season length used by seasonal models."""

    alias: str          # pandas offset alias, e.g. "D", "W-SUN", "MS", "QS-OCT"
    name: str           # daily, weekly, monthly, quarterly, yearly, hourly
    season_length: int  # 7, 52, 12, 4, 1, 24


@dataclass(frozen=True)
class SeriesPanel:
    """Many regular series on one shared date index.

    `values` (n, T) are the observations (NaN only before a series' first
    value); `dates`, `covariates` and `oracle_mean` cover T + `future` periods,
    the last `future` of them past the last value (known in advance).
    `shared_unit`: the twin's and an ERP's demand panels are in units sold
    (True); a file's series may not be (False unless `data.shared_unit`).
    """

    ids: tuple[str, ...]
    dates: pd.DatetimeIndex
    values: np.ndarray                      # (n, T) float64
    freq: Frequency
    covariates: np.ndarray                  # (n, T + future, k) float32 known covariates
    covariate_names: tuple[str, ...] = ()
    categories: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n,) int64 codes (sku, region, ...)
    oracle_mean: np.ndarray | None = None   # (n, T + future) true expected value, where known (twin data)
    shared_unit: bool = False               # every series counts the same unit (units sold), so errors in that
    # unit may be summed over the series, the busiest weighing most; False where units differ (GDP, a rate)

    def __post_init__(self) -> None:
        n, t = self.values.shape
        if len(self.ids) != n:
            raise ValueError(f"SeriesPanel: {len(self.ids)} ids for {n} series")
        if len(self.dates) < t or self.covariates.shape[:2] != (n, len(self.dates)):
            raise ValueError(f"SeriesPanel: dates {len(self.dates)} and covariates {self.covariates.shape[:2]} "
                             f"must cover the {t} values of {n} series and the same future periods")
        if self.oracle_mean is not None and self.oracle_mean.shape != (n, len(self.dates)):
            raise ValueError(f"SeriesPanel: oracle_mean {self.oracle_mean.shape}, expected {(n, len(self.dates))}")

    @property
    def n(self) -> int:
        """Number of series."""
        return self.values.shape[0]

    @property
    def length(self) -> int:
        """Number of observed periods T."""
        return self.values.shape[1]

    @property
    def future(self) -> int:
        """Periods past the last value whose covariates (and dates) are known."""
        return len(self.dates) - self.length

    def until(self, end: int, future: int = 0) -> SeriesPanel:
        """What a forecaster may see at origin `end`: values [0, end), covariates and dates [0, end + future)."""
        if not 1 <= end <= self.length:
            raise ValueError(f"until: end {end} is outside [1, {self.length}]")
        stop = min(end + future, len(self.dates))
        return replace(self, dates=self.dates[:stop], values=self.values[:, :end],
                       covariates=self.covariates[:, :stop],
                       oracle_mean=None if self.oracle_mean is None else self.oracle_mean[:, :stop])

    def select(self, rows: np.ndarray | slice) -> SeriesPanel:
        """The panel of some series only (rows of `values`)."""
        ids = np.asarray(self.ids, dtype=object)[rows]
        return replace(self, ids=tuple(ids.tolist()), values=self.values[rows], covariates=self.covariates[rows],
                       categories={k: v[rows] for k, v in self.categories.items()},
                       oracle_mean=None if self.oracle_mean is None else self.oracle_mean[rows])


@dataclass(frozen=True)
class Forecast:
    """Predictions for the `h` periods after a history: mean (n, h) and quantiles (n, h, levels)."""

    mean: np.ndarray
    quantiles: np.ndarray
    levels: tuple[float, ...] = QUANTILE_LEVELS

    def __post_init__(self) -> None:
        if self.quantiles.shape != (*self.mean.shape, len(self.levels)):
            raise ValueError(f"Forecast: quantiles {self.quantiles.shape} do not match mean {self.mean.shape} "
                             f"and {len(self.levels)} levels")

    def quantile(self, level: float) -> np.ndarray:
        """The (n, h) forecast at quantile `level` (one of `levels`)."""
        if level not in self.levels:
            raise KeyError(f"quantile {level} is not forecast; levels: {self.levels}")
        return self.quantiles[..., self.levels.index(level)]


class Forecaster(Protocol):
    """Fit on a history panel (many series at once), then predict the periods right after it."""

    name: str

    def fit(self, history: SeriesPanel) -> None:
        """Learn from `history` (values before its end; covariates may run `history.future` periods past it)."""

    def predict(self, horizon: int) -> Forecast:
        """Mean and quantiles for the `horizon` periods after the fitted history (horizon <= history.future
        for forecasters that read future covariates)."""


def fit_starts(values: np.ndarray, max_length: int | None = None) -> np.ndarray:
    """Per series (rows of `values`, NaN before a series starts): the period a local model fits from, its first
    observation, or the last `max_length` periods where set; the number of periods for a series never observed."""
    t = values.shape[1]
    observed = ~np.isnan(values)
    first = np.where(observed.any(axis=1), np.argmax(observed, axis=1), t)
    return np.maximum(first, t - max_length) if max_length else first


def check_horizon(name: str, horizon: int, history: SeriesPanel | None, needs_covariates: bool = False) -> SeriesPanel:
    """The fitted history, after checking `predict` may run for `horizon` periods; clear errors otherwise."""
    if history is None:
        raise RuntimeError(f"{name}.predict: call fit(history) first")
    if horizon < 1:
        raise ValueError(f"{name}.predict: horizon {horizon} is not allowed; allowed: >= 1")
    if needs_covariates and history.covariates.shape[2] and horizon > history.future:
        raise ValueError(f"{name}.predict: horizon {horizon} needs covariates {horizon} periods ahead, "
                         f"the history has {history.future}")
    return history


def dates_ahead(history: SeriesPanel, periods: int) -> pd.DatetimeIndex:
    """The history's dates extended to cover `periods` periods in all (past its known future if need be)."""
    dates = history.dates
    if len(dates) >= periods:
        return dates[:periods]
    extra = pd.date_range(dates[-1], periods=periods - len(dates) + 1, freq=history.freq.alias)[1:]
    return dates.append(extra)


def sorted_quantiles(mean: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Quantiles (n, h, levels) = mean + offsets, made non-decreasing in the level and clipped at zero."""
    q = np.maximum(mean[..., None] + offsets, 0.0)
    return np.maximum.accumulate(q, axis=-1)


def nan_quantiles(residuals: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """(n, levels) quantiles of each row of `residuals`, NaN ignored; zeros for a row without any value."""
    if residuals.shape[1] == 0:
        return np.zeros((residuals.shape[0], len(levels)))
    with warnings.catch_warnings():  # an all-NaN row: "All-NaN slice", made zeros below
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nan_to_num(np.nanquantile(residuals, levels, axis=1).T)


def residual_quantiles(mean: np.ndarray, residuals: np.ndarray, levels: tuple[float, ...] = QUANTILE_LEVELS,
                       growth: str = "sqrt") -> np.ndarray:
    """Quantiles (n, h, levels) around `mean` (n, h) from each series' one-step residuals (n, m), NaN ignored.

    The spread at step j is the residual quantile times sqrt(j) ("sqrt", as for
    a random walk's errors) or unchanged ("flat", for models whose errors do
    not accumulate, like a seasonal profile).
    """
    h = mean.shape[1]
    offsets = nan_quantiles(residuals, levels)  # (n, levels); a series without residuals gets a point forecast
    steps = np.sqrt(np.arange(1, h + 1)) if growth == "sqrt" else np.ones(h)
    return sorted_quantiles(mean, offsets[:, None, :] * steps[None, :, None])
