"""Inventory positions a policy sees: installation and echelon, with and without re-routing."""

from __future__ import annotations

import numpy as np
import pytest

from twin import DcClosure, Engine, network_from_dict


def two_dcs():
    return network_from_dict({
        "name": "pair",
        "skus": {"items": [{"name": "a", "mean": 4}]},
        "nodes": [
            {"name": "sup", "kind": "supplier"},
            {"name": "dc_a", "kind": "dc", "parent": "sup", "lead_time": {"mean": 2}},
            {"name": "dc_b", "kind": "dc", "parent": "sup", "lead_time": {"mean": 2}},
            {"name": "s1", "kind": "store", "parent": "dc_a", "backup_parent": "dc_b"},
            {"name": "s2", "kind": "store", "parent": "dc_b", "backup_parent": "dc_a"},
        ],
    })


def test_echelon_position_sums_the_subtree_and_follows_rerouting():
    network = two_dcs()
    engine = Engine(network, horizon=30, seed=0, shocks=(DcClosure(start=10, end=20, dc="dc_a"),))
    orders = np.zeros((5, 1))
    orders[1:, 0] = 10
    while engine.day < 12:
        engine.step(orders)
    state = engine.state()
    local = state.on_hand + state.in_transit
    customers = np.where(state.topology.is_store[:, None], state.backorders, 0.0)
    echelon = state.echelon_inventory_position
    # dc_a is closed: s1 orders from dc_b and belongs to dc_b's echelon for now
    assert state.route[3] == 2
    np.testing.assert_allclose(echelon[1], local[1] + state.on_order[1])
    np.testing.assert_allclose(echelon[2], local[2] + local[3] + local[4] - customers[3] - customers[4]
                               + state.on_order[2])
    np.testing.assert_allclose(echelon[0], local[1:].sum(axis=0) - customers.sum(axis=0) + state.on_order[0])
    np.testing.assert_allclose(state.inventory_position,
                               state.on_hand + state.in_transit + state.on_order - state.backorders)
    while engine.day < 22:
        engine.step(orders)
    after = engine.state()
    assert after.route[3] == 1  # reopened: back to the tree
    local = after.on_hand + after.in_transit
    customers = np.where(after.topology.is_store[:, None], after.backorders, 0.0)
    np.testing.assert_allclose(after.echelon_inventory_position[1],
                               local[1] + local[3] - customers[3] + after.on_order[1])


def test_initial_stock_is_on_hand_on_day_zero_and_counted_as_bought():
    network = two_dcs()
    start = np.array([[0.0], [30.0], [30.0], [8.0], [8.0]])
    engine = Engine(network, horizon=5, seed=0, initial_on_hand=start, invariants="error")
    np.testing.assert_array_equal(engine.state().on_hand, start)
    assert engine.bought == 76.0
    while not engine.done:  # no orders: demand eats the initial stock, the ledger still balances
        engine.step(np.zeros((5, 1)))
    result = engine.result()
    assert result.series["on_hand"][0, 3] <= 8.0
    assert result.series["outflow"][:, 3:].sum() > 0


@pytest.mark.parametrize(("start", "message"), [
    (np.ones((4, 1)), "initial_on_hand: shape"),
    (np.array([[0.0], [1.0], [-1.0], [0.0], [0.0]]), r"initial_on_hand\['dc_b', SKU 0\]"),
    (np.array([[5.0], [0.0], [0.0], [0.0], [0.0]]), "suppliers hold and order nothing"),
])
def test_bad_initial_stock_names_the_argument(start, message):
    with pytest.raises(ValueError, match=message):
        Engine(two_dcs(), horizon=5, seed=0, initial_on_hand=start)
