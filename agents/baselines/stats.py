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

import numpy as np

from twin.demand import DemandModel
from twin.spec import NetworkSpec, SkuCatalog
from twin.state import Topology
from twin.streams import Streams


@dataclass(frozen=True)
class DemandStats:
    """Mean and variance of daily demand (nodes, SKUs) and lead-time mean and variance (nodes,)."""

    topology: Topology
    mean: np.ndarray
    variance: np.ndarray
    lead_time_mean: np.ndarray
    lead_time_variance: np.ndarray

    @classmethod
    def of(cls, network: NetworkSpec, horizon: int = 365, seed: int = 0) -> DemandStats:
        """Statistics of the demand model of `network` over `horizon` days (promotions and weather of `seed`)."""
        topo = Topology.of(network)
        model = DemandModel(network, horizon, Streams(seed))
        n_nodes, n_skus = len(network.nodes), network.skus.n

        # 1. each store: its expected demand per day (days, SKUs) and the variance of its draw around it
        stores = [i for i, node in enumerate(network.nodes) if node.kind == "store"]
        expected = {i: model.mean_matrix(network.nodes[i].name) for i in stores}
        draw_variance = {i: _draw_variance(network.skus, expected[i]) for i in stores}

        # 2. every node (a store included) faces the sum of the stores below it: sum those stores' expected
        #    demand day by day first, then take the mean and the variance over the days
        mean = np.zeros((n_nodes, n_skus))
        variance = np.zeros((n_nodes, n_skus))
        for j in range(n_nodes):
            below = [i for i in stores if topo.descendants[j, i]]
            if not below:  # a supplier with no stores under it: no demand
                continue
            node_expected = sum(expected[i] for i in below)          # (days, SKUs)
            node_draw_variance = sum(draw_variance[i] for i in below)  # independent draws: variances add
            mean[j] = node_expected.mean(axis=0)
            variance[j] = node_draw_variance.mean(axis=0) + node_expected.var(axis=0)

        lead_time_variance = np.array([_lead_time_variance(node.lead_time) for node in network.nodes])
        return cls(topo, mean, variance, topo.lead_time_mean, lead_time_variance)

    def over(self, periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of demand over `periods` (nodes,) days, lead-time variance included.

        Days are treated as independent: variance = daily variance x periods + daily mean^2 x the
        lead-time variance. The lead-time variance is that of the node's *own* inbound lane only. That is
        right for installation policies (BaseStock, (s, S), ReorderPointEOQ), whose protection period is the
        node's own lead time (plus review); for echelon policies, whose periods span the lanes down to the
        stores, the downstream lanes' lead-time variance is left out.
        """
        p = np.asarray(periods, dtype=float)[:, None]
        mu = self.mean * p
        var = self.variance * p + self.mean**2 * self.lead_time_variance[:, None]
        return mu, np.sqrt(var)


def _draw_variance(skus: SkuCatalog, expected: np.ndarray) -> np.ndarray:
    """Variance (days, SKUs) of one store's daily draw around its expected demand `expected`, per demand law.

    Normal draws are taken as N(m, (cv m)^2); truncation at zero and rounding to whole units are ignored.
    """
    m = expected
    dist = np.asarray(skus.dist)
    keep = 1 - skus.zero_prob  # zero-inflated Poisson: Poisson(m / keep) with probability keep, else 0
    by_law = {
        "poisson": m,
        "negative_binomial": m + m**2 / skus.dispersion,
        "normal": (skus.cv * m) ** 2,
        "zero_inflated_poisson": m * (1 + m * (1 - keep) / keep),
    }
    variance = np.zeros_like(m)
    for law, law_variance in by_law.items():
        variance = np.where(dist == law, law_variance, variance)
    return variance


def _lead_time_variance(lt) -> float:
    if lt.dist == "deterministic":
        return 0.0
    if lt.dist == "empirical":
        values, probs = np.asarray(lt.values, float), np.asarray(lt.probs)
        return float(probs @ values**2 - (probs @ values) ** 2)
    if lt.dist == "poisson":
        return float(lt.mean)
    return float((lt.cv * lt.mean) ** 2)
