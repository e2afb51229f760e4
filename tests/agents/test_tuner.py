"""The common-random-numbers tuner finds the analytic optimum of a single-stage base-stock problem."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agents.baselines import BaseStock, tune
from scenarios.reference import load_case

CASE = Path(__file__).resolve().parents[1] / "reference_cases" / "case_base_stock_SS_example_4_4_L4.json"


@pytest.mark.slow
def test_tuner_finds_the_critical_ratio_safety_factor():
    case = load_case(CASE)  # N(50, 8), L = 4, h = 0.18, p = 0.7: z* = 0.8255
    network = case.network()
    lead = case.lead_times[0]
    mean, sd = case.demand_mean * (lead + 1), case.demand_sd * math.sqrt(lead + 1)

    def make_policy(params):
        levels = np.zeros((len(network.nodes), 1))
        levels[network.index("stage_1")] = mean + params["z"] * sd
        return BaseStock(levels)

    grid = {"z": [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]}
    result = tune(make_policy, network, grid=grid, horizon=4000, warmup=100, seeds=[0])
    assert result.best["z"] in (0.75, 1.0)
    assert result.best_cost == min(cost for _, cost in result.evaluations)
    assert result.best_cost == pytest.approx(case.optimal_cost, rel=0.05)
    assert len(result.evaluations) == len(grid["z"])  # each candidate evaluated once (cached)


def test_tuner_rejects_an_empty_grid():
    network = load_case(CASE).network()
    with pytest.raises(ValueError, match="grid"):
        tune(lambda p: None, network, grid={"z": []}, horizon=10, seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        tune(lambda p: None, network, grid={"z": [1.0]}, horizon=10, seeds=[])


def test_tune_command_writes_a_usable_policy(tmp_path):
    import subprocess
    import sys

    import yaml

    out = tmp_path / "tune"
    done = subprocess.run([sys.executable, "-m", "experiments.tune", "network=small", "horizon=60", "warmup=5",
                           "tune.grid=[0.5,1.5]", "tune.seeds=1", f"hydra.run.dir={out}"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    tuned = yaml.safe_load((out / "tuned_policy.yaml").read_text())
    assert tuned["name"] == "base_stock" and set(tuned["z"]) == {"store", "dc"}
    assert tuned["z"]["store"] in (0.5, 1.5) and tuned["z"]["dc"] in (0.5, 1.5)
    rows = (out / "tuning.csv").read_text().splitlines()
    assert rows[0] == "store,dc,cost_per_day" and len(rows) >= 3


def test_tune_command_rejects_an_empty_grid(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "experiments.tune", "network=small", "tune.grid=[]",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2 and "tune.grid" in done.stderr
