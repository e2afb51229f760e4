"""Demand statistics of the baselines match simulated demand; the reorder point's protection period option works."""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines import BaseStock, ReorderPointEOQ
from twin import Engine, network_from_dict
from twin.demand import DemandModel
from twin.stats import DemandStats
from twin.streams import Streams

HORIZON = 365


def seasonal_network():
    """1 supplier -> 1 DC -> 4 stores of different sizes, strong weekly and yearly seasonality, three demand laws.

    No promotions and no weather: the expected demand is then the same for every seed, so draws with several
    seeds are independent replicates around one mean matrix.
    """
    return network_from_dict({
        "name": "seasonal",
        "layout": {
            "suppliers": 1, "dcs": 1, "stores": 4, "regions": ["north"],
            "dc": {"lead_time": {"dist": "deterministic", "mean": 3}},
            "store": {"lead_time": {"dist": "deterministic", "mean": 1}, "demand_scale": [0.6, 1.4],
                      "backup_dc": False},
        },
        "skus": {"items": [
            {"name": "rice", "dist": "poisson", "mean": 20},
            {"name": "milk", "dist": "negative_binomial", "mean": 10, "dispersion": 5},
            {"name": "kettle", "dist": "zero_inflated_poisson", "mean": 2, "zero_prob": 0.5},
        ]},
        "demand": {"weekly": [0.2, 0.4, 0.7, 1.0, 1.4, 2.0, 1.3], "yearly_amplitude": 0.5},
    })


def simulated_demand(network, seeds: range) -> np.ndarray:
    """Demand draws (seeds, days, nodes, SKUs); an inner node's demand is the sum over the stores below it."""
    stores = [i for i, node in enumerate(network.nodes) if node.kind == "store"]
    draws = np.zeros((len(seeds), HORIZON, len(network.nodes), network.skus.n))
    for r, seed in enumerate(seeds):
        model = DemandModel(network, HORIZON, Streams(seed))
        for day in range(HORIZON):
            for i in stores:
                draws[r, day, i] = model.sample(network.nodes[i].name, day)
    stats = DemandStats.of(network, HORIZON, seed=0)
    below = stats.topology.descendants.astype(float)  # [j, i]: store i is j or below j
    return np.einsum("ji,rdik->rdjk", below, draws)


@pytest.fixture(scope="module")
def seasonal():
    network = seasonal_network()
    return network, DemandStats.of(network, HORIZON, seed=0), simulated_demand(network, range(16))


def test_variance_matches_simulated_demand_at_stores_and_at_the_dc(seasonal):
    network, stats, demand = seasonal
    empirical = demand.var(axis=1).mean(axis=0)  # variance over the days, averaged over the replicates
    # a store's sample variance is noisier than the DC's (fewer units a day, heavier tails): a wider tolerance
    for kind, rtol in (("store", 0.15), ("dc", 0.1)):
        rows = [i for i, node in enumerate(network.nodes) if node.kind == kind]
        np.testing.assert_allclose(stats.variance[rows], empirical[rows], rtol=rtol, err_msg=kind)
    # the stores' expected demands move together (same calendar): the DC's variance is well above the sum of
    # the stores' variances, which is what summing them would have given
    dc = network.index("dc_0")
    stores = [i for i, node in enumerate(network.nodes) if node.kind == "store"]
    assert np.all(stats.variance[dc] > 1.5 * stats.variance[stores].sum(axis=0))


def test_mean_of_an_inner_node_is_the_sum_of_its_stores_means(seasonal):
    network, stats, demand = seasonal
    stores = [i for i, node in enumerate(network.nodes) if node.kind == "store"]
    for inner in ("dc_0", "supplier_0"):
        np.testing.assert_allclose(stats.mean[network.index(inner)], stats.mean[stores].sum(axis=0))
    np.testing.assert_allclose(stats.mean, demand.mean(axis=(0, 1)), rtol=0.1)  # sampling noise


def single_store_network():
    """supplier -> store, one SKU with Poisson demand 10/day, a deterministic lead time of 2 days."""
    return network_from_dict({
        "name": "single_store",
        "nodes": [
            {"name": "supplier", "kind": "supplier"},
            {"name": "store", "kind": "store", "parent": "supplier",
             "lead_time": {"dist": "deterministic", "mean": 2}},
        ],
        "skus": {"items": [{"name": "rice", "dist": "poisson", "mean": 10, "holding_cost": 0.1,
                            "fixed_order_cost": 0.0}]},
    })


def cycle_service_level(network, policy) -> float:
    result = Engine(network, horizon=3000, seed=0, warmup=50).run(policy)
    return result.kpis["network"]["cycle_service_level"]


def test_reorder_point_covers_the_review_period_on_request():
    network = single_store_network()
    stats = DemandStats.of(network, HORIZON, seed=0)
    fixed_cost, holding_cost = np.zeros((2, 1)), np.full((2, 1), 0.1)
    paper = ReorderPointEOQ.from_stats(stats, fixed_cost, holding_cost, z={"store": 1.65})
    review = ReorderPointEOQ.from_stats(stats, fixed_cost, holding_cost, z={"store": 1.65},
                                        include_review_period=True)
    store = network.index("store")
    # mean 10/day: the paper's ROP covers L = 2 days, the other L + 1 = 3 days
    assert paper.reorder_point[store, 0] == pytest.approx(20 + 1.65 * np.sqrt(20), rel=0.02)
    assert review.reorder_point[store, 0] == pytest.approx(30 + 1.65 * np.sqrt(30), rel=0.02)

    csl_paper = cycle_service_level(network, paper)
    csl_review = cycle_service_level(network, review)
    csl_base_stock = cycle_service_level(network, BaseStock.from_stats(stats, z={"store": 1.65}))
    # with L days z = 1.65 falls well short of its 95 % cycle-service target; with L + 1 days it about meets it
    assert csl_paper < 0.8
    assert csl_review > csl_paper + 0.15
    assert csl_review > 0.9 and csl_base_stock > 0.9
