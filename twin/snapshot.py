"""A picture of the network at a decision point, from which a run can start (docs/architecture.md, Snapshots).

A `Snapshot` holds everything the engine needs to go on from the decision point
of day `day`: per (node, SKU) on hand, backorders, in transit and on order; every
open shipment (receiving node, source, dispatch day, due day, quantities); every
unshipped order line (who ordered, who owes it, the day it was placed); the
disruptions in force; today's receipts and backorders served before the decision
(so that the day's books close as they would have); each node's expected inbound
lead time today; and the hash of the network it belongs to.

    snapshot = engine.snapshot()                        # at any decision point
    snapshot.save("snapshot_day200.json")               # plain JSON, validated on load
    Engine(network, horizon=365, seed=0, shocks=scenario.shocks, start=Snapshot.load(path, network))

With the same seed and shocks, the continued run is bit-identical to the
uninterrupted one from the snapshot's day on, at its horizon or a shorter one: the
random streams need no state of their own. Demand is drawn from each day's own
segment of a store's stream; lead times, promotions and the weather index are
drawn from the seed for the whole run, so a snapshot records the horizon of the
run it came from (`horizon`), and a run started from it draws over at least that
many days (a shorter fork sees the same days as the source run).

`expected_lead_time` is what decisions read (observations, forecasts over the
protection period); the engine itself draws lead times from the network spec and
the disruptions in force, as in any run.

A snapshot is immutable (its arrays are read-only); the engine copies what it
starts from, so one snapshot can seed any number of forked runs without a copy.
Quantities per node are (nodes, SKUs) arrays in the network's node and SKU order
in memory, and keyed by node and SKU name in JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.calendar import DAY_ZERO, calendar_date
from twin.config import ConfigReader, SpecError
from twin.shocks import Shock, shock_from_dict, shock_to_dict
from twin.spec import NetworkSpec

SNAPSHOT_FORMAT = "twin.snapshot/1"
NODE_FIELDS = ("on_hand", "backorders", "in_transit", "on_order", "received_today", "served_today")
TOLERANCE = 1e-6  # relative: derived totals (in transit, on order, backorders owed downstream) vs their parts
RESIDUE = 1e-9    # a quantity this far below zero is the float residue of a running sum, kept as it is (exactness)


def network_hash(network: NetworkSpec) -> str:
    """sha256 of the network spec as canonical JSON: equal for equal specs, different for any changed value."""
    cached = network.__dict__.get("_snapshot_hash")  # a spec is frozen: hash it once (forks check it each time)
    if cached is None:
        text = json.dumps(_plain(network), sort_keys=True, separators=(",", ":"))
        cached = hashlib.sha256(text.encode()).hexdigest()
        object.__setattr__(network, "_snapshot_hash", cached)
    return cached


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and numpy arrays as JSON-ready values (floats keep every bit through repr)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True, slots=True)
class OpenShipment:
    """Units dispatched from `source` to `node` on day `dispatched`, due to arrive on day `due`."""

    node: int
    source: int
    dispatched: int
    due: int
    quantity: np.ndarray  # (SKUs,)


@dataclass(frozen=True, slots=True)
class UnshippedOrder:
    """Units `node` ordered from `source` on day `ordered` that `source` has not dispatched yet (its backlog)."""

    node: int
    source: int
    ordered: int
    quantity: np.ndarray  # (SKUs,)


@dataclass(frozen=True, eq=False)  # arrays inside: compare snapshots with to_dict()
class Snapshot:
    """The network at the decision point of day `day`: enough to continue a run exactly (see the module doc)."""

    network_name: str
    network_hash: str
    nodes: tuple[str, ...]
    skus: tuple[str, ...]
    day: int
    on_hand: np.ndarray             # (nodes, SKUs)
    backorders: np.ndarray          # (nodes, SKUs) owed: to end customers at a store, to downstream nodes elsewhere
    in_transit: np.ndarray          # (nodes, SKUs) the sum of the node's open shipments
    on_order: np.ndarray            # (nodes, SKUs) the sum of the node's unshipped orders
    expected_lead_time: np.ndarray  # (nodes,) expected lead time of the lane into each node today (days)
    shipments: tuple[OpenShipment, ...] = ()
    unshipped: tuple[UnshippedOrder, ...] = ()
    disruptions: tuple[Shock, ...] = ()   # in force now, in the order they began
    received_today: np.ndarray | None = None  # (nodes, SKUs) received since the start of the day
    served_today: np.ndarray | None = None    # (nodes, SKUs) customer backorders served from today's receipts
    seed: int | None = None                   # the seed of the run it was taken from, if any (provenance only)
    horizon: int | None = None                # the horizon (days) of the run it was taken from, if any

    def __post_init__(self) -> None:
        shape = (len(self.nodes), len(self.skus))
        for name in NODE_FIELDS:
            value = getattr(self, name)
            array = np.zeros(shape) if value is None else np.array(value, dtype=float)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        lead = np.array(self.expected_lead_time, dtype=float)
        lead.setflags(write=False)
        object.__setattr__(self, "expected_lead_time", lead)
        for item in (*self.shipments, *self.unshipped):
            q = item.quantity
            if not isinstance(q, np.ndarray) or q.flags.writeable:  # a caller's array: keep a read-only copy
                q = np.array(q, dtype=float)
                q.setflags(write=False)
                object.__setattr__(item, "quantity", q)

    # ------------------------------------------------------------------ derived

    @property
    def date(self) -> dt.date:
        """The calendar date of the snapshot's day."""
        return calendar_date(self.day)

    @property
    def inventory_position(self) -> np.ndarray:
        """On hand + in transit + on order - backorders, per node and SKU."""
        return self.on_hand + self.in_transit + self.on_order - self.backorders

    def pipeline_by_age(self, ages: int) -> np.ndarray:
        """(nodes, ages, SKUs) units in transit by days since dispatch; the last bucket holds `ages - 1` or older."""
        out = np.zeros((len(self.nodes), ages, len(self.skus)))
        for s in self.shipments:
            out[s.node, min(self.day - s.dispatched, ages - 1)] += s.quantity
        return out

    def remaining_days(self, shock: Shock) -> int:
        """Days a disruption in force stays in force from today (today included)."""
        return shock.end - self.day

    # ------------------------------------------------------------------ checks

    def check(self, network: NetworkSpec, key: str = "snapshot") -> None:
        """Refuse a snapshot that does not belong to `network` or whose numbers are impossible (SpecError)."""
        if self.network_hash != network_hash(network):
            raise SpecError(f"{key}.network.hash: {self.network_hash[:12]}... is the hash of another network "
                            f"than {network.name!r} ({network_hash(network)[:12]}...); allowed: a snapshot taken "
                            f"from this network spec")
        if self.nodes != network.node_names:
            raise SpecError(f"{key}.nodes: the node list differs from network {network.name!r}'s; allowed: "
                            f"{', '.join(network.node_names)}")
        if self.skus != tuple(network.skus.name):
            raise SpecError(f"{key}.skus: the SKU list differs from network {network.name!r}'s")
        if isinstance(self.day, bool) or not isinstance(self.day, (int, np.integer)) or self.day < 0:
            raise SpecError(f"{key}.day: {self.day!r} is not allowed; allowed: an integer >= 0")
        for name in NODE_FIELDS:
            _check_quantities(f"{key}.{name}", getattr(self, name), self.nodes, self.skus)
        if self.expected_lead_time.shape != (len(self.nodes),):
            raise SpecError(f"{key}.expected_lead_time: shape {self.expected_lead_time.shape} is not allowed; "
                            f"allowed: one value per node ({len(self.nodes)})")
        wrong = np.flatnonzero(~(np.isfinite(self.expected_lead_time) & (self.expected_lead_time >= 0)))
        if wrong.size:
            i, v = int(wrong[0]), self.expected_lead_time[wrong[0]]
            raise SpecError(f"{key}.nodes.{self.nodes[i]}.expected_lead_time: {v!r} is not allowed; "
                            f"allowed: a finite number of days >= 0")
        kinds = [nd.kind for nd in network.nodes]
        sources = {i: {network.index(nd.parent)} | ({network.index(nd.backup_parent)} if nd.backup_parent else set())
                   for i, nd in enumerate(network.nodes) if nd.parent is not None}
        for j, s in enumerate(self.shipments):
            where = f"{key}.shipments[{j}]"
            self._check_line(where, s.node, s.source, s.quantity, sources)
            if not (s.dispatched <= self.day < s.due):
                raise SpecError(f"{where}: dispatched on day {s.dispatched}, due on day {s.due} at a snapshot of "
                                f"day {self.day}; allowed: dispatched <= {self.day} < due (a shipment due today "
                                f"has arrived)")
        for j, u in enumerate(self.unshipped):
            where = f"{key}.unshipped[{j}]"
            self._check_line(where, u.node, u.source, u.quantity, sources)
            if u.ordered > self.day:
                raise SpecError(f"{where}.ordered: day {u.ordered} is after the snapshot's day {self.day}; "
                                f"allowed: <= {self.day}")
        # per-node rules, checked on every node at once; the first node breaking one is named
        kind_of = np.array(kinds)
        store, supplier = kind_of == "store", kind_of == "supplier"
        lost = store & np.array([node.unmet == "lost" for node in network.nodes])
        start = self.on_hand - self.received_today + self.served_today
        broken = [  # (nodes,) bool per rule, in the order a node's problems are reported
            supplier & np.any([getattr(self, f).any(axis=1) for f in NODE_FIELDS if f != "backorders"], axis=0),
            ~store & self.served_today.any(axis=1),
            lost & self.backorders.any(axis=1),
            store & ~lost & ((self.on_hand > RESIDUE) & (self.backorders > RESIDUE)).any(axis=1),
            (start < -RESIDUE).any(axis=1),
        ]
        bad = np.flatnonzero(np.any(broken, axis=0))
        if bad.size:
            self._node_problem(int(bad[0]), [bool(rule[bad[0]]) for rule in broken], kinds, start, key)
        if network.demand.integer_units:
            for name in NODE_FIELDS:
                values = getattr(self, name)
                frac = np.argwhere(np.abs(values - np.rint(values)) > RESIDUE)
                if frac.size:
                    i, k = frac[0]
                    raise SpecError(f"{key}.nodes.{self.nodes[i]}.{name}.{self.skus[k]}: {float(values[i, k])!r} is "
                                    f"not a whole number of units; allowed: whole units (network.demand.integer_units)")
            for label, lines in (("shipments", self.shipments), ("unshipped", self.unshipped)):
                for j, line in enumerate(lines):
                    frac = np.flatnonzero(np.abs(line.quantity - np.rint(line.quantity)) > RESIDUE)
                    if frac.size:
                        raise SpecError(f"{key}.{label}[{j}].quantity.{self.skus[frac[0]]}: "
                                        f"{float(line.quantity[frac[0]])!r} is not a whole number of units; "
                                        f"allowed: whole units (network.demand.integer_units)")
        shipped, ordered, owed = line_totals(self.shipments, self.unshipped, len(self.nodes), len(self.skus))
        _check_sum(f"{key}.in_transit", self.in_transit, shipped, "the sum of its open shipments", self)
        _check_sum(f"{key}.on_order", self.on_order, ordered, "the sum of its unshipped orders", self)
        internal = np.array([kind != "store" for kind in kinds])
        _check_sum(f"{key}.backorders", np.where(internal[:, None], self.backorders, 0.0),
                   np.where(internal[:, None], owed, 0.0), "the sum of the unshipped orders it owes", self)
        for j, shock in enumerate(self.disruptions):
            shock.validate(network, f"{key}.disruptions[{j}]")
            if not (shock.start <= self.day < shock.end):
                raise SpecError(f"{key}.disruptions[{j}]: window [{shock.start}, {shock.end}) is not in force on "
                                f"day {self.day}; allowed: start <= {self.day} < end")

    def _node_problem(self, i: int, broken: list[bool], kinds: list[str], start: np.ndarray, key: str) -> None:
        """Raise the SpecError of the first of node i's broken per-node rules (see `check`)."""
        where, kind = f"{key}.nodes.{self.nodes[i]}", kinds[i]
        if broken[0]:
            raise SpecError(f"{where}: a supplier holds and orders nothing in the twin; allowed: zero on_hand, "
                            f"in_transit, on_order, received_today and served_today (backorders: what it owes)")
        if broken[1]:
            raise SpecError(f"{where}.served_today: only a store serves customer backorders from its receipts; "
                            f"allowed: zero at a {kind}")
        if broken[2]:
            k = int(np.argmax(self.backorders[i] != 0))
            raise SpecError(f"{where}.backorders.{self.skus[k]}: {self.nodes[i]!r} loses unmet demand (unmet: "
                            f"lost) and owes its customers nothing; allowed: zero")
        if broken[3]:
            k = int(np.flatnonzero((self.on_hand[i] > RESIDUE) & (self.backorders[i] > RESIDUE))[0])
            raise SpecError(f"{where}.backorders.{self.skus[k]}: {float(self.backorders[i, k])!r} "
                            f"owed while {float(self.on_hand[i, k])!r} is on hand; a store serves its "
                            f"backorders from stock first; allowed: serve them (less on hand, fewer owed)")
        k = int(np.argmax(start[i] < -RESIDUE))
        raise SpecError(f"{where}.received_today.{self.skus[k]}: {float(self.received_today[i, k])!r} "
                        f"received today is more than on hand {float(self.on_hand[i, k])!r} + served today "
                        f"{float(self.served_today[i, k])!r}; allowed: at most that")

    def _check_line(self, where: str, node: int, source: int, quantity: np.ndarray,
                    sources: Mapping[int, set[int]]) -> None:
        if not (0 <= node < len(self.nodes)) or node not in sources:
            raise SpecError(f"{where}.node: {node!r} is not a DC or store of this network")
        if source not in sources[node]:
            allowed = ", ".join(self.nodes[s] for s in sorted(sources[node]))
            raise SpecError(f"{where}.source: {self.nodes[source] if 0 <= source < len(self.nodes) else source!r} "
                            f"does not supply {self.nodes[node]!r}; allowed: {allowed}")
        q = np.asarray(quantity, dtype=float)
        if q.shape != (len(self.skus),):
            raise SpecError(f"{where}.quantity: shape {q.shape} is not allowed; allowed: one value per SKU "
                            f"({len(self.skus)})")
        bad = np.flatnonzero(~np.isfinite(q) | (q < -RESIDUE))
        if bad.size:
            raise SpecError(f"{where}.quantity.{self.skus[bad[0]]}: {float(q[bad[0]])!r} is not allowed; "
                            f"allowed: a finite quantity >= 0")

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), keyed by node and SKU names; `snapshot_from_dict` reads it back exactly."""
        sku = self.skus

        def per_sku(row: np.ndarray) -> dict[str, float]:
            return dict(zip(sku, row.tolist()))

        return {
            "format": SNAPSHOT_FORMAT,
            "network": {"name": self.network_name, "hash": self.network_hash},
            "day": int(self.day),
            "date": self.date.isoformat(),
            "seed": self.seed,
            "horizon": self.horizon,
            "skus": list(sku),
            "nodes": {name: {"expected_lead_time": float(self.expected_lead_time[i]),
                             **{f: per_sku(getattr(self, f)[i]) for f in NODE_FIELDS}}
                      for i, name in enumerate(self.nodes)},
            "shipments": [{"node": self.nodes[s.node], "source": self.nodes[s.source], "dispatched": int(s.dispatched),
                           "due": int(s.due), "quantity": per_sku(s.quantity)} for s in self.shipments],
            "unshipped": [{"node": self.nodes[u.node], "source": self.nodes[u.source], "ordered": int(u.ordered),
                           "quantity": per_sku(u.quantity)} for u in self.unshipped],
            "disruptions": [{**shock_to_dict(shock), "remaining_days": self.remaining_days(shock)}
                            for shock in self.disruptions],
        }

    def save(self, path: str | Path) -> Path:
        """Write the snapshot as JSON (indented) and return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, network: NetworkSpec, key: str = "snapshot") -> Snapshot:
        """Read and check a snapshot file of `network`; a SpecError names the field below `key` if anything is
        wrong."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{key}: {str(path)!r} does not exist; allowed: a snapshot JSON file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(f"{key}: {str(path)!r} is not a readable JSON file ({e})") from None
        return snapshot_from_dict(data, network, key)


def snapshot_from_dict(data: Mapping[str, Any], network: NetworkSpec, key: str = "snapshot") -> Snapshot:
    """A checked Snapshot of `network` from `Snapshot.to_dict()`'s plain data (SpecError names the field).

    `in_transit`, `on_order`, `received_today`, `served_today` and `expected_lead_time` may be left out of a
    node (they are then the sums of its lines, zero, and the nominal lead time); a DC's or supplier's
    `backorders` likewise default to the sum of the unshipped orders it owes.
    """
    r = ConfigReader(data, key)
    fmt = r.text("format")
    if fmt != SNAPSHOT_FORMAT:
        raise SpecError(f"{r.key('format')}: {fmt!r} is not allowed; allowed: {SNAPSHOT_FORMAT!r}")
    net = r.child("network")
    name, digest = net.text("name"), net.text("hash")
    net.done()
    if digest != network_hash(network):  # first: the one error that says what is wrong with all the rest
        raise SpecError(f"{net.key('hash')}: {digest[:12]}... is the hash of another network than "
                        f"{network.name!r} ({network_hash(network)[:12]}...; the snapshot names {name!r}); "
                        f"allowed: a snapshot taken from this network spec")
    day = r.integer("day", low=0)
    date = r.text("date", optional=True)
    if date is not None and date != calendar_date(day).isoformat():
        raise SpecError(f"{r.key('date')}: {date!r} is not day {day} of the twin's calendar "
                        f"({calendar_date(day).isoformat()}, day 0 = {DAY_ZERO.isoformat()}); allowed: that date, "
                        f"or left out")
    seed = r.integer("seed", optional=True, low=0)
    source_horizon = r.integer("horizon", optional=True, low=day + 1)
    skus = tuple(str(s) for s in r.sequence("skus"))
    if skus != tuple(network.skus.name):
        known = set(network.skus.name)
        unknown = [s for s in skus if s not in known]
        detail = f"unknown SKU {unknown[0]!r}" if unknown else "not the network's SKUs in its order"
        raise SpecError(f"{r.key('skus')}: {detail}; allowed: the SKUs of network {network.name!r} in order "
                        f"({', '.join(network.skus.name[:5])}{', ...' if network.skus.n > 5 else ''})")
    names = network.node_names
    nodes_data = r.raw("nodes", {})
    if not isinstance(nodes_data, Mapping):
        raise SpecError(f"{r.key('nodes')}: expected a mapping of node name to its quantities")
    for node in nodes_data:
        if node not in names:
            raise SpecError(f"{r.key('nodes')}.{node}: not a node of network {network.name!r}; allowed: "
                            f"{', '.join(names)}")
    n, k = len(names), len(skus)
    arrays = {f: np.zeros((n, k)) for f in NODE_FIELDS}
    given = {f: np.zeros(n, dtype=bool) for f in NODE_FIELDS}
    lead = np.array([nd.lead_time.expected_days for nd in network.nodes], dtype=float)
    for i, node in enumerate(names):
        nr = ConfigReader(nodes_data.get(node), f"{r.key('nodes')}.{node}")
        for f in NODE_FIELDS:
            if nr.has(f):
                arrays[f][i] = _per_sku(nr, f, skus)
                given[f][i] = True
        if nr.has("expected_lead_time"):
            lead[i] = nr.number("expected_lead_time", low=0)
        nr.done()
    index = {nm: i for i, nm in enumerate(names)}
    shipments, unshipped = [], []
    for sr in r.children("shipments"):
        shipments.append(OpenShipment(node=_node(sr, "node", index), source=_node(sr, "source", index),
                                      dispatched=sr.integer("dispatched"), due=sr.integer("due"),
                                      quantity=_per_sku(sr, "quantity", skus)))
        sr.done()
    for ur in r.children("unshipped"):
        unshipped.append(UnshippedOrder(node=_node(ur, "node", index), source=_node(ur, "source", index),
                                        ordered=ur.integer("ordered"), quantity=_per_sku(ur, "quantity", skus)))
        ur.done()
    disruptions = []
    for j, item in enumerate(r.sequence("disruptions")):
        where = f"{r.key('disruptions')}[{j}]"
        item = dict(item) if isinstance(item, Mapping) else item
        remaining = item.pop("remaining_days", None) if isinstance(item, dict) else None
        shock = shock_from_dict(item, network, where)
        if not (shock.start <= day < shock.end):
            raise SpecError(f"{where}: window [{shock.start}, {shock.end}) is not in force on day {day}; "
                            f"allowed: start <= {day} < end")
        if remaining is not None and remaining != shock.end - day:
            raise SpecError(f"{where}.remaining_days: {remaining!r} does not match end {shock.end} - day {day}; "
                            f"allowed: {shock.end - day}, or left out")
        disruptions.append(shock)
    r.done()
    # totals left out follow from the lines
    shipped, ordered, owed = line_totals(shipments, unshipped, n, k)
    internal = np.array([nd.kind != "store" for nd in network.nodes])[:, None]
    for field, total, applies in (("in_transit", shipped, True), ("on_order", ordered, True),
                                  ("backorders", owed, internal)):
        arrays[field] = np.where(given[field][:, None] | ~np.asarray(applies), arrays[field], total)
    snapshot = Snapshot(network_name=name, network_hash=digest, nodes=names, skus=skus, day=day,
                        expected_lead_time=lead, shipments=tuple(shipments), unshipped=tuple(unshipped),
                        disruptions=tuple(disruptions), seed=seed, horizon=source_horizon, **arrays)
    snapshot.check(network, key)
    return snapshot


def line_totals(shipments: Sequence[OpenShipment], unshipped: Sequence[UnshippedOrder], n_nodes: int,
                n_sku: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nodes, SKUs) sums of the lines: in transit to each node, on order by each node, owed by each source."""
    shipped, ordered, owed = (np.zeros((n_nodes, n_sku)) for _ in range(3))
    for s in shipments:
        shipped[s.node] += s.quantity
    for u in unshipped:
        ordered[u.node] += u.quantity
        owed[u.source] += u.quantity
    return shipped, ordered, owed


