"""Key performance indicators per node, per echelon and network-wide, and the daily time series.

Definitions (over the days after warm-up):
- fill rate: units served from stock on the day they were asked for / units asked
  (customer demand at stores; downstream orders at DCs);
- cycle service level: share of node-SKU review periods (days) with no stockout,
  i.e. with no demand left unserved that day;
- costs: holding on end-of-day on-hand, backorder per unit-day, lost sale per
  unit, ordering (fixed per order line + per unit), in-transit holding;
- inventory turnover: units sent out per year / average on-hand;
- days of inventory: average on-hand / average units sent out per day;
- bullwhip ratio: variance of daily orders placed / variance of daily demand faced,
  per SKU, averaged over SKUs whose demand varies;
- order variance: variance of daily order quantities, averaged over SKUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.costs import COST_KINDS

SERIES_FIELDS = ("on_hand", "backorders", "in_transit", "on_order", "demand", "filled", "outflow", "lost",
                 "ordered", "received") + tuple(f"cost_{c}" for c in COST_KINDS)
SKU_SERIES_FIELDS = ("on_hand", "backorders", "demand", "expected_demand", "ordered")  # expected: stores only
STATE_FIELDS = ("on_hand", "backorders", "in_transit", "on_order")
FLOW_FIELDS = ("demand", "filled", "outflow", "lost", "ordered", "received")


@dataclass
class DayFlows:
    """One day's flows and costs, (nodes, SKUs) arrays, handed from the engine to the recorders."""

    demand: np.ndarray      # customer demand (stores) or orders received (DCs, suppliers)
    filled: np.ndarray      # part of today's demand served from stock today
    outflow: np.ndarray     # units that left the node (sold to customers, shipped downstream)
    lost: np.ndarray
    ordered: np.ndarray
    received: np.ndarray
    costs: dict[str, np.ndarray]


