"""Forecast-driven base-stock: each day, order up to the forecast over lead time + review plus safety stock."""

from __future__ import annotations

import numpy as np

from agents.baselines.safety import safety_factors
from agents.forecasting.live import LiveForecaster
from twin.coverage import protection_periods
from twin.engine import Engine
from twin.state import NetworkState


class ForecastBaseStock:
    """Installation base-stock whose level moves with a live forecast.

    S(node, SKU, day) = forecast mean over L + R days + z(kind) x forecast sd over
    them, with L the node's expected lead time today (longer while a lead-time
    shock lasts, as the RL agents observe it) and R the review period (1 day).
    With the oracle forecaster the sd is the demand law's, with a learned one it
    comes from its 10-90% quantiles. Like a trained policy, it is attached to
    the engine it decides for, so its forecaster sees that run's demand.
    """

    def __init__(self, forecaster: LiveForecaster, z: dict[str, float] | None = None, review_period: int = 1,
                 name: str | None = None) -> None:
        self.forecaster = forecaster
        self.z = dict(z or {})
        self.review_period = review_period
        self.name = name or f"forecast_base_stock:{getattr(forecaster, 'name', type(forecaster).__name__)}"
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Decide for `engine` (a fresh run): attach the forecaster to it."""
        self._engine = engine
        self.forecaster.attach(engine)
        self._z = safety_factors(engine.topology.kinds, self.z)

    def levels(self, day: int) -> np.ndarray:
        """The order-up-to levels (nodes, SKUs) at the decision point of `day`."""
        periods = protection_periods(self._engine.expected_lead_times(), self.review_period)
        mean = self.forecaster.over(day, periods)
        sd = self.forecaster.spread(day, periods)
        return mean + self._z * sd

    def act(self, state: NetworkState) -> np.ndarray:
        if self._engine is None:
            raise RuntimeError(f"{self.name}: call attach(engine) before act (evaluate/simulate do)")
        orders = np.maximum(self.levels(state.day) - state.inventory_position, 0.0)
        orders[state.topology.is_supplier] = 0.0
        return orders
