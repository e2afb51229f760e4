"""Forecast-driven base-stock: each day, order up to the forecast over lead time + review plus safety stock."""

from __future__ import annotations

import numpy as np

from agents.baselines.policies import check_snapshot
from agents.baselines.safety import safety_factors
from agents.forecasting.live import LiveForecaster, forecast_over_protection
from twin.engine import Engine
from twin.snapshot import Snapshot
from twin.state import orders_up_to


class ForecastBaseStock:
    """Installation base-stock whose level moves with a live forecast.

    S(node, SKU, day) = forecast mean over L + R days + z(kind) x forecast sd over
    them, with L the node's expected lead time today (longer while a lead-time
    shock lasts, as the RL agents observe it) and R the review period (1 day).
    With the oracle forecaster the sd is the demand law's, with a learned one it
    comes from its 10-90% quantiles. Like a trained policy, it is attached to
    the engine it decides for, so its forecaster sees that run's demand, and it
    decides from a snapshot (`needs_snapshot`): the forecast over each node's
    protection period is the one the RL agents observe (forecast_over_protection).
    With `z_disrupted` it uses those safety factors instead while a disruption is
    in force (one that has begun, as the agents' shock flags show it), as
    ShockAwareBaseStock does with static levels.
    """

    needs_snapshot = True

    def __init__(self, forecaster: LiveForecaster, z: dict[str, float] | None = None, review_period: int = 1,
                 name: str | None = None, z_disrupted: dict[str, float] | None = None) -> None:
        self.forecaster = forecaster
        self.z = dict(z or {})
        self.z_disrupted = None if z_disrupted is None else dict(z_disrupted)
        self.review_period = review_period
        self.name = name or f"forecast_base_stock:{getattr(forecaster, 'name', type(forecaster).__name__)}"
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Decide for `engine` (a fresh run): attach the forecaster to it."""
        self._engine = engine
        self.forecaster.attach(engine)
        self._z = safety_factors(engine.topology.kinds, self.z)
        self._z_disrupted = self._z if self.z_disrupted is None else safety_factors(engine.topology.kinds,
                                                                                   self.z_disrupted)

    def levels(self, snapshot: Snapshot) -> np.ndarray:
        """The order-up-to levels (nodes, SKUs) at the snapshot's decision point."""
        forecast = forecast_over_protection(snapshot, self.forecaster, self.review_period, with_spread=True)
        z = self._z_disrupted if snapshot.disruptions else self._z
        return forecast.mean + z * forecast.spread

    def act(self, state: Snapshot) -> np.ndarray:
        if self._engine is None:
            raise RuntimeError(f"{self.name}: call attach(engine) before act (evaluate/simulate do)")
        check_snapshot(self.name, state)
        return orders_up_to(self.levels(state), state.inventory_position, self._engine.topology.is_supplier)

