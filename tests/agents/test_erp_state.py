"""The ERP state (agents/deploy): its models and JSON Schema, and its conversion to the twin's Snapshot plus
forecasts and back: snapshot -> state -> snapshot on twin runs inside shock windows, state -> snapshot -> state on a
hand-written state, a forecast computed by hand, one bad state per rule (each error names its field), and a run
continued from a converted state with a balanced ledger."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from agents.deploy.conversion import ErpStateError, error_fields, snapshot_to_state, state_to_twin
from agents.deploy.erp_state import (
    MAX_DATE,
    MAX_OPEN_ORDERS_PER_ITEM,
    MAX_QUANTITY,
    MAX_SKUS_PER_LOCATION,
    MIN_DATE,
    ErpState,
    erp_state_schema,
    format_loc,
    write_erp_state_schema,
)
from agents.forecasting.data import panel_from_twin
from agents.forecasting.live import OracleForecaster, forecast_over_protection
from scenarios import build
from twin.calendar import DAY_ZERO
from twin.costs import cost_rates
from twin.engine import Engine
from twin.shocks import CapacityCut, DcClosure, DemandShock, LeadTimeShock, SupplierOutage
from twin.spec import network_from_dict
from twin.testing import OrderUpTo, check_ledger

ROOT = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2021, 3, 1)  # twin day 59
DAY = (AS_OF - DAY_ZERO).days
Z_80 = 1.2816  # as an operations engineer would write it


def network_of(name: str, **store):
    data = yaml.safe_load((ROOT / f"conf/network/{name}.yaml").read_text())
    data["layout"]["store"].update(store)
    return network_from_dict(data)


@pytest.fixture(scope="module")
def small():
    return network_of("small")


@pytest.fixture(scope="module")
def paper():
    return network_of("paper_5x20")


def d(days: int) -> str:
    """The date `days` after AS_OF, as JSON writes it."""
    return (AS_OF + dt.timedelta(days=days)).isoformat()


def costs(network, node: str, sku: str) -> dict:
    rates, i, k = cost_rates(network), network.index(node), network.skus.name.index(sku)
    return {"holding": float(rates.holding[i, k]), "backorder": float(rates.backorder[i, k]),
            "lost_sale": float(rates.lost_sale[i, k]), "in_transit": float(rates.transit[i, k]),
            "fixed_order": float(rates.fixed_order[i, k]), "unit_cost": float(rates.unit[i, k])}


def hand_state(network) -> dict:
    """A state of the small network (supplier_0 -> dc_0 -> store_0, store_1; rice, milk, kettle) on AS_OF, as a
    client would send it, with only what a snapshot carries (and the network's costs): it converts back to itself.

    dc_0's lane is 5 days (gamma, sd 1.5) doubled by a supplier delay in force: mean 10, sd 3; protection periods
    rint(10) + 1 = 11 days at the DC, 1 + 1 = 2 at the stores. Forecasts are flat over exactly those days."""
    def item(node, sku, on_hand=0.0, backorders=0.0, lines=(), per_day=1.0, sd=0.5):
        days = 11 if node == "dc_0" else 2
        return {"sku": sku, "on_hand": on_hand, "backorders": backorders, "open_orders": list(lines),
                "costs": costs(network, node, sku),
                "forecast": {"start": d(0), "mean": [per_day] * days, "sd": [sd] * days}}

    return {
        "format": "erp.state/1",
        "as_of": d(0),
        "locations": [
            {"id": "dc_0", "lead_time": {"mean_days": 10.0, "sd_days": 3.0}, "items": [
                item("dc_0", "rice", on_hand=120, backorders=7, per_day=40.0, sd=6.0, lines=[
                    {"quantity": 200, "source": "supplier_0", "ship_date": d(-3), "expected_arrival": d(4)},
                    {"quantity": 150, "source": "supplier_0", "order_date": d(-1)}]),
                item("dc_0", "milk", on_hand=0, backorders=0, per_day=20.0, sd=4.0, lines=[
                    {"quantity": 90, "source": "supplier_0", "ship_date": d(-3), "expected_arrival": d(4)}]),
                item("dc_0", "kettle", on_hand=3, per_day=2.0, sd=1.0)]},
            {"id": "store_0", "lead_time": {"mean_days": 1.0, "sd_days": 0.0}, "items": [
                item("store_0", "rice", on_hand=14, per_day=16.0, sd=4.0, lines=[
                    {"quantity": 7, "source": "dc_0", "order_date": d(-2)}]),
                item("store_0", "milk", on_hand=0, backorders=5, per_day=8.0, sd=3.0, lines=[
                    {"quantity": 12, "source": "dc_0", "ship_date": d(0), "expected_arrival": d(1)}]),
                item("store_0", "kettle", on_hand=1, per_day=0.5, sd=0.75)]},
            {"id": "store_1", "lead_time": {"mean_days": 1.0, "sd_days": 0.0}, "items": [
                item("store_1", "rice", on_hand=30, per_day=24.0, sd=5.0),
                item("store_1", "milk", on_hand=9, per_day=12.0, sd=3.5),
                item("store_1", "kettle", on_hand=0, per_day=1.0, sd=1.0)]},
        ],
        "disruptions": [
            {"type": "supplier_delay", "start_date": d(-10), "end_date": d(20), "multiplier": 2.0,
             "sources": ["supplier_0"]},
            {"type": "dc_closure", "start_date": d(9), "end_date": d(14), "location": "dc_0", "reroute": False},
        ],
    }


def assert_same(a, b, path="state"):
    """Equal plain data, floats within 1e-12 relative (sums of per-day forecasts and back)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a.keys() ^ b.keys())} differ"
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def field_of(error: ValidationError | ErpStateError) -> str:
    return error_fields(error)[0][0]


# ------------------------------------------------------------------ (a) snapshot -> state -> snapshot

NOT_CARRIED = ("received_today", "served_today")  # per node; and the snapshot's seed and horizon (provenance)


