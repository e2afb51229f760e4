"""Rationing rules: how a node that is short shares its stock among its customers' orders.

A rule turns a node's backlog (cohorts of unfilled orders, oldest first) and
today's new orders into *tranches* served in sequence, and splits the stock
left for each tranche among the rows (customers). Requests and allocations are
(customers, SKUs) matrices; every SKU is rationed independently.

- `Proportional` (default): each customer gets a share proportional to what it asks.
- `Priority`: customers in fixed order (the network's node order).
- `FirstComeFirstServed`: by order day, oldest first; ties by node order.

Proportional and Priority serve the backlog before new orders unless
`backlog_first` is False, in which case both are pooled.
"""

from __future__ import annotations

import numpy as np

from twin.registry import Registry


def split_proportional(available: np.ndarray, requests: np.ndarray, integer: bool) -> np.ndarray:
    """Share `available` (SKUs,) among rows of `requests` in proportion to each request."""
    available = np.maximum(available, 0.0)  # float residue below zero must not turn into a negative share
    total = requests.sum(axis=0)
    short = total > available
    if not short.any():
        return requests.copy()
    alloc = requests.copy()
    cols = np.flatnonzero(short)
    share = requests[:, cols] * (available[cols] / total[cols])
    if integer:
        floor = np.floor(share + 1e-9)
        leftover = np.rint(available[cols] - floor.sum(axis=0)).astype(np.int64)
        # largest remainders get the leftover units, one each
        order = np.argsort(-(share - floor), axis=0, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(len(requests))[:, None], axis=0)
        share = floor + (ranks < leftover[None, :])
    alloc[:, cols] = share
    return alloc


def split_priority(available: np.ndarray, requests: np.ndarray, integer: bool) -> np.ndarray:
    """Serve rows of `requests` in order until `available` runs out."""
    before = np.cumsum(requests, axis=0) - requests
    return np.clip(available[None, :] - before, 0.0, requests)


class RationingRule:
    """Base class: order of tranches and how each tranche is split."""

    def __init__(self, backlog_first: bool = True) -> None:
        self.backlog_first = backlog_first

    def tranches(self, backlog: list[np.ndarray], new: np.ndarray) -> list[np.ndarray]:
        total = sum(backlog) if backlog else None
        if total is None:
            return [new]
        return [total, new] if self.backlog_first else [total + new]

    def split(self, available: np.ndarray, requests: np.ndarray, integer: bool) -> np.ndarray:
        raise NotImplementedError

    def allocate(self, available: np.ndarray | None, backlog: list[np.ndarray], new: np.ndarray,
                 integer: bool) -> np.ndarray:
        """Units to ship per (customer, SKU); `available` None means unlimited stock."""
        requests = self.tranches(backlog, new)
        if available is None:
            return sum(requests)
        if len(requests) == 1:  # the usual day: no backlog
            return self.split(available, requests[0], integer)
        left = available.astype(float).copy()
        shipped = np.zeros_like(new)
        for tranche in requests:
            part = self.split(left, tranche, integer)
            left = np.maximum(left - part.sum(axis=0), 0.0)
            shipped += part
        return shipped


class Proportional(RationingRule):
    """Short stock is shared in proportion to what each customer asks."""

    def split(self, available, requests, integer):
        return split_proportional(available, requests, integer)


class Priority(RationingRule):
    """Short stock goes to customers in fixed order (the order they are listed in the network)."""

    def split(self, available, requests, integer):
        return split_priority(available, requests, integer)


class FirstComeFirstServed(RationingRule):
    """Short stock goes to the oldest orders first; orders of the same day by customer order."""

    def tranches(self, backlog, new):
        return [*backlog, new]

    def split(self, available, requests, integer):
        return split_priority(available, requests, integer)


RULES: Registry[type[RationingRule]] = Registry("network.rationing", {
    "proportional": Proportional,
    "priority": Priority,
    "fcfs": FirstComeFirstServed,
})
