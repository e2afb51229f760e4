"""Reference cases (stockpyl-style inventory problems with known optimal costs) as read and mapped onto the twin.

That the twin reaches each case's optimal cost is checked by tests/experiments/test_validate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenarios.reference import load_case
from twin import SpecError

ROOT = Path(__file__).resolve().parents[2]
CASE_DIR = ROOT / "tests" / "reference_cases"
CASES = sorted(CASE_DIR.glob("case_*.json"))


def test_reference_cases_are_found():
    assert len(CASES) >= 4, f"expected the reference cases in {CASE_DIR}"


def _write(tmp_path: Path, name: str, case: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(case))
    return path


def normal_case() -> dict:
    """A valid single-stage base-stock case: normal demand 10 (sd 2), L = 1, h = 1, p = 4, with its analytic
    optimum (S* = 20 + z * 2 * sqrt(2), z the 0.8 quantile; cost (h + p) * sigma * pdf(z))."""
    return {
        "case_id": "normal_L1",
        "parameters": {"demand": {"dist": "normal", "mean": 10, "sd": 2}, "lead_time_L": 1,
                       "holding_cost_h": 1, "backorder_cost_p": 4, "unmet_demand": "backordered"},
        "optimal_policy": {"S_star": 22.38046432579998},
        "optimal_expected_cost": 3.959259447887394,
    }


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["parameters"].pop("demand"), "case.parameters.demand"),
    (lambda c: c["parameters"].update(lead_time_L=-1), "case.parameters.lead_time_L"),
    (lambda c: c["parameters"].update(lead_time_L=1.5), "lead time of stage 1"),
    (lambda c: c["parameters"].update(holding_cost_h="cheap"), "case.parameters.holding_cost_h"),
    (lambda c: c.update(optimal_policy={"nothing": 1}), "case.optimal_policy"),
    (lambda c: c.pop("optimal_expected_cost"), "case.optimal_expected_cost"),
])
def test_bad_case_values_name_the_key(tmp_path, edit, key):
    case = normal_case()
    edit(case)
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        load_case(_write(tmp_path, "bad", case))


def test_serial_mapping_shortens_only_the_customer_lane():
    case = load_case(next(p for p in CASES if "serial" in p.name))
    network = case.network()
    lanes = {n.name: n.lead_time.mean for n in network.nodes if n.kind != "supplier"}
    assert lanes == {"stage_3": 2, "stage_2": 1, "stage_1": 0}
    assert case.convention_adjustment == pytest.approx(4 * 5)  # h'_2 * mu


def test_reference_serial_mapping_sets_backorder_factors_itself():
    case = load_case(CASE_DIR / "case_serial_3stage_example_6_1.json")
    net = case.network()
    assert [(n.kind, n.backorder_factor) for n in net.nodes] == [
        ("supplier", 0.0), ("dc", 0.0), ("dc", 0.0), ("store", 1.0)]
