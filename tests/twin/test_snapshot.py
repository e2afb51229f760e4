"""Snapshots: exact continuation, the JSON round trip, and impossible snapshots refused naming the field."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from twin import (
    CapacityCut,
    DcClosure,
    DemandShock,
    Engine,
    LeadTimeShock,
    SpecError,
    SupplierOutage,
    network_from_dict,
)
from twin.calendar import DAY_ZERO
from twin.snapshot import SNAPSHOT_FORMAT, OpenShipment, Snapshot, network_hash, snapshot_from_dict
from twin.testing import OrderUpTo, check_continuation, check_ledger, check_state

HORIZON = 90


def network(*, unmet: str = "backorder", dc_unmet: str = "backorder", rationing: str = "proportional",
            supply_capacity: float | None = None, integer: bool = True, name: str = "snap"):
    """supplier -> 2 DCs (gamma lead times) -> 4 stores with backup DCs; 3 SKUs of different laws."""
    supplier = {"name": "sup", "kind": "supplier"}
    if supply_capacity is not None:
        supplier["supply_capacity"] = supply_capacity
    dcs = [{"name": f"dc{j}", "kind": "dc", "parent": "sup", "unmet": dc_unmet, "holding_factor": 0.5,
            "backorder_factor": 0.0, "storage_capacity": 5000.0,
            "lead_time": {"dist": "gamma", "mean": 4.0, "cv": 0.4}} for j in range(2)]
    stores = [{"name": f"s{i}", "kind": "store", "parent": f"dc{i % 2}", "backup_parent": f"dc{1 - i % 2}",
               "unmet": unmet, "demand_scale": 0.7 + 0.2 * i, "region": "north" if i < 2 else "south",
               "lead_time": {"dist": "empirical", "values": [1, 2, 3], "probs": [0.5, 0.3, 0.2]}}
              for i in range(4)]
    items = [
        {"name": "rice", "group": "staples", "dist": "poisson", "mean": 12, "holding_cost": 0.02,
         "backorder_cost": 0.5, "lost_sale_cost": 2.0, "fixed_order_cost": 1.0},
        {"name": "milk", "group": "fresh", "dist": "negative_binomial", "mean": 8, "dispersion": 5,
         "holding_cost": 0.05, "backorder_cost": 1.0, "lost_sale_cost": 3.0},
        {"name": "kettle", "group": "general", "dist": "zero_inflated_poisson", "mean": 0.9, "zero_prob": 0.5,
         "holding_cost": 0.1, "backorder_cost": 2.0, "lost_sale_cost": 9.0},
    ]
    if not integer:  # a normal law with fractional units: float sums must carry over bit for bit too
        items[1] = {**items[1], "dist": "normal", "cv": 0.5}
        items[1].pop("dispersion")
    spec = {"name": name, "nodes": [supplier, *dcs, *stores], "skus": {"items": items},
            "rationing": rationing, "demand": {"weekly": [1, 1, 1, 1, 1.2, 1.4, 0.8], "integer_units": integer,
                                               "promotion": {"weekly_probability": 0.1}}}
    if rationing == "fcfs":
        spec["backlog_first"] = True
    return network_from_dict(spec)


def policy_for(net, scale: float = 1.0):
    """Order-up-to levels that keep the DCs a little short, so backlogs and rationing happen."""
    levels = np.zeros((len(net.nodes), net.skus.n))
    mean = net.skus.mean
    for i, node in enumerate(net.nodes):
        if node.kind == "dc":
            levels[i] = 2 * 5.5 * mean * scale
        elif node.kind == "store":
            levels[i] = 3.0 * mean * node.demand_scale * scale
    return lambda: OrderUpTo(levels)


SHOCKS = (
    DemandShock(start=20, end=45, multiplier=2.5, groups=("staples",)),
    LeadTimeShock(start=25, end=60, multiplier=2.0, sources=("sup",)),
    SupplierOutage(start=38, end=44, supplier="sup"),
    DcClosure(start=30, end=50, dc="dc0", reroute=True),
)


def engine_at(net, day: int, *, seed: int = 0, horizon: int = HORIZON, shocks=SHOCKS) -> Engine:
    """A run of `net` under `policy_for(net)` stepped to the decision point of `day`."""
    engine = Engine(net, horizon=horizon, seed=seed, shocks=shocks)
    policy = policy_for(net)()
    while engine.day < day:
        engine.step(policy.act(engine.state()))
    return engine


@pytest.mark.parametrize("day", [1, 33, 47, 70])
def test_exact_continuation_through_shocks(day):
    net = network()
    snapshot = check_continuation(net, policy_for(net), HORIZON, seed=4, day=day, shocks=SHOCKS)
    active = [s for s in SHOCKS if s.start <= day < s.end]
    assert list(snapshot.disruptions) == active


@pytest.mark.parametrize("unmet, dc_unmet", [("backorder", "backorder"), ("lost", "backorder"), ("lost", "lost"),
                                             ("backorder", "lost")])
def test_exact_continuation_backorders_and_lost_sales(unmet, dc_unmet):
    net = network(unmet=unmet, dc_unmet=dc_unmet)
    snapshot = check_continuation(net, policy_for(net, 0.8), HORIZON, seed=1, day=35, shocks=SHOCKS)
    if unmet == "backorder":
        assert snapshot.backorders[[i for i, n in enumerate(net.nodes) if n.kind == "store"]].sum() > 0


@pytest.mark.parametrize("rationing", ["proportional", "priority", "fcfs"])
def test_exact_continuation_under_each_rationing_rule(rationing):
    net = network(rationing=rationing, supply_capacity=60.0)
    snapshot = check_continuation(net, policy_for(net, 1.3), HORIZON, seed=2, day=40, shocks=SHOCKS)
    owed_by_sources = {u.source for u in snapshot.unshipped}
    assert owed_by_sources, "the test should leave backlogs at the snapshot, so rationing carries over"


def test_exact_continuation_with_fractional_units_and_a_capacity_cut():
    net = network(integer=False)
    cut = CapacityCut(start=10, end=70, node="dc1", factor=0.3)
    check_continuation(net, policy_for(net), HORIZON, seed=5, day=50, shocks=(*SHOCKS, cut))


def test_json_round_trip_is_exact(tmp_path):
    net = network(integer=False)
    engine = engine_at(net, 41, seed=3)
    snapshot = engine.snapshot()
    path = snapshot.save(tmp_path / "snap.json")
    again = Snapshot.load(path, net)
    assert again.to_dict() == snapshot.to_dict()
    for name in ("on_hand", "backorders", "in_transit", "on_order", "received_today", "served_today",
                 "expected_lead_time"):
        assert np.array_equal(getattr(again, name), getattr(snapshot, name)), name
    assert [(s.node, s.source, s.dispatched, s.due) for s in again.shipments] == \
        [(s.node, s.source, s.dispatched, s.due) for s in snapshot.shipments]
    data = json.loads(path.read_text())
    assert data["format"] == SNAPSHOT_FORMAT and data["day"] == 41
    assert data["date"] == "2021-02-11" and DAY_ZERO.isoformat() == "2021-01-01"
    assert {d["type"] for d in data["disruptions"]} == {"demand", "lead_time", "supplier_outage", "dc_closure"}
    closure = next(d for d in data["disruptions"] if d["type"] == "dc_closure")
    assert closure["remaining_days"] == 50 - 41
    assert len(snapshot.shipments) > 0 and len(snapshot.unshipped) > 0


def test_snapshot_state_matches_the_engine():
    net = network()
    engine = engine_at(net, 27)
    snapshot = engine.snapshot()
    state = engine.state()
    assert np.array_equal(snapshot.inventory_position, state.inventory_position)
    assert np.array_equal(snapshot.expected_lead_time, engine.expected_lead_times())
    ages = snapshot.pipeline_by_age(4)
    assert np.allclose(ages.sum(axis=1), state.in_transit)
    with pytest.raises(ValueError):
        snapshot.on_hand[0, 0] = 1.0  # read-only: forks share it without copies


def test_forks_from_one_snapshot_are_identical_and_leave_it_untouched():
    net = network()
    engine = engine_at(net, 30)
    snapshot = engine.snapshot()
    before = copy.deepcopy(snapshot.to_dict())
    results = [Engine(net, horizon=HORIZON, seed=0, shocks=SHOCKS, start=snapshot).run(policy_for(net)())
               for _ in range(2)]
    assert results[0].kpis == results[1].kpis
    assert snapshot.to_dict() == before


def test_a_state_from_outside_the_twin_starts_a_balanced_run():
    """A snapshot with only stock and open lines (as an ERP system reports them): totals follow from the lines."""
    net = network()
    data = {
        "format": SNAPSHOT_FORMAT, "network": {"name": net.name, "hash": network_hash(net)}, "day": 100,
        "skus": list(net.skus.name),
        "nodes": {"dc0": {"on_hand": {"rice": 300, "milk": 100}}, "s1": {"on_hand": {"rice": 20},
                                                                         "backorders": {"kettle": 2}}},
        "shipments": [{"node": "s0", "source": "dc0", "dispatched": 99, "due": 101, "quantity": {"rice": 30}}],
        "unshipped": [{"node": "dc1", "source": "sup", "ordered": 98, "quantity": {"milk": 50}}],
    }
    snapshot = snapshot_from_dict(data, net)
    assert snapshot.in_transit[net.index("s0"), 0] == 30
    assert snapshot.on_order[net.index("dc1"), 1] == 50
    assert snapshot.backorders[net.index("sup"), 1] == 50  # owed by the supplier: the sum of its lines
    engine = Engine(net, horizon=160, seed=9, start=snapshot, invariants="error")
    check_state(engine)
    engine.step(np.zeros((len(net.nodes), net.skus.n)))
    engine.step(np.zeros((len(net.nodes), net.skus.n)))
    check_state(engine)
    assert engine.on_hand[net.index("s0"), 0] <= 30 and engine.in_transit[net.index("s0")].sum() == 0
    result = engine.run(policy_for(net)())
    check_ledger(engine)
    assert len(result.series["on_hand"]) == 60 and result.meta["first_day"] == 100


def test_a_shock_in_force_at_the_start_but_not_in_the_snapshot_applies():
    net = network()
    empty = {"format": SNAPSHOT_FORMAT, "network": {"name": net.name, "hash": network_hash(net)}, "day": 10,
             "skus": list(net.skus.name), "nodes": {}}
    snapshot = snapshot_from_dict(empty, net)
    closure = DcClosure(start=5, end=20, dc="dc1", reroute=True)
    engine = Engine(net, horizon=40, seed=0, start=snapshot, shocks=(closure,))
    assert engine.active_shocks == [closure] and engine.effects.shut[net.index("dc1")]
    assert engine.route[net.index("s1")] == net.index("dc0")


def good_data():
    net = network()
    engine = engine_at(net, 35)
    return net, engine.snapshot().to_dict()


def _set(data, path, value):
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


@pytest.mark.parametrize("path, value, message", [
    (("nodes", "dc0", "on_hand", "rice"), -1.0, "snapshot.nodes.dc0.on_hand.rice: -1.0 is not allowed"),
    (("nodes", "s2", "backorders", "milk"), float("nan"), "snapshot.nodes.s2.backorders.milk: nan is not allowed"),
    (("shipments", 0, "due"), 20, "snapshot.shipments[0]: dispatched on day"),
    (("shipments", 0, "node"), "s9", "snapshot.shipments[0].node: 's9' is not a node"),
    (("shipments", -1, "source"), "dc0", ".source: 'dc0' does not supply 'dc1'; allowed: sup"),
    (("unshipped", 0, "quantity", "bread"), 3, "snapshot.unshipped[0].quantity.bread: not a SKU"),
    (("unshipped", 0, "ordered"), 80, "snapshot.unshipped[0].ordered: day 80 is after"),
    (("nodes", "s7"), {"on_hand": {"rice": 1}}, "snapshot.nodes.s7: not a node of network 'snap'"),
    (("skus",), ["rice", "milk", "bread"], "snapshot.skus: unknown SKU 'bread'"),
    (("network", "hash"), "0" * 64, "snapshot.network.hash: 000000000000... is the hash of another network"),
    (("date",), "2021-01-01", "snapshot.date: '2021-01-01' is not day 35"),
    (("format",), "twin.snapshot/9", "snapshot.format: 'twin.snapshot/9' is not allowed"),
    (("nodes", "dc0", "in_transit", "rice"), 1e9, "snapshot.nodes.dc0.in_transit.rice: 1000000000.0 is not the sum"),
    (("nodes", "sup", "on_hand", "rice"), 5.0, "snapshot.nodes.sup: a supplier holds and orders nothing"),
    (("disruptions", 0, "end"), 30, "snapshot.disruptions[0]: window [20, 30) is not in force on day 35"),
    (("disruptions", 0, "remaining_days"), 3, "snapshot.disruptions[0].remaining_days: 3 does not match"),
    (("extra",), 1, "snapshot: unknown key 'extra'"),
])
def test_impossible_snapshots_are_refused_naming_the_field(path, value, message):
    net, data = good_data()
    _set(data, path, value)
    with pytest.raises(SpecError) as info:
        snapshot_from_dict(data, net)
    assert message in str(info.value)


def test_a_snapshot_of_another_network_is_refused_by_the_engine():
    net, data = good_data()
    other = network(name="other")
    assert network_hash(other) != network_hash(net)
    snapshot = snapshot_from_dict(data, net)
    with pytest.raises(SpecError, match="start.network.hash: .* another network"):
        Engine(other, horizon=HORIZON, seed=0, start=snapshot)


def test_engine_refuses_start_with_initial_stock_or_past_the_horizon():
    net, data = good_data()
    snapshot = snapshot_from_dict(data, net)
    with pytest.raises(ValueError, match="initial_on_hand: not allowed with start"):
        Engine(net, horizon=HORIZON, seed=0, start=snapshot, initial_on_hand=np.zeros((7, 3)))
    with pytest.raises(ValueError, match="start.day: 35 is not allowed"):
        Engine(net, horizon=35, seed=0, start=snapshot)


def test_the_snapshot_after_the_end_is_observable_but_starts_no_run():
    net = network()
    engine = Engine(net, horizon=3, seed=0)
    engine.run(policy_for(net)())
    snapshot = engine.snapshot()
    assert snapshot.day == 3 and np.array_equal(snapshot.on_hand, engine.on_hand)
    with pytest.raises(ValueError, match="start.day: 3 is not allowed"):
        Engine(net, horizon=3, seed=0, start=snapshot)


def weather_network():
    """The test network with a regional weather index that moves demand (drawn over the whole run)."""
    data = {"name": "weather", "skus": {"items": [
        {"name": "ice", "group": "summer", "dist": "poisson", "mean": 6, "weather_sensitivity": 0.8,
         "holding_cost": 0.1, "backorder_cost": 1.0}]},
        "demand": {"weather_sd": 0.4, "promotion": {"weekly_probability": 0.2}},
        "nodes": [{"name": "sup", "kind": "supplier"},
                  {"name": "dc", "kind": "dc", "parent": "sup", "lead_time": {"dist": "gamma", "mean": 3, "cv": 0.5}},
                  {"name": "s", "kind": "store", "parent": "dc", "region": "north"}]}
    return network_from_dict(data)


@pytest.mark.parametrize("fork_horizon", [55, 90])
def test_a_fork_with_another_horizon_sees_the_source_runs_days(fork_horizon):
    net = weather_network()
    levels = np.array([[0.0], [40.0], [15.0]])
    full = Engine(net, horizon=90, seed=8, per_sku_series=True).run(OrderUpTo(levels))
    engine = Engine(net, horizon=90, seed=8)
    while engine.day < 40:
        engine.step(OrderUpTo(levels).act(engine.state()))
    snapshot = snapshot_from_dict(json.loads(json.dumps(engine.snapshot().to_dict())), net)
    assert snapshot.horizon == 90
    fork = Engine(net, horizon=fork_horizon, seed=8, start=snapshot, per_sku_series=True).run(OrderUpTo(levels))
    days = min(fork_horizon, 90) - 40
    for name in ("on_hand", "demand", "received"):
        np.testing.assert_array_equal(fork.series[name][:days], full.series[name][40:40 + days], err_msg=name)


def test_a_shock_given_again_with_another_end_replaces_the_snapshots_clipped_one():
    """A scenario clipped to a short run's horizon, continued with the longer one: the shock counts once."""
    net = network()
    clipped = LeadTimeShock(start=25, end=60, multiplier=2.0, sources=("sup",))
    longer = LeadTimeShock(start=25, end=80, multiplier=2.0, sources=("sup",))
    engine = engine_at(net, 40, horizon=60, shocks=(clipped,))
    snapshot = engine.snapshot()
    fork = Engine(net, horizon=120, seed=0, start=snapshot, shocks=(longer,))
    assert fork.active_shocks == [longer] and fork.effects.lead_time[net.index("sup")] == 2.0
    fork.run(policy_for(net)())
    assert fork.active_shocks == [] and fork.effects.lead_time[net.index("sup")] == 1.0


