"""Live forecasts during a twin run: expected demand per node over the next P days.

A node's demand is its customers' demand: a store's own customers, a DC's the sum
of the stores below it (DemandStats does the same for static levels).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from twin.config import SpecError
from twin.engine import Engine


class LiveForecaster(Protocol):
    """Attached to one engine run; answers forecasts at its decision points from what it may see."""

    def attach(self, engine: Engine) -> None:
        """Start forecasting for `engine` (a fresh run)."""

    def over(self, day: int, periods: np.ndarray) -> np.ndarray:
        """Expected demand (nodes, SKUs) over days [day, day + periods[node]) for each node."""


class OracleForecaster:
    """The true expected demand of the twin's demand model (calendar, promotions, weather; shocks not foreseen).

    It knows the mean, never the draws, so it is the best forecast a model of
    the mean could make: the reference the learned forecasters are measured
    against, and the default input to the agents' observations.
    """

    name = "oracle"

    def __init__(self) -> None:
        self._cumulative: np.ndarray | None = None  # (days + 1, nodes, SKUs) running sum of expected demand

    def attach(self, engine: Engine) -> None:
        model, topo = engine.demand_model, engine.topology
        horizon, n_nodes, n_sku = engine.horizon, engine.n_nodes, engine.n_sku
        daily = np.zeros((horizon, n_nodes, n_sku), dtype=np.float32)
        for i, name in enumerate(topo.names):
            if topo.is_store[i]:
                # the store's expected demand counts at the store and at every node above it
                daily[:, topo.descendants[:, i], :] += model.mean_matrix(name)[:, None, :].astype(np.float32)
        self._cumulative = np.concatenate([np.zeros((1, n_nodes, n_sku), np.float32), daily.cumsum(axis=0)])
        self._daily_mean = daily.mean(axis=0)

    def over(self, day: int, periods: np.ndarray) -> np.ndarray:
        if self._cumulative is None:
            raise RuntimeError("OracleForecaster.over: call attach(engine) first")
        cum = self._cumulative
        horizon = cum.shape[0] - 1
        periods = np.asarray(periods, dtype=np.int64)
        end = np.minimum(day + periods, horizon)
        nodes = np.arange(cum.shape[1])
        known = cum[end, nodes] - cum[min(day, horizon), nodes]
        # days past the end of the run are forecast at the run's average (the model has no later days)
        beyond = (day + periods - end)[:, None]
        return known + beyond * self._daily_mean


FORECASTERS = {"oracle": OracleForecaster}


def forecaster_from_name(name: str) -> LiveForecaster:
    """A fresh live forecaster by name; SpecError naming `forecaster` if unknown."""
    if name not in FORECASTERS:
        raise SpecError(f"env.forecaster: {name!r} is not allowed; allowed: {', '.join(FORECASTERS)}")
    return FORECASTERS[name]()