def comparable(snapshot_dict: dict) -> dict:
    out = {k: v for k, v in snapshot_dict.items() if k not in ("seed", "horizon")}
    out["nodes"] = {name: {f: v for f, v in node.items() if f not in NOT_CARRIED}
                    for name, node in snapshot_dict["nodes"].items()}
    return out


@pytest.mark.parametrize(("network_name", "scenario", "params"), [
    ("small", "covid_2020", {"reroute": False}),  # a single DC has no backup to re-route to
    ("small", "dc_outage", {}),
    ("paper_5x20", "covid_2020", {}),
    ("paper_5x20", "dc_outage", {"reroute": True}),
])
def test_a_twin_snapshot_converts_to_a_state_and_back_to_the_same_snapshot(network_name, scenario, params):
    network = network_of(network_name)
    horizon = 200
    shocks = build(scenario, network, horizon, **params).shocks
    levels = np.full((len(network.nodes), network.skus.n), 150.0)
    engine = Engine(network, horizon=horizon, seed=5, shocks=shocks, invariants="error")
    oracle = OracleForecaster()
    oracle.attach(engine)
    # inside every shock window: its second day and its last
    days = sorted({s.start + 1 for s in shocks} | {s.end - 1 for s in shocks})
    policy, seen = OrderUpTo(levels), set()
    inside = np.array([node.kind != "supplier" for node in network.nodes])
    while engine.day <= days[-1]:
        if engine.day in days:
            snapshot = engine.snapshot()
            assert snapshot.disruptions and (snapshot.shipments or snapshot.unshipped)
            forecast = forecast_over_protection(snapshot, oracle, review_period=2, with_spread=True)
            state = snapshot_to_state(snapshot, network, forecast, review_period=2)
            wire = ErpState.model_validate_json(state.model_dump_json())  # through JSON, as a client sends it
            assert wire == state and wire.as_of == snapshot.date
            back = state_to_twin(wire, network, review_period=2)
            assert comparable(back.snapshot.to_dict()) == comparable(snapshot.to_dict())
            # DCs and stores (a supplier is no ERP location: its row is the sum over its stores)
            np.testing.assert_allclose(back.forecast.mean[inside], forecast.mean[inside], rtol=1e-12)
            np.testing.assert_allclose(back.forecast.spread[inside], forecast.spread[inside], rtol=1e-12)
            assert back.missing_forecast == {} and back.unlisted == () and back.later_shocks == ()
            seen |= {type(s).__name__ for s in snapshot.disruptions}
        engine.step(policy.act(engine.state()))
    assert seen == {type(s).__name__ for s in shocks}  # every kind of the scenario's shocks was in force once


def test_later_shocks_go_out_and_come_back_as_planned_disruptions(small):
    engine, policy = Engine(small, horizon=60, seed=1), OrderUpTo(np.full((4, 3), 50.0))
    for _ in range(20):
        engine.step(policy.act(engine.state()))
    later = (DcClosure(30, 35, dc="dc_0", reroute=False), LeadTimeShock(25, 40, multiplier=1.5))
    state = snapshot_to_state(engine.snapshot(), small, later=later)
    assert [x.type for x in state.disruptions] == ["dc_closure", "supplier_delay"]
    assert state.disruptions[0].start_date == dt.date(2021, 1, 31)
    inputs = state_to_twin(state, small)
    assert inputs.later_shocks == later and inputs.snapshot.disruptions == ()
    with pytest.raises(ValueError, match=r"later\[0\]: starts on day 20"):
        snapshot_to_state(engine.snapshot(), small, later=(DcClosure(20, 35, dc="dc_0", reroute=False),))


# ------------------------------------------------------------------ (b) state -> snapshot -> state


def test_a_hand_written_state_converts_to_a_snapshot_and_back_to_itself(small):
    state = ErpState.model_validate(hand_state(small))
    inputs = state_to_twin(state, small)
    snap = inputs.snapshot
    assert snap.day == DAY and inputs.periods.tolist() == [2, 11, 2, 2]  # supplier_0 (nominal 1 day), dc_0, stores
    rice, milk = 0, 1
    dc, s0 = small.index("dc_0"), small.index("store_0")
    assert snap.expected_lead_time.tolist() == [1.0, 10.0, 1.0, 1.0]
    assert [(x.node, x.source, x.dispatched, x.due, x.quantity.tolist()) for x in snap.shipments] == [
        (dc, 0, DAY - 3, DAY + 4, [200.0, 90.0, 0.0]),  # two ERP lines with the same dates: one shipment
        (s0, dc, DAY, DAY + 1, [0.0, 12.0, 0.0])]
    assert [(u.node, u.source, u.ordered, u.quantity.tolist()) for u in snap.unshipped] == [
        (dc, 0, DAY - 1, [150.0, 0.0, 0.0]), (s0, dc, DAY - 2, [7.0, 0.0, 0.0])]
    assert snap.in_transit[dc].tolist() == [200.0, 90.0, 0.0] and snap.on_order[s0, rice] == 7
    assert snap.backorders[dc, rice] == 7 and snap.backorders[s0, milk] == 5
    assert snap.received_today.sum() == 0 and snap.served_today.sum() == 0
    assert snap.disruptions == (LeadTimeShock(DAY - 10, DAY + 20, multiplier=2.0, sources=("supplier_0",)),)
    assert inputs.later_shocks == (DcClosure(DAY + 9, DAY + 14, dc="dc_0", reroute=False),)
    assert inputs.forecast.mean[dc, rice] == 440.0 and inputs.forecast.spread[dc, rice] == pytest.approx(
        6.0 * math.sqrt(11))
    back = snapshot_to_state(snap, small, inputs.forecast, later=inputs.later_shocks)
    assert_same(back.model_dump(mode="json"), state.model_dump(mode="json"))
    again = state_to_twin(back, small)
    assert again.snapshot.to_dict() == snap.to_dict()


