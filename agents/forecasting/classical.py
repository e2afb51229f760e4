"""Classical per-series forecasters: seasonal naive, moving average, and statsforecast's AutoETS and AutoARIMA."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from agents.forecasting.base import (
    QUANTILE_LEVELS,
    Forecast,
    SeriesPanel,
    check_horizon,
    fit_starts,
    nan_quantiles,
    residual_quantiles,
    sorted_quantiles,
)


def _last_values(values: np.ndarray) -> np.ndarray:
    """(n,) the last observed value of each series (0 for a series without any)."""
    observed = ~np.isnan(values)
    last = values.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
    return np.where(observed.any(axis=1), values[np.arange(len(values)), last], 0.0)


class _FromHistory:
    """A forecaster with nothing to estimate: `fit` keeps the history, `predict` reads it."""

    levels: tuple[float, ...]
    _history: SeriesPanel | None = None

    def fit(self, history: SeriesPanel) -> None:
        """Remember the history (nothing to estimate)."""
        self._history = history


class SeasonalNaive(_FromHistory):
    """Repeats each series' last season (the last value for season 1).

    Quantiles: the series' seasonal residuals y_t - y_{t-m}, widened by
    sqrt(k + 1) for a step k whole seasons ahead.
    """

    name = "seasonal_naive"

    def __init__(self, season_length: int | None = None, levels: tuple = QUANTILE_LEVELS) -> None:
        self.season_length = season_length
        self.levels = tuple(levels)

    def predict(self, horizon: int) -> Forecast:
        """The last season repeated over `horizon` periods."""
        history = check_horizon(self.name, horizon, self._history)
        values = history.values
        t = values.shape[1]
        m = max(1, min(self.season_length or history.freq.season_length, t))
        season = values[:, t - m:]
        # a series that started within the last season repeats its last value where the season is missing
        season = np.where(np.isnan(season), _last_values(values)[:, None], season)
        steps = np.arange(horizon)
        mean = np.maximum(season[:, steps % m], 0.0)
        offsets = nan_quantiles(values[:, m:] - values[:, :-m], self.levels)
        growth = np.sqrt(steps // m + 1.0)
        quantiles = sorted_quantiles(mean, offsets[:, None, :] * growth[None, :, None])
        return Forecast(mean=mean, quantiles=quantiles, levels=self.levels)


class MovingAverage(_FromHistory):
    """The flat mean of each series' last `window` observations.

    Quantiles: the series' one-step residuals against the same moving average
    over its history, not widened with the step (a stationary series' error
    around its mean does not grow).
    """

    name = "moving_average"

    def __init__(self, window: int = 28, levels: tuple = QUANTILE_LEVELS) -> None:
        if window < 1:
            raise ValueError(f"MovingAverage: window {window} is not allowed; allowed: >= 1")
        self.window = window
        self.levels = tuple(levels)

    def predict(self, horizon: int) -> Forecast:
        """The moving average repeated over `horizon` periods."""
        history = check_horizon(self.name, horizon, self._history)
        values = history.values
        n, t = values.shape
        observed = ~np.isnan(values)
        # running sums and counts: the average of the `window` periods before t is (s[t] - s[t-w]) / (c[t] - c[t-w])
        sums = np.concatenate([np.zeros((n, 1)), np.cumsum(np.where(observed, values, 0.0), axis=1)], axis=1)
        counts = np.concatenate([np.zeros((n, 1)), np.cumsum(observed, axis=1)], axis=1)
        lo = np.maximum(np.arange(t + 1) - self.window, 0)
        window_sum, window_count = sums - sums[:, lo], counts - counts[:, lo]
        with np.errstate(all="ignore"):
            average = window_sum / window_count  # (n, T + 1): the average before each period, then the forecast
        level = np.nan_to_num(average[:, t])
        # residuals where the average had a full window (or, for short series, all but the current observation)
        need = np.clip(np.minimum(self.window, observed.sum(axis=1) - 1), 1, None)
        usable = observed & (window_count[:, :t] >= need[:, None])
        residuals = np.where(usable, values - average[:, :t], np.nan)
        mean = np.repeat(np.maximum(level, 0.0)[:, None], horizon, axis=1)
        quantiles = residual_quantiles(mean, residuals, self.levels, growth="flat")  # none: a point forecast
        return Forecast(mean=mean, quantiles=quantiles, levels=self.levels)


def _statsforecast_level(q: float) -> tuple[str, float]:
    """Which statsforecast output gives quantile `q`: ("mean", 0), ("lo", level) or ("hi", level)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile level {q} is not allowed; allowed: strictly between 0 and 1")
    if np.isclose(q, 0.5):
        return "mean", 0.0
    return ("lo", round((1 - 2 * q) * 100, 6)) if q < 0.5 else ("hi", round((2 * q - 1) * 100, 6))


