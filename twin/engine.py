"""The SimPy engine: one process per node, SKU-vectorised state, one decision point per day.

The day contract (docs/architecture.md, "The engine"), as phases of simulated day t:

    t + 0.00  shipments due on day t arrive (SimPy timeout events) into on-hand, and a
              store serves its customer backorders first from every receipt (step 2);
    t + 0.01  shocks switch on or off (one SimPy process per shock);
    t + 0.30  DECISION: the caller supplies orders for every node at once
              (a policy in `run`, or an RL environment through `step`);
    t + 0.40+ nodes that supply others allocate, the deepest first (DCs before
              suppliers): backlog and today's orders, rationed when short, are
              dispatched with a lead time sampled at dispatch; a lead time of 0
              is received at once (before the day's demand at a store; a DC can
              ship such a receipt on from the next day, since it already allocated);
    t + 0.60  stores draw customer demand and serve it; the rest is backordered or lost;
    t + 0.90  the books close: costs, ledger invariants, KPIs and time series.

Decisions are simultaneous: a DC's order of day t is decided before it sees its
stores' orders of day t (an echelon policy is unaffected: echelon positions do
not change when stock moves inside the echelon). The same `step` serves a
policy run and an outside caller, so there is one engine for both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import simpy

from twin.config import SpecError, check_warmup
from twin.costs import cost_rates, day_costs
from twin.demand import Covariates, DemandModel
from twin.kpi import DayFlows, KpiAccumulator, SeriesRecorder, node_totals
from twin.ledger import Ledger
from twin.rationing import RULES
from twin.shocks import Shock, ShockEffects
from twin.snapshot import OpenShipment, Snapshot, UnshippedOrder, network_hash
from twin.spec import NetworkSpec
from twin.state import NetworkState, Topology, expected_lead_times
from twin.streams import Streams

if TYPE_CHECKING:
    from twin.demand_history import DemandSource

PHASE_SHOCKS = 0.01
PHASE_DECISION = 0.30
PHASE_ALLOCATE = 0.40
PHASE_DEMAND = 0.60
PHASE_CLOSE = 0.90

TWIN_VERSION = "0.1.0"


class OrderPolicy(Protocol):
    """Anything that decides orders: `act(state) -> (nodes, SKUs)` non-negative quantities.

    `state` is a `NetworkState`, or a `Snapshot` for a policy whose class sets `needs_snapshot = True`.
    """

    def act(self, state: NetworkState) -> np.ndarray: ...


@dataclass
class Shipment:
    """Units on their way into a node."""

    source: int
    dispatched: int
    arrival: int
    quantity: np.ndarray


@dataclass
class RunResult:
    """What a finished run leaves: KPIs, daily series, and how it was made."""

    kpis: dict
    series: dict[str, np.ndarray]
    sku_series: dict[str, np.ndarray] | None
    meta: dict
    covariates: Covariates | None = None
    violations: list[str] = field(default_factory=list)


class Engine:
    """A digital twin run: build it, then `run(policy)` to the end or `step(orders)` one day at a time.

    `start=snapshot` begins at the snapshot's decision point instead of an empty network on day 0
    (twin/snapshot.py); `snapshot()` takes one at any decision point.
    """

    def __init__(self, network: NetworkSpec, *, horizon: int, seed: int, shocks: Sequence[Shock] = (),
                 warmup: int = 0, invariants: str = "warn", per_sku_series: bool = False,
                 initial_on_hand: np.ndarray | None = None, sku_costs: bool = False,
                 progress: Callable[[int, int], None] | None = None, progress_every: int = 30,
                 start: Snapshot | None = None, demand: DemandSource | None = None) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon: {horizon!r} is not allowed; allowed: an integer >= 1 (days)")
        check_warmup(warmup, horizon)
        for i, shock in enumerate(shocks):
            shock.validate(network, f"shocks[{i}]")
        if start is not None:
            if initial_on_hand is not None:
                raise ValueError("initial_on_hand: not allowed with start (the snapshot holds the stock); "
                                 "allowed: one of them")
            start.check(network, "start")
            if start.day >= horizon:
                raise ValueError(f"start.day: {start.day} is not allowed; allowed: a day before the horizon "
                                 f"({horizon})")
            # the snapshot owns what is in force now; `shocks` adds what begins later (a shock in both counts once)
            self._in_force = in_force_at_start(start, shocks)
            shocks = tuple(shocks) + tuple(d for d in self._in_force if d not in shocks)
        self.first_day = 0 if start is None else int(start.day)
        # random numbers are drawn over the whole run: over the source run's days too, so a fork sees its draws
        draw_days = horizon if start is None or start.horizon is None else max(horizon, start.horizon)
        self.network = network
        self.horizon = horizon
        self.warmup = warmup
        self.seed = seed
        self.shocks = tuple(shocks)
        self.topology = topo = Topology.of(network)
        self.n_nodes = n = len(network.nodes)
        self.n_sku = k = network.skus.n
        self.integer = network.demand.integer_units
        streams = Streams(seed)

        nodes = network.nodes
        self.rates = cost_rates(network)  # twin/costs.py: the rates and their zeroing rules
        self.backorders_allowed = self.rates.backorders_allowed
        self.serves_customer_backorders = self.backorders_allowed & topo.is_store

        # state
        self.on_hand = np.zeros((n, k))
        self.backorders = np.zeros((n, k))
        self.in_transit = np.zeros((n, k))
        self.on_order = np.zeros((n, k))
        self.new_orders = np.zeros((n, k))
        self.shipments: list[dict[int, Shipment]] = [{} for _ in range(n)]
        self._next_shipment = 0
        # today's flows, zeroed when the books close (in place, so the arrays live as long as the engine)
        self.flows_demand = np.zeros((n, k))
        self.flows_filled = np.zeros((n, k))
        self.flows_outflow = np.zeros((n, k))
        self.flows_lost = np.zeros((n, k))
        self.flows_ordered = np.zeros((n, k))
        self.flows_received = np.zeros((n, k))
        self.flows_shipped_in = np.zeros((n, k))  # units dispatched to the node today: what the unit cost is paid on
        self.day_start = np.zeros((n, k))  # on-hand stock at the start of the day (for the ledger)
        self.bought = 0.0
        if initial_on_hand is not None:  # stock on hand at the start, counted as bought before day 0
            stock = self._check_quantities("initial_on_hand", initial_on_hand)
            self.on_hand[:] = stock
            self.day_start[:] = stock
            self.bought = float(stock.sum())
        self.sold_total = 0.0
        # the cost of the last closed day per node, by kind (holding, backorder, lost_sale, ordering,
        # in_transit) and in all; and per (node, SKU) when `sku_costs` (RL rewards read them)
        self.day_cost = np.zeros(n)
        self.day_costs: dict[str, np.ndarray] = {}
        self.day_sku_cost = np.zeros((n, k)) if sku_costs else None
        self.day_sku_costs: dict[str, np.ndarray] = {}
        self._sku_costs = sku_costs
        self.demand_log: np.ndarray | None = None  # (horizon, nodes, SKUs) store demand per day, once asked for

        # topology for allocation: who may order from whom (children and re-routed customers)
        parent = topo.parent
        backup = np.array([-1 if nd.backup_parent is None else network.index(nd.backup_parent) for nd in nodes])
        self.parent, self.backup = parent, backup
        self.route = parent.copy()
        # A node orders from its backup only while its parent is shut with re-routing (a DC closure), so it is
        # listed as a customer of its backup only if this run's shocks can do that. Each listed customer is a
        # row in every allocation of its supplier; an unused backup would be a row of zeros (half the rows
        # of a DC in a generated layout, where every store has a backup DC).
        shut, reroute = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for shock in self.shocks:
            effects = ShockEffects.neutral(n, k)
            shock.apply(effects, network)
            shut |= effects.shut
            reroute |= effects.reroute
        self.may_use_backup = (backup >= 0) & (parent >= 0) & (shut & reroute)[np.maximum(parent, 0)]
        for line in start.unshipped if start is not None else ():
            if line.source != parent[line.node]:  # owed by the backup: a re-route was in force at the snapshot
                self.may_use_backup[line.node] = True
        orders_from = {p: (parent == p) | ((backup == p) & self.may_use_backup) for p in range(n)}
        self.has_backup_customers = bool(self.may_use_backup.any())
        self.customers = {p: np.flatnonzero(rows) for p, rows in orders_from.items() if rows.any()}
        self.backlog: dict[int, list[tuple[int, np.ndarray]]] = {p: [] for p in self.customers}
        rule = RULES[network.rationing]
        self.rationing = rule(backlog_first=network.backlog_first)
        self.storage_capacity = np.array([np.inf if nd.storage_capacity is None else nd.storage_capacity
                                          for nd in nodes])
        self.lane_capacity = np.array([np.inf if nd.lane_capacity is None else nd.lane_capacity for nd in nodes])
        self.supply_capacity = np.array([np.inf if nd.supply_capacity is None else nd.supply_capacity
                                         for nd in nodes])
        # whether a node or one of its customers has a finite capacity: if none has and no capacity cut is in
        # force, nothing can bind and _allocate skips _apply_capacities (most networks have no capacities)
        self.has_capacity = {p: bool(np.isfinite(self.lane_capacity[c]).any()
                                     or np.isfinite(self.storage_capacity[c]).any()
                                     or np.isfinite(self.supply_capacity[p]))
                             for p, c in self.customers.items()}

        # randomness: demand per store, one lead-time draw per lane per day (used or not: common random numbers)
        self.demand_model = DemandModel(network, draw_days, streams)
        self.demand_source = demand
        if demand is not None:  # a planner's history, replayed or bootstrapped (twin/demand_history.py)
            self.demand_model = demand.model(network, horizon, streams, self.demand_model)
        self.lead_times = np.stack([nd.lead_time.sample(streams.generator(nd.name, "lead_time"), draw_days)
                                    if nd.kind != "supplier" else np.zeros(draw_days, dtype=np.int64)
                                    for nd in nodes])

        self.effects = ShockEffects.neutral(n, k)
        self.demand_shocked = False  # whether a shock multiplies some store demand now
        self.capacity_cut = False    # whether a shock cuts some capacity now
        self.active_shocks: list[Shock] = []

        self.ledger = Ledger(topo.names, topo.is_supplier, invariants)
        self.kpis = KpiAccumulator(topo.names, topo.kinds, parent, k)
        self.series = SeriesRecorder(horizon, n, k, per_sku_series)
        self.progress = progress
        self.progress_every = progress_every

        self.env = simpy.Environment(initial_time=0 if start is None else self.first_day + PHASE_DECISION)
        max_depth = int(topo.depth.max())
        for i, nd in enumerate(nodes):
            if nd.kind == "store":
                self.env.process(self._store_process(i))
            if i in self.customers:
                phase = PHASE_ALLOCATE + 0.01 * (max_depth - topo.depth[i]) / (max_depth + 1)
                self.env.process(self._supplier_process(i, phase))
        for shock in self.shocks:
            self.env.process(self._shock_process(shock))
        self.env.process(self._close_process())
        self.day = self.first_day
        self.done = False
        if start is None:
            self.env.run(until=PHASE_DECISION)
        else:
            self._start_from(start)

    def _start_from(self, start: Snapshot) -> None:
        """Take the state of `start` at its decision point: stock, lines in flight, backlogs, today's flows so far."""
        for name in ("on_hand", "backorders", "in_transit", "on_order"):
            np.copyto(getattr(self, name), getattr(start, name))
        np.copyto(self.flows_received, start.received_today)
        np.copyto(self.flows_outflow, start.served_today)
        np.copyto(self.day_start, start.on_hand - start.received_today + start.served_today)
        inside = ~self.topology.is_supplier
        # what is in the network, plus what left it today before the snapshot, was bought (the ledger's identity)
        self.bought = float((start.on_hand + start.in_transit)[inside].sum() + start.served_today.sum())
        for line in start.shipments:  # in dispatch order: arrivals due on the same day keep their order
            self._schedule(line.node, Shipment(line.source, line.dispatched, line.due, line.quantity.copy()))
        cohorts: dict[int, dict[int, np.ndarray]] = {}
        for line in sorted(start.unshipped, key=lambda u: u.ordered):
            rows = self.customers[line.source]
            by_day = cohorts.setdefault(line.source, {})
            cohort = by_day.setdefault(line.ordered, np.zeros((len(rows), self.n_sku)))
            cohort[np.flatnonzero(rows == line.node)[0]] += line.quantity
        for p, by_day in cohorts.items():
            self.backlog[p] = list(by_day.items())  # oldest first
        self.active_shocks = list(self._in_force)
        self._recompute_effects()

    def snapshot(self) -> Snapshot:
        """The network at today's decision point, from which `Engine(..., start=snapshot)` continues exactly.

        After the last day (`done`), the network as the last day's books closed (day = horizon): it can be
        observed, but no run starts from it.
        """
        in_flight = sorted((sid, child, s) for child, by_id in enumerate(self.shipments) for sid, s in by_id.items())
        shipments = tuple(OpenShipment(node=child, source=s.source, dispatched=s.dispatched, due=s.arrival,
                                       quantity=s.quantity.copy()) for _, child, s in in_flight)
        unshipped = []
        for p, cohorts in self.backlog.items():
            for day, cohort in cohorts:
                kept = cohort.copy()  # one copy per cohort, read-only; its lines are views of it
                kept.setflags(write=False)
                unshipped.extend(UnshippedOrder(node=int(self.customers[p][row]), source=p, ordered=day,
                                                quantity=kept[row]) for row in np.flatnonzero(kept.any(axis=1)))
        return Snapshot(network_name=self.network.name, network_hash=network_hash(self.network),
                        nodes=self.topology.names, skus=tuple(self.network.skus.name), day=self.day,
                        on_hand=self.on_hand, backorders=self.backorders, in_transit=self.in_transit,
                        on_order=self.on_order, expected_lead_time=self.expected_lead_times(),
                        shipments=shipments, unshipped=tuple(unshipped), disruptions=tuple(self.active_shocks),
                        received_today=self.flows_received, served_today=self.flows_outflow, seed=self.seed,
                        horizon=self.horizon)

    # ------------------------------------------------------------------ stepping

    def state(self) -> NetworkState:
        """The network at today's decision point (copies)."""
        return NetworkState(day=self.day, topology=self.topology, on_hand=self.on_hand.copy(),
                            backorders=self.backorders.copy(), in_transit=self.in_transit.copy(),
                            on_order=self.on_order.copy(), route=self.route.copy())

    def state_for(self, policy: OrderPolicy) -> NetworkState | Snapshot:
        """What `policy.act` is given: `snapshot()` if the policy sets `needs_snapshot`, else `state()`."""
        return self.snapshot() if getattr(policy, "needs_snapshot", False) else self.state()

    def expected_lead_times(self) -> np.ndarray:
        """(nodes,) the expected lead time (days) of each node's inbound lane today, lead-time shocks included."""
        return expected_lead_times(self.topology.lead_time_mean, self.topology.parent, self.effects.lead_time)

    def record_demand(self) -> np.ndarray:
        """Keep every store's customer demand per day from now on (live forecasters read the days before today).

        Returns the log, (horizon, nodes, SKUs) float32; rows of days not yet simulated, and of non-stores, are 0.
        """
        if self.demand_log is None:
            self.demand_log = np.zeros((self.horizon, self.n_nodes, self.n_sku), dtype=np.float32)
        return self.demand_log

    def step(self, orders: np.ndarray) -> None:
        """Place today's orders (nodes, SKUs) and simulate until the next decision point or the end."""
        if self.done:
            raise RuntimeError("the run is over: build a new Engine to simulate again")
        q = self._check_quantities("orders", orders)
        self.new_orders[:] = q
        self.on_order += q
        self.flows_ordered += q
        self.day += 1
        if self.day < self.horizon:
            self.env.run(until=self.day + PHASE_DECISION)
        else:
            self.env.run(until=self.horizon)
            self.done = True

    def run(self, policy: OrderPolicy) -> RunResult:
        """Simulate to the end, asking `policy` for orders every day (given `state()`, or `snapshot()` when the
        policy sets `needs_snapshot`: a policy that builds an observation from the whole picture)."""
        while not self.done:
            self.step(policy.act(self.state_for(policy)))
        return self.result(policy=type(policy).__name__)

    def result(self, **meta) -> RunResult:
        """KPIs, series and metadata of the finished (or current) run."""
        return RunResult(
            kpis=self.kpis.result(),
            series={k: v[self.first_day: self.day] for k, v in self.series.data.items()},
            sku_series=None if self.series.sku is None else {k: v[self.first_day: self.day]
                                                             for k, v in self.series.sku.items()},
            meta={"network": self.network.name, "nodes": list(self.topology.names), "n_sku": self.n_sku,
                  "horizon": self.horizon, "warmup": self.warmup, "seed": self.seed,
                  "first_day": self.first_day,
                  "shocks": [type(s).__name__ for s in self.shocks], "twin_version": TWIN_VERSION, **meta},
            violations=list(self.ledger.violations),
            covariates=None if self.series.sku is None else self.demand_model.covariates(),
        )

    def _check_quantities(self, label: str, quantities) -> np.ndarray:
        """Quantities per (node, SKU): the right shape, finite, >= 0, zero for suppliers; rounded if integer."""
        q = np.asarray(quantities, dtype=float)
        if q.shape != (self.n_nodes, self.n_sku):
            raise ValueError(f"{label}: shape {q.shape} is not allowed; allowed: (nodes, SKUs) = "
                             f"({self.n_nodes}, {self.n_sku})")
        # two passes over the quantities in the usual case (a NaN fails `>= 0`); the culprit is looked up if one fails
        if not (q.min() >= 0 and q.max() < np.inf):
            i, k = np.argwhere(~np.isfinite(q) | (q < 0))[0]
            raise ValueError(f"{label}[{self.topology.names[i]!r}, SKU {k}]: {q[i, k]!r} is not allowed; "
                             f"allowed: a finite quantity >= 0")
        if q[self.topology.is_supplier].any():
            raise ValueError(f"{label}: suppliers hold and order nothing; allowed: zero rows for supplier nodes")
        return np.rint(q) if self.integer else q

    # ------------------------------------------------------------------ processes

    def _at(self, day: int, phase: float) -> simpy.events.Timeout:
        return self.env.timeout(day + phase - self.env.now)

    def _store_process(self, i: int):
        name = self.topology.names[i]
        backorders_allowed = self.backorders_allowed[i]
        for day in range(self.first_day, self.horizon):
            yield self._at(day, PHASE_DEMAND)
            multiplier = self.effects.demand[i] if self.demand_shocked else None  # None: skip multiplying by 1
            expected = self.demand_model.mean(name, day, multiplier)
            demand = self.demand_model.draw(name, day, expected, multiplier)
            if self.series.sku is not None:
                self.series.sku["expected_demand"][day, i] = expected
            if self.demand_log is not None:
                self.demand_log[day, i] = demand
            stock = self.on_hand[i]
            served = np.minimum(demand, stock)
            stock -= served
            unmet = demand - served
            if backorders_allowed:
                self.backorders[i] += unmet
            else:
                self.flows_lost[i] += unmet
            self.flows_demand[i] += demand
            self.flows_filled[i] += served
            self.flows_outflow[i] += served

    def _supplier_process(self, p: int, phase: float):
        for day in range(self.first_day, self.horizon):
            yield self._at(day, phase)
            self._allocate(p, day)

    def _shock_process(self, shock: Shock):
        if shock.start >= self.horizon or shock.end <= self.first_day:
            return
        if shock not in self.active_shocks:  # one in force at a snapshot the run starts from is on already
            yield self._at(shock.start, PHASE_SHOCKS)
            self.active_shocks.append(shock)
            self._recompute_effects()
        if shock.end >= self.horizon:
            return
        yield self._at(shock.end, PHASE_SHOCKS)
        self.active_shocks.remove(shock)
        self._recompute_effects()

    def _close_process(self):
        for day in range(self.first_day, self.horizon):
            yield self._at(day, PHASE_CLOSE)
            self._close_day(day)

    # ------------------------------------------------------------------ mechanics

    def _recompute_effects(self) -> None:
        effects = ShockEffects.neutral(self.n_nodes, self.n_sku)
        for shock in self.active_shocks:
            shock.apply(effects, self.network)
        self.effects = effects
        self.demand_shocked = bool((effects.demand != 1.0).any())
        self.capacity_cut = bool((effects.capacity != 1.0).any())
        reroute = effects.shut & effects.reroute
        parent = self.parent
        use_backup = (parent >= 0) & reroute[np.maximum(parent, 0)] & (self.backup >= 0)
        if (use_backup & ~self.may_use_backup).any():  # its orders would be lost: a bug, never to happen silently
            raise RuntimeError("a shock re-routes a node whose backup does not list it as a customer")
        self.route = np.where(use_backup, self.backup, parent)

    def _allocate(self, p: int, day: int) -> None:
        """Node p serves its backlog and today's orders from on-hand (suppliers: unlimited unless capped)."""
        customers = self.customers[p]
        new = self.new_orders[customers]
        if self.has_backup_customers:  # rows of customers that order elsewhere today ask for nothing here
            new *= (self.route[customers] == p)[:, None]
        cohorts = self.backlog[p]
        if not cohorts and not new.any():
            return
        if self.effects.shut[p]:
            allocated = np.zeros_like(new)
        else:
            available = None if self.topology.is_supplier[p] else self.on_hand[p]
            allocated = self.rationing.allocate(available, [c for _, c in cohorts], new, self.integer)
        shipped = allocated
        if self.has_capacity[p] or self.capacity_cut:
            shipped = self._apply_capacities(p, customers, allocated)
        # what stock allowed is taken from the oldest backlog first, then from today's orders
        backlog_total = sum(c for _, c in cohorts) if cohorts else 0.0
        allocated_new = np.maximum(allocated - backlog_total, 0.0) if cohorts else allocated
        # and what ships consumes the backlog the same way
        shipped_new = shipped.copy() if cohorts else shipped
        for _, cohort in cohorts:
            take = np.minimum(cohort, shipped_new)
            cohort -= take
            shipped_new -= take
        kept = [(d, c) for d, c in cohorts if c.any()]
        if self.backorders_allowed[p] or self.topology.is_supplier[p]:
            waiting = new - shipped_new
        else:
            # lost sales: what the stock could not cover is cancelled; what capacity held back still waits
            cancelled = new - allocated_new
            if cancelled.any():
                self.on_order[customers] -= cancelled
                self.flows_lost[p] += cancelled.sum(axis=0)
            waiting = allocated_new - shipped_new
        if waiting.any():
            kept.append((day, waiting))
        self.backlog[p] = kept
        self.backorders[p] = sum(c for _, c in kept).sum(axis=0) if kept else 0.0
        self.flows_demand[p] += new.sum(axis=0)
        self.flows_filled[p] += shipped_new.sum(axis=0)
        total = shipped.sum(axis=0)
        if self.topology.is_supplier[p]:
            self.bought += float(total.sum())
        else:
            stock = self.on_hand[p]
            stock -= total
            # fractional shares can overshoot the stock by an ulp; keep on-hand exactly non-negative
            np.maximum(stock, 0.0, out=stock)
        self.flows_outflow[p] += total
        multiplier = self.effects.lead_time[p]
        for row in np.flatnonzero(shipped.any(axis=1)):
            self._dispatch(p, int(customers[row]), shipped[row], day, multiplier)

    def _apply_capacities(self, p: int, customers: np.ndarray, shipped: np.ndarray) -> np.ndarray:
        """Scale shipments down to lane capacity, the customer's free storage and the supplier's capacity."""
        factor = self.effects.capacity
        limit = np.minimum(_cut(self.lane_capacity[customers], factor[customers]),
                           _cut(self.storage_capacity[customers], factor[customers])
                           - self.on_hand[customers].sum(axis=1) - self.in_transit[customers].sum(axis=1))
        totals = shipped.sum(axis=1)
        scale = np.ones(len(customers))
        over = totals > np.maximum(limit, 0)
        scale[over] = np.maximum(limit[over], 0) / totals[over]
        cap = _cut(self.supply_capacity[p], factor[p])
        if np.isfinite(cap):
            grand = float((shipped * scale[:, None]).sum())
            if grand > cap:
                scale *= cap / grand
        if (scale < 1).any():
            shipped = shipped * scale[:, None]
            if self.integer:
                shipped = np.floor(shipped + 1e-9)
        return shipped

    def _dispatch(self, source: int, child: int, quantity: np.ndarray, day: int, multiplier: float) -> None:
        lead = self.lead_times[child, day]
        if multiplier != 1.0:  # a lead-time shock: halves round up, and a lane never becomes instantaneous
            lead = max(int(np.floor(lead * multiplier + 0.5)), min(lead, 1))
        self.in_transit[child] += quantity
        self.on_order[child] -= quantity
        self.flows_shipped_in[child] += quantity
        if lead == 0:
            self._receive(child, quantity)
            return
        self._schedule(child, Shipment(source, day, day + lead, quantity))

    def _schedule(self, child: int, shipment: Shipment) -> None:
        """Keep `shipment` as in transit to `child` and receive it on its arrival day."""
        sid = self._next_shipment
        self._next_shipment += 1
        self.shipments[child][sid] = shipment
        event = self.env.timeout(shipment.arrival - self.env.now)
        event.callbacks.append(lambda _e, c=child, s=sid: self._arrive(c, s))

    def _arrive(self, child: int, sid: int) -> None:
        self._receive(child, self.shipments[child].pop(sid).quantity)

    def _receive(self, child: int, quantity: np.ndarray) -> None:
        self.in_transit[child] -= quantity
        self.on_hand[child] += quantity
        self.flows_received[child] += quantity
        if self.serves_customer_backorders[child]:
            # step 2 of the day contract: customer backorders are served first from what arrives, whether it
            # arrives at the start of the day or at once (lead time 0) after the decision, before the demand
            owed = self.backorders[child]
            served = np.minimum(owed, self.on_hand[child])
            self.on_hand[child] -= served
            owed -= served
            self.flows_outflow[child] += served

    def _close_day(self, day: int) -> None:
        today = {"on_hand": self.on_hand, "backorders": self.backorders, "in_transit": self.in_transit,
                 "lost": self.flows_lost, "ordered": self.flows_ordered, "shipped_in": self.flows_shipped_in}
        costs = day_costs(self.rates, **today)
        self.day_cost = sum(costs.values())
        self.day_costs = costs
        if self._sku_costs:
            self.day_sku_costs = day_costs(self.rates, **today, by_sku=True)
            self.day_sku_cost = sum(self.day_sku_costs.values())
        flows = DayFlows(demand=self.flows_demand, filled=self.flows_filled, outflow=self.flows_outflow,
                         lost=self.flows_lost, ordered=self.flows_ordered, received=self.flows_received,
                         costs=costs)
        state = {"on_hand": self.on_hand, "backorders": self.backorders, "in_transit": self.in_transit,
                 "on_order": self.on_order}
        totals = node_totals(flows, state)
        self.sold_total += float(totals["outflow"][self.topology.is_store].sum())
        self.ledger.check_day(
            day, start=self.day_start, received=self.flows_received, outflow=self.flows_outflow,
            on_hand=self.on_hand, backorders=self.backorders, in_transit=self.in_transit, on_order=self.on_order,
            bought_total=self.bought, sold_total=self.sold_total)
        if day >= self.warmup:
            self.kpis.add(flows, totals)
        self.series.add(day, totals, flows, state)
        self._reset_flows()
        if self.progress is not None and ((day + 1) % self.progress_every == 0 or day + 1 == self.horizon):
            self.progress(day + 1, self.horizon)

    def _reset_flows(self) -> None:
        """Zero the day's flows and remember the on-hand stock the next day starts with."""
        for flow in (self.flows_demand, self.flows_filled, self.flows_outflow, self.flows_lost, self.flows_ordered,
                     self.flows_received, self.flows_shipped_in):
            flow.fill(0.0)
        np.copyto(self.day_start, self.on_hand)


