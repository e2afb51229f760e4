"""experiments.stress mode=node_sweep (experiments/node_sweep.py): the time to survive on a hand-built case with a
known answer and, on a real run, against twin/resilience on the replications' own series; every DC and supplier
swept for every closure length; TTS < TTR consistent; the ranking; the same numbers with Ray and without; the
report, the dashboard's catalog and the per-store table; old replication files refused; bad configs stop with one
error naming the key. A 2-DC network (paper_5x20's layout, 4 stores, 4 SKUs), 70 days, three replications."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.node_sweep import BASELINE, NodeSweep, Sample, SweepNode, node_rows, read_node_sweep, sample, served
from experiments.stress import load_stress_config
from experiments.stress_runs import FILE_FORMAT, Job, Replication, ReplicationStore
from twin import SpecError, resilience
from twin.config import ConfigReader
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
SMALL = yaml.safe_load((ROOT / "conf" / "network" / "small.yaml").read_text())
TWO_DCS = ("network=paper_5x20", "network.layout.dcs=2", "network.layout.stores=4", "network.skus.count=4",
           "network.layout.regions=[north,south]")
COMMON = (*TWO_DCS, "mode=node_sweep", "closure_days=[3,21]", "policies=[rop,base_stock]",
          "reference_policy=base_stock", "horizon=70", "warmup=7", "replications=3",
          "likelihood={dc_0: 0.3, supplier_0: 0.02}", "default_likelihood=0.1")
NODES = ["supplier_0", "dc_0", "dc_1"]
LENGTHS = [3, 21]


def stress(out: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "experiments.stress", *COMMON, *args, f"hydra.run.dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same node sweep with local Ray (2 CPUs) and in this process."""
    base = tmp_path_factory.mktemp("sweep")
    stress(base / "ray", "ray.num_cpus=2", "ray.batch=2")
    stress(base / "local", "ray.enabled=false")
    return {"ray": base / "ray", "local": base / "local"}


# ---------------------------------------------------------------------------- a hand-built case


def _replication(first_day: int, dc_demand: np.ndarray, dc_filled: np.ndarray, penalty: float) -> Replication:
    """A replication of 2 DCs and 1 supplier with only what the sweep reads filled in."""
    days = len(dc_demand)
    zeros = np.zeros(days)
    costs = np.zeros(5)
    costs[1] = penalty  # COST_KINDS: holding, backorder, ...
    return Replication(
        scenario="x", policy="p", replication=0, seed=0, first_day=first_day, kpi_start=first_day,
        network={"demand": zeros}, dcs={}, fill_rate=1.0, cost=penalty, cost_per_day=0.0, lost_sales=0.0,
        lost_by_dc=np.zeros(2), lost_by_region=np.zeros(1),
        stores_by_dc={"demand": dc_demand, "filled": dc_filled},
        stores_by_supplier={"demand": dc_demand.sum(axis=1, keepdims=True),
                            "filled": dc_filled.sum(axis=1, keepdims=True)},
        store_lost=np.zeros(4), store_fill_rate=np.ones(4), costs=costs)


SWEEP = NodeSweep(nodes=(SweepNode("supplier_0", "supplier", (), 0, 4, 0.02),
                         SweepNode("dc_0", "dc", (0,), -1, 2, 0.3), SweepNode("dc_1", "dc", (1,), -1, 2, 0.1)),
                  lengths=(7, 14), start=30, reroute=False)


def test_time_to_survive_on_a_hand_built_case():
    """Stores asking 10 a day of each DC, all served; from day 35 dc_0's stores get nothing. With a 7-day window
    and target 0.95: on day 35 dc_0's stores were served 60 of 70 (0.857), so they survive 35 - 30 = 5 days;
    all stores 130 of 140 (0.929): 5 days too; dc_1's never drop. The series start on day 20 (a start state)."""
    first_day, days = 20, 50
    demand = np.full((days, 2), 10.0)
    filled = demand.copy()
    filled[35 - first_day:, 0] = 0.0
    rep = _replication(first_day, demand, filled, penalty=0.0)
    got = sample(rep, SWEEP, target=0.95, window=7)
    assert got.tts.tolist() == [5.0, 5.0, math.inf]
    # target 0.85: dc_0's stores drop on day 36 (50 of 70 = 0.714); all stores on day 37 (110 of 140 = 0.786)
    assert sample(rep, SWEEP, target=0.85, window=7).tts.tolist() == [7.0, 6.0, math.inf]
    assert sample(rep, SWEEP, target=0.95, window=1).tts.tolist() == [5.0, 5.0, math.inf]
    demand_0, filled_0 = served(rep, SWEEP.nodes[1])
    np.testing.assert_array_equal(demand_0, demand[:, 0])
    np.testing.assert_array_equal(filled_0, filled[:, 0])


