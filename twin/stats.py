"""Demand and lead-time statistics per node and SKU that static policies are built from.

A store faces its customers; a DC or any inner node faces the sum of the stores
below it. A node's daily demand is

    demand_j(t) = expected_j(t) + noise_j(t),   expected_j(t) = sum over stores s below j of mean_s(t)

where `mean_s(t)` is the store's expected demand on day t (seasonality,
promotions, weather: the demand model's mean matrix) and the noise is the
store draws around it, independent between stores and days. Over the days of
the horizon, its variance is therefore

    var_j = mean over days of (sum over stores below j of the draw variance)
          + variance over days of expected_j(t)

The second term is taken on the *summed* expected demand: the stores share the
calendar, the promotions and the regional weather, so their expected demands
move together, and adding the stores' own day-to-day variances would leave out
those covariances (a DC's variance would come out too low). A static level must
cover the day-to-day movement of the mean, which is why it is counted at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from twin.demand import DemandModel
from twin.spec import NetworkSpec
from twin.state import Topology
from twin.streams import Streams

if TYPE_CHECKING:
    from twin.demand_history import DemandSource


@dataclass(frozen=True)
class DemandStats:
    """Mean and variance of daily demand (nodes, SKUs) and lead-time mean and variance (nodes,)."""

    topology: Topology
    mean: np.ndarray
    variance: np.ndarray
    lead_time_mean: np.ndarray
    lead_time_variance: np.ndarray

    @classmethod
    def of(cls, network: NetworkSpec, horizon: int = 365, seed: int = 0,
           demand: DemandSource | None = None) -> DemandStats:
        """Statistics of the demand model of `network` over `horizon` days (promotions and weather of `seed`), or
        of a planner's history `demand` (twin/demand_history.py: a replay's day-to-day movement counts as the
        movement of the mean; a fitted history's residuals as the draws' variance)."""
        topo = Topology.of(network)
        model = DemandModel(network, horizon, Streams(seed))
        if demand is not None:
            model = demand.model(network, horizon, Streams(seed), model)
        n_nodes, n_skus = len(network.nodes), network.skus.n

        # Each store's expected demand per day (days, SKUs) is added into every node above it, where it is
        # summed day by day before the variance over days is taken; the variance of the draws around it only
        # needs its mean over days. (One (days, SKUs) sum per inner node is kept, not one per store.)
        mean = np.zeros((n_nodes, n_skus))
        mean_draw_variance = np.zeros((n_nodes, n_skus))  # independent draws: their variances add up
        variance_of_expected = np.zeros((n_nodes, n_skus))
        summed: dict[int, np.ndarray] = {}  # inner node -> sum of its stores' expected demand, (days, SKUs)
        for i, node in enumerate(network.nodes):
            if node.kind != "store":
                continue
            expected = model.mean_matrix(node.name)
            store_draw_variance = model.variance_matrix(node.name).mean(axis=0)
            mean[i], variance_of_expected[i] = expected.mean(axis=0), expected.var(axis=0)
            for j in np.flatnonzero(topo.descendants[:, i]):  # the store itself and every node above it
                mean_draw_variance[j] += store_draw_variance
                if j == i:
                    continue
                if j in summed:
                    summed[j] += expected
                else:
                    summed[j] = expected.copy()
        for j, expected in summed.items():
            mean[j], variance_of_expected[j] = expected.mean(axis=0), expected.var(axis=0)
        variance = mean_draw_variance + variance_of_expected

        lead_time_variance = np.array([node.lead_time.variance for node in network.nodes])
        return cls(topo, mean, variance, topo.lead_time_mean, lead_time_variance)

    def over(self, periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of demand over `periods` (nodes,) days, lead-time variance included.

        Days are treated as independent: variance = daily variance x periods + daily mean^2 x the
        lead-time variance. The lead-time variance is that of the node's *own* inbound lane only. That is
        right for installation policies (BaseStock, (s, S), ReorderPointEOQ), whose protection period is the
        node's own lead time (plus review); for echelon policies, whose periods span the lanes down to the
        stores, the downstream lanes' lead-time variance is left out.
        """
        return demand_over(self.mean, self.variance, self.lead_time_variance, periods)


def demand_over(mean: np.ndarray, variance: np.ndarray, lead_time_variance: np.ndarray,
                periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (nodes, SKUs) of demand over `periods` (nodes,) days, from the daily `mean` and
    `variance` (nodes, SKUs) and each node's `lead_time_variance` (nodes,): DemandStats.over's rule, on arrays."""
    p = np.asarray(periods, dtype=float)[:, None]
    mu = mean * p
    var = variance * p + mean**2 * np.asarray(lead_time_variance, dtype=float)[:, None]
    return mu, np.sqrt(var)

