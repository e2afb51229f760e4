"""twin/costs.py: the cost rates per (node, SKU) with their zeroing rules, and one day's cost by kind."""

from __future__ import annotations

import numpy as np
import pytest

from twin import Engine, network_from_dict
from twin.costs import COST_KINDS, cost_rates, day_costs
from twin.kpi import SERIES_FIELDS
from twin.testing import OrderUpTo


def network():
    """supplier -> dc (lost sales, its own cost factors) -> a store that backorders and one that loses sales."""
    return network_from_dict({
        "name": "costs",
        "skus": {"items": [
            {"name": "a", "mean": 5, "holding_cost": 2.0, "backorder_cost": 3.0, "lost_sale_cost": 7.0,
             "fixed_order_cost": 11.0, "unit_cost": 0.5},
            {"name": "b", "mean": 5, "holding_cost": 1.0, "backorder_cost": 0.0, "lost_sale_cost": 4.0,
             "fixed_order_cost": 0.0, "unit_cost": 2.0}]},
        "nodes": [
            {"name": "sup", "kind": "supplier"},
            {"name": "dc", "kind": "dc", "parent": "sup", "unmet": "lost", "holding_factor": 0.5,
             "backorder_factor": 2.0, "in_transit_holding": 0.25},
            {"name": "back", "kind": "store", "parent": "dc", "holding_factor": 1.5, "in_transit_holding": 1.0},
            {"name": "lost", "kind": "store", "parent": "dc", "unmet": "lost", "lost_sale_factor": 2.0},
        ],
    })


def test_rates_are_factor_times_base_cost_with_suppliers_and_non_stores_zeroed():
    rates = cost_rates(network())
    # rows: sup, dc, back, lost; columns: SKUs a, b
    np.testing.assert_array_equal(rates.holding, [[0, 0], [1.0, 0.5], [3.0, 1.5], [2.0, 1.0]])
    np.testing.assert_array_equal(rates.backorder, [[0, 0], [6.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    # a lost sale costs only at a store: the DC (factor 1 by default) is not charged, its store is
    np.testing.assert_array_equal(rates.lost_sale, [[0, 0], [0, 0], [7.0, 4.0], [14.0, 8.0]])
    np.testing.assert_array_equal(rates.transit, [[0, 0], [0.5, 0.25], [2.0, 1.0], [0, 0]])
    np.testing.assert_array_equal(rates.fixed_order, [[11.0, 0.0]] * 4)
    np.testing.assert_array_equal(rates.unit, [[0.5, 2.0]] * 4)
    np.testing.assert_array_equal(rates.backorders_allowed, [True, False, True, False])


def test_shortage_rate_and_critical_ratio_follow_how_each_node_meets_a_shortage():
    rates = cost_rates(network())
    # back orders: its backorder rate; lost loses sales: its lost-sale rate; the DC loses (cancels): 0
    np.testing.assert_array_equal(rates.shortage, [[0, 0], [0, 0], [3.0, 0.0], [14.0, 8.0]])
    np.testing.assert_allclose(rates.critical_ratio, [[0, 0], [0, 0], [0.5, 0.0], [14 / 16, 8 / 9]])


def test_rates_are_read_only():
    rates = cost_rates(network())
    for name in ("holding", "backorder", "lost_sale", "transit", "fixed_order", "unit", "backorders_allowed"):
        with pytest.raises(ValueError):
            getattr(rates, name)[0, ...] = 1


def test_the_engine_charges_with_these_rates():
    net = network()
    engine, rates = Engine(net, horizon=1, seed=0), cost_rates(net)
    for name in ("holding", "backorder", "lost_sale", "transit", "fixed_order", "unit", "backorders_allowed"):
        np.testing.assert_array_equal(getattr(engine.rates, name), getattr(rates, name))


def test_day_costs_by_kind_per_sku_and_per_node():
    rates = cost_rates(network())
    state = {
        "on_hand": np.array([[9, 9], [4, 2], [1, 0], [0, 3]], float),
        "backorders": np.array([[9, 9], [5, 0], [2, 1], [0, 0]], float),
        "in_transit": np.array([[0, 0], [8, 4], [1, 2], [6, 6]], float),
        "lost": np.array([[0, 0], [3, 3], [0, 0], [1, 2]], float),
        "ordered": np.array([[0, 0], [10, 0], [0, 3], [1, 1]], float),
        "shipped_in": np.array([[0, 0], [6, 0], [2, 3], [0, 0]], float),
    }
    sku = day_costs(rates, **state, by_sku=True)
    node = day_costs(rates, **state)
    assert tuple(sku) == tuple(node) == COST_KINDS
    # hand-computed: rate x quantity, the fixed cost once per SKU ordered, the unit cost per unit shipped in
    np.testing.assert_array_equal(sku["holding"], [[0, 0], [4.0, 1.0], [3.0, 0.0], [0.0, 3.0]])
    np.testing.assert_array_equal(sku["backorder"], [[0, 0], [30.0, 0.0], [6.0, 0.0], [0, 0]])
    np.testing.assert_array_equal(sku["lost_sale"], [[0, 0], [0, 0], [0, 0], [14.0, 16.0]])
    np.testing.assert_array_equal(sku["ordering"], [[0, 0], [11 + 3.0, 0.0], [1.0, 6.0], [11.0, 0.0]])
    np.testing.assert_array_equal(sku["in_transit"], [[0, 0], [4.0, 1.0], [2.0, 2.0], [0, 0]])
    for kind in COST_KINDS:
        np.testing.assert_allclose(node[kind], sku[kind].sum(axis=1))
    np.testing.assert_array_equal(node["ordering"], [0.0, 14.0, 7.0, 11.0])


def test_the_series_and_kpis_have_one_cost_field_per_kind():
    assert [f for f in SERIES_FIELDS if f.startswith("cost_")] == [f"cost_{kind}" for kind in COST_KINDS]
    result = Engine(network(), horizon=10, seed=0).run(OrderUpTo(np.full((4, 2), 8.0)))
    total = result.kpis["network"]["cost_total"]
    assert total > 0
    assert total == pytest.approx(sum(result.kpis["network"][f"cost_{kind}"] for kind in COST_KINDS))
