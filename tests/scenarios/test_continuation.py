"""Exact continuation from a snapshot under every named scenario, on the paper's network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scenarios
from twin.testing import OrderUpTo, check_continuation

CONF = Path(__file__).resolve().parents[2] / "conf"
HORIZON = 365
EXAMPLE = CONF.parent / "examples" / "scenario_covid_dates.yaml"  # the scenario file conf/scenario/file.yaml names



def order_up_to(network):
    """Levels of about a week of mean demand at stores and three weeks at DCs."""
    mean = network.skus.mean
    stores = [n for n in network.nodes if n.kind == "store"]
    levels = np.zeros((len(network.nodes), network.skus.n))
    for i, node in enumerate(network.nodes):
        if node.kind == "store":
            levels[i] = 7 * mean * node.demand_scale
        elif node.kind == "dc":
            served = sum(s.demand_scale for s in stores if s.parent == node.name)
            levels[i] = 21 * mean * served
    return lambda: OrderUpTo(levels)


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS.names))
def test_every_scenario_continues_exactly_from_a_snapshot_inside_its_shocks(paper, name):
    params = {"custom": {"shocks": [{"type": "demand", "start": 60, "end": 90, "multiplier": 1.8}]},
              "file": {"path": str(EXAMPLE)}}.get(name, {})
    scenario = scenarios.build(name, paper, horizon=HORIZON, **params)
    first = min(scenario.shocks, key=lambda s: s.start, default=None)
    day = (first.start + first.end) // 2 if first else 150  # inside the first shock's window, where one exists
    snapshot = check_continuation(paper, order_up_to(paper), HORIZON, seed=11, day=day, shocks=scenario.shocks)
    if first:
        assert snapshot.disruptions, f"{name}: the snapshot should be taken while a shock is in force"
    assert snapshot.shipments and snapshot.day == day
