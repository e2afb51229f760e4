"""The oracle of a backtest: the true expected value, where the data carry it (twin runs)."""

from __future__ import annotations

import numpy as np

from agents.forecasting.base import (
    QUANTILE_LEVELS,
    Forecast,
    SeriesPanel,
    check_horizon,
    nan_quantiles,
    sorted_quantiles,
)


class TrueMean:
    """Forecasts the panel's `oracle_mean`: the twin's demand model mean, which no learned model can beat on
    average. Quantiles come from the history's standardised errors (y - mean) / sqrt(mean), so they follow the
    demand law's spread without knowing its name."""

    name = "oracle"

    def __init__(self, levels: tuple[float, ...] = QUANTILE_LEVELS) -> None:
        self.levels = tuple(levels)
        self._history: SeriesPanel | None = None

    def fit(self, history: SeriesPanel) -> None:
        """Keep the history and the quantiles of its standardised errors."""
        if history.oracle_mean is None:
            raise ValueError("oracle: the data carry no true mean (only twin data do); drop 'oracle' from the "
                             "forecasters")
        self._history = history
        mean = history.oracle_mean[:, : history.length]
        z = (history.values - mean) / np.sqrt(np.maximum(mean, 1e-9))
        self._z = nan_quantiles(z, self.levels)  # (n, levels)

    def predict(self, horizon: int) -> Forecast:
        """The true mean of the next `horizon` periods, with quantiles mean + z_q sqrt(mean)."""
        history = check_horizon(self.name, horizon, self._history)
        if horizon > history.future:
            raise ValueError(f"oracle.predict: horizon {horizon} is past the true mean known ({history.future})")
        mean = history.oracle_mean[:, history.length: history.length + horizon]
        offsets = self._z[:, None, :] * np.sqrt(mean)[..., None]
        return Forecast(mean=mean.copy(), quantiles=sorted_quantiles(mean, offsets), levels=self.levels)
