"""Baseline replenishment policies, one class each, all behind `act(state) -> orders`.

Levels are (nodes, SKUs) arrays; rows of supplier nodes are ignored. Each class
has a `from_stats` constructor that sets its levels from demand statistics and
safety factors per echelon (`z` by node kind), which is what the tuner searches.
"""

from __future__ import annotations

import numpy as np

from agents.baselines.safety import safety_factors
from twin.coverage import protection_periods
from twin.snapshot import Snapshot
from twin.state import NetworkState, orders_up_to
from twin.stats import DemandStats


class BaseStock:
    """Installation base-stock: order up to S on the node's own inventory position."""

    def __init__(self, levels: np.ndarray) -> None:
        self.levels = np.asarray(levels, dtype=float)

    def act(self, state: NetworkState) -> np.ndarray:
        return self.orders_for(state.inventory_position, state.topology.is_supplier)

    def orders_for(self, position: np.ndarray, is_supplier: np.ndarray) -> np.ndarray:
        """Orders (nodes, SKUs) at inventory position `position` (a served bundle decides with this too)."""
        return orders_up_to(self.levels, position, is_supplier)

    @classmethod
    def from_stats(cls, stats: DemandStats, z: dict[str, float] | None = None) -> BaseStock:
        """S = mean over L+1 days + z * sd over L+1 days (the protection period, twin/coverage.py; z per node
        kind, default SAFETY_FACTOR)."""
        mu, sd = stats.over(protection_periods(stats.lead_time_mean, 1))
        return cls(mu + safety_factors(stats.topology.kinds, z) * sd)


class ShockAwareBaseStock:
    """Installation base-stock with two sets of levels: `calm`, and `disrupted` while any disruption is in force.

    What a planner's disruption playbook does ("raise safety stock while a shock is declared"): it sees only the
    disruptions that have begun (the snapshot's, as the RL agents' shock flags do), never one to come, so it is the
    reference for what reacting to a shock, without foresight, can achieve.
    """

    needs_snapshot = True

    def __init__(self, calm: np.ndarray, disrupted: np.ndarray, is_supplier: np.ndarray) -> None:
        self.calm = np.asarray(calm, dtype=float)
        self.disrupted = np.asarray(disrupted, dtype=float)
        self.is_supplier = np.asarray(is_supplier, dtype=bool)
        if self.calm.shape != self.disrupted.shape or self.is_supplier.shape != self.calm.shape[:1]:
            raise ValueError(f"ShockAwareBaseStock: calm levels {self.calm.shape}, disrupted levels "
                             f"{self.disrupted.shape}, suppliers {self.is_supplier.shape}; allowed: (nodes, SKUs) "
                             f"levels and one supplier flag per node")

    def levels_for(self, snapshot: Snapshot) -> np.ndarray:
        """The levels (nodes, SKUs) in force at the snapshot: disrupted while it has a disruption in force."""
        return self.disrupted if snapshot.disruptions else self.calm

    def act(self, state: Snapshot) -> np.ndarray:
        check_snapshot(type(self).__name__, state)
        return orders_up_to(self.levels_for(state), state.inventory_position, self.is_supplier)

    @classmethod
    def from_stats(cls, stats: DemandStats, z: dict[str, float] | None = None,
                   z_disrupted: dict[str, float] | None = None) -> ShockAwareBaseStock:
        """Both level sets as BaseStock.from_stats sets them: with safety factors `z` while calm and `z_disrupted`
        while a disruption is in force."""
        return cls(BaseStock.from_stats(stats, z).levels, BaseStock.from_stats(stats, z_disrupted).levels,
                   stats.topology.is_supplier)


def check_snapshot(name: str, state: object) -> None:
    """TypeError unless `state` is a twin Snapshot (Engine.run passes one to a policy with needs_snapshot)."""
    if not isinstance(state, Snapshot):
        raise TypeError(f"{name}: expected a twin Snapshot (engine.snapshot()), got {type(state).__name__}; "
                        f"Engine.run passes one to a policy with needs_snapshot")


class EchelonBaseStock:
    """Echelon base-stock: order up to S on the echelon inventory position (Clark-Scarf optimal for serial chains)."""

    def __init__(self, levels: np.ndarray) -> None:
        self.levels = np.asarray(levels, dtype=float)

    def act(self, state: NetworkState) -> np.ndarray:
        return orders_up_to(self.levels, state.echelon_inventory_position, state.topology.is_supplier)

    @classmethod
    def from_stats(cls, stats: DemandStats, z: dict[str, float] | None = None) -> EchelonBaseStock:
        """S_e = demand over the lead times from the node down to a store, plus one day, with z safety (the
        protection period of that echelon lead time, twin/coverage.py)."""
        topo = stats.topology
        lead_times = np.zeros(len(topo.names))
        for i in range(len(topo.names)):
            below = np.flatnonzero(topo.descendants[i] & topo.is_store)
            if len(below):
                # the longest path of lead times from node i to a store below it
                paths = []
                for leaf in below:
                    total, j = 0.0, leaf
                    while j != i:
                        total += topo.lead_time_mean[j]
                        j = topo.parent[j]
                    paths.append(total + topo.lead_time_mean[i])
                lead_times[i] = max(paths)
        mu, sd = stats.over(protection_periods(lead_times, 1))
        return cls(mu + safety_factors(stats.topology.kinds, z) * sd)