def test_rows_are_ranked_by_penalty_cost_and_the_flag_is_the_median_against_the_closure():
    def s(tts, penalty):
        return Sample(tts=np.array(tts, dtype=float), penalty_cost=penalty, lost_sales=penalty / 10, cost=penalty)

    inf = math.inf
    samples = {BASELINE: [s([inf, inf, inf], 100), s([inf, inf, 40], 200), s([inf, inf, inf], 300)],
               # supplier: survives 7 days in two of three, dc_0 drops at once, dc_1 at 10 or never
               "supplier_0:7d": [s([7, 0, 0], 150), s([9, 0, 0], 260), s([3, 0, 0], 310)],
               "supplier_0:14d": [s([7, 0, 0], 400), s([9, 0, 0], 500), s([3, 0, 0], 600)],
               "dc_0:7d": [s([0, 2, 0], 1100), s([0, 2, 0], 1200), s([0, 3, 0], 1300)],
               "dc_0:14d": [s([0, 2, 0], 3100), s([0, 2, 0], 3200), s([0, 3, 0], 3300)],
               "dc_1:7d": [s([0, 0, 10], 100), s([0, 0, inf], 200), s([0, 0, inf], 300)],
               "dc_1:14d": [s([0, 0, 10], 100), s([0, 0, 12], 200), s([0, 0, inf], 300)]}
    table = node_rows(samples, SWEEP)
    assert [(r.rank, r.node, r.closure_days) for r in table] == [
        (1, "dc_0", 14), (2, "dc_0", 7), (3, "supplier_0", 14), (4, "supplier_0", 7), (5, "dc_1", 7),
        (6, "dc_1", 14)]  # a tie (no increase) keeps the sweep's order
    row = {(r.node, r.closure_days): r for r in table}
    assert row["dc_0", 14].penalty_cost_increase == 3000 and row["dc_0", 14].penalty_cost_increase_ci95 == 0
    assert row["dc_0", 14].lost_sales_increase == pytest.approx(300)
    assert row["supplier_0", 7].tts_median == 7 and not row["supplier_0", 7].tts_below_ttr
    assert row["supplier_0", 7].tts_below_ttr_share == pytest.approx(1 / 3)
    assert row["supplier_0", 14].tts_below_ttr and row["supplier_0", 14].tts_below_ttr_share == 1
    assert row["dc_1", 7].tts_median == math.inf and row["dc_1", 7].never_dropped_share == pytest.approx(2 / 3)
    assert row["dc_1", 7].tts_mean == 10 and not row["dc_1", 7].tts_below_ttr
    assert row["dc_1", 14].tts_median == 12 and row["dc_1", 14].tts_below_ttr
    assert row["dc_1", 14].baseline_tts_median == math.inf
    assert row["dc_1", 14].baseline_never_dropped_share == pytest.approx(2 / 3)
    assert row["dc_0", 7].likelihood == 0.3 and row["dc_0", 7].stores == 2


# ---------------------------------------------------------------------------- a real run


@pytest.mark.slow
def test_every_dc_and_supplier_is_swept_for_every_length_and_ranked(runs):
    out = runs["ray"]
    table = rows(out / "node_sweep.csv")
    assert sorted((r["node"], int(r["closure_days"])) for r in table) == sorted(
        (n, length) for n in NODES for length in LENGTHS)
    assert [int(r["rank"]) for r in table] == list(range(1, 7))
    penalty = [float(r["penalty_cost_increase"]) for r in table]
    assert penalty == sorted(penalty, reverse=True)
    for r in table:
        assert r["scenario"] == f"{r['node']}:{r['closure_days']}d" and r["n"] == "3"
        assert (r["tts_below_ttr"] == "true") == (float(r["tts_median"]) < int(r["closure_days"]))
        assert r["kind"] == ("supplier" if r["node"] == "supplier_0" else "dc")
        assert r["stores"] == ("4" if r["node"] == "supplier_0" else "2")
        assert float(r["likelihood"]) == {"dc_0": 0.3, "supplier_0": 0.02, "dc_1": 0.1}[r["node"]]
    # a DC closed three weeks without re-routing: its stores run short before it is back, in every replication
    for dc in ("dc_0", "dc_1"):
        [r] = [r for r in table if (r["node"], r["closure_days"]) == (dc, "21")]
        assert r["tts_below_ttr"] == "true" and float(r["tts_below_ttr_share"]) == 1
        assert float(r["penalty_cost_increase"]) > 0
    # the run's scenarios: the baseline and every (node, length), one policy (the reference)
    stress_rows = rows(out / "stress.csv")
    assert {r["policy"] for r in stress_rows} == {"base_stock"}
    assert [r["scenario"] for r in stress_rows[::3]] == ["baseline", *(f"{n}:{k}d" for n in NODES for k in LENGTHS)]
    shocks = yaml.safe_load((out / "scenario_dc_0_21d.yaml").read_text())["shocks"]
    assert [(s["type"], s["start"], s["end"], s["dc"], s["reroute"]) for s in shocks] == [
        ("dc_closure", 7, 28, "dc_0", False)]  # from the first day after warm-up, for 21 days
    md = (out / "node_sweep.md").read_text()
    ranked = [line.split("|")[2].strip() for line in md.splitlines() if line.startswith("| ") and "rank" not in line]
    assert ranked == [f"{r['node']} ({r['kind']})" for r in table]
    assert (out / "risk_matrix.png").stat().st_size > 10_000
    assert not list(out.glob("fan_*.png"))  # a node sweep draws the risk matrix, not the fan charts


