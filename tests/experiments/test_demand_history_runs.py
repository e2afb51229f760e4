"""experiments.simulate demand=history: a planner's sales history (twin/demand_history.py) replayed or bootstrapped
end to end on a network from files, with a scenario's shocks on top; a bad file stops the run before anything is
written with every problem listed. The model itself is tested in tests/twin/test_demand_history.py."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "twin" / "data"
NETWORK = ("network=file", f"network.path={(DATA / 'network_csv').relative_to(ROOT)}")
HISTORY = (DATA / "demand_history.csv").relative_to(ROOT)  # as a planner types it, from the project folder
COMMON = ("horizon=40", "warmup=5", "output.plots=false", "output.per_sku=true", "invariants=error")


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def history() -> dict[tuple[str, int], float]:
    """(series_id, day) -> value of the fixture (day 0 = its first date, 2021-01-01)."""
    with (ROOT / HISTORY).open() as f:
        rows = list(csv.DictReader(f))
    first = rows[0]["date"]
    assert first == "2021-01-01"
    days = {}
    for row in rows:
        days.setdefault(row["date"], len(days))
    return {(row["series_id"], days[row["date"]]): float(row["value"]) for row in rows}


def store_demand(out: Path) -> dict[tuple[int, str, int], float]:
    """(replication, series_id, day) -> demand of the run's per-SKU file, store rows only."""
    with gzip.open(out / "timeseries_sku.csv.gz", "rt") as f:
        return {(int(row["replication"]), f"{row['node']}/{row['sku']}", int(row["day"])): float(row["demand"])
                for row in csv.DictReader(f) if row["node"].startswith("s")}


