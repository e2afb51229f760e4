"""Demand laws draw what they claim, and calendar effects move the true mean as documented."""

from __future__ import annotations

import numpy as np
import pytest

from twin.demand import DemandModel
from twin.spec import network_from_dict
from twin.streams import Streams

DAYS = 20_000


def one_store(items: list[dict], demand: dict | None = None):
    return network_from_dict({
        "name": "laws",
        "nodes": [{"name": "sup", "kind": "supplier"}, {"name": "shop", "kind": "store", "parent": "sup"}],
        "skus": {"items": items},
        "demand": demand or {},
    })


def draws(network, days=DAYS, seed=0):
    model = DemandModel(network, days, Streams(seed))
    return model, np.array([model.sample("shop", d) for d in range(days)])


@pytest.mark.parametrize(("item", "mean", "variance"), [
    ({"dist": "poisson", "mean": 3.0}, 3.0, 3.0),
    ({"dist": "negative_binomial", "mean": 6.0, "dispersion": 2.0}, 6.0, 6.0 + 36.0 / 2.0),
    ({"dist": "zero_inflated_poisson", "mean": 1.2, "zero_prob": 0.7}, 1.2, 1.2 * (1 + 1.2 * 0.7 / 0.3)),
    ({"dist": "normal", "mean": 40.0, "cv": 0.25}, 40.0, 100.0),
])
def test_each_law_has_its_mean_and_variance(item, mean, variance):
    _, x = draws(one_store([{"name": "a", **item}]))
    x = x[:, 0]
    assert x.mean() == pytest.approx(mean, abs=4 * np.sqrt(variance / DAYS))
    assert x.var() == pytest.approx(variance, rel=0.08)
    assert np.all(x >= 0) and np.all(x == np.rint(x))  # integer units by default


def test_untruncated_continuous_normal_for_reference_checks():
    net = one_store([{"name": "a", "dist": "normal", "mean": 1.0, "cv": 1.0}],
                    {"truncate_normal": False, "integer_units": False})
    _, x = draws(net)
    assert x.min() < 0  # untruncated: negative draws kept
    assert x[:, 0].mean() == pytest.approx(1.0, abs=0.05)
    assert not np.all(x == np.rint(x))


def test_calendar_effects_move_the_true_mean():
    weekly = [1, 1, 1, 1, 1, 2, 1]  # Saturdays double (normalised to mean 1 over the week)
    net = one_store(
        [{"name": "a", "mean": 10.0, "price": 4.0, "price_elasticity": 2.0}],
        {"weekly": weekly, "holidays": [{"name": "xmas", "day": 358, "lift": 1.5, "duration_days": 2}],
         "promotion": {"weekly_probability": 0.3, "duration_days": 7, "discount": 0.25, "extra_lift": 1.2}})
    model = DemandModel(net, 365, Streams(1))
    mean = model.mean_matrix("shop")[:, 0]
    base = 10.0 / (8 / 7)
    promo = model.promotion[:, 0]
    expected = base * np.where(np.arange(365) % 7 == 5, 2, 1) * np.where(promo, 1.2 * 0.75 ** -2.0, 1.0)
    expected[358:360] *= 1.5
    assert promo.any() and not promo.all()
    np.testing.assert_allclose(mean, expected)
    np.testing.assert_allclose(model.price[:, 0], np.where(promo, 3.0, 4.0))
    assert model.holiday[358] == 1.5 and model.holiday[357] == 1.0


def test_draws_follow_the_mean_including_a_shock_multiplier():
    net = one_store([{"name": "a", "mean": 5.0}])
    model = DemandModel(net, DAYS, Streams(2))
    x = np.array([model.sample("shop", d, np.array([3.0]))[0] for d in range(DAYS)])
    assert x.mean() == pytest.approx(15.0, abs=4 * np.sqrt(15.0 / DAYS))


def test_weather_index_moves_demand_of_sensitive_skus_only():
    net = one_store([{"name": "hot", "mean": 5.0, "weather_sensitivity": 0.5},
                     {"name": "plain", "mean": 5.0}], {"weather_sd": 0.5})
    model = DemandModel(net, 365, Streams(3))
    mean = model.mean_matrix("shop")
    weather = model.weather["all"]
    np.testing.assert_allclose(mean[:, 0], 5.0 * np.exp(0.5 * weather))
    np.testing.assert_allclose(mean[:, 1], 5.0)
    assert np.corrcoef(weather[:-1], weather[1:])[0, 1] > 0.5  # autocorrelated, with a yearly cycle
