"""Discrete actions and how they become order quantities: one class per kind of action.

Each action is an index into a grid. The scale-free kinds read the grid against
the (node, SKU)'s own demand, so one policy can act on SKUs of any volume:

- OrderUpTo (default): level = grid[a] x forecast demand over lead time + review
  period; order = max(0, level - inventory position). A base-stock policy is one
  constant action, so the optimum of a stationary single node is in reach.
- SafetyFactor: level = forecast over lead time + review + grid[a] x the forecast's
  standard deviation over those days; order = max(0, level - inventory position).
  The forecast-driven base-stock (the baselines' ForecastBaseStock) is one
  constant action, and slow or intermittent SKUs get safety stock in proportion
  to their own spread, which a multiplier of the mean cannot give them.
- ProfileSafetyFactor: as SafetyFactor, but on the long-run demand profile (the item profile's mean and
  standard deviation over the *nominal* lead time + review, ItemProfile.over_protection) instead of the
  forecast: the static base-stock (the baselines' BaseStock) is one constant action, and a base-stock that
  raises its safety stock while a shock is in force (ShockAwareBaseStock) is two. The observation still
  holds the forecast; only the levels are anchored on the profile.
- OrderDaysOfDemand: order = grid[a] x mean daily demand.
- OrderUnits: order = grid[a] units (the paper's raw grid 0, 20, 40, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agents.forecasting.live import DemandForecast
from twin.config import ConfigReader, SpecError
from twin.registry import Registry


@dataclass(frozen=True)
class ActionMap:
    """Base class: a grid of values and the rule that turns a chosen value into an order."""

    grid: tuple[float, ...]
    kind: ClassVar[str] = ""
    needs_spread: ClassVar[bool] = False  # True: orders() reads the forecast's standard deviation
    anchor: ClassVar[str] = "forecast"    # what orders() reads as `forecast` / `spread`: see anchor_for

    def __post_init__(self) -> None:
        if len(self.grid) == 0:
            raise SpecError(f"env.action.grid: empty; allowed: at least one value (action kind {self.kind!r})")
        if any(not np.isfinite(v) or v < 0 for v in self.grid):
            raise SpecError(f"env.action.grid: {list(self.grid)} is not allowed; allowed: finite values >= 0")

    @property
    def n(self) -> int:
        return len(self.grid)

    def orders(self, actions: np.ndarray, position: np.ndarray, forecast: np.ndarray,
               scale: np.ndarray, spread: np.ndarray | None = None) -> np.ndarray:
        """Order quantities for action indices `actions`; every array argument has the same shape.

        `spread` is the forecast's standard deviation over lead time + review, needed only
        where `needs_spread` is True.
        """
        raise NotImplementedError

    def values(self, actions: np.ndarray) -> np.ndarray:
        return np.asarray(self.grid)[actions]

    def levels(self, actions: np.ndarray, position: np.ndarray, forecast: np.ndarray,
               scale: np.ndarray, spread: np.ndarray | None = None) -> np.ndarray:
        """The inventory position each order aims at: the order-up-to level of the level kinds, position +
        order for the kinds that order a quantity (what a decision reports as its level)."""
        return position + self.orders(actions, position, forecast, scale, spread)


class OrderUpTo(ActionMap):
    kind = "order_up_to"

    def levels(self, actions, position, forecast, scale, spread=None):
        return self.values(actions) * forecast

    def orders(self, actions, position, forecast, scale, spread=None):
        return np.maximum(self.levels(actions, position, forecast, scale) - position, 0.0)


class SafetyFactor(ActionMap):
    kind = "safety_factor"
    needs_spread = True

    def levels(self, actions, position, forecast, scale, spread=None):
        if spread is None:
            raise ValueError("SafetyFactor: the forecast's spread is required")
        return forecast + self.values(actions) * spread

    def orders(self, actions, position, forecast, scale, spread=None):
        return np.maximum(self.levels(actions, position, forecast, scale, spread) - position, 0.0)


class ProfileSafetyFactor(SafetyFactor):
    kind = "profile_safety_factor"
    needs_spread = False  # its spread is the profile's, not the forecaster's
    anchor = "profile"


def anchor_for(action: ActionMap, forecast: DemandForecast, profile: DemandForecast) -> DemandForecast:
    """What `action.orders` reads as its forecast and spread: the live `forecast`, or for a profile-anchored
    kind the long-run `profile` (ItemProfile.over_protection)."""
    return profile if action.anchor == "profile" else forecast


class OrderDaysOfDemand(ActionMap):
    kind = "days_of_demand"

    def orders(self, actions, position, forecast, scale, spread=None):
        return self.values(actions) * scale


class OrderUnits(ActionMap):
    kind = "units"

    def orders(self, actions, position, forecast, scale, spread=None):
        return np.broadcast_to(self.values(actions), np.shape(actions)).astype(float)


ACTION_KINDS: Registry[type[ActionMap]] = Registry.of("env.action.kind", OrderUpTo, SafetyFactor, ProfileSafetyFactor,
                                                    OrderDaysOfDemand, OrderUnits, attribute="kind")
DEFAULT_GRIDS = {
    "order_up_to": {"start": 0.5, "stop": 2.0, "step": 0.05},
    "safety_factor": {"start": 0.0, "stop": 6.0, "step": 0.25},
    "profile_safety_factor": {"start": 0.0, "stop": 10.0, "step": 0.5},
    "days_of_demand": {"start": 0.0, "stop": 4.0, "step": 0.25},
    "units": {"start": 0, "stop": 200, "step": 20},
}


def action_from_dict(data: Mapping[str, Any] | None, path: str = "env.action") -> ActionMap:
    """An ActionMap from config: {kind, grid} where grid is a list or {start, stop, step} (stop included)."""
    r = ConfigReader(data, path)
    kind = r.choice("kind", ACTION_KINDS, "order_up_to")
    grid = r.raw("grid", DEFAULT_GRIDS[kind])
    if isinstance(grid, Mapping):
        g = ConfigReader(grid, r.key("grid"))
        start, stop = g.number("start"), g.number("stop")
        step = g.number("step", low=0.0, low_open=True)
        g.done()
        values = np.round(np.arange(start, stop + step / 2, step), 10)
    else:
        values = r.numbers("grid")
    r.done()
    return ACTION_KINDS[kind](grid=tuple(float(v) for v in values))