def _node(r: ConfigReader, name: str, index: Mapping[str, int]) -> int:
    value = r.text(name)
    if value not in index:
        raise SpecError(f"{r.key(name)}: {value!r} is not a node of this network; allowed: {', '.join(index)}")
    return index[value]


def _per_sku(r: ConfigReader, name: str, skus: Sequence[str]) -> np.ndarray:
    """One quantity per SKU from a mapping SKU -> value (SKUs left out are 0); each finite and >= 0."""
    data = r.raw(name)
    if not isinstance(data, Mapping):
        raise SpecError(f"{r.key(name)}: expected a mapping of SKU to quantity")
    position = {s: k for k, s in enumerate(skus)}
    out = np.zeros(len(skus))
    for sku, value in data.items():
        if sku not in position:
            raise SpecError(f"{r.key(name)}.{sku}: not a SKU of this network; allowed: the snapshot's skus")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
                or value < -RESIDUE:
            raise SpecError(f"{r.key(name)}.{sku}: {value!r} is not allowed; allowed: a finite quantity >= 0")
        out[position[sku]] = value
    return out


def _check_quantities(key: str, values: np.ndarray, nodes: Sequence[str], skus: Sequence[str]) -> None:
    if values.shape != (len(nodes), len(skus)):
        raise SpecError(f"{key}: shape {values.shape} is not allowed; allowed: (nodes, SKUs) = "
                        f"({len(nodes)}, {len(skus)})")
    bad = np.argwhere(~np.isfinite(values) | (values < -RESIDUE))
    if bad.size:
        i, k = bad[0]
        field = key.rsplit(".", 1)
        raise SpecError(f"{field[0]}.nodes.{nodes[i]}.{field[-1]}.{skus[k]}: {float(values[i, k])!r} is not allowed; "
                        f"allowed: a finite quantity >= 0")


def _check_sum(key: str, total: np.ndarray, parts: np.ndarray, what: str, snapshot: Snapshot) -> None:
    off = np.abs(total - parts) > TOLERANCE * np.maximum(1.0, np.abs(parts))
    if off.any():
        i, k = np.argwhere(off)[0]
        field = key.rsplit(".", 1)
        raise SpecError(f"{field[0]}.nodes.{snapshot.nodes[i]}.{field[-1]}.{snapshot.skus[k]}: {float(total[i, k])!r} "
                        f"is not {what} ({float(parts[i, k])!r}); allowed: equal totals")
