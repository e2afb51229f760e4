"""What things cost: the kinds of cost, the rates per (node, SKU) and kind, and one day's cost.

The owner of these three: the engine charges with them, the KPIs sum by
`COST_KINDS`, and the environments, the evaluation and training read rates
here instead of building an engine to look at its attributes.

Rates (money per unit, and per day where it says so), each (nodes, SKUs):

    holding      node holding_factor x SKU holding_cost, per unit-day on hand at the end of a day
    backorder    node backorder_factor x SKU backorder_cost, per unit-day owed to customers
    lost_sale    node lost_sale_factor x SKU lost_sale_cost, per unit lost
    transit      node in_transit_holding x SKU holding_cost, per unit-day in transit into the node
    fixed_order  SKU fixed_order_cost, per order line (a node ordering a SKU on a day)
    unit         SKU unit_cost, per unit dispatched to the node

Suppliers are outside the network: their holding, backorder and lost-sale rates
are 0 (their backlog costs nothing). Only a store loses a sale: a node other
than a store with lost sales cancels what it cannot supply (its customer orders
again), which costs no penalty of its own (the shortage is charged at the store),
so its lost-sale rate is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.spec import NetworkSpec

COST_KINDS = ("holding", "backorder", "lost_sale", "ordering", "in_transit")  # the order days' costs are summed in


@dataclass(frozen=True)
class CostRates:
    """Cost rates per (node, SKU), read-only arrays; see the module docstring for the units."""

    holding: np.ndarray
    backorder: np.ndarray
    lost_sale: np.ndarray
    transit: np.ndarray
    fixed_order: np.ndarray
    unit: np.ndarray
    backorders_allowed: np.ndarray  # (nodes,) bool: the node backorders unmet demand (else it is lost)

    @property
    def shortage(self) -> np.ndarray:
        """The penalty of a unit short: the backorder rate (per day) where the node backorders, else the lost-sale
        rate."""
        return np.where(self.backorders_allowed[:, None], self.backorder, self.lost_sale)

    @property
    def critical_ratio(self) -> np.ndarray:
        """shortage / (shortage + holding) per (node, SKU), in [0, 1]; 0 where both are 0 (a node whose shortage
        costs nothing of its own, such as a DC whose backlog is charged at its stores)."""
        shortage = self.shortage
        total = shortage + self.holding
        return np.divide(shortage, total, out=np.zeros_like(total), where=total > 0)


def cost_rates(network: NetworkSpec) -> CostRates:
    """The cost rates of `network` (module docstring), with the supplier and non-store zeroing rules applied."""
    skus, nodes = network.skus, network.nodes
    n, k = len(nodes), skus.n

    def col(attr: str) -> np.ndarray:
        return np.array([getattr(nd, attr) for nd in nodes])[:, None]

    holding = col("holding_factor") * skus.holding_cost
    backorder = col("backorder_factor") * skus.backorder_cost
    lost_sale = col("lost_sale_factor") * skus.lost_sale_cost
    transit = col("in_transit_holding") * skus.holding_cost
    fixed_order = np.broadcast_to(skus.fixed_order_cost, (n, k))
    unit = np.broadcast_to(skus.unit_cost, (n, k))
    is_supplier = np.array([nd.kind == "supplier" for nd in nodes], dtype=bool)
    is_store = np.array([nd.kind == "store" for nd in nodes], dtype=bool)
    for rate in (holding, backorder, lost_sale):
        rate[is_supplier] = 0.0
    lost_sale[~is_store] = 0.0
    backorders_allowed = np.array([nd.unmet == "backorder" for nd in nodes], dtype=bool)
    arrays = (holding, backorder, lost_sale, transit, fixed_order, unit, backorders_allowed)
    for a in arrays:
        a.flags.writeable = False
    return CostRates(*arrays)


def day_costs(rates: CostRates, *, on_hand: np.ndarray, backorders: np.ndarray, in_transit: np.ndarray,
              lost: np.ndarray, ordered: np.ndarray, shipped_in: np.ndarray,
              by_sku: bool = False) -> dict[str, np.ndarray]:
    """One day's cost by kind (keys in `COST_KINDS` order), per node (nodes,) or with `by_sku` per (node, SKU).

    State at the end of the day: `on_hand`, `backorders` (owed to customers), `in_transit` (into the node);
    the day's flows: `lost` (units of demand lost), `ordered` (units the node ordered: an order line where > 0),
    `shipped_in` (units dispatched to the node, which the unit cost is paid on). All (nodes, SKUs).
    """
    if by_sku:
        return {
            "holding": rates.holding * on_hand,
            "backorder": rates.backorder * backorders,
            "lost_sale": rates.lost_sale * lost,
            "ordering": rates.fixed_order * (ordered > 0) + rates.unit * shipped_in,
            "in_transit": rates.transit * in_transit,
        }
    return {
        "holding": np.einsum("nk,nk->n", rates.holding, on_hand),
        "backorder": np.einsum("nk,nk->n", rates.backorder, backorders),
        "lost_sale": np.einsum("nk,nk->n", rates.lost_sale, lost),
        "ordering": np.einsum("nk,nk->n", rates.fixed_order, (ordered > 0).astype(float))
        + np.einsum("nk,nk->n", rates.unit, shipped_in),
        "in_transit": np.einsum("nk,nk->n", rates.transit, in_transit),
    }