def test_totals_left_out_follow_from_the_lines_and_locations_left_out_are_empty(small):
    data = hand_state(small)
    del data["locations"][0]["items"][0]["backorders"]  # dc_0 rice: what it owes store_0, the 7 ordered
    del data["locations"][2]  # store_1
    data["locations"][0]["items"].pop()  # dc_0 kettle
    data["locations"][0].pop("lead_time")  # dc_0: the nominal 5 days, doubled by the supplier delay in force
    inputs = state_to_twin(ErpState.model_validate(data), small)
    snap, dc, s1 = inputs.snapshot, small.index("dc_0"), small.index("store_1")
    assert snap.backorders[dc, 0] == 7 and snap.expected_lead_time[dc] == 10.0
    assert inputs.unlisted == ("store_1",) and not snap.on_hand[s1].any() and snap.on_hand[dc, 2] == 0
    assert inputs.missing_forecast == {"dc_0": ("kettle",), "store_1": ("rice", "milk", "kettle")}


def test_what_the_snapshot_cannot_carry_is_dropped_on_the_way_back(small):
    data = hand_state(small)
    item = data["locations"][1]["items"][0]
    item.update(pack_size=12, min_order_quantity=24, unit="EA", service_level=0.95,
                demand_history={"frequency": "daily", "start": d(-3), "values": [15, 17, 16]})
    item["open_orders"][0].update(reference="STO-4711", expected_arrival=d(2))
    data["locations"][0]["items"][0]["open_orders"][0].update(order_date=d(-9), reference="PO-1")
    data["locations"][0]["lead_time"] = {"observed_days": [9.0, 11.0, 10.0]}
    state = ErpState.model_validate(data)
    inputs = state_to_twin(state, small)
    back = snapshot_to_state(inputs.snapshot, small, inputs.forecast, later=inputs.later_shocks)
    assert_same(back.model_dump(mode="json"), ErpState.model_validate(hand_state(small)).model_dump(mode="json"))


def test_every_kind_of_disruption_maps_to_its_shock_and_back(paper):
    disruptions = [
        {"type": "dc_closure", "start_date": d(-2), "end_date": d(5), "location": "dc_1", "reroute": True},
        {"type": "supplier_delay", "start_date": d(-9), "end_date": d(30), "multiplier": 2.5, "sources": []},
        {"type": "supplier_outage", "start_date": d(0), "end_date": d(3), "supplier": "supplier_0"},
        {"type": "demand_change", "start_date": d(-1), "end_date": d(9), "multiplier": 0.7,
         "sku_groups": ["general"], "regions": ["north"]},
        {"type": "capacity_cut", "start_date": d(-4), "end_date": d(1), "location": "dc_2", "factor": 0.6},
        {"type": "supplier_outage", "start_date": d(40), "end_date": d(44), "supplier": "supplier_0"},
    ]
    state = ErpState.model_validate({"as_of": d(0), "disruptions": disruptions})
    inputs = state_to_twin(state, paper)
    assert inputs.snapshot.disruptions == (
        DcClosure(DAY - 2, DAY + 5, dc="dc_1", reroute=True), LeadTimeShock(DAY - 9, DAY + 30, multiplier=2.5),
        SupplierOutage(DAY, DAY + 3, supplier="supplier_0"),
        DemandShock(DAY - 1, DAY + 9, multiplier=0.7, groups=("general",), regions=("north",)),
        CapacityCut(DAY - 4, DAY + 1, node="dc_2", factor=0.6))
    assert inputs.later_shocks == (SupplierOutage(DAY + 40, DAY + 44, supplier="supplier_0"),)
    # every lane is 2.5 times longer (the DCs' from the supplier, the stores' from their DC)
    np.testing.assert_array_equal(inputs.snapshot.expected_lead_time[1:],
                                  [2.5 * node.lead_time.expected_days for node in paper.nodes[1:]])
    back = snapshot_to_state(inputs.snapshot, paper, later=inputs.later_shocks)
    assert [x.model_dump(mode="json") for x in back.disruptions] == [
        ErpState.model_validate({"as_of": d(0), "disruptions": [x]}).disruptions[0].model_dump(mode="json")
        for x in disruptions]
    assert inputs.unlisted == tuple(n.name for n in paper.nodes if n.kind != "supplier")
    with pytest.raises(ErpStateError) as caught:
        state_to_twin(ErpState.model_validate({"as_of": d(0), "disruptions": [
            {**disruptions[2], "supplier": "dc_0"}]}), paper)
    assert field_of(caught.value) == "disruptions[0].supplier" and "allowed: supplier_0" in caught.value.message


# ------------------------------------------------------------------ (c) the JSON Schema


def test_the_json_schema_is_valid_and_holds_the_main_fields(small, tmp_path):
    schema = erp_state_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {"as_of", "locations", "disruptions", "format"} <= schema["properties"].keys()
    defs = schema["$defs"]
    assert {"sku", "on_hand", "backorders", "open_orders", "pack_size", "min_order_quantity", "costs",
            "service_level", "demand_history", "forecast"} <= defs["Item"]["properties"].keys()
    assert {"quantity", "source", "order_date", "ship_date", "expected_arrival"} <= defs["OpenOrder"][
        "properties"].keys()
    assert {"id", "lead_time", "items"} <= defs["Location"]["properties"].keys()
    assert {"mean_days", "sd_days", "observed_days"} <= defs["LeadTime"]["properties"].keys()
    assert {"start", "mean", "sd", "q10", "q50", "q90"} <= defs["ClientForecast"]["properties"].keys()
    assert {"DcClosure", "SupplierDelay", "SupplierOutage", "DemandChange", "CapacityCut"} <= defs.keys()
    assert defs["Location"]["properties"]["items"]["maxItems"] == MAX_SKUS_PER_LOCATION
    validator = jsonschema.Draft202012Validator(schema)
    good = ErpState.model_validate(hand_state(small)).model_dump(mode="json")
    validator.validate(good)
    bad = hand_state(small)
    bad["locations"][0]["items"][0]["on_hand"] = -1
    errors = list(validator.iter_errors(bad))
    assert [list(e.absolute_path) for e in errors] == [["locations", 0, "items", 0, "on_hand"]]
    path = write_erp_state_schema(tmp_path / "erp_state.schema.json")
    assert json.loads(path.read_text()) == schema