class SS:
    """(s, S): when the inventory position is at or below s, order up to S."""

    def __init__(self, s: np.ndarray, S: np.ndarray) -> None:
        self.s = np.asarray(s, dtype=float)
        self.S = np.asarray(S, dtype=float)
        if np.any(self.S < self.s):
            raise ValueError("(s, S): S must be >= s for every node and SKU")

    def act(self, state: NetworkState) -> np.ndarray:
        return self.orders_for(state.inventory_position, state.topology.is_supplier)

    def orders_for(self, position: np.ndarray, is_supplier: np.ndarray) -> np.ndarray:
        """Orders (nodes, SKUs) at inventory position `position`: up to S where it is at or below s."""
        orders = np.where(position <= self.s, self.S - position, 0.0)
        orders[is_supplier] = 0.0
        return np.maximum(orders, 0.0)

    @classmethod
    def from_stats(cls, stats: DemandStats, fixed_cost: np.ndarray, holding_cost: np.ndarray,
                   z: dict[str, float] | None = None) -> SS:
        """s = base-stock level, S = s + EOQ (a standard heuristic)."""
        s = BaseStock.from_stats(stats, z).levels
        return cls(s, s + economic_order_quantity(stats.mean, fixed_cost, holding_cost))


class ReorderPointEOQ:
    """The static reorder point of the paper: when the position is at or below ROP, order EOQ (enough multiples
    to lift the position above ROP).

    `from_stats` sets ROP by the paper's formula, the classical continuous-review reorder point: demand over the
    lead time L plus z standard deviations of it. In this twin's day contract the position is reviewed once a day,
    so an order placed today must cover L + 1 days (the protection period is the lead time plus the review
    period), and with that formula `z` is *not* a cycle-service target: z = 1.65 on Poisson 10/day with L = 2
    gives a cycle service level of about 0.69, not 0.95. It is kept because it is the baseline the RL work is
    compared with; `from_stats(..., include_review_period=True)` covers L + 1 days instead, like BaseStock.
    """

    def __init__(self, reorder_point: np.ndarray, quantity: np.ndarray) -> None:
        self.reorder_point = np.asarray(reorder_point, dtype=float)
        self.quantity = np.maximum(np.asarray(quantity, dtype=float), 1e-9)

    def act(self, state: NetworkState) -> np.ndarray:
        return self.orders_for(state.inventory_position, state.topology.is_supplier)

    def orders_for(self, position: np.ndarray, is_supplier: np.ndarray) -> np.ndarray:
        """Orders (nodes, SKUs) at inventory position `position`: whole EOQ batches where it is at or below ROP."""
        short = position <= self.reorder_point
        batches = np.floor((self.reorder_point - position) / self.quantity) + 1
        orders = np.where(short, batches * self.quantity, 0.0)
        orders[is_supplier] = 0.0
        return orders

    @classmethod
    def from_stats(cls, stats: DemandStats, fixed_cost: np.ndarray, holding_cost: np.ndarray,
                   z: dict[str, float] | None = None, include_review_period: bool = False) -> ReorderPointEOQ:
        """ROP = mean over the protection period + z * sd over it (z per node kind, default SAFETY_FACTOR); Q = EOQ.

        The protection period is the lead time L by default: the paper's static ROP, with which z is not a
        cycle-service target here, since an order placed today must cover L + 1 days of demand (see the class
        docstring). With `include_review_period=True` it is L + 1 days (lead time plus the one-day review
        period), as in BaseStock: z then aims at a cycle-service target (ordering EOQ rather than up to a level
        leaves the position above ROP, so the level reached tends to be higher).
        """
        periods = protection_periods(stats.lead_time_mean, 1 if include_review_period else 0)
        mu, sd = stats.over(periods)
        rop = mu + safety_factors(stats.topology.kinds, z) * sd
        return cls(rop, economic_order_quantity(stats.mean, fixed_cost, holding_cost))


def economic_order_quantity(daily_mean: np.ndarray, fixed_cost: np.ndarray, holding_cost: np.ndarray) -> np.ndarray:
    """EOQ = sqrt(2 K D / h) per node and SKU, at least one day of demand and at least 1 unit."""
    h = np.maximum(holding_cost, 1e-9)
    eoq = np.sqrt(2 * fixed_cost * daily_mean / h)
    return np.maximum(np.maximum(eoq, daily_mean), 1.0)
