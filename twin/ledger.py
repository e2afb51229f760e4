"""The ledger's run-time invariants (DESIGN.md section 6).

Per node and SKU, every day:
    on_hand_end = on_hand_start + received - shipped_downstream - sold
and network-wide:
    units bought from suppliers = units on hand + in transit + sold.
No state may go negative. The twin has no scrapping mechanism, so the scrap
term of DESIGN.md is always zero and omitted. Lost sales and backorders are
tracked apart: they never move stock.
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
        self.stock_rows = np.flatnonzero(~is_supplier)
        self.mode = mode
        self.tolerance = tolerance
        self.violations: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def check_day(self, day: int, *, start: np.ndarray, received: np.ndarray, shipped: np.ndarray,
                  sold: np.ndarray, on_hand: np.ndarray, backorders: np.ndarray, in_transit: np.ndarray,
                  on_order: np.ndarray, bought_total: float, sold_total: float) -> None:
        """Check one day's flows and end-of-day state (all (nodes, SKUs) arrays)."""
        if not self.enabled:
            return
        rows = self.stock_rows
        scale = max(1.0, float(np.abs(on_hand[rows]).max(initial=0)), abs(bought_total))
        tol = self.tolerance * scale
        residual = start[rows] + received[rows] - shipped[rows] - sold[rows] - on_hand[rows]
        bad = np.abs(residual) > tol
        if bad.any():
            i, k = np.argwhere(bad)[0]
            self._fail(day, f"node {self.names[rows[i]]!r} SKU {k}: on_hand_end differs from start + received - "
                            f"shipped - sold by {residual[i, k]:g}")
        for label, array in (("on_hand", on_hand[rows]), ("backorders", backorders), ("in_transit", in_transit),
                             ("on_order", on_order)):
            if array.size and array.min() < -tol:
                i, k = np.unravel_index(np.argmin(array), array.shape)
                node = self.names[rows[i]] if label == "on_hand" else self.names[i]
                self._fail(day, f"node {node!r} SKU {k}: {label} is negative ({array[i, k]:g})")
        held = on_hand[rows].sum() + in_transit.sum() + sold_total
        if abs(bought_total - held) > tol * max(1, on_hand.shape[1]):
            self._fail(day, f"network: bought {bought_total:g} units but on hand + in transit + sold = {held:g}")

    def _fail(self, day: int, message: str) -> None:
        text = f"day {day}: ledger invariant violated: {message}"
        self.violations.append(text)
        if self.mode == "error":
            raise InvariantError(text)
        warnings.warn(text, InvariantWarning, stacklevel=3)