# ------------------------------------------------------------------ (d) bad states, one per rule


def invalid(data: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        ErpState.model_validate(data)
    return field_of(caught.value)


def refused(data: dict, network, **options) -> tuple[str, str]:
    state = ErpState.model_validate(data)
    with pytest.raises(ErpStateError) as caught:
        state_to_twin(state, network, **options)
    return field_of(caught.value), caught.value.message


def edit(network, change) -> dict:
    data = hand_state(network)
    change(data)
    return data


ITEM = "locations[0].items[0]"
LINE = f"{ITEM}.open_orders[0]"


def first_line(data):
    return data["locations"][0]["items"][0]["open_orders"][0]


@pytest.mark.parametrize(("change", "field"), [
    (lambda s: s["locations"][0]["items"][0].update(on_hand=-1), f"{ITEM}.on_hand"),
    (lambda s: s["locations"][0]["items"][0].update(on_hand=math.nan), f"{ITEM}.on_hand"),
    (lambda s: s["locations"][0]["items"][0].update(backorders=math.inf), f"{ITEM}.backorders"),
    (lambda s: first_line(s).update(quantity=0), f"{LINE}.quantity"),
    (lambda s: first_line(s).update(quantity=math.inf), f"{LINE}.quantity"),
    (lambda s: first_line(s).update(expected_arrival=d(-4)), f"{LINE}.expected_arrival"),  # before shipping
    (lambda s: first_line(s).pop("expected_arrival"), f"{LINE}.expected_arrival"),
    (lambda s: first_line(s).update(order_date=d(-2)), f"{LINE}.order_date"),  # ordered after it shipped
    (lambda s: s["locations"][0]["items"][0]["open_orders"][1].pop("order_date"),
     f"{ITEM}.open_orders[1].order_date"),
    (lambda s: s["locations"][0]["items"].append({"sku": "rice"}), "locations[0].items"),
    (lambda s: s["locations"].append({"id": "dc_0"}), "locations"),
    (lambda s: s["locations"][0]["items"].extend({"sku": f"x{i}"} for i in range(MAX_SKUS_PER_LOCATION)),
     "locations[0].items"),
    (lambda s: s["locations"][0]["items"][0]["open_orders"].extend(
        [first_line(s)] * MAX_OPEN_ORDERS_PER_ITEM), f"{ITEM}.open_orders"),
    (lambda s: s["locations"][0]["items"][0].update(on_hand_units=3), f"{ITEM}.on_hand_units"),  # unknown key
    (lambda s: s["locations"][0].update(lead_time={"mean_days": 3, "observed_days": [3]}), "locations[0].lead_time"),
    (lambda s: s["locations"][0].update(lead_time={"mean_days": 400}), "locations[0].lead_time.mean_days"),
    (lambda s: s["locations"][0]["items"][0].update(pack_size=0), f"{ITEM}.pack_size"),
    # 5e-324 made ceil(quantity / pack_size) overflow: a 500 (review)
    (lambda s: s["locations"][0]["items"][0].update(pack_size=5e-324), f"{ITEM}.pack_size"),
    (lambda s: s["locations"][0]["items"][0].update(service_level=1.0), f"{ITEM}.service_level"),
    (lambda s: s["locations"][0]["items"][0]["forecast"].update(q50=[1.0] * 11), f"{ITEM}.forecast"),
    (lambda s: s["locations"][0]["items"][0]["forecast"].update(sd=[1.0] * 3), f"{ITEM}.forecast.sd"),
    (lambda s: s["locations"][0]["items"][0].update(forecast={"start": d(0), "q10": [2], "q50": [1], "q90": [3]}),
     f"{ITEM}.forecast.q50"),
    (lambda s: s["locations"][0]["items"][0].update(demand_history={"frequency": "daily", "start": d(-1),
                                                                    "values": [1, None]}),
     f"{ITEM}.demand_history.values[1]"),  # a gap
    (lambda s: s["disruptions"][0].update(end_date=d(-10)), "disruptions[0].supplier_delay.end_date"),
    (lambda s: s["disruptions"][0].update(multiplier=60), "disruptions[0].supplier_delay.multiplier"),
    (lambda s: s["disruptions"][0].update(type="strike"), "disruptions[0]"),
])
def test_a_state_breaking_a_rule_of_the_models_is_refused_naming_the_field(small, change, field):
    assert invalid(edit(small, change)) == field


@pytest.mark.parametrize(("change", "field", "says"), [
    (lambda s: s.update(as_of="2020-12-31"), "as_of", "before the twin's day 0"),
    (lambda s: s["locations"][0].update(id="dc_9"), "locations[0].id", "allowed: dc_0, store_0, store_1"),
    (lambda s: s["locations"][0].update(id="supplier_0"), "locations[0].id", "not a DC or store"),
    (lambda s: s["locations"][0]["items"][0].update(sku="tea"), f"{ITEM}.sku", "allowed: rice, milk, kettle"),
    (lambda s: first_line(s).update(source="dc_0"), f"{LINE}.source", "allowed: supplier_0"),
    (lambda s: first_line(s).update(expected_arrival=d(0)), f"{LINE}.expected_arrival", "has arrived"),
    (lambda s: first_line(s).update(ship_date=d(1), expected_arrival=d(4)), f"{LINE}.ship_date", "after as_of"),
    (lambda s: s["locations"][0]["items"][0]["open_orders"][1].update(order_date=d(1)),
     f"{ITEM}.open_orders[1].order_date", "after as_of"),
    (lambda s: s["locations"][0]["items"][0].update(on_hand=2.5), f"{ITEM}.on_hand", "whole number"),
    (lambda s: first_line(s).update(quantity=0.5), f"{LINE}.quantity", "whole number"),
    # the twin's own checks, translated to the ERP field
    (lambda s: s["locations"][1]["items"][1].update(on_hand=3), "locations[1].items[1].backorders",
     "a store serves its backorders from stock first"),
    (lambda s: s["locations"][0]["items"][0].update(backorders=5), f"{ITEM}.backorders",
     "is not the sum of the unshipped orders it owes (7.0)"),
    (lambda s: s["disruptions"][1].update(location="store_0"), "disruptions[1].location", "is not a dc"),
    (lambda s: s["disruptions"][1].update(reroute=True), "disruptions[1].reroute", "no backup_parent"),
    (lambda s: s["disruptions"].append({"type": "demand_change", "start_date": d(0), "end_date": d(3),
                                        "multiplier": 2, "sku_groups": ["toys"]}),
     "disruptions[2].sku_groups", "is not a SKU group"),
    (lambda s: s["disruptions"].append({"type": "supplier_outage", "start_date": d(-3), "end_date": d(0),
                                        "supplier": "supplier_0"}), "disruptions[2].end_date", "is over"),
    (lambda s: s["locations"][0]["items"][0]["forecast"].update(start=d(1)), f"{ITEM}.forecast.start",
     "after as_of"),
    (lambda s: s["locations"][0]["items"][0]["forecast"].update(mean=[1.0] * 10, sd=[1.0] * 10),
     f"{ITEM}.forecast.mean", "needs 11 days"),
    (lambda s: s["locations"][1]["items"][0].update(demand_history={"frequency": "daily", "start": d(-5),
                                                                    "values": [1, 2, 3]}),
     "locations[1].items[0].demand_history.values", "through the day before as_of"),
    (lambda s: s["locations"][1]["items"][0].update(demand_history={"frequency": "weekly", "start": d(-21),
                                                                    "values": [1, 2]}),
     "locations[1].items[0].demand_history.values", "the last whole week"),
    (lambda s: s["locations"][0]["items"][0].update(demand_history={"frequency": "daily", "start": d(-1),
                                                                    "values": [1]}),
     f"{ITEM}.demand_history", "is a DC"),
])
def test_a_state_the_twin_cannot_take_is_refused_naming_the_field(small, change, field, says):
    where, message = refused(edit(small, change), small)
    assert where == field and says in message, (where, message)


def test_misaligned_weeks_are_refused_naming_the_field(small):
    def weekly(s):
        items = s["locations"][1]["items"]
        items[0]["demand_history"] = {"frequency": "weekly", "start": d(-14), "values": [70, 80]}
        items[1]["demand_history"] = {"frequency": "weekly", "start": d(-15), "values": [30, 40]}
    where, message = refused(edit(small, weekly), small)
    assert where == "locations[1].items[1].demand_history.start" and "do not line up" in message


def test_backorders_at_a_store_that_loses_sales_are_refused_naming_the_field():
    lost = network_of("small", unmet="lost")
    data = edit(lost, lambda s: s["locations"][1]["items"][1].update(backorders=5, on_hand=0))
    where, message = refused(data, lost)
    assert where == "locations[1].items[1].backorders" and "loses unmet demand" in message


def test_an_overdue_shipment_is_refused_or_taken_as_arriving_tomorrow(small):
    data = edit(small, lambda s: first_line(s).update(expected_arrival=d(-1)))
    where, _ = refused(data, small)
    assert where == f"{LINE}.expected_arrival"
    inputs = state_to_twin(ErpState.model_validate(data), small, overdue="tomorrow")
    assert inputs.overdue == (f"{LINE}.expected_arrival",)
    assert [(s.dispatched, s.due) for s in inputs.snapshot.shipments][0] == (DAY - 3, DAY + 1)


def test_error_paths_are_written_as_the_field_path():
    assert format_loc(("locations", 3, "items", 12, "open_orders", 0, "expected_arrival")) == \
        "locations[3].items[12].open_orders[0].expected_arrival"
    error = ErpStateError(("as_of",), "bad")
    assert str(error) == "as_of: bad" and error_fields(error) == [("as_of", "bad")]


# ------------------------------------------------------------------ (e) forecasts by hand


def forecast_state(store_0: dict | None, store_1: dict | None, dc: dict | None = None, review_lead=2.0) -> dict:
    def location(node, forecast, lead):
        item = {"sku": "rice"} if forecast is None else {"sku": "rice", "forecast": forecast}
        return {"id": node, "lead_time": {"mean_days": lead}, "items": [item]}

    return {"as_of": d(0), "locations": [location("dc_0", dc, 3.0), location("store_0", store_0, review_lead),
                                         location("store_1", store_1, review_lead)]}


def test_a_client_forecast_is_summed_over_the_protection_period(small):
    # store_0: lead 2 days, review 1: days as_of .. as_of + 2. The forecast starts the day before as_of.
    mean_sd = {"start": d(-1), "mean": [9, 1, 2, 3, 4, 5], "sd": [9, 1, 2, 2, 1, 0]}
    # store_1: quantiles per day, sd = (q90 - q10) / (2 x 1.2816)
    quantiles = {"start": d(0), "q10": [0, 1, 2, 0], "q50": [1, 2, 4, 1], "q90": [2.5632, 3.5632, 6, 1]}
    inputs = state_to_twin(ErpState.model_validate(forecast_state(mean_sd, quantiles)), small, review_period=1)
    s0, s1, dc = (small.index(x) for x in ("store_0", "store_1", "dc_0"))
    assert inputs.periods[[s0, s1, dc]].tolist() == [3, 3, 4]
    assert inputs.forecast.mean[s0, 0] == 1 + 2 + 3
    assert inputs.forecast.spread[s0, 0] == pytest.approx(math.sqrt(1 + 4 + 4), rel=1e-12)
    assert inputs.forecast.mean[s1, 0] == 1 + 2 + 4
    sd = [(2.5632 - 0) / (2 * Z_80), (3.5632 - 1) / (2 * Z_80), (6 - 2) / (2 * Z_80)]
    assert inputs.forecast.spread[s1, 0] == pytest.approx(math.sqrt(sum(x * x for x in sd)), rel=1e-4)
    # dc_0 has none of its own: the sum of its stores' over its own 4 days; store_1's runs 4 days exactly
    assert inputs.forecast.mean[dc, 0] == (1 + 2 + 3 + 4) + (1 + 2 + 4 + 1)
    var = (1 + 4 + 4 + 1) + sum(x * x for x in sd) + (1 / (2 * Z_80)) ** 2
    assert inputs.forecast.spread[dc, 0] == pytest.approx(math.sqrt(var), rel=1e-4)
    # milk and kettle are not listed anywhere: missing at every DC and store
    assert inputs.missing_forecast == {name: ("milk", "kettle") for name in ("dc_0", "store_0", "store_1")}
    assert np.isnan(inputs.forecast.mean[s0, 1:]).all()


def test_a_dc_without_a_forecast_of_its_own_or_of_every_store_is_reported(small):
    flat = {"start": d(0), "mean": [2.0] * 5}  # no sd: no spread anywhere
    short = {"start": d(0), "mean": [2.0] * 3}  # covers store_1's 3 days, not the DC's 4
    inputs = state_to_twin(ErpState.model_validate(forecast_state(flat, short)), small)
    dc, s1 = small.index("dc_0"), small.index("store_1")
    assert inputs.forecast.spread is None
    assert inputs.forecast.mean[s1, 0] == 6.0 and np.isnan(inputs.forecast.mean[dc, 0])
    assert inputs.missing_forecast["dc_0"] == ("rice", "milk", "kettle")
    assert inputs.missing_forecast["store_0"] == ("milk", "kettle")
    own = state_to_twin(ErpState.model_validate(forecast_state(flat, None, dc={"start": d(0), "mean": [5.0] * 4})),
                        small)
    assert own.forecast.mean[dc, 0] == 20.0 and own.missing_forecast["store_1"] == ("rice", "milk", "kettle")
    # review period 0: the lead time alone
    zero = state_to_twin(ErpState.model_validate(forecast_state(flat, flat)), small, review_period=0)
    assert zero.periods[s1] == 2 and zero.forecast.mean[s1, 0] == 4.0 and zero.forecast.mean[dc, 0] == 12.0


def test_demand_history_is_kept_as_panels_for_a_forecaster(small):
    def histories(s):
        rice, milk = s["locations"][1]["items"][:2]
        rice["demand_history"] = {"frequency": "daily", "start": d(-3), "values": [15, 17, 16]}
        milk["demand_history"] = {"frequency": "daily", "start": d(-2), "values": [8, 9]}
        weekly = s["locations"][2]["items"][0]
        weekly["demand_history"] = {"frequency": "weekly", "start": d(-16), "values": [150, 160]}  # ends d(-2)
    inputs = state_to_twin(ErpState.model_validate(edit(small, histories)), small)
    daily, weekly = inputs.history["daily"], inputs.history["weekly"]
    assert daily.ids == ("store_0/rice", "store_0/milk") and daily.freq.name == "daily"
    np.testing.assert_array_equal(daily.values, [[15, 17, 16], [np.nan, 8, 9]])
    assert [x.date() for x in daily.dates] == [AS_OF - dt.timedelta(days=n) for n in (3, 2, 1)]
    assert daily.categories["sku"].tolist() == [0, 1] and daily.categories["store"].tolist() == [0, 0]
    assert weekly.ids == ("store_1/rice",) and weekly.freq.season_length == 52
    assert [x.date() for x in weekly.dates] == [AS_OF - dt.timedelta(days=16), AS_OF - dt.timedelta(days=9)]
    assert weekly.freq.alias == f"W-{(AS_OF - dt.timedelta(days=16)).strftime('%a').upper()}"
    assert weekly.until(1).values.tolist() == [[150.0]]  # a panel a forecaster can slice
    assert state_to_twin(ErpState.model_validate(hand_state(small)), small).history == {}


# ------------------------------------------------------------------ (f) a converted state continues in the twin


@pytest.mark.parametrize("overdue", [False, True])
def test_a_run_continued_from_a_converted_state_keeps_its_books(small, overdue):
    data = hand_state(small)
    if overdue:
        first_line(data).update(expected_arrival=d(-1))
    inputs = state_to_twin(ErpState.model_validate(data), small, overdue="tomorrow" if overdue else "refuse")
    levels = np.full((4, 3), 60.0)
    engine = Engine(small, horizon=DAY + 40, seed=3, start=inputs.snapshot, shocks=inputs.later_shocks,
                    invariants="error")
    result = engine.run(OrderUpTo(levels))
    check_ledger(engine)
    assert result.meta["first_day"] == DAY
    assert result.series["received"][1, small.index("dc_0")] == (200 if overdue else 0)  # the overdue rice came


def test_a_state_of_a_real_date_continues_in_the_twin(paper):
    engine = Engine(paper, horizon=30, seed=2, shocks=build("dc_outage", paper, 30, start_day=10,
                                                             reroute=True).shocks)
    policy = OrderUpTo(np.full((len(paper.nodes), paper.skus.n), 80.0))
    while engine.day < 15:
        engine.step(policy.act(engine.state()))
    data = snapshot_to_state(engine.snapshot(), paper).model_dump(mode="json")
    shift = (dt.date(2025, 6, 2) - dt.date(2021, 1, 16)).days  # day 15 -> 2 June 2025

    def move(value):  # every date of the state moved by `shift` days, as a live ERP state would be dated
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
            return (dt.date.fromisoformat(value) + dt.timedelta(days=shift)).isoformat()
        return value

    inputs = state_to_twin(ErpState.model_validate(move(data)), paper)
    day = inputs.snapshot.day
    assert inputs.snapshot.date == dt.date(2025, 6, 2) and inputs.snapshot.disruptions
    continued = Engine(paper, horizon=day + 10, seed=2, start=inputs.snapshot, invariants="error")
    continued.run(policy)
    check_ledger(continued)


def test_a_twin_snapshot_through_the_erp_state_continues_as_the_original(paper):
    """The same run from the original snapshot and from its ERP round trip: equal from the next day on, and on
    its first day but for the receipts and customer backorders served before the decision, which the ERP state
    counts as stock the day started with (so the units out of that day, and the turnover read from them)."""
    shocks = build("covid_2020", paper, 130).shocks
    policy = OrderUpTo(np.full((len(paper.nodes), paper.skus.n), 150.0))
    engine = Engine(paper, horizon=130, seed=5, shocks=shocks)
    while engine.day < 95:
        engine.step(policy.act(engine.state()))
    original = engine.snapshot()
    converted = state_to_twin(snapshot_to_state(original, paper), paper).snapshot
    runs = []
    for start in (original, converted):
        continued = Engine(paper, horizon=130, seed=5, shocks=shocks, start=start, per_sku_series=True,
                           invariants="error")
        runs.append(continued.run(policy))
        check_ledger(continued)
    a, b = runs
    for name in a.series:
        np.testing.assert_array_equal(a.series[name][1:], b.series[name][1:], err_msg=name)
        if name not in ("received", "outflow"):
            np.testing.assert_array_equal(a.series[name][0], b.series[name][0], err_msg=name)
    for name in a.sku_series:
        np.testing.assert_array_equal(a.sku_series[name][1:], b.sku_series[name][1:], err_msg=name)
    flows = ("units_out", "inventory_turnover", "days_of_inventory")

    def kpis(result):
        return {scope: {node: {k: v for k, v in values.items() if k not in flows} for node, values in rows.items()}
                if scope != "network" else {k: v for k, v in rows.items() if k not in flows}
                for scope, rows in result.kpis.items()}

    assert json.dumps(kpis(a), sort_keys=True) == json.dumps(kpis(b), sort_keys=True)


# ------------------------------------------------------------------ (g) limits shared with the twin, names, spreads


def long_lane_network():
    """The small network with a 10-day supplier -> DC lane: a x50 delay makes it 500 days."""
    data = yaml.safe_load((ROOT / "conf/network/small.yaml").read_text())
    data["layout"]["dc"]["lead_time"]["mean"] = 10.0
    return network_from_dict(data)


def test_a_lead_time_beyond_the_cap_is_refused_both_ways_naming_the_field():
    network = long_lane_network()
    engine = Engine(network, horizon=40, seed=0, shocks=(LeadTimeShock(start=5, end=30, multiplier=50.0),))
    for _ in range(10):
        engine.step(np.zeros((engine.n_nodes, engine.n_sku)))
    with pytest.raises(ErpStateError) as caught:  # not a raw ValidationError
        snapshot_to_state(engine.snapshot(), network)
    assert field_of(caught.value) == "locations[0].lead_time.mean_days" and "'dc_0'" in caught.value.message
    state = {"as_of": "2021-01-11", "locations": [{"id": "dc_0"}], "disruptions": [
        {"type": "supplier_delay", "start_date": "2021-01-06", "end_date": "2021-04-10", "multiplier": 50}]}
    where, message = refused(state, network)
    assert where == "disruptions[0].multiplier" and "500 days" in message and "dc_0" in message
    state["locations"][0]["lead_time"] = {"mean_days": 30.0}  # the client's own lead time is taken instead
    assert state_to_twin(ErpState.model_validate(state), network).snapshot.expected_lead_time[1] == 30.0


def dotted_network():
    """SAP-style node and SKU names holding dots: SUP.1 -> DC.1000 -> ST.2000, ST.2000.B; SKUs M.1 and M.1.2."""
    data = yaml.safe_load((ROOT / "conf/network/small.yaml").read_text())
    data.pop("layout")
    data["skus"]["items"] = data["skus"]["items"][:2]
    data["skus"]["items"][0]["name"], data["skus"]["items"][1]["name"] = "M.1", "M.1.2"
    lane = {"dist": "deterministic", "mean": 1}
    data["nodes"] = [{"name": "SUP.1", "kind": "supplier"},
                     {"name": "DC.1000", "kind": "dc", "parent": "SUP.1", "lead_time": {**lane, "mean": 5}},
                     {"name": "ST.2000", "kind": "store", "parent": "DC.1000", "lead_time": lane},
                     {"name": "ST.2000.B", "kind": "store", "parent": "DC.1000", "lead_time": lane}]
    return network_from_dict(data)


def test_errors_name_the_field_for_names_holding_dots():
    network = dotted_network()

    def state(dc_backorders, store_on_hand):
        line = {"quantity": 7, "source": "DC.1000", "order_date": d(-1)}
        return {"as_of": d(0), "locations": [
            {"id": "ST.2000", "items": [{"sku": "M.1", "on_hand": 0}]},
            {"id": "DC.1000", "items": [{"sku": "M.1", "backorders": 0},
                                        {"sku": "M.1.2", "backorders": dc_backorders}]},
            {"id": "ST.2000.B", "items": [{"sku": "M.1"}, {"sku": "M.1.2", "on_hand": store_on_hand, "backorders": 1,
                                                           "open_orders": [line]}]}]}
    assert refused(state(7, 2), network)[0] == "locations[2].items[1].backorders"  # on hand while owing
    assert refused(state(3, 0), network)[0] == "locations[1].items[1].backorders"  # 3 owed, lines say 7


def test_the_lead_time_spread_is_kept_and_survives_the_round_trip(small):
    data = hand_state(small)
    data["locations"][0]["lead_time"] = {"mean_days": 10.0, "sd_days": 7.0}
    inputs = state_to_twin(ErpState.model_validate(data), small)
    dc, store_0, store_1 = (small.node_names.index(x) for x in ("dc_0", "store_0", "store_1"))
    assert inputs.lead_time_sd[dc] == 7.0
    back = snapshot_to_state(inputs.snapshot, small, inputs.forecast, later=inputs.later_shocks,
                             lead_time_sd=inputs.lead_time_sd)
    assert back.locations[0].lead_time.sd_days == 7.0
    observed = [0.5, 1.0, 1.5]  # observed lead times: their sd (ddof 1) is kept
    data["locations"][1]["lead_time"] = {"observed_days": observed}
    data["locations"][2]["lead_time"] = {"mean_days": 1.0}  # no spread given: unknown
    inputs = state_to_twin(ErpState.model_validate(data), small)
    assert inputs.lead_time_sd[store_0] == pytest.approx(0.5) and math.isnan(inputs.lead_time_sd[store_1])
    back = snapshot_to_state(inputs.snapshot, small, lead_time_sd=inputs.lead_time_sd)
    assert back.locations[1].lead_time.sd_days == pytest.approx(0.5) and back.locations[2].lead_time.sd_days is None
    data["locations"][0].pop("lead_time")  # left out: the network's law (gamma sd 1.5) times the x2 delay
    assert state_to_twin(ErpState.model_validate(data), small).lead_time_sd[dc] == pytest.approx(3.0)


def test_history_panels_code_their_categories_as_the_twins_own_panels(paper):
    """Store codes and regions numbered over stores only, as agents.forecasting.data codes a twin panel."""
    twin = panel_from_twin(paper, 14)
    stores = [nd.name for nd in paper.nodes if nd.kind == "store"]
    picked = [(stores[-1], paper.skus.name[3]), (stores[0], paper.skus.name[0]), (stores[7], paper.skus.name[-1])]
    state = {"as_of": "2021-01-15", "locations": [
        {"id": store, "items": [{"sku": sku, "demand_history": {"frequency": "daily", "start": "2021-01-01",
                                                                "values": [1.0] * 14}}]} for store, sku in picked]}
    panel = state_to_twin(ErpState.model_validate(state), paper).history["daily"]
    rows = [twin.ids.index(i) for i in panel.ids]
    assert panel.categories.keys() == twin.categories.keys()
    for key, codes in twin.categories.items():
        assert panel.categories[key].tolist() == codes[rows].tolist(), key


def test_dates_are_bounded_around_the_twins_day_zero_naming_the_field(small):
    years = (DAY_ZERO.replace(year=DAY_ZERO.year - 50), DAY_ZERO.replace(year=DAY_ZERO.year + 50))
    assert (MIN_DATE, MAX_DATE) == years
    history = {"frequency": "weekly", "start": "9999-12-01", "values": [1.0] * 10}  # was an OverflowError
    state = {"as_of": "2021-03-01", "locations": [{"id": "store_0", "items": [{"sku": "rice",
                                                                               "demand_history": history}]}]}
    assert invalid(state) == "locations[0].items[0].demand_history.start"
    assert invalid({"as_of": "2300-01-10"}) == "as_of"  # was pandas' OutOfBoundsDatetime
    late = edit(small, lambda s: first_line(s).update(expected_arrival="2071-01-02"))
    assert invalid(late) == f"{LINE}.expected_arrival"
    early = edit(small, lambda s: s["disruptions"][0].update(start_date="1970-12-31"))
    assert invalid(early) == "disruptions[0].supplier_delay.start_date"
    start = (MAX_DATE - dt.timedelta(days=3)).isoformat()
    far = {"as_of": MAX_DATE.isoformat(), "locations": [{"id": "store_0", "items": [{"sku": "rice", "demand_history": {
        "frequency": "daily", "start": start, "values": [1.0] * 3}}]}]}
    assert state_to_twin(ErpState.model_validate(far), small).history["daily"].values.shape == (1, 3)


@pytest.mark.parametrize(("change", "field"), [
    (lambda s: s["locations"][1]["items"][0].update(on_hand=True), "locations[1].items[0].on_hand"),
    (lambda s: first_line(s).update(quantity=True), f"{LINE}.quantity"),
    (lambda s: s["locations"][1]["items"][0].update(on_hand="5"), "locations[1].items[0].on_hand"),
    (lambda s: s["locations"][0].update(lead_time={"mean_days": True}), "locations[0].lead_time.mean_days"),
    (lambda s: s["locations"][1]["items"][0].update(service_level=False), "locations[1].items[0].service_level"),
    (lambda s: s["locations"][1]["items"][0].update(on_hand=MAX_QUANTITY * 10), "locations[1].items[0].on_hand"),
    (lambda s: first_line(s).update(quantity=1e300), f"{LINE}.quantity"),
    (lambda s: s["locations"][1]["items"][0].update(pack_size=1e300), "locations[1].items[0].pack_size"),
])
def test_numbers_are_strict_and_bounded_naming_the_field(small, change, field):
    data = edit(small, change)
    assert invalid(data) == field
    with pytest.raises(ValidationError) as caught:  # a JSON request the same
        ErpState.model_validate_json(json.dumps(data))
    assert field_of(caught.value) == field
    ok = edit(small, lambda s: s["locations"][1]["items"][0].update(on_hand=MAX_QUANTITY))  # ints and the bound
    assert ErpState.model_validate_json(json.dumps(ok)).locations[1].items[0].on_hand == MAX_QUANTITY


def test_a_dc_alone_carries_the_backorders_it_owes_to_stores_the_state_leaves_out(small):
    data = hand_state(small)
    del data["locations"][1:]  # dc_0 alone: it owes 7 rice to store_0 (its unshipped line is left out with it)
    data["locations"][0]["items"][0]["backorders"] = 12.0
    inputs = state_to_twin(ErpState.model_validate(data), small)
    snap, dc, s0 = inputs.snapshot, small.index("dc_0"), small.index("store_0")
    assert snap.backorders[dc, 0] == 12.0  # the DC's position counts all of it
    assert inputs.owed_to_unlisted == ("locations[0].items[0].backorders",)
    owed = [u for u in snap.unshipped if u.source == dc]
    assert len(owed) == 1 and owed[0].node == s0 and owed[0].ordered == DAY and owed[0].quantity[0] == 12.0
    # with every store listed, the DC's total must still be the sum of what they are owed
    full = hand_state(small)
    full["locations"][0]["items"][0]["backorders"] = 12.0
    where, message = refused(full, small)
    assert where == "locations[0].items[0].backorders" and "is not the sum" in message
