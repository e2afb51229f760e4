"""Bundles (experiments.export, agents/deploy/bundle.py) and decisions (agents/deploy/decide.py, experiments.decide).

Rule bundles of every kind are exported on the small network; each is loaded as a server loads it and must order,
for an ERP state converted from a twin snapshot, exactly what its source policy orders in the twin. Tampered
bundles are refused naming the file; decisions carry documents, reason codes and stable recommendation ids.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.deploy.bundle import BundleError, load_bundle
from agents.deploy.conversion import ErpStateError
from agents.deploy.decide import decide, decisions_csv
from agents.deploy.erp_state import ErpState
from agents.deploy.testing import twin_day
from twin.shocks import LeadTimeShock

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["network=small", "kpi.seeds=2", "kpi.horizon=50", "kpi.warmup=5"]


def run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def export(tmp: Path, *args: str) -> Path:
    done = run("experiments.export", *args, *QUICK, f"hydra.run.dir={tmp}")
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "bundle"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    tuned = root / "tuned.yaml"
    tuned.write_text("name: ss\nz: {store: 2.0, dc: 0.5}\n")
    return {"base_stock": export(root / "bs", "policy=base_stock"),
            "ss": export(root / "ss", "policy=ss", "policy.z.store=1.0"),
            "rop": export(root / "rop", "policy=rop"),
            "forecast": export(root / "fc", "rule=forecast:oracle"),
            "tuned": export(root / "tuned", f"rule=file:{tuned}"),
            "shock_aware": export(root / "sa", "policy=shock_aware_base_stock")}


def state_of_day(bundle, shocks=()):
    """The ERP state of day 30 under the bundle's own policy, and the orders that policy places that day."""
    day = twin_day(bundle, 30, shocks=shocks)
    return day.state, day.orders


@pytest.mark.parametrize("name", ["base_stock", "ss", "rop", "forecast", "tuned", "shock_aware"])
def test_a_rule_bundle_decides_as_its_policy_in_the_twin(bundles, name):
    bundle = load_bundle(bundles[name])
    manifest = json.loads((bundles[name] / "manifest.json").read_text())
    assert manifest["format"] == "twin.bundle/1" and manifest["kind"] == "rule" and not manifest["scale_free"]
    assert set(manifest["files"]) == {"network.json", "parameters.npz"}
    assert manifest["kpis"]["bundle"] == manifest["kpis"]["source"]  # measured on the same seeds at export
    assert (bundles[name].parent / "bundle.zip").is_file()
    state, twin_orders = state_of_day(bundle)
    response = decide(bundle, state)
    served = {(d.location, d.sku): d.order_quantity for d in response.decisions}
    net = bundle.network
    assert net.demand.integer_units
    twin_orders = np.rint(twin_orders)  # what the engine takes from the policy in a network of whole units
    assert len(served) == sum(1 for n in net.nodes if n.kind != "supplier") * net.skus.n
    for (location, sku), quantity in served.items():
        assert quantity == pytest.approx(twin_orders[net.index(location), net.skus.name.index(sku)], abs=1e-9)


def test_the_shock_aware_bundle_serves_its_disrupted_levels_while_the_erp_state_has_a_disruption(bundles):
    """The same bundle, day 30 with a lead-time disruption in force (from day 20) and without: served orders equal
    the twin policy's in both, and the levels served are the disrupted ones in the first and the calm ones in the
    second, which differ. (The orders themselves may agree: at its level a base-stock orders what was sold.)"""
    bundle = load_bundle(bundles["shock_aware"])
    assert bundle.manifest.rule == "shock_aware_base_stock"
    served = {}
    for label, shocks in (("calm", ()), ("disrupted", (LeadTimeShock(start=20, end=50, multiplier=2.0),))):
        state, twin_orders = state_of_day(bundle, shocks=shocks)
        response = decide(bundle, state)
        net = bundle.network
        served[label] = np.array([d.order_up_to_level for d in response.decisions], dtype=float)
        for d in response.decisions:
            assert d.order_quantity == pytest.approx(
                np.rint(twin_orders)[net.index(d.location), net.skus.name.index(d.sku)], abs=1e-9)
        levels = {(d.location, d.sku): d.order_up_to_level for d in response.decisions}
        arrays = bundle.policy.arrays[label]
        assert all(level == pytest.approx(arrays[net.index(loc), net.skus.name.index(sku)])
                   for (loc, sku), level in levels.items())
    assert not np.array_equal(served["calm"], served["disrupted"])


