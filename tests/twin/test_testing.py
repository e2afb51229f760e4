"""The checks in twin/testing.py catch what they promise to catch (each is fed a broken input)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from twin import Engine, network_from_dict
from twin.testing import (
    OrderUpTo,
    assert_identical,
    check_determinism,
    check_kpis,
    check_ledger,
    check_state,
    run_with_invariants,
)


@pytest.fixture(scope="module")
def net():
    return network_from_dict({
        "name": "kit",
        "skus": {"items": [{"name": "a", "mean": 4}, {"name": "b", "mean": 1, "dist": "negative_binomial"}]},
        "nodes": [{"name": "sup", "kind": "supplier"}, {"name": "dc", "kind": "dc", "parent": "sup"},
                  {"name": "s0", "kind": "store", "parent": "dc", "lead_time": {"dist": "poisson", "mean": 1}},
                  {"name": "s1", "kind": "store", "parent": "dc", "unmet": "lost"}],
    })


def policy():
    return OrderUpTo(np.array([[0, 0], [30, 10], [10, 4], [10, 4]], dtype=float))


def test_run_with_invariants_passes_a_sound_run(net):
    result = run_with_invariants(net, policy(), 40, 0)
    assert result.violations == []
    assert result.kpis["network"]["demand"] > 0


def test_check_state_catches_in_transit_that_matches_no_shipment(net):
    engine = Engine(net, horizon=10, seed=0, invariants="error")
    for _ in range(3):
        engine.step(policy().act(engine.state()))
    check_state(engine)
    engine.in_transit[2, 0] += 1
    with pytest.raises(AssertionError, match="'s0' SKU 0: in_transit is .* pending shipments"):
        check_state(engine)


def test_check_state_catches_negative_stock_and_lost_units(net):
    engine = Engine(net, horizon=10, seed=0, invariants="error")
    engine.step(policy().act(engine.state()))
    engine.on_hand[3, 1] = -2
    with pytest.raises(AssertionError, match="'s1' SKU 1: on_hand is negative"):
        check_state(engine)
    engine.on_hand[3, 1] = 0
    engine.bought += 5
    with pytest.raises(AssertionError, match="network conservation"):
        check_state(engine)


def test_check_ledger_on_series_catches_tampering(net):
    result = run_with_invariants(net, policy(), 30, 1)
    check_ledger(result, net)
    broken = copy.deepcopy(result)
    broken.series["on_hand"][12, 2] += 1
    with pytest.raises(AssertionError, match="day 12: node 's0'"):
        check_ledger(broken, net)
    broken = copy.deepcopy(result)
    broken.series["in_transit"][7, 1] += 3
    with pytest.raises(AssertionError, match="day 7: network conservation"):
        check_ledger(broken, net)
    broken = copy.deepcopy(result)
    broken.violations.append("day 3: something")
    with pytest.raises(AssertionError, match="violations"):
        check_ledger(broken, net)
    with pytest.raises(TypeError):
        check_ledger(result)


def test_check_kpis_catches_out_of_range_values(net):
    kpis = run_with_invariants(net, policy(), 30, 2).kpis
    check_kpis(kpis)
    for path, value, message in [(("network", "fill_rate"), 1.2, "outside"), (("nodes", "s0", "cost_holding"), -1.0,
                                  "negative"), (("echelons", "dc", "bullwhip_ratio"), float("nan"), "not finite")]:
        broken = copy.deepcopy(kpis)
        block = broken
        for key in path[:-1]:
            block = block[key]
        block[path[-1]] = value
        with pytest.raises(AssertionError, match=message):
            check_kpis(broken)


def test_check_determinism_catches_a_policy_with_hidden_randomness(net):
    class Noisy:
        rng = np.random.default_rng()  # unseeded: differs between runs

        def act(self, state):
            orders = self.rng.integers(0, 10, state.on_hand.shape).astype(float)
            orders[state.topology.is_supplier] = 0
            return orders

    with pytest.raises(AssertionError, match="same seed 3, different results"):
        check_determinism(net, Noisy, 20, 3)


def test_assert_identical_names_the_first_difference():
    a = {"x": {"y": np.array([1.0, 2.0, np.nan])}, "z": None}
    assert_identical(a, copy.deepcopy(a))
    b = copy.deepcopy(a)
    b["x"]["y"][1] = 2.0000001
    with pytest.raises(AssertionError, match=r"x\.y\[1\]"):
        assert_identical(a, b)
    with pytest.raises(AssertionError, match="z"):
        assert_identical(a, {"x": a["x"], "z": 0.0})