@pytest.mark.slow
def test_time_to_survive_is_twin_resilience_on_the_replications_own_series(runs):
    out = runs["local"]
    table = {(r["node"], int(r["closure_days"])): r for r in rows(out / "node_sweep.csv")}
    block = {"supplier_0": ("supplier", 0), "dc_0": ("dc", 0), "dc_1": ("dc", 1)}
    for (node, length), row in table.items():
        tts, base = [], []
        for scenario, found in ((f"{node}_{length}d", tts), ("baseline", base)):
            for r in range(3):
                with np.load(out / "replications" / scenario / "base_stock" / f"r{r:04d}.npz") as data:
                    assert str(data["format"]) == FILE_FORMAT and int(data["first_day"]) == 0
                    kind, j = block[node]
                    demand, filled = data[f"stores_{kind}_demand"][:, j], data[f"stores_{kind}_filled"][:, j]
                    if kind == "supplier":  # every store: the network's customers
                        np.testing.assert_allclose(demand, data["network_demand"])
                        np.testing.assert_allclose(filled, data["network_filled"])
                found.append(resilience.time_to_survive(demand, filled, 7, 0.95, window=7))
        assert float(row["tts_median"]) == np.median(tts)
        assert float(row["never_dropped_share"]) == pytest.approx(np.mean(np.isinf(tts)))
        assert float(row["baseline_tts_median"]) == np.median(base)


@pytest.mark.slow
def test_ray_and_one_process_give_the_same_numbers(runs):
    for name in ("node_sweep.csv", "node_sweep.md", "stress.csv", "summary.csv", "stores.csv"):
        assert (runs["ray"] / name).read_bytes() == (runs["local"] / name).read_bytes(), name


@pytest.mark.slow
def test_the_report_the_catalog_and_the_store_table(runs):
    from experiments.run_catalog import find_runs

    out = runs["ray"]
    report = (out / "report.html").read_text()
    assert "<h2>Node sweep:" in report and "<h2>Risk matrix</h2>" in report
    assert report.count("data:image/png;base64,") == 1 and "No fan charts in a node sweep" in report
    [run] = find_runs(out)
    assert run.scenarios[0] == "baseline" and len(run.scenarios) == 7 and run.policies == ["base_stock"]
    assert run.fan("fill_rate_7d", "dc_0:21d", "base_stock").values
    assert any(a.kind == "dc_closure" and a.scenario == "dc_0:21d" for a in run.alerts())
    stores = rows(out / "stores.csv")
    assert len(stores) == 7 * 4 and {r["home_dc"] for r in stores} == {"dc_0", "dc_1"}
    worst = run.stores(["dc_0:21d", "baseline"], ["base_stock"], limit=3)
    assert len(worst) == 3 and all(r.scenario == "dc_0:21d" and r.home_dc == "dc_0" for r in worst[:2])
    fill = [r.fill_rate for r in worst[:2]]
    assert fill == sorted(fill) and max(fill) < min(r.fill_rate for r in run.stores(["baseline"]))


# ---------------------------------------------------------------------------- files and configs


def test_a_replication_file_of_another_format_is_refused_not_misread(tmp_path):
    store = ReplicationStore(tmp_path, {"baseline": "baseline"}, {"rop": "rop"}, {("baseline", "rop"): "abc"}, 7)
    path = store.path(Job("baseline", "rop", 0))
    path.parent.mkdir(parents=True)
    np.savez(path, format=np.array("stress.replication/1"), fingerprint=np.array("abc"), seed=np.array(7))
    with pytest.raises(SpecError, match=r"hydra.run.dir: .*r0000.npz is a replication file of format "
                                        r"'stress.replication/1', and this version reads and writes "
                                        r"'stress.replication/2'"):
        store.missing([Job("baseline", "rop", 0)])
    with pytest.raises(SpecError, match="format 'stress.replication/1'"):
        store.load(Job("baseline", "rop", 0))


