"""experiments.evaluate: forecast-driven and static policies compared on common seeds, with paired intervals."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_compares_forecast_driven_policies_with_paired_intervals(tmp_path):
    args = [sys.executable, "-m", "experiments.evaluate", "network=small", "scenario=flash_sale", "seeds=2",
            "horizon=60", "warmup=7", "reference=forecast:oracle"]
    done = subprocess.run([*args, "policies=[forecast:oracle,forecast:seasonal_naive,base_stock]",
                           f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "evaluation.csv").open()))
    assert {r["policy"] for r in rows} == {"forecast:oracle", "forecast:seasonal_naive", "base_stock"}
    assert "Paired differences to forecast:oracle" in done.stdout and "| forecast:seasonal_naive |" in done.stdout
    bad = subprocess.run([*args, "policies=[forecast:crystal_ball]"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "policies[0]: forecaster 'crystal_ball' is not allowed" in bad.stderr
    # fit once (forecast_refit_every=0) needs a forecaster that forecasts without refitting: named, before any run
    bad = subprocess.run([*args, "policies=[forecast:seasonal_naive]", "forecast_refit_every=0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "forecast_refit_every: 0 (fit once)" in bad.stderr


def test_evaluate_runs_the_rolling_replanner_and_writes_its_decisions(tmp_path):
    args = [sys.executable, "-m", "experiments.evaluate", "network=small", "scenario=flash_sale", "seeds=2",
            "horizon=20", "warmup=7", "reference=base_stock", "replan.every=10", "replan.paths=1",
            "replan.lookahead=8", "replan.grid=[1.0,3.0]"]
    done = subprocess.run([*args, "policies=[replan,replan:oracle,base_stock]", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "evaluation.csv").open()))
    assert {r["policy"] for r in rows} == {"replan:seasonal_naive", "replan:oracle[upper bound]", "base_stock"}
    decisions = list(csv.DictReader((tmp_path / "replan_decisions.csv").open()))
    # two reviews (days 0 and 10) per seed and replanner, with the chosen z and the paths' figures
    assert [(d["policy"], d["seed"], d["day"]) for d in decisions] == [
        (p, str(s), str(day)) for p in ("replan:seasonal_naive", "replan:oracle[upper bound]")
        for s in (1000000, 1000001) for day in (0, 10)]
    assert {d["z_store"] for d in decisions} <= {"1.0", "3.0"} and all(0 <= float(d["expected_fill_rate"]) <= 1
                                                                       for d in decisions)
    bad = subprocess.run([*args, "policies=[replan]", "replan.every=0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "replan.every" in bad.stderr
