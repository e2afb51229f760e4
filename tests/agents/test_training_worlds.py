"""Training on a distribution of worlds (agents/envs/worlds.py, `env.worlds`): draws reproducible for a seed,
held-out scenarios never drawn, the drawn world is what the env runs and observes, the env checkers still
pass, and a bad setting is one error naming its key."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test, parallel_seed_test
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

import scenarios
from agents.envs import EnvConfig, SingleNodeEnv, SupplyChainParallelEnv, SupplyChainSim, env_config_from_dict
from agents.envs.observation import SHOCK_CLASSES
from agents.envs.rllib import SupplyChainMultiAgentEnv
from agents.envs.single_node import single_node_config
from agents.envs.worlds import Range, WorldSpec, worlds_from_dict
from scenarios.reference import load_case
from twin import SpecError
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "reference_cases" / "case_base_stock_SS_example_4_4_L4.json"
DAYS = 30
SIX = ("baseline", "covid_2020", "flash_sale", "port_strike", "dc_outage", "holiday_peak")
WORLDS = {
    "scenarios": {name: 1.0 for name in SIX},
    "params": {"covid_2020": {"reroute": False}},  # the small network's DC has no backup to re-route to
    "start_day": {"low": 2, "high": 15},
    "severity": {"low": 0.5, "high": 1.5},
    "demand_profile": {"scale": {"low": 0.8, "high": 1.2}, "yearly_amplitude": {"low": 0.0, "high": 0.3}},
    "hold_out": [
        {"name": "port_strike", "lead_time_multiplier": 6.0, "outage_days": 5},  # training's: x 2..4, no outage
        {"name": "custom", "shocks": [{"type": "lead_time", "start": 5, "end": 20, "multiplier": 3.0},
                                      {"type": "demand", "start": 8, "end": 11, "multiplier": 4.0}]},
    ],
}


@pytest.fixture(scope="module")
def small():
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))


def env_config(network, worlds=None, **env):
    return env_config_from_dict({"episode_days": DAYS, "worlds": WORLDS if worlds is None else worlds, **env},
                                network)


def sequence(sim: SupplyChainSim, seed: int, episodes: int = 20) -> list[tuple]:
    """The worlds of `episodes` episodes from `seed` (reset(seed), then reset() as training does)."""
    out = []
    for i in range(episodes):
        sim.reset(seed if i == 0 else None)
        w = sim.world
        out.append((w.scenario, w.start_day, w.severity, w.demand_scale, w.yearly_amplitude))
    return out


def test_the_same_seed_draws_the_same_worlds_and_another_seed_others(small):
    cfg = env_config(small)
    first = sequence(SupplyChainSim(cfg), seed=11)
    assert sequence(SupplyChainSim(cfg), seed=11) == first
    assert sequence(SupplyChainSim(cfg), seed=12) != first
    assert len({w[0] for w in first}) >= 4  # several scenarios, not one
    for name, day, severity, scale, amplitude in first:
        assert (day is None) == (name in ("baseline",)) and (day is None or 2 <= day <= 15)
        assert (severity is None) == (name in ("baseline", "dc_outage")) and (severity is None or
                                                                             0.5 <= severity <= 1.5)
        assert 0.8 <= scale <= 1.2 and 0.0 <= amplitude <= 0.3
    # a world is a function of its episode's seed alone (whichever env runner draws it)
    sim = SupplyChainSim(cfg)
    sim.reset(seed=5)
    sim.reset()
    assert cfg.worlds.draw(sim.episode_seed) == sim.world


def test_held_out_scenarios_are_never_drawn(small):
    worlds = env_config(small, {**WORLDS, "scenarios": ["baseline", "flash_sale", "port_strike"], "params": {},
                                "hold_out": [{"name": "dc_outage"}, *WORLDS["hold_out"]]}).worlds
    drawn = [worlds.draw(seed) for seed in range(300)]
    assert {w.scenario for w in drawn} == {"baseline", "flash_sale", "port_strike"}
    strike = scenarios.SCENARIOS["port_strike"]
    held = strike.from_params({k: v for k, v in WORLDS["hold_out"][0].items() if k != "name"})
    strikes = [strike.from_params(w.params) for w in drawn if w.scenario == "port_strike"]
    assert strikes and held not in strikes
    assert all(2.0 <= s.lead_time_multiplier <= 4.0 and s.outage_days == 0 for s in strikes)


def test_the_env_runs_and_observes_the_drawn_world(small):
    """Each episode's engine has exactly the shocks scenarios.build gives for the drawn parameters and the drawn
    demand profile; the observation's shock flags are 1 exactly inside the drawn shocks' windows, and a drawn
    port strike's lead-time multiplier is today's lead time over the nominal one at the DC."""
    cfg = env_config(small, granularity="node")
    sim = SupplyChainSim(cfg)
    names = cfg.obs_spec.feature_names
    flag_at = [names.index(f"shock_{cls.__name__}") for cls in SHOCK_CLASSES]
    ratio_at = names.index("lead_time_ratio")
    zero = np.zeros((len(sim.controlled), sim.n_sku), dtype=int)
    seen = set()
    for i in range(12):
        obs = sim.reset(seed=3 if i == 0 else None)
        world, engine = sim.world, sim.engine
        expected = scenarios.build(world.scenario, small, DAYS, **dict(world.params)).shocks
        assert engine.shocks == expected
        np.testing.assert_allclose(engine.network.skus.mean, small.skus.mean * world.demand_scale)
        assert engine.network.demand.yearly_amplitude == world.yearly_amplitude
        day, done = 0, False
        while not done:  # (the final observation, at the horizon, shows a clipped shock still on)
            for cls, j in zip(SHOCK_CLASSES, flag_at):
                active = any(isinstance(s, cls) and s.start <= day < s.end for s in expected)
                assert obs[0, 0, j] == float(active), (world, day, cls.__name__)
                if active:
                    seen.add(cls.__name__)
            if world.scenario == "port_strike" and expected[0].start <= day < expected[0].end:
                assert obs[0, 0, ratio_at] == pytest.approx(world.params["lead_time_multiplier"], rel=1e-6)
            obs, _, done = sim.step(zero)
            day += 1
    assert {"DemandShock", "LeadTimeShock", "DcClosure"} <= seen  # the flags were checked while on


@pytest.mark.parametrize("granularity", ["node", "node_sku"])
def test_the_pettingzoo_and_rllib_checkers_pass_with_worlds(small, granularity):
    cfg = env_config(small, granularity=granularity)
    parallel_api_test(SupplyChainParallelEnv(cfg), num_cycles=40)
    parallel_seed_test(lambda: SupplyChainParallelEnv(cfg))
    check_multiagent_environments(SupplyChainMultiAgentEnv({"env": cfg}))


def test_gymnasiums_checker_passes_with_worlds():
    worlds = WorldSpec(scenarios=("baseline", "flash_sale", "port_strike"), weights=(1.0, 1.0, 2.0),
                       start_day=Range(0, 200), severity=Range(0.5, 1.5), demand_scale=Range(0.8, 1.2))
    env = SingleNodeEnv(replace(single_node_config(load_case(CASE)), worlds=worlds))
    check_env(env)
    env.reset(seed=4)
    assert env.sim.world.scenario in ("baseline", "flash_sale", "port_strike")


def with_worlds(**change):
    return {**WORLDS, **change}


@pytest.mark.parametrize("worlds, message", [
    (with_worlds(scenarios=["baseline", "alien_invasion"]), "env.worlds.scenarios: 'alien_invasion' is not allowed"),
    (with_worlds(scenarios=[]), "env.worlds.scenarios: empty"),
    (with_worlds(scenarios={"baseline": -1}), "env.worlds.scenarios.baseline: -1 is out of range"),
    (with_worlds(scenarios="baseline"), "env.worlds.scenarios: required"),
    (with_worlds(start_day={"low": 20, "high": 10}), "env.worlds.start_day: low 20 > high 10"),
    (with_worlds(start_day={"low": 0, "high": DAYS}), "env.worlds.start_day: [0, 30] is out of range"),
    (with_worlds(start_day={"low": 0}), "env.worlds.start_day.high: required"),
    (with_worlds(severity={"low": 1.5, "high": 0.5}), "env.worlds.severity: low 1.5 > high 0.5"),
    (with_worlds(severity={"low": 0.5, "high": 4.0}), "env.worlds.severity.high: scenario 'covid_2020' cannot run"),
    (with_worlds(demand_profile={"scale": {"low": 0, "high": 1}}), "env.worlds.demand_profile.scale"),
    (with_worlds(demand_profile={"trend": {"low": 0, "high": 1}}), "env.worlds.demand_profile: unknown key 'trend'"),
    (with_worlds(params={"covid_2020": {"reroute": False}, "flash_sale": {"start_day": 3}}),
     "env.worlds.params.flash_sale.start_day: drawn from env.worlds.start_day"),
    (with_worlds(params={"covid_2020": {"reroute": False}, "dc_outage": {"days": 0}}),
     "env.worlds.params.dc_outage: scenario.days"),
    (with_worlds(params={"covid_2020": {"reroute": False}, "custom": {}}), "env.worlds.params.custom: not a scenario"),
    (with_worlds(hold_out=[{"name": "baseline"}]),
     "env.worlds.hold_out[0]: scenario 'baseline' with these parameters is also a training world"),
    (with_worlds(hold_out=[{"name": "flash_sale", "start_day": 5}]),
     "env.worlds.hold_out[0]: scenario 'flash_sale' with these parameters is also a training world"),
    (with_worlds(hold_out=[{"name": "port_strike", "lead_time_multiplier": 3.5, "start_day": 9}]),
     "env.worlds.hold_out[0]: scenario 'port_strike' with these parameters is also a training world"),
    (with_worlds(hold_out=[{"multiplier": 2.0}]), "env.worlds.hold_out[0].name: required"),
    (with_worlds(hold_out=[{"name": "flash_sale", "start_day": 40, "days": 0}]),
     "env.worlds.hold_out[0]: scenario.days"),
    (with_worlds(seasons=4), "env.worlds: unknown key 'seasons'"),
])
def test_a_bad_worlds_setting_is_one_error_naming_its_key(small, worlds, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        env_config(small, worlds)


def test_no_worlds_is_the_fixed_scenario(small):
    assert worlds_from_dict(None) is None
    sim = SupplyChainSim(env_config_from_dict({"episode_days": DAYS}, small, {"name": "flash_sale", "start_day": 3}))
    sim.reset(seed=0)
    assert sim.world is None and sim.engine.shocks == sim.shocks and sim.shocks[0].start == 3


def test_an_env_config_built_directly_checks_its_worlds(small):
    with pytest.raises(SpecError, match="env.worlds.start_day"):
        EnvConfig(network=small, episode_days=DAYS,
                  worlds=WorldSpec(scenarios=("flash_sale",), weights=(1.0,), start_day=Range(5, 1)))