def node_totals(flows: DayFlows, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-node sums over SKUs of the day's flows and end-of-day state, keyed by field name.

    Computed once a day and shared by the KPIs and the series: a (nodes, SKUs) reduction
    is among the costliest steps of closing a day when there are many SKUs.
    """
    totals = {f: state[f].sum(axis=1) for f in STATE_FIELDS}
    totals.update({f: getattr(flows, f).sum(axis=1) for f in FLOW_FIELDS})
    return totals


class KpiAccumulator:
    """Running sums from which the KPIs are computed at the end of a run."""

    def __init__(self, names, kinds, parent: np.ndarray, n_sku: int) -> None:
        self.names, self.kinds = names, kinds
        n = len(names)
        self.echelons = sorted({k for k in kinds if k != "supplier"}, key=["store", "dc"].index)
        self.echelon_rows = {e: np.flatnonzero(np.asarray(kinds) == e) for e in self.echelons}
        is_supplier = parent < 0
        self.top_rows = np.flatnonzero((parent >= 0) & is_supplier[np.maximum(parent, 0)])
        self.store_rows = self.echelon_rows["store"]
        self.days = 0
        self.node = {key: np.zeros(n) for key in ("demand", "filled", "outflow", "lost", "ordered", "on_hand",
                                                   "backorders", "stockout_periods", "order_lines")}
        self.cost = {c: np.zeros(n) for c in COST_KINDS}
        # moments: [sum, sum of squares] of daily values; the count of days is self.days
        self.moments = {key: np.zeros((2, n, n_sku)) for key in ("orders", "demand")}
        self.echelon_moments = {e: {key: np.zeros((2, n_sku)) for key in ("orders", "demand")} for e in self.echelons}
        self.network_moments = {key: np.zeros((2, n_sku)) for key in ("orders", "demand")}
        # in a two-echelon network the nodes that order from suppliers are exactly the DCs: sum their orders once
        self.top_rows_are_dcs = np.array_equal(self.top_rows, self.echelon_rows.get("dc", []))
        self.n_sku = n_sku

    def add(self, flows: DayFlows, totals: dict[str, np.ndarray]) -> None:
        """Add one day: its flows ((nodes, SKUs) arrays) and their per-node sums (`node_totals`)."""
        self.days += 1
        node = self.node
        for key in ("demand", "filled", "outflow", "lost", "ordered", "on_hand", "backorders"):
            node[key] += totals[key]
        node["stockout_periods"] += np.count_nonzero(flows.demand - flows.filled > 1e-9, axis=1)
        node["order_lines"] += np.count_nonzero(flows.ordered, axis=1)
        for c in COST_KINDS:
            self.cost[c] += flows.costs[c]
        _add_moments(self.moments["orders"], flows.ordered)
        _add_moments(self.moments["demand"], flows.demand)
        orders, demand = {}, {}
        for e, rows in self.echelon_rows.items():
            orders[e] = flows.ordered[rows].sum(axis=0)
            demand[e] = flows.demand[rows].sum(axis=0)
            _add_moments(self.echelon_moments[e]["orders"], orders[e])
            _add_moments(self.echelon_moments[e]["demand"], demand[e])
        # network: orders placed on suppliers (in a two-echelon network, the DCs' orders summed just above)
        # and customer demand (the store echelon's)
        _add_moments(self.network_moments["orders"],
                     orders["dc"] if self.top_rows_are_dcs else flows.ordered[self.top_rows].sum(axis=0))
        _add_moments(self.network_moments["demand"], demand["store"])

    def result(self) -> dict:
        """KPIs as nested plain dicts with stable keys: network, echelons, nodes."""
        nodes = {}
        for i, name in enumerate(self.names):
            if self.kinds[i] == "supplier":
                continue
            nodes[name] = self._block([i], _variance(self.moments["orders"][:, i], self.days),
                                      _variance(self.moments["demand"][:, i], self.days))
        echelons = {e: self._block(rows, _variance(self.echelon_moments[e]["orders"], self.days),
                                   _variance(self.echelon_moments[e]["demand"], self.days))
                    for e, rows in self.echelon_rows.items()}
        everyone = np.flatnonzero(np.asarray(self.kinds) != "supplier")
        network = self._block(everyone, _variance(self.network_moments["orders"], self.days),
                              _variance(self.network_moments["demand"], self.days))
        stores = self._block(self.store_rows, None, None)
        for key in ("fill_rate", "cycle_service_level", "demand", "lost_units"):
            network[key] = stores[key]  # service is what end customers see
        network["inventory_turnover"] = _ratio(stores["units_out"] * 365, network["average_on_hand"] * self.days)
        network["days_of_inventory"] = _ratio(network["average_on_hand"] * self.days, stores["units_out"])
        network["units_out"] = stores["units_out"]
        return {"network": network, "echelons": echelons, "nodes": nodes}

    def _block(self, rows, order_var, demand_var) -> dict:
        node = {k: float(v[rows].sum()) for k, v in self.node.items()}
        days = max(self.days, 1)
        cost = {f"cost_{c}": float(self.cost[c][rows].sum()) for c in COST_KINDS}
        total = sum(cost.values())
        avg_on_hand = node["on_hand"] / days
        block = {
            "fill_rate": _ratio(node["filled"], node["demand"]),
            "cycle_service_level": 1 - node["stockout_periods"] / (days * len(rows) * self.n_sku),
            **cost,
            "cost_total": total,
            "cost_per_day": total / days,
            "demand": node["demand"],
            "units_out": node["outflow"],
            "lost_units": node["lost"],
            "average_on_hand": avg_on_hand,
            "average_backorders": node["backorders"] / days,
            "inventory_turnover": _ratio(node["outflow"] * 365 / days, avg_on_hand),
            "days_of_inventory": _ratio(avg_on_hand, node["outflow"] / days),
            "order_lines": node["order_lines"],
        }
        if order_var is not None:
            varies = demand_var > 1e-12
            block["bullwhip_ratio"] = float(np.mean(order_var[varies] / demand_var[varies])) if varies.any() else None
            block["order_variance"] = float(np.mean(order_var))
        return block


def _add_moments(m: np.ndarray, x: np.ndarray) -> None:
    m[0] += x
    m[1] += x * x


def _variance(m: np.ndarray, days: int) -> np.ndarray:
    count = float(max(days, 1))
    mean = m[0] / count
    return np.maximum(m[1] / count - mean * mean, 0.0)


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


class SeriesRecorder:
    """Daily time series summed over SKUs per node (and per SKU, by option)."""

    def __init__(self, horizon: int, n_nodes: int, n_sku: int, per_sku: bool) -> None:
        self.data = {f: np.zeros((horizon, n_nodes)) for f in SERIES_FIELDS}
        self.sku = {f: np.zeros((horizon, n_nodes, n_sku), dtype=np.float32) for f in SKU_SERIES_FIELDS} \
            if per_sku else None

    def add(self, day: int, totals: dict[str, np.ndarray], flows: DayFlows, state: dict[str, np.ndarray]) -> None:
        """Record day `day`: per-node `totals` (`node_totals`), costs, and per SKU the flows and state."""
        data = self.data
        for f in STATE_FIELDS + FLOW_FIELDS:
            data[f][day] = totals[f]
        for c in COST_KINDS:
            data[f"cost_{c}"][day] = flows.costs[c]
        if self.sku is not None:
            self.sku["on_hand"][day] = state["on_hand"]
            self.sku["backorders"][day] = state["backorders"]
            self.sku["demand"][day] = flows.demand
            self.sku["ordered"][day] = flows.ordered
