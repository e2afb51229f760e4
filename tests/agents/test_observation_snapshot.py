"""The observation is built from a snapshot plus forecasts: equal to the env's at any decision point, and to an
independent reading of the engine's internals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.envs import EnvConfig, SupplyChainSim, action_from_dict
from agents.envs.observation import SHOCK_CLASSES, ObsInputs
from twin.coverage import protection_periods
from twin.snapshot import snapshot_from_dict
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
DAYS = 300


def engine_reading(sim: SupplyChainSim) -> np.ndarray:
    """The observation read straight from the running engine's internals (how the envs read it before
    snapshots existed): the independent reference."""
    engine, spec = sim.engine, sim.config.obs_spec
    n, k, day = engine.n_nodes, engine.n_sku, engine.day
    ages = np.zeros((n, spec.pipeline_ages, k))
    for i, shipments in enumerate(engine.shipments):
        for shipment in shipments.values():
            ages[i, min(day - shipment.dispatched, spec.pipeline_ages - 1)] += shipment.quantity
    lead_time = engine.expected_lead_times()
    active = {type(s) for s in engine.active_shocks}
    flags = np.array([float(any(issubclass(a, cls) for a in active)) for cls in SHOCK_CLASSES])
    periods = protection_periods(lead_time, sim.config.review_period)
    inputs = ObsInputs(day=day, on_hand=engine.on_hand.copy(), backorders=engine.backorders.copy(),
                       unshipped=engine.on_order.copy(), pipeline_by_age=ages,
                       forecast=sim.forecaster.over(day, periods), lead_time=lead_time,
                       nominal_lead_time=engine.topology.lead_time_mean, shock_flags=flags, profile=sim.profile,
                       spread=sim.forecaster.spread(day, periods))
    return spec.build(inputs)[sim.controlled]


@pytest.mark.parametrize("scenario", ["covid_2020", "dc_outage"])
def test_observation_from_a_snapshot_equals_the_envs_at_200_random_decision_points(scenario):
    network = network_from_dict(yaml.safe_load((ROOT / "conf/network/paper_5x20.yaml").read_text()))
    config = EnvConfig(network=network, scenario=scenario, episode_days=DAYS, granularity="node_sku",
                       action=action_from_dict({"kind": "safety_factor"}))
    sim = SupplyChainSim(config)
    rng = np.random.default_rng(0)
    points = set(rng.choice(DAYS, size=200, replace=False).tolist())
    obs = sim.reset(seed=3)
    n_actions = len(config.action.grid)
    checked, disrupted = 0, 0
    while True:
        day = sim.engine.day
        if day in points:
            snapshot = snapshot_from_dict(json.loads(json.dumps(sim.engine.snapshot().to_dict())), network)
            from_snapshot = sim.observe_snapshot(snapshot, sim.forecast(snapshot))
            np.testing.assert_array_equal(from_snapshot, obs)
            np.testing.assert_array_equal(engine_reading(sim), obs)
            checked += 1
            disrupted += bool(snapshot.disruptions)
        obs, _, done = sim.step(rng.integers(n_actions, size=obs.shape[:2]))
        if done:
            break
    assert checked == 200 and disrupted > 0  # some points fall while the scenario's shocks are in force


def test_a_snapshot_of_another_network_is_refused(tmp_path):
    small = network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))
    paper = network_from_dict(yaml.safe_load((ROOT / "conf/network/paper_5x20.yaml").read_text()))
    sim = SupplyChainSim(EnvConfig(network=paper, episode_days=10))
    other = SupplyChainSim(EnvConfig(network=small, episode_days=10))
    other.reset(seed=0)
    snapshot = other.engine.snapshot()
    with pytest.raises(Exception, match="snapshot: network .small. does not have the nodes of the policy.s network"):
        sim.observe_snapshot(snapshot, other.forecast(snapshot))


def test_a_snapshot_with_other_skus_is_refused_naming_them():
    data = yaml.safe_load((ROOT / "conf/network/small.yaml").read_text())
    small = network_from_dict(data)
    data["skus"]["items"][0]["name"] = "bread"
    renamed = network_from_dict(data)
    sim, other = SupplyChainSim(EnvConfig(network=small, episode_days=10)), SupplyChainSim(
        EnvConfig(network=renamed, episode_days=10))
    other.reset(seed=0)
    snapshot = other.engine.snapshot()
    with pytest.raises(Exception, match="does not have the SKUs of the policy's network 'small' \\('bread' where "
                                        "it has 'rice'\\)"):
        sim.observe_snapshot(snapshot, other.forecast(snapshot))