def in_force_at_start(start: Snapshot, shocks: Sequence[Shock]) -> list[Shock]:
    """The shocks in force when a run starts from `start`: its disruptions, in the order they began, and any of
    `shocks` in force on its day that is not one of them.

    A given shock that equals a disruption but for its end (a scenario clipped to another horizon) replaces it:
    the caller knows when it ends. Two of either kind that are alike but for their end are refused (SpecError).
    """
    def same_but_end(a: Shock, b: Shock) -> bool:
        return type(a) is type(b) and dataclasses.replace(a, end=b.end) == b

    in_force = list(start.disruptions)
    for i, shock in enumerate(shocks):
        if not shock.start <= start.day < shock.end:
            continue
        matches = [j for j, d in enumerate(in_force) if same_but_end(shock, d)]
        if len(matches) > 1 and shock not in in_force:
            raise SpecError(f"shocks[{i}]: matches {len(matches)} disruptions of the start snapshot but for their "
                            f"end; allowed: one, or the snapshot's own windows")
        if shock in in_force:
            continue
        if matches:
            in_force[matches[0]] = shock  # the same disruption with the window the caller gives
        else:
            in_force.append(shock)
    return in_force


def _cut(capacity, factor):
    """Capacity times a cut factor; an unlimited (infinite) capacity stays unlimited (never inf * 0 = NaN)."""
    capacity = np.asarray(capacity, dtype=float)
    out = np.full_like(capacity, np.inf)
    np.multiply(capacity, factor, out=out, where=np.isfinite(capacity))
    return out if out.ndim else float(out)
