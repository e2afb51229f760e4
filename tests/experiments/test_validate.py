"""experiments.validate: the twin reaches each reference case's optimal cost (stockpyl-style reference tests)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import pytest

from experiments.validate import main as validate_main

ROOT = Path(__file__).resolve().parents[2]
CASE_DIR = ROOT / "tests" / "reference_cases"
CASES = sorted(CASE_DIR.glob("case_*.json"))
PERIODS = "100000"  # the command-line default


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_shipped_case_matches_its_optimal_cost(case, capsys):
    assert validate_main([str(case), "--periods", PERIODS]) == 0, capsys.readouterr().out


def _write(tmp_path: Path, name: str, case: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(case))
    return path


def base_stock_normal_case(mean: float, sd: float, lead: int, h: float, p: float, cost_factor: float = 1.0) -> dict:
    """A single-stage base-stock case with its analytic optimum (demand over L+1 periods)."""
    sigma = sd * math.sqrt(lead + 1)
    z = NormalDist().inv_cdf(p / (p + h))
    return {
        "case_id": f"normal_L{lead}",
        "parameters": {"demand": {"dist": "normal", "mean": mean, "sd": sd}, "lead_time_L": lead,
                       "holding_cost_h": h, "backorder_cost_p": p, "unmet_demand": "backordered"},
        "optimal_policy": {"S_star": mean * (lead + 1) + z * sigma},
        "optimal_expected_cost": cost_factor * (h + p) * sigma * NormalDist().pdf(z),
    }


def base_stock_poisson_case(mean: float, lead: int, h: float, p: float) -> dict:
    """A Poisson base-stock case: S* is the critical-ratio quantile, the cost a finite sum."""
    lam = mean * (lead + 1)
    pmf = [math.exp(-lam)]
    for k in range(1, int(lam * 4 + 40)):
        pmf.append(pmf[-1] * lam / k)
    cdf, s_star = 0.0, 0
    for k, q in enumerate(pmf):
        cdf += q
        if cdf >= p / (p + h):
            s_star = k
            break
    cost = sum(q * (h * max(s_star - k, 0) + p * max(k - s_star, 0)) for k, q in enumerate(pmf))
    return {
        "case_id": f"poisson_L{lead}",
        "parameters": {"demand": {"dist": "poisson", "mean": mean}, "lead_time_L": lead, "holding_cost_h": h,
                       "backorder_cost_p": p, "unmet_demand": "backordered"},
        "optimal_policy": {"S_star": s_star},
        "optimal_expected_cost": cost,
    }


@pytest.mark.slow
def test_any_case_of_the_schema_is_accepted(tmp_path, capsys):
    paths = [
        _write(tmp_path, "normal", base_stock_normal_case(mean=120, sd=30, lead=2, h=1.0, p=9.0)),
        _write(tmp_path, "poisson", base_stock_poisson_case(mean=3.5, lead=1, h=0.5, p=4.5)),
    ]
    assert validate_main([*map(str, paths), "--periods", "30000"]) == 0, capsys.readouterr().out


@pytest.mark.slow
def test_a_wrong_optimal_cost_fails(tmp_path, capsys):
    path = _write(tmp_path, "wrong", base_stock_normal_case(mean=120, sd=30, lead=2, h=1.0, p=9.0, cost_factor=1.1))
    assert validate_main([str(path), "--periods", "30000"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_command_line_reports_a_bad_case_file(tmp_path):
    case = base_stock_normal_case(mean=10, sd=2, lead=1, h=1, p=4)
    case["parameters"]["demand"]["dist"] = "gamma"
    path = _write(tmp_path, "bad", case)
    done = subprocess.run([sys.executable, "-m", "experiments.validate", str(path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 2
    assert "case.parameters.demand.dist" in done.stderr and "allowed: normal, poisson" in done.stderr
    assert "Traceback" not in done.stderr
