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


def test_forecast_z_disrupted_changes_the_forecast_policy_only_under_a_disruption(tmp_path):
    """A port strike from day 10: z_disrupted changes the forecast base-stock's costs (its levels while the strike
    lasts); on the baseline, with no disruption, it changes nothing; a bad value is one error naming it."""
    def costs(scenario: list[str], *extra: str) -> list[str]:
        run = tmp_path / str(len(list(tmp_path.iterdir())))
        done = subprocess.run([sys.executable, "-m", "experiments.evaluate", "network=small", *scenario, "seeds=2",
                               "horizon=40", "warmup=0", "policies=[forecast:oracle]", "reference=forecast:oracle",
                               *extra, f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return [r["cost_per_day"] for r in csv.DictReader((run / "evaluation.csv").open())]

    strike, raised = ["scenario=port_strike", "scenario.start_day=10"], "forecast_z_disrupted={store: 6, dc: 6}"
    assert costs(strike) != costs(strike, raised)
    assert costs(["scenario=baseline"]) == costs(["scenario=baseline"], raised)
    bad = subprocess.run([sys.executable, "-m", "experiments.evaluate", "network=small", "policies=[forecast:oracle]",
                          "reference=forecast:oracle", "forecast_z_disrupted={store: 99}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "forecast_z_disrupted.store: 99" in bad.stderr


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
