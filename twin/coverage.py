"""Days of demand: how many days an order placed today must cover, and the stock a run starts with.

Protection period. An order placed at today's decision point arrives after the
lane's lead time L and must last until the order placed at the next review, R
days later, arrives: it covers L + R days of demand. The twin moves goods in
whole days: every lead time it samples is rounded to the nearest whole day,
halves to even (`np.rint`, as in `LeadTimeSpec.sample`). The protection period
of an expected lead time is rounded by that same rule,

    periods = rint(L) + R   (whole days, int64),

so the environments' forecasts, the forecast-driven base-stock, the static
policies' levels and the environments' starting stock all count the same days.
For a lane whose expected lead time is a whole number of days (a deterministic
lead time, and every lane of the shipped networks) this is L + R exactly.
`review_period` 0 gives the lead time alone (the paper's continuous-review
reorder point).

Starting stock. A run may start with stock on hand: a number of days of each
(node, SKU)'s mean daily demand per node, rounded to whole units where the
network counts whole units.
"""

from __future__ import annotations

import numpy as np


def protection_periods(lead_times: np.ndarray, review_period: int | np.ndarray = 1) -> np.ndarray:
    """Whole days an order placed today must cover, per lane: rint(lead_times) + review_period (int64).

    `lead_times` are expected lead times in days, any shape (e.g. (nodes,): today's, or the nominal ones);
    `review_period` is whole days >= 0, a scalar or broadcastable to `lead_times`.
    """
    lead_times = np.asarray(lead_times, dtype=float)
    # one pass each way (NaN fails both comparisons): the envs call this at every decision point
    if lead_times.size and not (lead_times.min() >= 0 and lead_times.max() < np.inf):
        raise ValueError(f"lead_times: {lead_times!r} is not allowed; allowed: finite days >= 0")
    if isinstance(review_period, (int, np.integer)) and not isinstance(review_period, bool) and review_period >= 0:
        return np.rint(lead_times).astype(np.int64) + int(review_period)
    review = np.asarray(review_period)
    whole = review.dtype.kind in "iu" or (review.dtype.kind == "f" and np.all(review == np.rint(review)))
    if not whole or np.any(review < 0):
        raise ValueError(f"review_period: {review_period!r} is not allowed; allowed: whole days >= 0")
    return np.rint(lead_times).astype(np.int64) + review.astype(np.int64)


def starting_stock(daily_mean: np.ndarray, days: np.ndarray, *, integer_units: bool) -> np.ndarray:
    """On-hand stock (nodes, SKUs) of `days` (nodes,) of mean daily demand `daily_mean` (nodes, SKUs) per node.

    A node with 0 days starts empty (a supplier must: it holds no stock). With `integer_units` the stock is
    rounded to whole units (to the nearest, halves to even).
    """
    days = np.asarray(days, dtype=float)
    if days.ndim != 1 or days.shape[0] != np.shape(daily_mean)[0]:
        raise ValueError(f"days: shape {days.shape} is not allowed; allowed: ({np.shape(daily_mean)[0]},), "
                         f"one per node")
    if np.any(~np.isfinite(days)) or np.any(days < 0):
        raise ValueError(f"days: {days!r} is not allowed; allowed: finite numbers >= 0")
    stock = daily_mean * days[:, None]
    return np.rint(stock) if integer_units else stock
