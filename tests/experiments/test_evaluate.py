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
