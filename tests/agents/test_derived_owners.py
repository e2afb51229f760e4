"""Derived quantities have one owner each: the safety factor (agents/baselines/safety.py), the env's starting
stock (agents/envs/core.py: initial_on_hand over twin/coverage.py), and the envs import no baseline module."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from agents.baselines.catalog import PolicySpec
from agents.baselines.safety import SAFETY_FACTOR, SAFETY_FACTOR_BOUNDS, read_safety_factors, safety_factors
from agents.envs.core import EnvConfig, SupplyChainSim, initial_on_hand
from twin import SpecError, network_from_dict
from twin.config import ConfigReader

ROOT = Path(__file__).resolve().parents[2]


def network(integer_units=True, mean=4.0):
    return network_from_dict({
        "name": "start",
        "demand": {"integer_units": integer_units, "weekly": [1] * 7, "yearly_amplitude": 0.0},
        "skus": {"items": [{"name": "a", "dist": "poisson", "mean": mean}, {"name": "b", "dist": "poisson",
                                                                             "mean": 0.3}]},
        "nodes": [{"name": "sup", "kind": "supplier"},
                  {"name": "dc", "kind": "dc", "parent": "sup", "lead_time": {"mean": 5}},
                  {"name": "s1", "kind": "store", "parent": "dc", "lead_time": {"mean": 2}},
                  {"name": "s2", "kind": "store", "parent": "dc", "lead_time": {"dist": "gamma", "mean": 2.5,
                                                                                 "cv": 0.2}}],
    })


def test_safety_factor_default_and_per_kind():
    assert SAFETY_FACTOR == 1.65
    low, high = SAFETY_FACTOR_BOUNDS
    assert low < 0 < SAFETY_FACTOR < high
    column = safety_factors(("supplier", "dc", "store", "store"), {"store": 2.0})
    np.testing.assert_array_equal(column, [[1.65], [1.65], [2.0], [2.0]])
    assert column.dtype == float and safety_factors(("dc",)).tolist() == [[1.65]]


def test_every_z_config_reads_with_the_same_default_and_bounds():
    low, high = SAFETY_FACTOR_BOUNDS
    assert read_safety_factors(ConfigReader({"dc": high}, "forecast_z")) == {"store": SAFETY_FACTOR, "dc": high}
    assert PolicySpec.from_dict({"name": "rop", "z": {"store": low}}).z == {"store": low, "dc": SAFETY_FACTOR}
    with pytest.raises(SpecError, match=r"forecast_z\.store: .* out of range"):
        read_safety_factors(ConfigReader({"store": high + 0.5}, "forecast_z"))
    with pytest.raises(SpecError, match=r"policy\.z\.dc: .* out of range"):
        PolicySpec.from_dict({"name": "rop", "z": {"dc": low - 0.5}})
    with pytest.raises(SpecError, match="unknown key 'supplier'"):
        read_safety_factors(ConfigReader({"supplier": 1.0}, "forecast_z"))


@pytest.mark.parametrize("integer_units", [True, False])
def test_env_starting_stock_is_initial_stock_times_demand_over_the_protection_period(integer_units):
    config = EnvConfig(network=network(integer_units), episode_days=28, review_period=3, initial_stock=2.0)
    stock = initial_on_hand(config)
    # no trend or seasonality: mean demand 4 and 0.3 per store-day, 8 and 0.6 at the DC. Protection periods
    # (review 3): DC 5 + 3 = 8 days, s1 2 + 3 = 5, s2 rint(2.5) + 3 = 5 (halves to even); x initial_stock 2
    expected = np.array([[0.0, 0.0], [8 * 16, 0.6 * 16], [4 * 10, 0.3 * 10], [4 * 10, 0.3 * 10]])
    np.testing.assert_allclose(stock, np.rint(expected) if integer_units else expected)
    np.testing.assert_array_equal(SupplyChainSim(config).initial_on_hand, stock)


def test_envs_import_no_baseline_module():
    imported = set()
    for path in (ROOT / "agents" / "envs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
            elif isinstance(node, ast.Import):
                imported.update((path.name, alias.name) for alias in node.names)
    offending = sorted(f"{name}: {module}" for name, module in imported if module.startswith("agents.baselines"))
    assert not offending
