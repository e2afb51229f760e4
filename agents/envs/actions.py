"""Discrete actions and how they become order quantities: one class per kind of action.

Each action is an index into a grid. The scale-free kinds read the grid against
the (node, SKU)'s own demand, so one policy can act on SKUs of any volume:

- OrderUpTo (default): level = grid[a] x forecast demand over lead time + review
  period; order = max(0, level - inventory position). A base-stock policy is one
  constant action, so the optimum of a stationary single node is in reach.
- SafetyFactor: level = forecast over lead time + review + grid[a] x the forecast's
  standard deviation over those days; order = max(0, level - inventory position).
  The forecast-driven base-stock (agents.baselines.forecast_policy) is one
  constant action, and slow or intermittent SKUs get safety stock in proportion
  to their own spread, which a multiplier of the mean cannot give them.
- OrderDaysOfDemand: order = grid[a] x mean daily demand.
- OrderUnits: order = grid[a] units (the paper's raw grid 0, 20, 40, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from twin.config import SpecError


@dataclass(frozen=True)
class ActionMap:
    """Base class: a grid of values and the rule that turns a chosen value into an order."""

    grid: tuple[float, ...]
    kind: ClassVar[str] = ""
    needs_spread: ClassVar[bool] = False  # True: orders() reads the forecast's standard deviation

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


class OrderUpTo(ActionMap):
    kind = "order_up_to"

    def orders(self, actions, position, forecast, scale, spread=None):
        return np.maximum(self.values(actions) * forecast - position, 0.0)


class SafetyFactor(ActionMap):
    kind = "safety_factor"
    needs_spread = True

    def orders(self, actions, position, forecast, scale, spread=None):
        if spread is None:
            raise ValueError("SafetyFactor.orders: the forecast's spread is required")
        return np.maximum(forecast + self.values(actions) * spread - position, 0.0)


class OrderDaysOfDemand(ActionMap):
    kind = "days_of_demand"

    def orders(self, actions, position, forecast, scale, spread=None):
        return self.values(actions) * scale


class OrderUnits(ActionMap):
    kind = "units"

    def orders(self, actions, position, forecast, scale, spread=None):
        return np.broadcast_to(self.values(actions), np.shape(actions)).astype(float)


ACTION_KINDS = {cls.kind: cls for cls in (OrderUpTo, SafetyFactor, OrderDaysOfDemand, OrderUnits)}
DEFAULT_GRIDS = {
    "order_up_to": {"start": 0.5, "stop": 2.0, "step": 0.05},
    "safety_factor": {"start": 0.0, "stop": 6.0, "step": 0.25},
    "days_of_demand": {"start": 0.0, "stop": 4.0, "step": 0.25},
    "units": {"start": 0, "stop": 200, "step": 20},
}


def action_from_dict(data: Mapping[str, Any] | None) -> ActionMap:
    """An ActionMap from config: {kind, grid} where grid is a list or {start, stop, step} (stop included)."""
    data = dict(data or {})
    unknown = set(data) - {"kind", "grid"}
    if unknown:
        raise SpecError(f"env.action: unknown key(s) {sorted(unknown)}; allowed: kind, grid")
    kind = data.get("kind", "order_up_to")
    if kind not in ACTION_KINDS:
        raise SpecError(f"env.action.kind: {kind!r} is not allowed; allowed: {', '.join(ACTION_KINDS)}")
    grid = data.get("grid", DEFAULT_GRIDS[kind])
    if isinstance(grid, Mapping):
        missing = {"start", "stop", "step"} - set(grid)
        if missing or set(grid) - {"start", "stop", "step"}:
            raise SpecError(f"env.action.grid: {dict(grid)} is not allowed; allowed: a list of values or "
                            f"{{start, stop, step}}")
        start, stop, step = (float(grid[key]) for key in ("start", "stop", "step"))
        if step <= 0:
            raise SpecError(f"env.action.grid.step: {step!r} is not allowed; allowed: a number > 0")
        values = np.round(np.arange(start, stop + step / 2, step), 10)
    else:
        try:
            values = [float(v) for v in grid]
        except (TypeError, ValueError) as exc:
            raise SpecError(f"env.action.grid: {grid!r} is not allowed; allowed: a list of numbers") from exc
    return ACTION_KINDS[kind](grid=tuple(float(v) for v in values))
