"""The common-random-numbers tuner finds the analytic optimum of a single-stage base-stock problem.

The tune command (experiments.tune) is tested in tests/experiments/test_tune.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agents.baselines import BaseStock, tune
from agents.baselines.tuner import at_grid_edge
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
    assert result.best["z"] in (0.75, 1.0) and result.at_grid_edge == {}  # inside its grid
    assert result.best_cost == min(cost for _, cost in result.evaluations)
    assert result.best_cost == pytest.approx(case.optimal_cost, rel=0.05)
    assert len(result.evaluations) == len(grid["z"])  # each candidate evaluated once (cached)


def test_tuner_rejects_an_empty_grid():
    network = load_case(CASE).network()
    with pytest.raises(ValueError, match="grid"):
        tune(lambda p: None, network, grid={"z": []}, horizon=10, seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        tune(lambda p: None, network, grid={"z": [1.0]}, horizon=10, seeds=[])


def test_a_best_value_at_an_end_of_its_grid_is_named():
    grid = {"store": [1.0, 2.0, 8.0], "dc": [1.0, 2.0, 8.0], "fixed": [3.0]}
    assert at_grid_edge({"store": 8.0, "dc": 2.0, "fixed": 3.0}, grid) == {"store": "top"}
    assert at_grid_edge({"store": 1.0, "dc": 8.0}, grid) == {"store": "bottom", "dc": "top"}
    assert at_grid_edge({"store": 2.0, "dc": 2.0}, grid) == {}  # inside; a one-value grid has no end to widen
