"""experiments.tune: the command writes a tuned policy config and its tuning table; a bad grid stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_tune_command_writes_a_usable_policy(tmp_path):
    out = tmp_path / "tune"
    done = subprocess.run([sys.executable, "-m", "experiments.tune", "network=small", "horizon=60", "warmup=5",
                           "tune.grid=[0.5,1.5]", "tune.seeds=1", f"hydra.run.dir={out}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    tuned = yaml.safe_load((out / "tuned_policy.yaml").read_text())
    assert tuned["name"] == "base_stock" and set(tuned["z"]) == {"store", "dc"}
    assert tuned["z"]["store"] in (0.5, 1.5) and tuned["z"]["dc"] in (0.5, 1.5)
    rows = (out / "tuning.csv").read_text().splitlines()
    assert rows[0] == "store,dc,cost_per_day" and len(rows) >= 3


def test_tune_command_rejects_an_empty_grid(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.tune", "network=small", "tune.grid=[]",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 2 and "tune.grid" in done.stderr
