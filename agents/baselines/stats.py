"""Demand and lead-time statistics per node and SKU that static policies are built from.

A store faces its customers; a DC or any inner node faces the sum of the stores
below it. Daily demand variance includes the day-to-day variation of the mean
(seasonality, promotions), since a static level must cover it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.demand import DemandModel
from twin.spec import NetworkSpec
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
        topo = Topology.of(network)
        model = DemandModel(network, horizon, Streams(seed))
        skus = network.skus
        n, k = len(network.nodes), skus.n
        mean = np.zeros((n, k))
        var = np.zeros((n, k))
        dist = np.asarray(skus.dist)
        for i, node in enumerate(network.nodes):
            if node.kind != "store":
                continue
            m = model.mean_matrix(node.name)
            mu = m.mean(axis=0)
            within = np.where(dist == "poisson", m, 0.0)
            within = within + np.where(dist == "negative_binomial", m + m**2 / skus.dispersion, 0.0)
            within = within + np.where(dist == "normal", (skus.cv * m) ** 2, 0.0)
            keep = 1 - skus.zero_prob
            within = within + np.where(dist == "zero_inflated_poisson", m * (1 + m * (1 - keep) / keep), 0.0)
            mean[i] = mu
            var[i] = within.mean(axis=0) + m.var(axis=0)
        leaves = topo.descendants.astype(float)
        mean = leaves @ mean
        var = leaves @ var
        lt_var = np.array([_lead_time_variance(nd.lead_time) for nd in network.nodes])
        return cls(topo, mean, var, topo.lead_time_mean, lt_var)

    def over(self, periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of demand over `periods` (nodes,) days, lead-time variance included."""
        p = np.asarray(periods, dtype=float)[:, None]
        mu = self.mean * p
        var = self.variance * p + self.mean**2 * self.lead_time_variance[:, None]
        return mu, np.sqrt(var)


def _lead_time_variance(lt) -> float:
    if lt.dist == "deterministic":
        return 0.0
    if lt.dist == "empirical":
        values, probs = np.asarray(lt.values, float), np.asarray(lt.probs)
        return float(probs @ values**2 - (probs @ values) ** 2)
    if lt.dist == "poisson":
        return float(lt.mean)
    return float((lt.cv * lt.mean) ** 2)
