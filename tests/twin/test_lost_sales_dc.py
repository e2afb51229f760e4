"""A DC with lost sales cancels what its stock cannot cover, keeps what capacity holds back, and charges no
penalty of its own; the unit cost is paid on units shipped, not on orders placed."""

from __future__ import annotations

import numpy as np

from twin import DcClosure, Engine, network_from_dict
from twin.testing import OrderUpTo


def chain(lane_capacity=None):
    store = {"name": "shop", "kind": "store", "parent": "dc", "lead_time": {"mean": 1}}
    if lane_capacity is not None:
        store["lane_capacity"] = lane_capacity
    return network_from_dict({
        "name": "lost_dc",
        "skus": {"items": [{"name": "a", "dist": "normal", "mean": 10, "cv": 0.0, "unit_cost": 1.0,
                            "lost_sale_cost": 5.0, "holding_cost": 0.0, "backorder_cost": 1.0}]},
        "nodes": [{"name": "sup", "kind": "supplier"},
                  {"name": "dc", "kind": "dc", "parent": "sup", "unmet": "lost", "lead_time": {"mean": 2}},
                  store],
    })


def levels(dc, store):
    return OrderUpTo(np.array([[0.0], [dc], [store]]))


def test_cancelled_orders_cost_no_penalty_and_no_unit_cost():
    network = chain()
    result = Engine(network, horizon=100, seed=0, shocks=(DcClosure(start=50, end=60, dc="dc", reroute=False),),
                    invariants="error").run(levels(40, 30))
    dc, shop = result.kpis["nodes"]["dc"], result.kpis["nodes"]["shop"]
    assert dc["lost_units"] > 0           # the closure cancelled store orders
    assert dc["cost_lost_sale"] == 0      # ... which is no customer lost
    assert shop["lost_units"] == 0        # the store backorders its customers
    # unit cost: paid on what was shipped to the store, however often it re-ordered
    shipped_to_shop = result.series["received"][:, 2].sum() + result.series["in_transit"][-1, 2]
    assert shop["cost_ordering"] == shipped_to_shop * 1.0
    assert result.series["ordered"][:, 2].sum() > shipped_to_shop  # re-orders after cancellations


def test_units_held_back_by_capacity_wait_instead_of_being_cancelled():
    network = chain(lane_capacity=6)
    result = Engine(network, horizon=60, seed=0, warmup=10, invariants="error").run(levels(400, 30))
    dc = result.kpis["nodes"]["dc"]
    assert dc["lost_units"] == 0                       # the DC always had the stock
    assert result.series["backorders"][:, 1].max() > 0  # what the lane could not carry waits at the DC
    assert result.series["received"][5:, 2].max() <= 6