BASE = {"network": SMALL, "mode": "node_sweep", "policies": ["base_stock"], "horizon": 60, "warmup": 7,
        "replications": 2}


def test_the_sweep_config_builds_a_scenario_per_node_and_length():
    config = load_stress_config({**BASE, "closure_days": [5, 10], "policies": ["rop", "base_stock"],
                                 "likelihood": {"dc_0": 0.5}})
    assert list(config.scenarios) == ["baseline", "supplier_0:5d", "supplier_0:10d", "dc_0:5d", "dc_0:10d"]
    assert list(config.policies) == ["rop"] and config.baseline == "baseline"
    assert config.sweep.start == 7 and [n.likelihood for n in config.sweep.nodes] == [0.1, 0.5]
    [closure] = config.scenarios["dc_0:10d"].shocks
    assert (type(closure).__name__, closure.start, closure.end, closure.dc, closure.reroute) == (
        "DcClosure", 7, 17, "dc_0", False)
    assert not config.scenarios["baseline"].shocks
    assert load_stress_config({**BASE, "sweep_start": 30}).sweep.start == 30
    # in mode=scenarios the sweep's keys are not used (nor checked)
    scenarios = load_stress_config({**BASE, "mode": "scenarios", "scenarios": ["baseline"], "closure_days": []})
    assert scenarios.sweep is None and list(scenarios.scenarios) == ["baseline"]


def test_a_store_below_a_middle_dc_counts_for_every_dc_above_it():
    serial = yaml.safe_load((ROOT / "conf" / "network" / "serial_3.yaml").read_text())
    sweep = read_node_sweep(ConfigReader({}, ""), network_from_dict(serial), 60, 7, active=True)
    assert [(n.name, n.kind, n.dc_columns, n.stores) for n in sweep.nodes] == [
        ("supplier", "supplier", (), 1), ("dc_upper", "dc", (0, 1), 1), ("dc_lower", "dc", (1,), 1)]


@pytest.mark.parametrize(("change", "message"), [
    ({"closure_days": []}, "closure_days: empty; allowed: a non-empty list of distinct closure lengths"),
    ({"closure_days": [7, 0]}, "closure_days[1]: 0 is not allowed; allowed: a non-empty list"),
    ({"closure_days": [-3]}, "closure_days[0]: -3 is not allowed"),
    ({"closure_days": [7, 7]}, "closure_days: [7, 7] repeats a length"),
    ({"closure_days": "7"}, "closure_days: expected a list, got '7'"),
    ({"closure_days": [60]}, "closure_days: the longest closure (60 days) from the first day after warm-up (day 7) "
                             "ends after the horizon (60 days); allowed: closures of at most 53 days"),
    ({"sweep_start": 3}, "sweep_start: 3 is not allowed: the KPI days begin on day 7"),
    ({"sweep_start": 40}, "allowed: null (day 7) or a day in [7, 32]"),
    ({"likelihood": {"dc_9": 0.1}}, "likelihood: 'dc_9' is not a DC or supplier of network 'small'; allowed: "
                                    "supplier_0, dc_0"),
    ({"likelihood": {"store_0": 0.1}}, "likelihood: 'store_0' is not a DC or supplier"),
    ({"likelihood": {"dc_0": 1.5}}, "likelihood.dc_0: 1.5 is out of range; allowed: [0, 1]"),
    ({"likelihood": {"dc_0": -0.1}}, "likelihood.dc_0: -0.1 is out of range; allowed: [0, 1]"),
    ({"likelihood": [0.1]}, "likelihood: expected a mapping {node: probability per year}"),
    ({"default_likelihood": 2}, "default_likelihood: 2 is out of range; allowed: [0, 1]"),
    ({"reroute": True}, "reroute: 'store_0' has no backup_parent to re-route to"),
    ({"reroute": "yes"}, "reroute: expected true or false"),
    ({"mode": "nodes"}, "mode: 'nodes' is not allowed; allowed: scenarios, node_sweep"),
])
def test_a_bad_sweep_config_is_one_error_naming_the_key(change, message):
    with pytest.raises(SpecError) as error:
        load_stress_config({**BASE, **change})
    assert message in str(error.value)


def test_the_command_line_stops_with_one_config_error_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.stress", "network=small", "mode=node_sweep",
                           "closure_days=[]", f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "config error: closure_days: empty; allowed: a non-empty list of distinct closure lengths in whole days >= 1, "
        "e.g. [7, 14, 28]"]
    assert not (tmp_path / "replications").exists()
