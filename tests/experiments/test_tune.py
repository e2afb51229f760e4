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
    # two candidates: each best is an end of its grid, and the command says so
    assert f"note: the best store z {tuned['z']['store']:g} is the " in done.stdout
    assert f"note: the best dc z {tuned['z']['dc']:g} is the " in done.stdout
    rows = (out / "tuning.csv").read_text().splitlines()
    assert rows[0] == "store,dc,cost_per_day" and len(rows) >= 3


def test_tune_command_rejects_an_empty_grid(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.tune", "network=small", "tune.grid=[]",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 2 and "tune.grid" in done.stderr


def tune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.tune", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_tune_from_todays_position_tunes_on_the_days_after_the_snapshot(tmp_path):
    common = ["network=small", "horizon=60", "warmup=5", "tune.grid=[0.5,1.5]", "tune.seeds=1"]
    sim = subprocess.run([sys.executable, "-m", "experiments.simulate", "network=small", "horizon=60",
                          "output.plots=false", "output.snapshot_days=[30]", f"hydra.run.dir={tmp_path / 'sim'}"],
                         capture_output=True, text=True, cwd=ROOT)
    assert sim.returncode == 0, sim.stderr
    snapshot = tmp_path / "sim" / "snapshot_day30.json"
    from_start, from_snapshot = tmp_path / "a", tmp_path / "b"
    assert tune(*common, f"hydra.run.dir={from_start}").returncode == 0
    done = tune(*common, f"start={snapshot}", f"hydra.run.dir={from_snapshot}")
    assert done.returncode == 0, done.stderr
    costs = [(d / "tuning.csv").read_text().splitlines()[1:] for d in (from_start, from_snapshot)]
    assert len(costs[1]) >= 2 and costs[0] != costs[1]  # other days, other costs
    bad = tune(*common, "output.snapshot_days=[10]", f"hydra.run.dir={tmp_path / 'c'}")
    assert bad.returncode == 2 and "output.snapshot_days: experiments.tune writes no snapshots" in bad.stderr
