"""The variance of a demand draw per law (twin/demand.py: draw_variance) and of a lane's lead time
(LeadTimeSpec.variance), against hand-computed values and against samples of the twin's own draws."""

from __future__ import annotations

import numpy as np
import pytest

from twin import Engine, network_from_dict
from twin.demand import draw_variance
from twin.spec import LeadTimeSpec


def catalog():
    return network_from_dict({
        "name": "laws",
        "skus": {"items": [
            {"name": "p", "dist": "poisson", "mean": 4},
            {"name": "nb", "dist": "negative_binomial", "mean": 4, "dispersion": 2.0},
            {"name": "zip", "dist": "zero_inflated_poisson", "mean": 4, "zero_prob": 0.2},
            {"name": "n", "dist": "normal", "mean": 4, "cv": 0.5},
        ]},
        "nodes": [{"name": "sup", "kind": "supplier"}, {"name": "shop", "kind": "store", "parent": "sup"}],
    })


def test_draw_variance_per_law_by_hand():
    skus = catalog().skus
    mean = np.array([[4.0, 4.0, 4.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    # poisson m; NB m + m^2 / r; ZIP m (1 + m p / (1 - p)); normal (cv m)^2
    expected = [[4.0, 4 + 16 / 2, 4 * (1 + 4 * 0.2 / 0.8), 4.0], [2.0, 2 + 4 / 2, 2 * (1 + 2 * 0.2 / 0.8), 1.0]]
    np.testing.assert_allclose(draw_variance(mean, skus), expected)
    np.testing.assert_allclose(draw_variance(mean[0], skus), expected[0])  # any leading shape
    assert draw_variance(mean, skus) is not mean and mean[0, 0] == 4.0    # the input is left alone


def test_draw_variance_matches_the_twins_draws():
    network = catalog()
    engine = Engine(network, horizon=4000, seed=3)
    mean = np.full(4, 4.0)
    store = engine.demand_model
    draws = np.array([store.draw("shop", day, mean) for day in range(4000)])
    np.testing.assert_allclose(draws.var(axis=0), draw_variance(mean, network.skus), rtol=0.1)


@pytest.mark.parametrize("spec, variance", [
    (LeadTimeSpec(dist="deterministic", mean=3), 0.0),
    (LeadTimeSpec(dist="poisson", mean=2.5), 2.5),
    (LeadTimeSpec(dist="gamma", mean=4.0, cv=0.5), 4.0),
    (LeadTimeSpec(dist="lognormal", mean=2.0, cv=0.3), 0.36),
    (LeadTimeSpec(dist="empirical", values=(1, 2, 4), probs=(0.5, 0.25, 0.25)), 1.5),  # E 2, E[L^2] 5.5
])
def test_lead_time_variance_by_hand(spec, variance):
    assert spec.variance == pytest.approx(variance)
