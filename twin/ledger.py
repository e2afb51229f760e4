"""The ledger's run-time invariants.

Per node and SKU, every day:
    on_hand_end = on_hand_start + received - shipped_downstream - sold
and network-wide:
    units bought from suppliers = units on hand + in transit + sold.
No state may go negative. The twin has no scrapping mechanism, so a scrap
term would always be zero and is omitted (docs/architecture.md, The engine).
Lost sales and backorders are tracked apart: they never move stock.
"""

from __future__ import annotations

import warnings

import numpy as np

from twin.spec import INVARIANT_MODES


class InvariantError(AssertionError):
    """A ledger invariant was violated: always a bug in the twin, never a condition to silence."""


class InvariantWarning(UserWarning):
    """A ledger invariant was violated and the invariant mode is 'warn'."""


class Ledger:
    """Checks the invariants each day according to `mode`: 'off', 'warn' or 'error'."""

    def __init__(self, names: tuple[str, ...], is_supplier: np.ndarray, mode: str, tolerance: float = 1e-6) -> None:
        if mode not in INVARIANT_MODES:
            raise ValueError(f"invariants: {mode!r} is not allowed; allowed: {', '.join(INVARIANT_MODES)}")
        self.names = names
        self.is_supplier = np.asarray(is_supplier, dtype=bool)
        self.stock_rows = np.flatnonzero(~self.is_supplier)
        self.mode = mode
        self.tolerance = tolerance
        self.violations: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def check_day(self, day: int, *, start: np.ndarray, received: np.ndarray, outflow: np.ndarray,
                  on_hand: np.ndarray, backorders: np.ndarray, in_transit: np.ndarray, on_order: np.ndarray,
                  bought_total: float, sold_total: float) -> None:
        """Check one day's flows and end-of-day state (all (nodes, SKUs) arrays).

        `outflow` is what left each node that day: shipped downstream by a DC, sold by a store
        (a node does one or the other, so the balance is start + received - outflow).
        """
        if not self.enabled:
            return
        everything = float(on_hand.sum() + backorders.sum() + in_transit.sum() + on_order.sum())
        if not np.isfinite(everything + bought_total + sold_total):
            for label, array in (("on_hand", on_hand), ("backorders", backorders), ("in_transit", in_transit),
                                 ("on_order", on_order)):
                if not np.isfinite(array).all():
                    i, k = np.argwhere(~np.isfinite(array))[0]
                    self._fail(day, f"node {self.names[i]!r} SKU {k}: {label} is not finite ({array[i, k]})")
            self._fail(day, f"network: bought ({bought_total}) or sold ({sold_total}) is not finite")
            return
        stock = on_hand[self.stock_rows]
        low, high = (float(stock.min()), float(stock.max())) if stock.size else (0.0, 0.0)
        scale = max(1.0, high, -low, abs(bought_total))
        tol = self.tolerance * scale
        # computed on every row (no copies), then supplier rows, which hold no stock, are left out
        residual = start + received - outflow - on_hand
        residual[self.is_supplier] = 0.0
        if residual.max() > tol or residual.min() < -tol:
            i, k = np.argwhere(np.abs(residual) > tol)[0]
            self._fail(day, f"node {self.names[i]!r} SKU {k}: on_hand_end differs from start + received - "
                            f"shipped - sold by {residual[i, k]:g}")
        if low < -tol:
            i, k = np.unravel_index(np.argmin(stock), stock.shape)
            self._fail(day, f"node {self.names[self.stock_rows[i]]!r} SKU {k}: on_hand is negative ({stock[i, k]:g})")
        for label, array in (("backorders", backorders), ("in_transit", in_transit), ("on_order", on_order)):
            if array.size and array.min() < -tol:
                i, k = np.unravel_index(np.argmin(array), array.shape)
                self._fail(day, f"node {self.names[i]!r} SKU {k}: {label} is negative ({array[i, k]:g})")
        held = stock.sum() + in_transit.sum() + sold_total
        if abs(bought_total - held) > tol * max(1, on_hand.shape[1]):
            self._fail(day, f"network: bought {bought_total:g} units but on hand + in transit + sold = {held:g}")

    def _fail(self, day: int, message: str) -> None:
        text = f"day {day}: ledger invariant violated: {message}"
        self.violations.append(text)
        if self.mode == "error":
            raise InvariantError(text)
        warnings.warn(text, InvariantWarning, stacklevel=3)
