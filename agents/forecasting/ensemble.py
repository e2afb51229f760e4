"""An ensemble of forecasters: weighted averages of their means and of their quantiles."""

from __future__ import annotations

import numpy as np

from agents.forecasting.base import Forecast, Forecaster, SeriesPanel, check_horizon
from agents.forecasting.features import series_scale


class Ensemble:
    """Fits every member and averages their means and, level by level, their quantiles.

    Averaging smooths over the models' errors, which grow apart at long
    horizons. `weights`: "equal", or "inverse_error": each member fitted first on
    the history without its last `validation` periods (at most a quarter of it),
    scored by its mean absolute error on them (scaled per series, then averaged
    over series), and weighted by 1 / error before all are refitted on the whole
    history.
    """

    name = "ensemble"

    def __init__(self, members: list[Forecaster] | tuple[Forecaster, ...], weights: str = "equal",
                 validation: int = 28) -> None:
        if not members:
            raise ValueError("Ensemble: no members; allowed: one or more forecasters")
        if weights not in ("equal", "inverse_error"):
            raise ValueError(f"Ensemble: weights {weights!r} is not allowed; allowed: 'equal', 'inverse_error'")
        self.members = list(members)
        self.weights = weights
        self.validation = validation
        self.member_weights = np.full(len(self.members), 1 / len(self.members))
        self._history: SeriesPanel | None = None

    def _validation_weights(self, history: SeriesPanel) -> np.ndarray:
        """Weights proportional to 1 / each member's scaled MAE on the history's last periods (equal if too short)."""
        t = history.length
        v = min(self.validation, t // 4)
        if v < 1:
            return np.full(len(self.members), 1 / len(self.members))
        train, actual = history.until(t - v, future=v), history.values[:, t - v:]
        scale = series_scale(train.values)  # a series without observations: scale 1
        errors = []
        for member in self.members:
            member.fit(train)
            error = np.abs(member.predict(v).mean - actual) / scale[:, None]
            errors.append(np.nanmean(error) if np.isfinite(error).any() else np.inf)
        inverse = 1 / np.maximum(np.array(errors), 1e-9)
        if not np.isfinite(inverse).all() or inverse.sum() == 0:
            return np.full(len(self.members), 1 / len(self.members))
        return inverse / inverse.sum()

    def fit(self, history: SeriesPanel) -> None:
        """Set the weights (on a validation tail if "inverse_error"), then fit every member on the whole history."""
        if self.weights == "inverse_error":
            self.member_weights = self._validation_weights(history)
        for member in self.members:
            member.fit(history)
        self._history = history

    def predict(self, horizon: int) -> Forecast:
        """The weighted average of the members' means and quantiles."""
        check_horizon(self.name, horizon, self._history)
        forecasts = [member.predict(horizon) for member in self.members]
        levels = {f.levels for f in forecasts}
        if len(levels) != 1:
            raise ValueError(f"Ensemble: members forecast different quantile levels {sorted(levels)}; "
                             f"allowed: the same levels for all")
        w = self.member_weights
        mean = sum(wi * f.mean for wi, f in zip(w, forecasts))
        quantiles = sum(wi * f.quantiles for wi, f in zip(w, forecasts))
        # averages of non-negative, level-sorted quantiles are both already; this only guards rounding
        quantiles = np.maximum.accumulate(np.maximum(quantiles, 0.0), axis=-1)
        return Forecast(mean=np.maximum(mean, 0.0), quantiles=quantiles, levels=levels.pop())
