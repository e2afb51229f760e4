"""A global gradient-boosted tree forecaster: one model for all series on lags, rolling means, calendar, covariates."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from agents.forecasting.base import QUANTILE_LEVELS, Forecast, SeriesPanel, check_horizon
from agents.forecasting.features import calendar_features, series_scale

# default lags and rolling-mean windows per frequency name (periods)
_LAGS = {"daily": (1, 2, 3, 4, 5, 6, 7, 14, 21, 28), "weekly": (1, 2, 3, 4, 8, 13, 26, 52),
         "monthly": (1, 2, 3, 6, 12), "quarterly": (1, 2, 3, 4, 8), "yearly": (1, 2, 3),
         "hourly": (1, 2, 3, 24, 48, 168)}
_WINDOWS = {"daily": (7, 28), "weekly": (4, 13, 52), "monthly": (3, 12), "quarterly": (4, 8), "yearly": (3,),
            "hourly": (24, 168)}
_MAX_CATEGORIES = 255  # HistGradientBoostingRegressor's limit for a categorical feature; more are used as numbers


def _dates_ahead(history: SeriesPanel, periods: int) -> pd.DatetimeIndex:
    """The history's dates extended to cover `periods` periods in all (past its known future if need be)."""
    dates = history.dates
    if len(dates) >= periods:
        return dates[:periods]
    extra = pd.date_range(dates[-1], periods=periods - len(dates) + 1, freq=history.freq.alias)[1:]
    return dates.append(extra)