def statsforecast_frame(values: np.ndarray, rows: np.ndarray, first: np.ndarray) -> pd.DataFrame:
    """statsforecast's long frame (`unique_id, ds, y`) of `rows` of `values`, each from its fit start `first[row]`;
    `ds` the integer time position (freq=1): robust to any calendar."""
    t = values.shape[1]
    row_of = np.repeat(rows, t - first[rows])
    ds = np.concatenate([np.arange(first[i], t) for i in rows])
    return pd.DataFrame({"unique_id": row_of, "ds": ds, "y": values[row_of, ds]})


class _StatsForecastModel:
    """One statsforecast model fitted per series, all series in one StatsForecast call per season length.

    A series with fewer than two full seasons is fitted without a season; a
    series whose model fails to fit falls back to the naive forecast.
    `max_length` fits only each series' last observations (None: all of them).
    """

    name = "statsforecast"
    alias = "model"

    def __init__(self, season_length: int | None = None, levels: tuple = QUANTILE_LEVELS, n_jobs: int = 1,
                 max_length: int | None = None) -> None:
        self.season_length = season_length
        self.levels = tuple(levels)
        self.n_jobs = n_jobs
        self.max_length = max_length
        self._outputs = [_statsforecast_level(q) for q in self.levels]
        self._history: SeriesPanel | None = None

    def _model(self, season_length: int):
        """The statsforecast model for one season length."""
        raise NotImplementedError

    def fit(self, history: SeriesPanel) -> None:
        """Remember the history; statsforecast fits and forecasts in one call at predict time."""
        self._history = history

    def predict(self, horizon: int) -> Forecast:
        """Fit the model to each series and forecast `horizon` periods (mean and quantiles, clipped at 0)."""
        from statsforecast import StatsForecast
        from statsforecast.models import Naive

        history = check_horizon(self.name, horizon, self._history)
        values = history.values
        n, t = values.shape
        first = fit_starts(values, self.max_length)
        season = max(1, self.season_length or history.freq.season_length)
        seasons = np.where(t - first >= 2 * season, season, 1)
        mean = np.zeros((n, horizon))
        quantiles = np.zeros((n, horizon, len(self.levels)))
        level = sorted({lv for kind, lv in self._outputs if kind != "mean"})
        for m in np.unique(seasons[first < t]):
            rows = np.flatnonzero((seasons == m) & (first < t))
            df = statsforecast_frame(values, rows, first)
            sf = StatsForecast(models=[self._model(int(m))], freq=1, n_jobs=self.n_jobs, fallback_model=Naive())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = sf.forecast(df=df, h=horizon, level=level or None)
            out = out.sort_values(["unique_id", "ds"])
            ids = out["unique_id"].to_numpy().reshape(-1, horizon)[:, 0]
            mean[ids] = out[self.alias].to_numpy().reshape(-1, horizon)
            for j, (kind, lv) in enumerate(self._outputs):
                column = self.alias if kind == "mean" else f"{self.alias}-{kind}-{lv}"
                quantiles[ids, :, j] = out[column].to_numpy().reshape(-1, horizon)
        mean = np.maximum(np.nan_to_num(mean), 0.0)
        quantiles = np.maximum.accumulate(np.maximum(np.nan_to_num(quantiles), 0.0), axis=-1)
        return Forecast(mean=mean, quantiles=quantiles, levels=self.levels)


class AutoETS(_StatsForecastModel):
    """statsforecast's AutoETS (error, trend and season chosen by AICc) per series; normal prediction intervals."""

    name = "ets"
    alias = "AutoETS"

    def _model(self, season_length: int):
        """AutoETS for one season length."""
        from statsforecast.models import AutoETS as _AutoETS

        return _AutoETS(season_length=season_length, alias=self.alias)


class AutoARIMA(_StatsForecastModel):
    """statsforecast's AutoARIMA (orders chosen stepwise by AICc) per series; normal prediction intervals.

    For speed the search uses the CSS approximation of the likelihood
    (`approximation`) and orders p, q <= `max_order`, P, Q <= 1: on daily
    series this is about 4x faster than the full search at the same accuracy.
    """

    name = "arima"
    alias = "AutoARIMA"

    def __init__(self, season_length: int | None = None, levels: tuple = QUANTILE_LEVELS, n_jobs: int = 1,
                 max_length: int | None = None, approximation: bool = True, max_order: int = 2) -> None:
        super().__init__(season_length=season_length, levels=levels, n_jobs=n_jobs, max_length=max_length)
        self.approximation = approximation
        self.max_order = max_order

    def _model(self, season_length: int):
        """AutoARIMA for one season length."""
        from statsforecast.models import AutoARIMA as _AutoARIMA

        return _AutoARIMA(season_length=season_length, approximation=self.approximation, max_p=self.max_order,
                          max_q=self.max_order, max_P=1, max_Q=1, alias=self.alias)
