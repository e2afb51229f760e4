"""experiments.stress: the same numbers with 1 or 2 Ray workers, any batching and without Ray; a resumed run
equals an uninterrupted one; a start state; paired deltas of a policy (and a scenario) against itself are 0;
bad configs stop with one error naming the key. Small network, short horizon, three replications."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.stress import load_stress_config
from twin import SpecError

ROOT = Path(__file__).resolve().parents[2]
SMALL = yaml.safe_load((ROOT / "conf" / "network" / "small.yaml").read_text())
# a policy and a scenario given twice: their paired deltas against the first are exactly 0
COMMON = ("network=small", "scenarios=[baseline,{name:flash_sale,start_day:30},baseline]",
          "policies=[base_stock,rop,base_stock]", "horizon=60", "warmup=7")
CELLS = 3 * 3


def stress(out: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "experiments.stress", *COMMON, *args, f"hydra.run.dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows(out: Path, name: str = "stress.csv") -> list[dict]:
    return list(csv.DictReader((out / name).open()))


def arrays(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every replication file's arrays, by path relative to the run directory."""
    found = {}
    for path in sorted((out / "replications").rglob("*.npz")):
        with np.load(path) as data:
            found[str(path.relative_to(out))] = {k: data[k] for k in data.files}
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same stress test three ways: Ray with 2 CPUs one replication per task (plots on), Ray with 1 CPU two
    per task, and in this process."""
    base = tmp_path_factory.mktemp("stress")
    stress(base / "ray2", "replications=3", "ray.num_cpus=2", "ray.batch=1")
    stress(base / "ray1", "replications=3", "ray.num_cpus=1", "ray.batch=2", "output.plots=false")
    stress(base / "local", "replications=3", "ray.enabled=false", "output.plots=false")
    return {name: base / name for name in ("ray2", "ray1", "local")}


@pytest.mark.slow
def test_workers_batching_and_ray_itself_do_not_change_the_numbers(runs):
    reference = arrays(runs["ray2"])
    assert len(reference) == CELLS * 3
    for other in ("ray1", "local"):
        for name in ("stress.csv", "summary.csv", "summary.md"):
            assert (runs[other] / name).read_bytes() == (runs["ray2"] / name).read_bytes(), (other, name)
        found = arrays(runs[other])
        assert found.keys() == reference.keys()
        for path, data in reference.items():
            assert data.keys() == found[path].keys()
            for key, value in data.items():
                np.testing.assert_array_equal(found[path][key], value, err_msg=f"{other}: {path} {key}")
    with np.load(runs["local"] / "series.npz") as a, np.load(runs["ray2"] / "series.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.slow
def test_the_report_holds_every_figure_and_file(runs):
    out = runs["ray2"]
    table = rows(out)
    assert len(table) == CELLS * 3
    assert {(r["scenario"], r["policy"]) for r in table} == {
        (s, p) for s in ("baseline", "flash_sale", "baseline'") for p in ("base_stock", "rop", "base_stock'")}
    assert [r["seed"] for r in table[:3]] == ["1000000", "1000001", "1000002"]  # held-out seeds, as evaluate
    for r in table:
        assert 0 < float(r["fill_rate"]) <= 1 and float(r["cost"]) > 0
        assert (r["time_to_recover"] == "") == (r["scenario"] != "flash_sale")  # none without a shock
    flash = [r for r in table if r["scenario"] == "flash_sale"]
    assert all(float(r["time_to_recover"]) > 0 and float(r["peak_backorders"]) > 0 for r in flash)
    summary = rows(out, "summary.csv")
    figures = {r["figure"] for r in summary}
    assert {"fill_rate", "cost", "cost_per_day", "lost_sales", "penalty_cost", "worst_week_fill_rate",
            "peak_backorders", "days_below_target", "cost_cvar95", "recovered_share", "time_to_recover",
            "lost_sales_dc:dc_0", "lost_sales_region:north"} <= figures
    for name in ("fan_baseline.png", "fan_flash_sale.png", "fan_flash_sale_rop_dcs.png", "scenario_baseline.yaml",
                 "scenario_flash_sale.yaml", "series.npz", "summary.md", "stores.csv"):
        assert (out / name).is_file(), name
    for r in table:  # the penalty cost: backorder + lost-sale cost, part of the total
        assert 0 < float(r["penalty_cost"]) < float(r["cost"])
    # per store: every cell's stores, their lost sales (none: stores backorder in this network) and fill rates
    stores = rows(out, "stores.csv")
    assert [(r["scenario"], r["policy"], r["store"]) for r in stores[:2]] == [
        ("baseline", "base_stock", "store_0"), ("baseline", "base_stock", "store_1")]
    assert len(stores) == CELLS * 2 and {r["home_dc"] for r in stores} == {"dc_0"} and stores[0]["n"] == "3"
    for r in stores:
        assert float(r["lost_sales"]) == 0 and 0 < float(r["fill_rate"]) <= 1 and float(r["fill_rate_ci95"]) >= 0
    by_cell = {(r["scenario"], r["policy"]): r for r in table if r["replication"] == "0"}
    with np.load(out / "replications" / "flash_sale" / "rop" / "r0000.npz") as data:
        assert data["store_fill_rate"].shape == (2,) and data["stores_dc_demand"].shape == (60, 1)
        np.testing.assert_allclose(data["stores_dc_demand"][:, 0], data["network_demand"])
        np.testing.assert_allclose(data["stores_supplier_filled"][:, 0], data["network_filled"])
        assert float(by_cell["flash_sale", "rop"]["penalty_cost"]) == pytest.approx(data["costs"][1:3].sum())
    assert yaml.safe_load((out / "scenario_flash_sale.yaml").read_text())["shocks"][0]["start"] == 30
    with np.load(out / "series.npz") as fans:
        assert list(fans["percentiles"]) == [5, 25, 50, 75, 95]
        assert fans["s1_p1_network_fill_rate_7d"].shape == (5, 60)
        assert fans["s1_p1_dc_backorders"].shape == (5, 60, 1)
        assert (np.diff(fans["s1_p1_network_on_hand"], axis=0) >= 0).all()


@pytest.mark.slow
def test_paired_deltas_against_itself_are_exactly_zero(runs):
    summary = rows(runs["ray2"], "summary.csv")
    compared = ("fill_rate", "cost", "cost_per_day", "lost_sales", "worst_week_fill_rate", "peak_backorders",
                "days_below_target")
    itself = [r for r in summary if r["policy"] == "base_stock'" and r["figure"] in compared]
    assert len(itself) == 3 * len(compared)
    assert all(float(r["vs_reference"]) == 0 and float(r["vs_reference_ci95"]) == 0 for r in itself)
    again = [r for r in summary if r["scenario"] == "baseline'" and r["figure"] in compared]
    assert all(float(r["vs_baseline"]) == 0 and float(r["vs_baseline_ci95"]) == 0 for r in again)
    rop = [r for r in summary if r["scenario"] == "flash_sale" and r["policy"] == "rop" and r["figure"] == "cost"]
    assert float(rop[0]["vs_reference"]) != 0 and float(rop[0]["vs_baseline"]) > 0
    assert not [r for r in summary if r["policy"] == "base_stock" and r["vs_reference"]]  # the reference itself


@pytest.mark.slow
def test_a_resumed_run_reuses_what_is_there_and_ends_as_an_uninterrupted_one(runs, tmp_path):
    out = tmp_path / "resumed"
    stress(out, "replications=2", "ray.enabled=false", "output.plots=false")
    (out / "replications" / "flash_sale" / "rop" / "r0001.npz").unlink()  # as if killed before it was written
    done = stress(out, "replications=3", "ray.enabled=false", "output.plots=false")
    assert f"reused {CELLS * 2 - 1} of {CELLS * 3} replications" in done.stdout
    assert (out / "stress.csv").read_bytes() == (runs["local"] / "stress.csv").read_bytes()
    assert (out / "summary.csv").read_bytes() == (runs["local"] / "summary.csv").read_bytes()
    done = stress(out, "replications=3", "ray.enabled=false", "output.plots=false")
    assert f"reused {CELLS * 3} of {CELLS * 3} replications; ran 0" in done.stdout
    # another configuration in the same directory is refused before anything runs
    other = subprocess.run([sys.executable, "-m", "experiments.stress", *COMMON, "replications=3", "horizon=61",
                            "ray.enabled=false", f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert other.returncode == 2
    assert other.stderr.strip().startswith("config error: hydra.run.dir:")
    assert "holds replications of another configuration" in other.stderr


def test_a_start_state_from_a_snapshot_or_an_erp_state_runs_from_its_day(tmp_path):
    from agents.deploy.conversion import snapshot_to_state
    from twin import network_from_dict
    from twin.snapshot import Snapshot

    sim = tmp_path / "sim"
    done = subprocess.run([sys.executable, "-m", "experiments.simulate", "network=small", "horizon=60",
                           "output.snapshot_days=[20]", "output.plots=false", f"hydra.run.dir={sim}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    snapshot_file = sim / "snapshot_day20.json"
    network = network_from_dict(SMALL)
    erp_file = tmp_path / "erp_state.json"
    erp_file.write_text(snapshot_to_state(Snapshot.load(snapshot_file, network), network).model_dump_json())
    args = ("replications=2", "ray.enabled=false", "output.plots=false")
    stress(tmp_path / "default", *args)
    stress(tmp_path / "snapshot", *args, f"start={snapshot_file}")
    stress(tmp_path / "erp", *args, f"start={erp_file}")
    with np.load(tmp_path / "snapshot" / "replications" / "flash_sale" / "rop" / "r0000.npz") as data:
        assert int(data["first_day"]) == 20 and int(data["kpi_start"]) == 20
        assert data["network_demand"].shape == (40,)
    from_snapshot, default = rows(tmp_path / "snapshot"), rows(tmp_path / "default")
    assert [r["cost"] for r in from_snapshot] != [r["cost"] for r in default]
    assert rows(tmp_path / "erp") == from_snapshot  # the ERP state of that snapshot: the same start


BASE = {"network": SMALL, "scenarios": ["baseline"], "policies": ["base_stock"], "horizon": 60, "warmup": 7,
        "replications": 2}


@pytest.mark.parametrize(("change", "message"), [
    ({"scenarios": ["nope"]}, "scenarios[0]: 'nope' is not allowed; allowed: baseline, covid_2020"),
    ({"scenarios": []}, "scenarios: empty"),
    ({"scenarios": [{"name": "covid_2020", "severity": -1}]}, "scenarios[0]: scenario.severity: -1 is out of range"),
    ({"scenarios": ["baseline", "no/such.yaml"]}, "scenarios[1]: scenario.path: no such file"),
    ({"policies": ["magic"]}, "policies[0]: 'magic' is not allowed"),
    ({"replications": 0}, "replications: 0 is out of range; allowed: [1, 100000]"),
    ({"service_target": 0}, "service_target: 0 is out of range; allowed: (0, 1]"),
    ({"service_target": 1.5}, "service_target: 1.5 is out of range; allowed: (0, 1]"),
    ({"start": "no/such.json"}, "start: 'no/such.json' does not exist; allowed: a twin snapshot JSON"),
    ({"start": "conf/stress.yaml"}, "start: 'conf/stress.yaml' is not a readable JSON file"),
    ({"start": "START_KPIS"}, "is neither a twin snapshot nor an ERP state"),
    ({"start": "START_OTHER_NETWORK"}, "start.network.hash"),
    ({"start": "START_ERP_BAD"}, "start: 'START_ERP_BAD': locations[0].id"),
    ({"reference_policy": "rop"}, "reference_policy: 'rop' is not among the policies ['base_stock']"),
    ({"baseline_scenario": "covid_2020"}, "baseline_scenario: 'covid_2020' is not among the scenarios"),
    ({"ray": {"batch": 0}}, "ray.batch: 0 is out of range"),
    ({"ray": {"address": "127.0.0.1:1"}}, "ray.address: nothing answers at"),  # checked before anything is written
    ({"ray": {"address": "head"}}, "ray.address: 'head' is not allowed; allowed: 'auto', null, HOST:PORT"),
    ({"recovery": {"tolerence": 0.1}}, "recovery: unknown key 'tolerence'"),
])
def test_a_bad_config_is_one_error_naming_the_key(change, message, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    files = {"START_KPIS": tmp_path / "kpis.json", "START_OTHER_NETWORK": tmp_path / "other.json",
             "START_ERP_BAD": tmp_path / "erp.json"}
    files["START_KPIS"].write_text(json.dumps({"meta": {}}))
    paper = yaml.safe_load((ROOT / "conf" / "network" / "paper_5x20.yaml").read_text())
    from twin import Engine, network_from_dict

    files["START_OTHER_NETWORK"].write_text(json.dumps(Engine(network_from_dict(paper), horizon=5,
                                                              seed=0).snapshot().to_dict()))
    files["START_ERP_BAD"].write_text(json.dumps({"format": "erp.state/1", "as_of": "2021-02-01",
                                                  "locations": [{"id": "nowhere", "items": []}]}))
    if change.get("start") in files:
        change = {"start": str(files[change["start"]])}
        message = message.replace("START_ERP_BAD", str(files["START_ERP_BAD"]))
    with pytest.raises(SpecError) as error:
        load_stress_config({**BASE, **change})
    assert message in str(error.value)


def test_the_command_line_stops_with_one_config_error_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.stress", "network=small", "scenarios=[baseline,nope]",
                           f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "config error: scenarios[1]: 'nope' is not allowed; allowed: baseline, covid_2020, flash_sale, port_strike, "
        "dc_outage, holiday_peak, custom, a mapping {name: NAME, PARAMETER: VALUE}, or a scenario file (FILE.yaml)"]
    assert not (tmp_path / "replications").exists() and not (tmp_path / "stress.csv").exists()