class GradientBoosting:
    """One global HistGradientBoostingRegressor over all series, forecast recursively one step at a time.

    Features of period t: the series' values at `lags` and its means over the
    `windows` before t (all divided by the series' scale), the calendar of t,
    the known covariates of t, the series' categories and log scale. The target
    is the value divided by the scale. Forecasts run one step at a time over
    all series at once, feeding the mean forecasts back in as lags.

    Quantiles: one more HistGradientBoostingRegressor per level, fitted with
    the quantile loss on the same features, predicted along the same path of
    mean forecasts (so they are one-step conditional quantiles: they do not
    widen for the uncertainty of the fed-back lags).

    `n_threads` caps the OpenMP threads of sklearn (None: all cores). The
    default 1 is deliberate: on a small shared machine, scikit-learn's
    multithreaded tree fits can slow down tenfold when another process holds a
    core, while a single thread stays within about 1.5x of the best case.
    """

    name = "gradient_boosting"

    def __init__(self, max_iter: int = 200, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 20, lags: tuple[int, ...] | None = None,
                 windows: tuple[int, ...] | None = None, max_train_rows: int = 200_000,
                 quantile_max_iter: int | None = 100, levels: tuple = QUANTILE_LEVELS, seed: int = 0,
                 n_threads: int | None = 1) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.lags = lags
        self.windows = windows
        self.max_train_rows = max_train_rows
        self.quantile_max_iter = quantile_max_iter
        self.levels = tuple(levels)
        self.seed = seed
        self.n_threads = n_threads
        self._history: SeriesPanel | None = None

    def _regressor(self, **kwargs) -> HistGradientBoostingRegressor:
        """A regressor with this forecaster's settings (no early stopping: deterministic and fast)."""
        options = dict(max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
                       min_samples_leaf=self.min_samples_leaf, early_stopping=False, random_state=self.seed,
                       categorical_features=self._categorical)
        return HistGradientBoostingRegressor(**{**options, **kwargs})

    def _features(self, buffer: np.ndarray, rows: np.ndarray, times: np.ndarray, calendar: np.ndarray,
                  covariates: np.ndarray) -> np.ndarray:
        """(len(rows), features) float32 for series `rows` at periods `times`, reading scaled values in `buffer`.

        `buffer` (n, pad + periods) holds the scaled values after `pad` NaN columns, so lags never index below 0;
        `calendar` (periods, 4) and `covariates` (n, periods, k) cover the same periods.
        """
        pad = self._pad
        width = max(self._windows)
        # the `width` scaled values before each period, most recent last
        recent = buffer[rows[:, None], (times + pad)[:, None] + np.arange(-width, 0)[None, :]]
        columns = [recent[:, width - lag] for lag in self._lags]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # windows before a series' start: NaN
            columns += [np.nanmean(recent[:, width - w:], axis=1) for w in self._windows]
        parts = [np.stack(columns, axis=1), calendar[times], covariates[rows, times],
                 self._codes[rows], self._log_scale[rows, None]]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def fit(self, history: SeriesPanel) -> None:
        """Fit the mean and quantile models on (a deterministic sample of) all observed periods of all series."""
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            self._fit(history)

    def _fit(self, history: SeriesPanel) -> None:
        """`fit` within the thread limit."""
        values = history.values
        n, t = values.shape
        self._lags = tuple(self.lags or _LAGS.get(history.freq.name, (1, 2, 3)))
        self._windows = tuple(self.windows or _WINDOWS.get(history.freq.name, (history.freq.season_length,)))
        self._pad = max(max(self._lags), max(self._windows))
        self._scale = series_scale(values)  # a series without observations: scale 1
        self._log_scale = np.log(self._scale).astype(np.float32)
        # categories: codes 0..u-1 per category; categorical where HistGradientBoosting allows, else numeric
        codes, categorical = [], []
        for name in sorted(history.categories):
            _, code = np.unique(history.categories[name], return_inverse=True)
            codes.append(code.astype(np.float32))
            categorical.append(code.max(initial=0) < _MAX_CATEGORIES)
        self._codes = np.stack(codes, axis=1) if codes else np.zeros((n, 0), np.float32)
        n_numeric = len(self._lags) + len(self._windows) + 4 + history.covariates.shape[2]
        mask = [False] * n_numeric + categorical + [False]
        self._categorical = mask if any(categorical) else None

        scaled = values / self._scale[:, None]
        self._buffer = np.concatenate([np.full((n, self._pad), np.nan), scaled], axis=1)
        # training rows: every observed period after a series' first observation
        observed = ~np.isnan(values)
        first = np.where(observed.any(axis=1), np.argmax(observed, axis=1), t)
        usable = observed & (np.arange(t)[None, :] > first[:, None])
        rows, times = np.nonzero(usable)
        if len(rows) == 0:
            raise ValueError(f"{self.name}.fit: no series has two observations; allowed: at least one that has")
        if len(rows) > self.max_train_rows:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(rows), self.max_train_rows, replace=False))
            rows, times = rows[keep], times[keep]
        calendar = calendar_features(history.dates, history.freq)
        x = self._features(self._buffer, rows, times, calendar, history.covariates)
        y = scaled[rows, times]
        self._mean_model = self._regressor().fit(x, y)
        quantile_iter = self.quantile_max_iter or self.max_iter
        self._quantile_models = [self._regressor(loss="quantile", quantile=q, max_iter=quantile_iter).fit(x, y)
                                 for q in self.levels]
        self._history = history

    def predict(self, horizon: int) -> Forecast:
        """Mean and quantiles for `horizon` periods, one step at a time over all series."""
        history = check_horizon(self.name, horizon, self._history, needs_covariates=True)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._predict(history, horizon)

    def _predict(self, history: SeriesPanel, horizon: int) -> Forecast:
        """`predict` within the thread limit."""
        n, t = history.values.shape
        covariates = history.covariates
        if covariates.shape[1] < t + horizon:  # no covariates at all (k == 0): nothing to read ahead
            covariates = np.zeros((n, t + horizon, 0), np.float32)
        calendar = calendar_features(_dates_ahead(history, t + horizon), history.freq)
        buffer = np.concatenate([self._buffer, np.full((n, horizon), np.nan)], axis=1)
        rows = np.arange(n)
        mean = np.zeros((n, horizon))
        quantiles = np.zeros((n, horizon, len(self.levels)))
        for step in range(horizon):
            x = self._features(buffer, rows, np.full(n, t + step), calendar, covariates)
            mean[:, step] = np.maximum(self._mean_model.predict(x), 0.0)
            buffer[:, self._pad + t + step] = mean[:, step]
            for j, model in enumerate(self._quantile_models):
                quantiles[:, step, j] = model.predict(x)
        mean *= self._scale[:, None]
        quantiles = np.maximum.accumulate(np.maximum(quantiles * self._scale[:, None, None], 0.0), axis=-1)
        return Forecast(mean=mean, quantiles=quantiles, levels=self.levels)
