"""Intermittent-demand forecasters from statsforecast: Croston (optimised), TSB, ADIDA and IMAPA.

They suit series with many zero periods (slow movers), where a smoothing or
seasonal model chases every spike. Each forecasts a flat demand rate per
period (mean size x occurrence rate) and has no season. The models give point
forecasts only, so the quantiles are built as `MovingAverage`'s are: the level
plus each series' one-step in-sample residuals (y_t minus the model's fitted
value for t, from statsforecast's fitted values), not widened with the step. A
series without residuals gets a point forecast (all quantiles = the mean).

All series go through one StatsForecast call, on each series' values from its
first observation (NaN before a series starts is never fitted; a series
without any observation is forecast 0). A series whose model fails to fit
falls back to the naive forecast. `max_length` fits only each series' last
observations (None: all of them); IMAPA's fitted values cost about 50 ms per
730-day series, so cap it for large panels.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from agents.forecasting.base import (
    QUANTILE_LEVELS,
    Forecast,
    SeriesPanel,
    check_horizon,
    fit_starts,
    residual_quantiles,
)
from agents.forecasting.classical import statsforecast_frame


def _check_levels(name: str, levels: tuple) -> tuple[float, ...]:
    levels = tuple(float(q) for q in levels)
    for q in levels:
        if not 0 < q < 1:
            raise ValueError(f"{name}: levels {q} is not allowed; allowed: strictly between 0 and 1")
    return levels


def _check_smoothing(name: str, key: str, value: object) -> float:
    """A smoothing parameter in (0, 1]; ValueError naming `key` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) <= 1:
        raise ValueError(f"{name}: {key} {value!r} is not allowed; allowed: a number with 0 < {key} <= 1")
    return float(value)


class _IntermittentModel:
    """One statsforecast intermittent model per series, all series in one call; spread from in-sample residuals."""

    name = "intermittent"
    alias = "model"

    def __init__(self, levels: tuple = QUANTILE_LEVELS, n_jobs: int = 1, max_length: int | None = None) -> None:
        self.levels = _check_levels(type(self).__name__, levels)
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise ValueError(f"{type(self).__name__}: max_length {max_length!r} is not allowed; "
                             f"allowed: None or an integer >= 2")
        self.n_jobs = n_jobs
        self.max_length = max_length
        self._history: SeriesPanel | None = None

    def _model(self):
        """The statsforecast model."""
        raise NotImplementedError

    def fit(self, history: SeriesPanel) -> None:
        """Remember the history; statsforecast fits and forecasts in one call at predict time."""
        self._history = history

    def predict(self, horizon: int) -> Forecast:
        """Fit the model to each series and forecast `horizon` periods (flat mean, residual quantiles, >= 0)."""
        from statsforecast import StatsForecast
        from statsforecast.models import Naive

        history = check_horizon(self.name, horizon, self._history)
        values = history.values
        n, t = values.shape
        first = fit_starts(values, self.max_length)
        mean = np.zeros((n, horizon))
        residuals = np.full((n, t), np.nan)
        rows = np.flatnonzero(first < t)
        if len(rows):
            df = statsforecast_frame(values, rows, first)
            sf = StatsForecast(models=[self._model()], freq=1, n_jobs=self.n_jobs, fallback_model=Naive())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "computing fitted values is very expensive", divisions by zero
                out = sf.forecast(df=df, h=horizon, fitted=True)
                fitted = sf.forecast_fitted_values()
            out = out.sort_values(["unique_id", "ds"])
            ids = out["unique_id"].to_numpy().reshape(-1, horizon)[:, 0]
            mean[ids] = out[self.alias].to_numpy().reshape(-1, horizon)
            f_ids, f_ds = fitted["unique_id"].to_numpy(), fitted["ds"].to_numpy()
            residuals[f_ids, f_ds] = fitted["y"].to_numpy() - fitted[self.alias].to_numpy()
        mean = np.maximum(np.nan_to_num(mean), 0.0)
        residuals = np.where(np.isfinite(residuals), residuals, np.nan)
        quantiles = residual_quantiles(mean, residuals, self.levels, growth="flat")
        return Forecast(mean=mean, quantiles=quantiles, levels=self.levels)


class Croston(_IntermittentModel):
    """statsforecast's CrostonOptimized: sizes and intervals between demands smoothed separately, each with its
    smoothing parameter chosen in [0.1, 0.3]; forecast = smoothed size / smoothed interval."""

    name = "croston"
    alias = "CrostonOptimized"

    def _model(self):
        from statsforecast.models import CrostonOptimized

        return CrostonOptimized(alias=self.alias)


class TSB(_IntermittentModel):
    """statsforecast's TSB (Teunter-Syntetos-Babai): the size of non-zero demands smoothed with `alpha_d`, the
    probability of a demand in a period with `alpha_p` (updated every period, so the forecast decays towards 0
    when demand stops: obsolescence); forecast = probability x size. Both in (0, 1]."""

    name = "tsb"
    alias = "TSB"

    def __init__(self, alpha_d: float = 0.1, alpha_p: float = 0.1, levels: tuple = QUANTILE_LEVELS, n_jobs: int = 1,
                 max_length: int | None = None) -> None:
        super().__init__(levels=levels, n_jobs=n_jobs, max_length=max_length)
        self.alpha_d = _check_smoothing("TSB", "alpha_d", alpha_d)
        self.alpha_p = _check_smoothing("TSB", "alpha_p", alpha_p)

    def _model(self):
        from statsforecast.models import TSB as _TSB

        return _TSB(alpha_d=self.alpha_d, alpha_p=self.alpha_p, alias=self.alias)


class ADIDA(_IntermittentModel):
    """statsforecast's ADIDA: the series summed over buckets of its mean inter-demand interval, forecast by SES
    and spread back evenly over the periods of a bucket."""

    name = "adida"
    alias = "ADIDA"

    def _model(self):
        from statsforecast.models import ADIDA as _ADIDA

        return _ADIDA(alias=self.alias)


class IMAPA(_IntermittentModel):
    """statsforecast's IMAPA: ADIDA at every aggregation level from 1 to the mean inter-demand interval, the
    per-period forecasts averaged. Its fitted values (for the spread) are the slowest of the four."""

    name = "imapa"
    alias = "IMAPA"

    def _model(self):
        from statsforecast.models import IMAPA as _IMAPA

        return _IMAPA(alias=self.alias)
