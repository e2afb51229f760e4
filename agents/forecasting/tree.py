"""A global gradient-boosted tree forecaster: one model for all series on lags, rolling means, calendar, covariates."""

from __future__ import annotations

import copy
import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from agents.forecasting.base import QUANTILE_LEVELS, Forecast, SeriesPanel, check_horizon, dates_ahead
from agents.forecasting.features import calendar_features, series_scale

# default lags and rolling-mean windows per frequency name (periods)
_LAGS = {"daily": (1, 2, 3, 4, 5, 6, 7, 14, 21, 28), "weekly": (1, 2, 3, 4, 8, 13, 26, 52),
         "monthly": (1, 2, 3, 6, 12), "quarterly": (1, 2, 3, 4, 8), "yearly": (1, 2, 3),
         "hourly": (1, 2, 3, 24, 48, 168)}
_WINDOWS = {"daily": (7, 28), "weekly": (4, 13, 52), "monthly": (3, 12), "quarterly": (4, 8), "yearly": (3,),
            "hourly": (24, 168)}
_MAX_CATEGORIES = 255  # HistGradientBoostingRegressor's limit for a categorical feature; more are used as numbers


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
                  covariates: np.ndarray, static: np.ndarray) -> np.ndarray:
        """(len(rows), features) float32 for series `rows` at periods `times`, reading scaled values in `buffer`.

        `buffer` (n, pad + periods) holds the scaled values after `pad` NaN columns, so lags never index below 0;
        `calendar` (periods, 4) and `covariates` (n, periods, k) cover the same periods; `static` (n, c + 1) the
        series' category codes and log scale (`_series`).
        """
        at = times + self._pad  # each period's column in `buffer`
        columns = [buffer[rows, at - lag] for lag in self._lags]
        width = max(self._windows)
        # the `width` scaled values before each period, most recent last, for the rolling means
        recent = buffer[rows[:, None], at[:, None] + np.arange(-width, 0)[None, :]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # windows before a series' start: NaN
            columns += [np.nanmean(recent[:, width - w:], axis=1) for w in self._windows]
        parts = [np.stack(columns, axis=1), calendar[times], covariates[rows, times], static[rows]]
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
        # categories: codes 0..u-1 per category (ranks among the values seen here); categorical where
        # HistGradientBoosting allows, else numeric
        self._category_values = {name: np.unique(history.categories[name]) for name in sorted(history.categories)}
        categorical = [len(v) - 1 < _MAX_CATEGORIES for v in self._category_values.values()]
        self._covariate_names = tuple(history.covariate_names)
        self._freq_name = history.freq.name
        n_numeric = len(self._lags) + len(self._windows) + 4 + history.covariates.shape[2]
        mask = [False] * n_numeric + categorical + [False]
        self._categorical = mask if any(categorical) else None

        _, scaled, static, buffer = self._series(history)
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
        x = self._features(buffer, rows, times, calendar, history.covariates, static)
        y = scaled[rows, times]
        self._mean_model = self._regressor().fit(x, y)
        quantile_iter = self.quantile_max_iter or self.max_iter
        self._quantile_models = [self._regressor(loss="quantile", quantile=q, max_iter=quantile_iter).fit(x, y)
                                 for q in self.levels]
        self._history = history

    def _series(self, history: SeriesPanel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the features read of `history`'s series: each series' scale (n,), its values over it (n, T),
        the static inputs (n, c + 1: category codes as fitted, log scale) and the lag buffer (n, pad + T)."""
        values = history.values
        n = values.shape[0]
        scale = series_scale(values)  # a series without observations: scale 1
        codes = np.zeros((n, len(self._category_values)), np.float32)
        for j, (name, known) in enumerate(self._category_values.items()):
            codes[:, j] = np.searchsorted(known, history.categories[name])
        static = np.concatenate([codes, np.log(scale).astype(np.float32)[:, None]], axis=1)
        scaled = values / scale[:, None]
        buffer = np.concatenate([np.full((n, self._pad), np.nan), scaled], axis=1)
        return scale, scaled, static, buffer

    def predict(self, horizon: int) -> Forecast:
        """Mean and quantiles for `horizon` periods, one step at a time over all series."""
        history = check_horizon(self.name, horizon, self._history, needs_covariates=True)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._predict(history, horizon)

    def predict_from(self, history: SeriesPanel, horizon: int) -> Forecast:
        """Mean and quantiles for the `horizon` periods after another `history` (any series of the fitted
        frequency, covariates and category names; category values among the fitted ones), with the fitted
        regressors: no training. `predict_from(fitted history, h)` equals `predict(h)`."""
        if not hasattr(self, "_mean_model"):
            raise RuntimeError(f"{self.name}.predict_from: call fit(history) first")
        check_horizon(self.name, horizon, history, needs_covariates=True)
        self.check_compatible(history)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._predict(history, horizon)

    def check_compatible(self, history: SeriesPanel) -> None:
        """ValueError unless `history` has the fitted frequency, covariates (names, in order) and category
        names, and every category value was seen by the fit."""
        if history.freq.name != self._freq_name:
            raise ValueError(f"{self.name}: the history is {history.freq.name}; allowed: {self._freq_name} "
                             f"(as fitted)")
        if tuple(history.covariate_names) != self._covariate_names:
            raise ValueError(f"{self.name}: covariates {list(history.covariate_names)}; allowed: "
                             f"{list(self._covariate_names)} (as fitted, in that order)")
        if sorted(history.categories) != list(self._category_values):
            raise ValueError(f"{self.name}: categories {sorted(history.categories)}; allowed: "
                             f"{list(self._category_values)} (as fitted)")
        for name, known in self._category_values.items():
            unknown = np.setdiff1d(history.categories[name], known)
            if len(unknown):
                raise ValueError(f"{self.name}: category {name!r} has values {unknown[:5].tolist()} the fit never "
                                 f"saw; allowed: {known[:10].tolist()}{' ...' if len(known) > 10 else ''}")

    def _predict(self, history: SeriesPanel, horizon: int) -> Forecast:
        """Forecast the `horizon` periods after `history` (the fitted one or another) within the thread limit."""
        n, t = history.values.shape
        scale, _, static, buffer = self._series(history)
        covariates = history.covariates
        if covariates.shape[1] < t + horizon:  # no covariates at all (k == 0): nothing to read ahead
            covariates = np.zeros((n, t + horizon, 0), np.float32)
        calendar = calendar_features(dates_ahead(history, t + horizon), history.freq)
        buffer = np.concatenate([buffer, np.full((n, horizon), np.nan)], axis=1)
        rows = np.arange(n)
        mean = np.zeros((n, horizon))
        quantiles = np.zeros((n, horizon, len(self.levels)))
        for step in range(horizon):
            x = self._features(buffer, rows, np.full(n, t + step), calendar, covariates, static)
            mean[:, step] = np.maximum(self._mean_model.predict(x), 0.0)
            buffer[:, self._pad + t + step] = mean[:, step]
            for j, model in enumerate(self._quantile_models):
                quantiles[:, step, j] = model.predict(x)
        mean *= scale[:, None]
        quantiles = np.maximum.accumulate(np.maximum(quantiles * scale[:, None, None], 0.0), axis=-1)
        return Forecast(mean=mean, quantiles=quantiles, levels=self.levels)

    def without_history(self) -> GradientBoosting:
        """A copy that keeps the fitted regressors and settings but not the training data (what is saved):
        it forecasts with `predict_from` only."""
        slim = copy.copy(self)
        slim._history = None
        return slim
