"""What a decision maker sees: the network's topology and its state at a review epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.spec import NetworkSpec


@dataclass(frozen=True)
class Topology:
    """Static index arrays of a network (node order is the spec's order, parents first)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    parent: np.ndarray        # (nodes,) index of the parent, -1 for suppliers
    depth: np.ndarray         # (nodes,) 0 for suppliers
    is_store: np.ndarray      # (nodes,) bool
    is_supplier: np.ndarray   # (nodes,) bool
    descendants: np.ndarray   # (nodes, nodes) bool, [j, i]: i is j or below j
    lead_time_mean: np.ndarray  # (nodes,) expected lead time of the lane into the node (days)

    @classmethod
    def of(cls, network: NetworkSpec) -> Topology:
        """The network's topology, built once per spec (a spec is frozen; the arrays are read-only)."""
        cached = network.__dict__.get("_topology")
        if cached is None:
            cached = cls._build(network)
            for value in vars(cached).values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
            object.__setattr__(network, "_topology", cached)
        return cached

    @classmethod
    def _build(cls, network: NetworkSpec) -> Topology:
        names = network.node_names
        parent = np.array([-1 if n.parent is None else names.index(n.parent) for n in network.nodes])
        depth = np.zeros(len(names), dtype=int)
        for i in range(len(names)):
            if parent[i] >= 0:
                depth[i] = depth[parent[i]] + 1
        desc = descendants(parent)
        kinds = tuple(n.kind for n in network.nodes)
        return cls(
            names=names, kinds=kinds, parent=parent, depth=depth,
            is_store=np.array([k == "store" for k in kinds]), is_supplier=np.array([k == "supplier" for k in kinds]),
            descendants=desc, lead_time_mean=np.array([n.lead_time.expected_days for n in network.nodes]),
        )


def descendants(parent: np.ndarray) -> np.ndarray:
    """(nodes, nodes) bool matrix, [j, i] True when i is j or below j in the tree given by `parent`."""
    n = len(parent)
    desc = np.eye(n, dtype=bool)
    for i in range(n):
        j = parent[i]
        while j >= 0:
            desc[j, i] = True
            j = parent[j]
    return desc


def expected_lead_times(lead_time_mean: np.ndarray, parent: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """(nodes,) the expected lead time (days) of each node's inbound lane: its mean times the lead-time factor of
    the node's parent (the product of the lead-time shocks in force on lanes out of it); 1 for a node without a
    parent. The engine's `expected_lead_times` and the ERP conversion both use it."""
    return lead_time_mean * np.where(parent >= 0, factor[np.maximum(parent, 0)], 1.0)


@dataclass(frozen=True)
class NetworkState:
    """State of every node and SKU at the decision point of a day (after receipts and backorder service).

    All arrays are (nodes, SKUs) copies. `backorders` are units owed to customers:
    end customers at a store, downstream nodes at a DC or supplier. `on_order` are
    units this node ordered that its supplier has not shipped yet.
    """

    day: int
    topology: Topology
    on_hand: np.ndarray
    backorders: np.ndarray
    in_transit: np.ndarray
    on_order: np.ndarray
    route: np.ndarray | None = None  # (nodes,) whom each node orders from today, when it differs from the tree

    @property
    def inventory_position(self) -> np.ndarray:
        """On hand + in transit + on order - backorders, per node and SKU."""
        return self.on_hand + self.in_transit + self.on_order - self.backorders

    @property
    def echelon_inventory_position(self) -> np.ndarray:
        """Stock at and below each node, in transit to them, on order by the node, less customer backorders."""
        t = self.topology
        rerouted = self.route is not None and not np.array_equal(self.route, t.parent)
        # while a DC is closed and its stores order from a backup DC, they belong to the backup's echelon
        d = (descendants(self.route) if rerouted else t.descendants).astype(float)
        local = self.on_hand + self.in_transit
        customer_backorders = np.where(t.is_store[:, None], self.backorders, 0.0)
        return d @ local - d @ customer_backorders + self.on_order


def orders_up_to(levels: np.ndarray, position: np.ndarray, is_supplier: np.ndarray) -> np.ndarray:
    """Orders (nodes, SKUs) that raise `position` to `levels`: never negative, none at suppliers (they are outside
    the network). The order rule of every order-up-to policy, installation or echelon."""
    orders = np.maximum(levels - position, 0.0)
    orders[is_supplier] = 0.0
    return orders