def test_a_snapshot_built_in_python_from_lists_is_copied_and_read_only():
    net = network()
    mine = [3.0, 0.0, 1.0]
    line = OpenShipment(node=net.index("s0"), source=net.index("dc0"), dispatched=9, due=11, quantity=mine)
    snapshot = Snapshot(network_name=net.name, network_hash=network_hash(net), nodes=net.node_names,
                        skus=tuple(net.skus.name), day=10, on_hand=np.zeros((7, 3)), backorders=np.zeros((7, 3)),
                        in_transit=np.zeros((7, 3)), on_order=np.zeros((7, 3)), expected_lead_time=np.ones(7),
                        shipments=(line,))
    assert isinstance(snapshot.shipments[0].quantity, np.ndarray)
    assert not snapshot.shipments[0].quantity.flags.writeable
    with pytest.raises(SpecError, match=r"snapshot.nodes.s0.in_transit.rice: 0.0 is not the sum of its open"):
        snapshot.check(net)
    assert snapshot in [snapshot]  # identity: arrays inside, so no field-wise ==
    mine[0] = 99.0
    assert snapshot.shipments[0].quantity[0] == 3.0  # the caller's list is copied


@pytest.mark.parametrize("node, field, sku, value, message", [
    ("s1", "backorders", "rice", 2.0, "snapshot.nodes.s1.backorders.rice: 's1' loses unmet demand"),
    ("dc0", "served_today", "rice", 3.0, "snapshot.nodes.dc0.served_today: only a store serves"),
    ("sup", "received_today", "rice", 3.0, "snapshot.nodes.sup: a supplier holds and orders nothing"),
    ("s1", "received_today", "milk", 1e6, "snapshot.nodes.s1.received_today.milk: 1000000.0 received today is more"),
    ("s1", "on_hand", "milk", 2.5, "snapshot.nodes.s1.on_hand.milk: 2.5 is not a whole number of units"),
])
def test_states_the_twin_cannot_be_in_are_refused(node, field, sku, value, message):
    net = network(unmet="lost")
    data = {"format": SNAPSHOT_FORMAT, "network": {"name": net.name, "hash": network_hash(net)}, "day": 10,
            "skus": list(net.skus.name), "nodes": {node: {field: {sku: value}}}}
    with pytest.raises(SpecError) as info:
        snapshot_from_dict(data, net)
    assert message in str(info.value)


def test_a_backordering_store_serves_its_backorders_from_stock_first():
    net = network()
    data = {"format": SNAPSHOT_FORMAT, "network": {"name": net.name, "hash": network_hash(net)}, "day": 10,
            "skus": list(net.skus.name), "nodes": {"s2": {"on_hand": {"milk": 5}, "backorders": {"milk": 2}}}}
    with pytest.raises(SpecError, match=r"snapshot.nodes.s2.backorders.milk: 2.0 owed while 5.0 is on hand"):
        snapshot_from_dict(data, net)