def test_the_zip_loads_like_the_directory(bundles):
    directory = load_bundle(bundles["base_stock"])
    zipped = load_bundle(bundles["base_stock"].parent / "bundle.zip")
    assert zipped.sha256 == directory.sha256
    np.testing.assert_array_equal(zipped.policy.arrays["levels"], directory.policy.arrays["levels"])


def test_a_tampered_missing_or_extra_file_is_refused_naming_it(bundles, tmp_path):
    for change, message in [("levels", "parameters.npz: its sha256"), ("drop", "network.json: listed"),
                            ("extra", "notes.txt: not listed")]:
        copy = tmp_path / change
        shutil.copytree(bundles["base_stock"], copy)
        if change == "levels":
            with np.load(copy / "parameters.npz") as data:
                levels = data["levels"] * 2
            np.savez(copy / "parameters.npz", levels=levels)
        elif change == "drop":
            (copy / "network.json").unlink()
        else:
            (copy / "notes.txt").write_text("hello")
        with pytest.raises(BundleError, match=message):
            load_bundle(copy)


def test_a_bundle_of_another_format_is_refused(bundles, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundles["base_stock"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format": "twin.bundle/2"}))
    with pytest.raises(BundleError, match="format 'twin.bundle/2' is not allowed"):
        load_bundle(copy)


def test_decisions_carry_documents_reasons_and_stable_ids(bundles):
    bundle = load_bundle(bundles["base_stock"])
    shock = LeadTimeShock(start=20, end=50, multiplier=2.0)
    state, _ = state_of_day(bundle, shocks=(shock,))
    data = state.model_dump(mode="json")
    store = next(loc for loc in data["locations"] if loc["id"].startswith("store"))
    store["items"][0].update(pack_size=12.0, min_order_quantity=30.0, unit="CS")
    store["items"][0]["on_hand"] = 0.0  # far below its level: it orders
    state = ErpState.model_validate(data)
    response = decide(bundle, state)
    first = next(d for d in response.decisions if d.location == store["id"] and d.sku == store["items"][0]["sku"])
    codes = [r.code for r in first.reasons]
    assert codes[0] == "BELOW_LEVEL" and "LEAD_TIME_LONGER" in codes and "DISRUPTION_ACTIVE" in codes
    assert first.order_quantity % 12 == 0 and first.order_quantity >= max(30.0, first.policy_quantity)
    assert first.document.document_type == "stock_transport_order" and first.document.erp_document_type == "UB"
    assert first.document.supplying_location == "dc_0" and first.document.unit == "CS"
    dc = next(d for d in response.decisions if d.location == "dc_0" and d.document is not None)
    assert dc.document.document_type == "purchase_requisition" and dc.document.supplying_location == "supplier_0"
    lead = next(r for r in first.reasons if r.code == "LEAD_TIME_LONGER")
    assert lead.values["expected_days"] > lead.values["nominal_days"]
    # the same request gives the same ids; another request other ids; every id is unique
    again = decide(bundle, ErpState.model_validate_json(state.model_dump_json()))
    assert [d.recommendation_id for d in again.decisions] == [d.recommendation_id for d in response.decisions]
    data["locations"][0]["items"][0]["on_hand"] += 1
    other = decide(bundle, ErpState.model_validate(data))
    assert not {d.recommendation_id for d in other.decisions} & {d.recommendation_id for d in response.decisions}
    assert len({d.recommendation_id for d in response.decisions}) == len(response.decisions)
    rows = list(csv.DictReader(io.StringIO(decisions_csv(response))))
    assert [r["recommendation_id"] for r in rows] == [d.recommendation_id for d in response.decisions]
    assert rows[0]["reason_codes"].split(";")[0] in {"BELOW_LEVEL", "AT_OR_ABOVE_LEVEL"}


def test_a_request_without_the_forecast_a_bundle_needs_names_the_field(bundles):
    bundle = load_bundle(bundles["forecast"])
    state, _ = state_of_day(bundle)
    data = state.model_dump(mode="json")
    data["locations"][1]["items"][2]["forecast"] = None
    with pytest.raises(ErpStateError, match=r"locations\[1\]\.items\[2\]\.forecast: required.*oracle"):
        decide(bundle, ErpState.model_validate(data))
    # a static rule needs no forecast
    static = load_bundle(bundles["base_stock"])
    for location in data["locations"]:
        for item in location["items"]:
            item["forecast"] = None
    assert decide(static, ErpState.model_validate(data)).decisions


def test_a_supplier_is_no_location_to_decide_for(bundles):
    bundle = load_bundle(bundles["base_stock"])
    state = ErpState.model_validate({"as_of": "2021-02-01", "locations": [{"id": "supplier_0", "items": []}]})
    with pytest.raises(ErpStateError, match=r"locations\[0\]\.id: 'supplier_0' is a supplier"):
        decide(bundle, state)


def test_offline_decide_writes_json_and_csv_and_refuses_a_bad_state_before_writing(bundles, tmp_path):
    bundle = load_bundle(bundles["ss"])
    state, _ = state_of_day(bundle)
    states = tmp_path / "states"
    states.mkdir()
    (states / "a.json").write_text(state.model_dump_json())
    done = run("experiments.decide", f"bundle={bundles['ss']}", f"state={states}", f"hydra.run.dir={tmp_path / 'o'}")
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((tmp_path / "o" / "a.decisions.json").read_text())
    assert written == decide(bundle, state).model_dump(mode="json")
    assert (tmp_path / "o" / "a.decisions.csv").read_text() == decisions_csv(decide(bundle, state))
    bad = state.model_dump(mode="json")
    bad["locations"][0]["items"][1]["on_hand"] = -3
    (states / "b.json").write_text(json.dumps(bad))
    done = run("experiments.decide", f"bundle={bundles['ss']}", f"state={states}", f"hydra.run.dir={tmp_path / 'p'}")
    assert done.returncode == 2
    assert "state b.json: locations[0].items[1].on_hand" in done.stderr
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").glob("*.decisions.*"))


@pytest.mark.parametrize("args, message", [
    ([], "checkpoint / policy / rule: give one of them"),
    (["policy=base_stock", "rule=forecast:oracle"], "policy / rule: give one of them"),
    (["rule=forecast:nope"], "rule: forecaster 'nope' is not allowed"),
    (["rule=base_stock"], "rule: 'base_stock' is not allowed"),
    (["checkpoint=/no/such/dir"], "checkpoint: '/no/such/dir' is not a directory"),
])
def test_a_bad_export_config_gives_one_clear_error(args, message, tmp_path):
    done = run("experiments.export", *args, "network=small", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_bundle_with_a_saved_forecaster_forecasts_items_sent_with_history_only(tmp_path):
    from agents.forecasting.classical import SeasonalNaive
    from agents.forecasting.data import panel_from_twin
    from agents.forecasting.saved import save_forecaster
    from twin.spec import network_from_dict

    network = network_from_dict(yaml.safe_load((ROOT / "conf" / "network" / "small.yaml").read_text()))
    history = panel_from_twin(network, 60)
    model = SeasonalNaive()
    model.fit(history)
    save_forecaster(model, "seasonal_naive", history, tmp_path / "forecaster")
    bundle_dir = export(tmp_path / "export", "rule=forecast:oracle", f"saved_forecaster={tmp_path / 'forecaster'}")
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest.saved_forecaster == "seasonal_naive"
    assert "forecaster/forecaster.json" in bundle.manifest.files
    state, _ = state_of_day(bundle)
    data = state.model_dump(mode="json")
    week = [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # a weekly pattern the seasonal naive repeats exactly
    start = (state.as_of - dt.timedelta(days=28)).isoformat()
    for location in data["locations"]:
        for item in location["items"]:
            item["forecast"] = None
            if location["id"].startswith("store"):
                item["demand_history"] = {"frequency": "daily", "start": start, "values": week * 4}
    response = decide(bundle, ErpState.model_validate(data))
    store = next(d for d in response.decisions if d.location == "store_0")
    dc = next(d for d in response.decisions if d.location == "dc_0")
    assert "FORECAST_FROM_HISTORY" in [r.code for r in store.reasons]
    # the store's level is the seasonal naive's demand over its 2-day protection period (as_of's weekday first)
    weekday = (state.as_of - dt.date.fromisoformat(start)).days % 7
    expected_mean = week[weekday] + week[(weekday + 1) % 7]
    assert store.order_up_to_level == pytest.approx(expected_mean)  # a history it repeats exactly: no spread
    assert dc.order_up_to_level is not None  # the DC's forecast is the sum of its two stores'
    # a store without history or forecast: the error names the field and says the bundle reads history
    data["locations"] = [data["locations"][1]]
    data["locations"][0]["items"][0]["demand_history"] = None
    with pytest.raises(ErpStateError, match=r"locations\[0\]\.items\[0\]\.forecast: required.*daily demand history"):
        decide(bundle, ErpState.model_validate(data))


def test_csv_keeps_quantities_exact_and_client_text_inert(bundles):
    bundle = load_bundle(bundles["base_stock"])
    state, _ = state_of_day(bundle)
    data = state.model_dump(mode="json")
    store = next(loc for loc in data["locations"] if loc["id"].startswith("store"))
    store["items"][0].update(on_hand=0.0, pack_size=1234567.25, unit="=HYPERLINK(1)")
    response = decide(bundle, ErpState.model_validate(data))
    rows = {(r["location"], r["sku"]): r for r in csv.DictReader(io.StringIO(decisions_csv(response)))}
    for d in response.decisions:
        assert float(rows[d.location, d.sku]["order_quantity"]) == d.order_quantity
    first = rows[store["id"], store["items"][0]["sku"]]
    assert first["order_quantity"] == "1234567.25"  # not 1.23457e+06
    assert first["unit"] == "'=HYPERLINK(1)"  # a spreadsheet shows it, does not run it


@pytest.mark.parametrize("name", ["base_stock", "forecast"])
def test_requests_decided_together_get_the_answers_each_gets_alone(bundles, name, monkeypatch):
    from agents.deploy import decide as decide_module
    from agents.deploy.decide import decide_many

    bundle = load_bundle(bundles[name])
    state = state_of_day(bundle)[0]
    kinds = {node.name: node.kind for node in bundle.network.nodes}
    alone = [state.model_copy(update={"locations": [location]}) for location in state.locations]
    stores = [s for s in alone if kinds[s.locations[0].id] == "store"]
    dcs = [s for s in alone if kinds[s.locations[0].id] == "dc"]
    conversions = []
    convert = decide_module.state_to_twin
    monkeypatch.setattr(decide_module, "state_to_twin", lambda s, *a, **k: conversions.append(s) or convert(s, *a,
                                                                                                            **k))
    # the stores together; one store twice (decided on its own), a DC (a DC's numbers come from its stores)
    batch = [*stores, stores[1], dcs[0]]
    answers = decide_many(bundle, batch)
    # all stores in one conversion, the repeat and the DC each in one of their own
    assert len(stores) >= 2 and sorted(len(s.locations) for s in conversions) == [1, 1, len(stores)]
    conversions.clear()
    for one, answer in zip(batch, answers):
        assert answer.model_dump_json() == decide(bundle, one).model_dump_json()
    # a request the bundle refuses: its own error, naming its own field; the others are answered as alone
    bad = stores[1].model_dump(mode="json")
    bad["locations"][0]["items"][0]["sku"] = "no-such-sku"
    answers = decide_many(bundle, [stores[0], ErpState.model_validate(bad)])
    assert isinstance(answers[1], ErpStateError) and answers[1].loc == ("locations", 0, "items", 0, "sku")
    assert answers[0].model_dump_json() == decide(bundle, stores[0]).model_dump_json()
    # another day is another group
    later = stores[1].model_copy(update={"as_of": stores[1].as_of + dt.timedelta(days=1)})
    conversions.clear()
    answers = decide_many(bundle, [stores[0], stores[1], later])
    assert [len(s.locations) for s in conversions] == [2, 1]
    assert answers[1].model_dump_json() == decide(bundle, stores[1]).model_dump_json()


def test_an_answer_reads_back_through_validation_unchanged(bundles):
    """Decisions are built without validating them again (decide.py): every field must already be what validation
    makes of it (a float where a float is declared, even from integer pack sizes and quantities)."""
    from agents.deploy.decide import DecisionResponse

    bundle = load_bundle(bundles["base_stock"])
    data = json.loads(state_of_day(bundle)[0].model_dump_json(exclude_none=True))
    for n, item in enumerate(i for location in data["locations"] for i in location["items"]):
        item.update({"pack_size": 6, "min_order_quantity": 12, "unit": "CS"} if n % 3 == 0 else
                    {"max_order_quantity": 7, "pack_size": 2} if n % 3 == 1 else {"storage_capacity": 5})
    response = decide(bundle, ErpState.model_validate_json(json.dumps(data)))
    assert {r.code for d in response.decisions for r in d.reasons} >= {"ROUNDED_TO_PACK", "BELOW_LEVEL"}
    assert any(d.document is not None for d in response.decisions)
    text = response.model_dump_json()
    assert DecisionResponse.model_validate_json(text).model_dump_json() == text


def test_decided_together_or_alone_a_request_gets_the_same_answer_even_at_the_edges(bundles, monkeypatch):
    """What the fresh-eyes review found: a request refused alone over a node it leaves out (a derived lead time
    over the cap) was decided when merged with the request listing that node; and a bug met by one request
    failed every request decided with it."""
    from agents.deploy import decide as decide_module
    from agents.deploy.decide import decide_many

    bundle = load_bundle(bundles["base_stock"])
    state = state_of_day(bundle)[0]
    kinds = {node.name: node.kind for node in bundle.network.nodes}
    dc = next(name for name, kind in kinds.items() if kind == "dc")

    def delayed(location):  # two 50x delays on the DC's lanes: the stores' derived lead times pass the cap
        data = state.model_copy(update={"locations": [location]}).model_dump(mode="json")
        data["disruptions"] = [{"type": "supplier_delay", "start_date": str(state.as_of), "end_date": "2070-01-01",
                                "sources": [dc], "multiplier": 50.0}] * 2
        data["locations"][0]["lead_time"] = {"mean_days": 1.0}
        return ErpState.model_validate(data)

    stores = [delayed(location) for location in state.locations if kinds[location.id] == "store"]
    alone = [decide(bundle, s).model_dump_json() for s in stores]  # the store left out no longer refuses it
    assert [a.model_dump_json() for a in decide_many(bundle, stores)] == alone

    plain = [state.model_copy(update={"locations": [location]}) for location in state.locations
             if kinds[location.id] == "store"]
    rounded = decide_module._rounded
    victim = plain[1].locations[0].items[0].sku

    def broken(raw, item):
        if item is plain[1].locations[0].items[0]:
            raise RuntimeError(f"a bug met by {victim} only")
        return rounded(raw, item)

    monkeypatch.setattr(decide_module, "_rounded", broken)
    answers = decide_many(bundle, plain[:2])
    assert isinstance(answers[1], RuntimeError)
    assert answers[0].model_dump_json() == decide(bundle, plain[0]).model_dump_json()