def test_simulate_replays_a_history_exactly(tmp_path):
    out = tmp_path / "run"
    done = run("simulate", *NETWORK, "demand=history", f"demand.path={HISTORY}", *COMMON, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "demand: replay of tests/twin/data/demand_history.csv (16 series, 2021-01-01 to 2021-04-01)" in done.stderr
    sold = history()
    demand = store_demand(out)
    assert len(demand) == 16 * 40
    assert all(value == sold[series, day] for (_, series, day), value in demand.items())
    report = json.loads((out / "kpis.json").read_text())
    assert report["meta"]["demand"] == {"mode": "replay", "path": str(HISTORY), "start_date": "2021-01-01",
                                        "history": ["2021-01-01", "2021-04-01"], "missing": "error", "series": 16}
    assert report["replications"][0]["network"]["fill_rate"] > 0.5, "the policy is sized from the history"
    assert yaml.safe_load((out / "config.yaml").read_text())["demand"]["path"] == str(HISTORY)


def test_a_history_with_a_scenario_shock_on_top(tmp_path):
    scenario = tmp_path / "surge.yaml"
    scenario.write_text("name: surge\nshocks:\n  - {type: demand, groups: [staples], start: 10, end: 20, "
                        "magnitude: 2.0}\n")
    out = tmp_path / "run"
    done = run("simulate", *NETWORK, "demand=history", f"demand.path={HISTORY}", "demand.start_date=2021-02-01",
               f"scenario={scenario}", *COMMON, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    sold = history()
    for (_, series, day), value in store_demand(out).items():
        doubled = series.endswith("/rice") and 10 <= day < 20  # rice is the staples group
        assert value == sold[series, 31 + day] * (2 if doubled else 1), (series, day)


def test_simulate_bootstraps_a_fitted_history_per_replication(tmp_path):
    out = tmp_path / "run"
    done = run("simulate", *NETWORK, "demand=history", f"demand.path={HISTORY}", "demand.mode=fitted",
               "demand.block=14", "replications=2", *COMMON, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    demand = store_demand(out)
    first, second = ([demand[r, s, d] for (r, s, d) in sorted(demand) if r == rep] for rep in (0, 1))
    assert first != second, "each seed its own path"
    assert np.mean(first) > 0 and all(v == int(v) >= 0 for v in first + second)
    meta = json.loads((out / "kpis.json").read_text())["meta"]
    assert meta["demand"]["mode"] == "fitted" and meta["demand"]["block"] == 14 and meta["demand"]["window"] == 28
    assert meta["seeds"] == [0, 1]


def test_a_bad_history_stops_the_run_with_every_problem(tmp_path):
    lines = (ROOT / HISTORY).read_text().splitlines()
    lines[4] = lines[4].replace("s1/rice", "s9/rice")
    lines[6] = lines[6].rsplit(",", 1)[0] + ",-2"
    path = tmp_path / "sales.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    done = run("simulate", *NETWORK, "demand=history", f"demand.path={path}", f"hydra.run.dir={out}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"config error: demand.path: 2 problems in the demand history {path} (nothing was simulated):",
        "  sales.csv, row 5, column series_id (A): series 's9/rice': 's9' is not a store of network 'planner_demo'; "
        "allowed: s1, s2, s3, s4",
        "  sales.csv, row 7, column value (C): '-2' is negative; allowed: units sold, a number >= 0 (returns are not "
        "demand)",
    ]
    assert not out.exists() or not any(out.iterdir()), "nothing written"


def test_a_horizon_past_the_history_and_a_history_without_a_path(tmp_path):
    done = run("simulate", *NETWORK, "demand=history", f"demand.path={HISTORY}", "horizon=100",
               f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.startswith("config error: horizon: 100 days from demand.start_date 2021-01-01 run to "
                                  "2021-04-10, after the demand history's last date 2021-04-01")
    done = run("simulate", *NETWORK, "demand=history", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.strip() == ("config error: demand.path: required with demand.mode replay; allowed: a CSV file "
                                   "of series_id (store/sku), date, value")


def test_tune_tunes_on_a_fitted_history(tmp_path):
    out = tmp_path / "tune"
    done = run("tune", *NETWORK, "demand=history", f"demand.path={HISTORY}", "demand.mode=fitted", "horizon=40",
               "warmup=5", "tune.grid=[1.0,2.0]", "tune.seeds=2", "tune.max_rounds=1", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    tuned = yaml.safe_load((out / "tuned_policy.yaml").read_text())
    assert tuned["name"] == "base_stock" and set(tuned["z"]) == {"store", "dc"}


def test_a_stress_test_runs_on_the_history_replayed_and_bootstrapped(tmp_path):
    """experiments.stress demand=history: every replication of a replay meets the history's demand exactly; a
    fitted history gives each replication its own path; a changed history is another configuration."""
    stress = ("scenarios=[baseline]", "policies=[base_stock]", "replications=2", "horizon=40", "warmup=5",
              "ray.enabled=false", "output.plots=false")
    out = tmp_path / "replay"
    done = run("stress", *NETWORK, "demand=history", f"demand.path={HISTORY}", *stress, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    by_day = np.zeros(40)
    for (_, day), value in history().items():
        if day < 40:
            by_day[day] += value
    for r in range(2):
        with np.load(out / "replications" / "baseline" / "base_stock" / f"r{r:04d}.npz") as data:
            np.testing.assert_array_equal(data["network_demand"], by_day)
    out = tmp_path / "fitted"
    done = run("stress", *NETWORK, "demand=history", f"demand.path={HISTORY}", "demand.mode=fitted", *stress,
               f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    paths = []
    for r in range(2):
        with np.load(out / "replications" / "baseline" / "base_stock" / f"r{r:04d}.npz") as data:
            paths.append(data["network_demand"])
    assert not np.array_equal(paths[0], paths[1]) and not np.array_equal(paths[0], by_day)
    # the same run directory with the network's own demand model is refused: another configuration
    done = run("stress", *NETWORK, *stress, f"hydra.run.dir={out}")
    assert done.returncode == 2 and "holds replications of another configuration" in done.stderr


def test_evaluate_compares_policies_on_the_history(tmp_path):
    out = tmp_path / "evaluate"
    done = run("evaluate", *NETWORK, "demand=history", f"demand.path={HISTORY}", "policies=[base_stock,rop]",
               "reference=rop", "seeds=2", "horizon=40", "warmup=5", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    with (out / "evaluation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {row["policy"] for row in rows} == {"base_stock", "rop"} and len(rows) == 4
    fill = [float(row["fill_rate"]) for row in rows if row["policy"] == "base_stock"]
    assert min(fill) > 0.5, "the static levels are set from the history"
    done = run("evaluate", "case=tests/reference_cases/case_base_stock_SS_example_4_4_L4.json", "demand=history",
               f"demand.path={HISTORY}", "policies=[optimal]", "reference=optimal", "seeds=1", "horizon=40")
    assert done.returncode == 2 and "demand: a reference case runs its own demand law" in done.stderr
