"""The RL environments: API conformance (PettingZoo, Gymnasium, RLlib), observation, actions, rewards, seeds.

These run without starting Ray. Training itself is in test_rl_training.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test, parallel_seed_test
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from agents.baselines.forecast_policy import ForecastBaseStock
from agents.envs import (
    ENV_ID,
    EnvConfig,
    ObsSpec,
    OrderDaysOfDemand,
    OrderUnits,
    OrderUpTo,
    SafetyFactor,
    SingleNodeEnv,
    SupplyChainParallelEnv,
    SupplyChainSim,
    action_from_dict,
    env_config_from_dict,
)
from agents.envs.rllib import SupplyChainMultiAgentEnv
from agents.forecasting import OracleForecaster
from twin import Engine, SpecError
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "reference_cases"
CASE = REFERENCE / "case_base_stock_SS_example_4_4_L4.json"


@pytest.fixture(scope="module")
def small():
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))


@pytest.fixture(scope="module")
def paper():
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/paper_5x20.yaml").read_text()))


def config(network, **kw) -> EnvConfig:
    return EnvConfig(network=network, **{"episode_days": 30, **kw})


# ---------------------------------------------------------------- API conformance

@pytest.mark.parametrize("granularity", ["node", "node_sku"])
def test_parallel_env_passes_the_pettingzoo_api_and_seed_tests(small, granularity):
    cfg = config(small, granularity=granularity, scenario="flash_sale")
    parallel_api_test(SupplyChainParallelEnv(cfg), num_cycles=40)
    parallel_seed_test(lambda: SupplyChainParallelEnv(cfg))


@pytest.mark.parametrize("granularity", ["node", "node_sku"])
def test_rllib_adapter_passes_rllibs_env_check(small, granularity):
    check_multiagent_environments(SupplyChainMultiAgentEnv({"env": config(small, granularity=granularity)}))


def test_single_node_env_passes_gymnasiums_checker_and_is_registered():
    env = gym.make(ENV_ID, case=str(CASE))
    check_env(env.unwrapped)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info["episode_seed"] == 3
    assert ENV_ID.endswith("-v0")


def test_agent_ids_are_stable_node_names_and_roles_map_policies(paper):
    env = SupplyChainParallelEnv(config(paper))
    assert len(env.possible_agents) == 25
    assert {env.role(a) for a in env.possible_agents} == {"store", "dc"}
    assert "store_07" in env.possible_agents and "dc_2" in env.possible_agents
    assert env.action_space("store_07").shape == (paper.skus.n,)
    assert env.observation_space("store_07").shape == (paper.skus.n, ObsSpec().n_features)
    # spaces are built once and shared
    assert env.observation_space("store_07") is env.observation_space("dc_0")
    per_sku = SupplyChainParallelEnv(config(paper, granularity="node_sku"))
    assert len(per_sku.possible_agents) == 25 * paper.skus.n
    assert per_sku.role(per_sku.possible_agents[0]) in ("store", "dc")


def test_single_node_env_rejects_a_network(small):
    with pytest.raises(SpecError, match="exactly 1 x 1"):
        SingleNodeEnv(config=config(small))


# ---------------------------------------------------------------- observation

def test_observation_features_read_the_engine(small):
    sim = SupplyChainSim(config(small))
    sim.reset(seed=1)
    for _ in range(6):
        obs, _, _ = sim.step(np.full((3, 3), 12))
    spec, engine = sim.config.obs_spec, sim.engine
    names = spec.feature_names
    assert obs.shape == (3, 3, spec.n_features) and obs.dtype == np.float32
    c = sim.controlled
    scale = sim.scale[c]
    np.testing.assert_allclose(obs[:, :, names.index("on_hand")], engine.on_hand[c] / scale, rtol=1e-5)
    np.testing.assert_allclose(obs[:, :, names.index("backorders")], engine.backorders[c] / scale, rtol=1e-5)
    pipeline = sum(obs[:, :, names.index(f"pipeline_age_{a}")] for a in range(spec.pipeline_ages))
    np.testing.assert_allclose(pipeline, engine.in_transit[c] / scale, rtol=1e-4, atol=1e-5)
    position = engine.on_hand + engine.in_transit + engine.on_order - engine.backorders
    np.testing.assert_allclose(obs[:, :, names.index("inventory_position")], position[c] / scale, rtol=1e-4,
                               atol=1e-5)
    assert obs[0, 0, names.index("lead_time_days")] == pytest.approx(0.5)  # the DC's lane: 5 days / 10
    # static profile: a store's critical ratio is b / (b + h) of the SKU; the DC's backorders cost nothing
    b, h = engine.rates.backorder[2], engine.rates.holding[2]
    np.testing.assert_allclose(obs[1, :, names.index("critical_ratio")], b / (b + h), rtol=1e-5)
    assert (obs[0, :, names.index("critical_ratio")] == 0).all()
    assert (obs[:, :, names.index("demand_cv")] > 0).all()


def test_shock_flags_switch_on_inside_the_shock_window(small):
    sim = SupplyChainSim(config(small, scenario="flash_sale", scenario_params={"start_day": 5, "days": 3},
                                episode_days=12))
    flag = sim.config.obs_spec.feature_names.index("shock_DemandShock")
    flags = [sim.reset(seed=0)[0, 0, flag]]
    done = False
    while not done:
        obs, _, done = sim.step(np.zeros((3, 3), dtype=int))
        flags.append(obs[0, 0, flag])
    assert flags[:5] == [0] * 5 and flags[5:8] == [1] * 3 and flags[8] == 0


def test_oracle_forecast_is_the_demand_models_mean(small):
    engine = Engine(small, horizon=40, seed=4)
    oracle = OracleForecaster()
    oracle.attach(engine)
    periods = np.array([0, 3, 2, 2])  # supplier, dc, store, store
    got = oracle.over(10, periods)
    store = engine.demand_model.mean_matrix("store_0")[10:12].sum(axis=0)
    np.testing.assert_allclose(got[2], store, rtol=1e-5)
    both = sum(engine.demand_model.mean_matrix(s)[10:13].sum(axis=0) for s in ("store_0", "store_1"))
    np.testing.assert_allclose(got[1], both, rtol=1e-5)  # a DC forecasts the demand of the stores below it
    assert (oracle.over(39, periods)[2] > 0).all()  # past the horizon: the run's average, not zero


# ---------------------------------------------------------------- actions and rewards

def test_action_maps_turn_choices_into_orders():
    position, forecast, scale = np.array([10.0, 50.0]), np.array([40.0, 40.0]), np.array([8.0, 8.0])
    up_to = OrderUpTo(grid=(0.5, 1.0, 1.5))
    np.testing.assert_allclose(up_to.orders(np.array([2, 1]), position, forecast, scale), [50.0, 0.0])
    days = OrderDaysOfDemand(grid=(0.0, 2.0))
    np.testing.assert_allclose(days.orders(np.array([1, 0]), position, forecast, scale), [16.0, 0.0])
    units = OrderUnits(grid=(0, 20, 40))
    np.testing.assert_allclose(units.orders(np.array([2, 1]), position, forecast, scale), [40.0, 20.0])
    grid = action_from_dict({"kind": "units", "grid": {"start": 0, "stop": 100, "step": 20}})
    assert grid.grid == (0, 20, 40, 60, 80, 100)
    safety = SafetyFactor(grid=(0.0, 1.0, 2.0))
    spread = np.array([5.0, 5.0])
    np.testing.assert_allclose(safety.orders(np.array([2, 1]), position, forecast, scale, spread), [40.0, 0.0])
    with pytest.raises(ValueError, match="spread"):
        safety.orders(np.array([0, 0]), position, forecast, scale)


def test_a_constant_safety_factor_is_the_forecast_driven_base_stock(small):
    """SafetyFactor's grid value z held constant orders exactly what ForecastBaseStock with that z orders,
    also while a lead-time shock lengthens the protection period (both read today's expected lead time)."""
    cfg = config(small, episode_days=40, action=action_from_dict({"kind": "safety_factor", "grid": [0.0, 1.5]}),
                 scenario="port_strike", scenario_params={"start_day": 10, "days": 15})
    sim = SupplyChainSim(cfg)
    sim.reset(seed=4)
    done, env_cost = False, 0.0
    while not done:
        _, cost, done = sim.step(np.ones((3, 3), dtype=int))
        env_cost += cost.sum()
    engine = Engine(small, horizon=40, seed=sim.episode_seed, invariants="off", initial_on_hand=sim.initial_on_hand,
                    shocks=sim.shocks)
    policy = ForecastBaseStock(OracleForecaster(), z={"dc": 1.5, "store": 1.5})
    policy.attach(engine)
    result = engine.run(policy)
    assert env_cost > 0
    assert env_cost == pytest.approx(result.kpis["network"]["cost_total"], rel=1e-9)


def test_a_profile_safety_factor_is_the_static_base_stock_and_two_are_the_shock_aware_one(small):
    """ProfileSafetyFactor's z held constant orders exactly what the static BaseStock with that z orders (its levels
    do not follow the forecast or today's lead time), and z chosen by whether a disruption is in force orders what
    ShockAwareBaseStock does: the family holds both baselines."""
    from agents.baselines.policies import BaseStock, ShockAwareBaseStock
    from twin.stats import DemandStats

    cfg = config(small, episode_days=60, action=action_from_dict({"kind": "profile_safety_factor",
                                                                  "grid": [0.0, 1.5, 4.0]}),
                 scenario="port_strike", scenario_params={"start_day": 10, "days": 25}, forecaster="seasonal_naive")
    stats = DemandStats.of(small, 60, seed=0)
    calm, disrupted = {"dc": 1.5, "store": 1.5}, {"dc": 4.0, "store": 4.0}
    for name, policy, choose in [
        ("static", BaseStock.from_stats(stats, calm), lambda sim: 1),
        ("shock-aware", ShockAwareBaseStock.from_stats(stats, calm, disrupted),
         lambda sim: 2 if sim.engine.snapshot().disruptions else 1),
    ]:
        sim = SupplyChainSim(cfg)
        sim.reset(seed=4)
        done, env_cost, raised = False, 0.0, 0
        while not done:
            action = choose(sim)
            raised += action == 2
            _, cost, done = sim.step(np.full((3, 3), action, dtype=int))
            env_cost += cost.sum()
        engine = Engine(small, horizon=60, seed=sim.episode_seed, invariants="off",
                        initial_on_hand=sim.initial_on_hand, shocks=sim.shocks)
        result = engine.run(policy)
        assert env_cost > 0, name
        assert env_cost == pytest.approx(result.kpis["network"]["cost_total"], rel=1e-9), name
        assert raised == (25 if name == "shock-aware" else 0)


def test_a_profile_anchored_action_needs_no_forecast_spread():
    from agents.envs.actions import ProfileSafetyFactor, anchor_for
    from agents.forecasting.live import DemandForecast

    action = ProfileSafetyFactor(grid=(0.0, 2.0))
    assert not action.needs_spread and action.anchor == "profile"
    forecast = DemandForecast(mean=np.array([[40.0]]))
    profile = DemandForecast(mean=np.array([[30.0]]), spread=np.array([[5.0]]))
    anchor = anchor_for(action, forecast, profile)
    assert anchor is profile
    np.testing.assert_allclose(action.orders(np.array([[1]]), np.array([[10.0]]), anchor.mean, np.ones((1, 1)),
                                             anchor.spread), [[30.0]])  # 30 + 2 x 5 - 10
    assert anchor_for(SafetyFactor(grid=(1.0,)), forecast, profile) is forecast


@pytest.mark.parametrize("bad, match", [
    ({"kind": "order_up_to", "grid": []}, "env.action.grid: empty"),
    ({"kind": "magic"}, "env.action.kind: 'magic'"),
    ({"kind": "units", "grid": [-5, 10]}, "env.action.grid"),
    ({"kind": "units", "grid": {"start": 0, "stop": 10}}, "env.action.grid"),
    ({"kind": "units", "grid": {"start": 0, "stop": 10, "step": 0}}, "env.action.grid.step"),
    ({"kind": "units", "size": 3}, "env.action: unknown key"),
])
def test_bad_action_configs_name_the_key(bad, match):
    with pytest.raises(SpecError, match=match):
        action_from_dict(bad)


@pytest.mark.parametrize("bad, match", [
    ({"granularity": "region"}, "env.granularity"),
    ({"cooperative_weight": 1.5}, "env.cooperative_weight"),
    ({"forecaster": "crystal_ball"}, "env.forecaster"),
    ({"episode_length": 10}, "episode_length"),
    ({"cost_weights": {"ordering": -1}}, "env.cost_weights.ordering"),
    ({"cost_weights": {"transport": 1}}, "env.cost_weights"),
    ({"downstream_shortage_weight": 2}, "env.downstream_shortage_weight"),
])
def test_bad_env_configs_name_the_key(small, bad, match):
    with pytest.raises(SpecError, match=match):
        env_config_from_dict(bad, small)


def test_an_unknown_scenario_fails_when_the_env_is_configured(small):
    with pytest.raises(SpecError, match="scenario"):
        env_config_from_dict({}, small, {"name": "alien_invasion"})


def test_rewards_are_own_cost_or_the_networks_by_cooperative_weight(small):
    cost = np.array([4.0, 1.0, 3.0])
    own = SupplyChainSim(config(small, cooperative_weight=0.0))
    np.testing.assert_allclose(own.rewards(cost), -cost / own.cost_scale.sum(axis=1))
    team = SupplyChainSim(config(small, cooperative_weight=1.0))
    rewards = team.rewards(cost)
    assert np.allclose(rewards, rewards[0]) and rewards[0] == pytest.approx(-8.0 / team.cost_scale.sum())


def test_episode_costs_are_the_twins_costs(small):
    """Summed env costs equal the engine's own cost total: the env adds nothing and drops nothing."""
    for granularity in ("node", "node_sku"):
        sim = SupplyChainSim(config(small, granularity=granularity, episode_days=20))
        sim.reset(seed=2)
        total, done = 0.0, False
        while not done:
            _, cost, done = sim.step(np.full((3, 3), 10))
            total += cost.sum()
        assert total == pytest.approx(sim.engine.result().kpis["network"]["cost_total"], rel=1e-9)


def test_cost_weights_change_the_rewards_not_the_costs(small):
    """ordering: 0 rewards minus holding + shortage only; the reported costs stay the twin's full cost."""
    for granularity in ("node", "node_sku"):
        weights = env_config_from_dict({"cost_weights": {"ordering": 0.0}, "granularity": granularity}, small)
        full, partial = SupplyChainSim(config(small, granularity=granularity)), SupplyChainSim(
            replace(weights, episode_days=30))
        for sim in (full, partial):
            sim.reset(seed=3)
        for _ in range(10):
            _, cost_full, _ = full.step(np.full((3, 3), 12))
            _, cost_partial, _ = partial.step(np.full((3, 3), 12))
            np.testing.assert_allclose(cost_partial, cost_full)
            np.testing.assert_allclose(full.objective, cost_full)
            parts = partial.engine.day_sku_costs if granularity == "node_sku" else partial.engine.day_costs
            ordering = parts["ordering"][partial.controlled]
            np.testing.assert_allclose(partial.objective, cost_partial - ordering)
        assert ordering.sum() > 0  # the check above could fail: orders were placed


def test_a_dc_can_carry_the_shortage_cost_of_its_stores(small):
    """downstream_shortage_weight: the DC's objective adds that share of its stores' backorder cost; stores'
    objectives are unchanged."""
    for granularity in ("node", "node_sku"):
        plain = SupplyChainSim(config(small, granularity=granularity))
        shared = SupplyChainSim(config(small, granularity=granularity, downstream_shortage_weight=0.5))
        assert [shared.node_names[i] for i in np.flatnonzero(shared.stores_below.any(axis=1))] == ["dc_0"]
        for sim in (plain, shared):
            sim.reset(seed=5)
        seen = 0.0
        for _ in range(15):
            plain.step(np.full((3, 3), 1))  # order little: stores run short
            shared.step(np.full((3, 3), 1))
            parts = shared.engine.day_sku_costs if granularity == "node_sku" else shared.engine.day_costs
            store_shortage = (parts["backorder"] + parts["lost_sale"])[shared.topology.is_store].sum(axis=0)
            dc = shared.node_names.index("dc_0")
            np.testing.assert_allclose(shared.objective[dc] - plain.objective[dc], 0.5 * store_shortage)
            others = [i for i in range(len(shared.node_names)) if i != dc]
            np.testing.assert_allclose(shared.objective[others], plain.objective[others])
            seen += store_shortage.sum()
        assert seen > 0  # stores did run short, so the check above could fail


# ---------------------------------------------------------------- seeds and parity

def test_same_seed_same_episode_and_new_seeds_without_one(small):
    def episode(env, seed):
        obs, _ = env.reset(seed=seed)
        rows = [np.stack(list(obs.values()))]
        while env.agents:
            actions = {a: env.action_space(a).sample() * 0 + 7 for a in env.agents}
            obs, rewards, *_ = env.step(actions)
            rows.append(np.stack(list(obs.values())))
        return np.stack(rows)

    env = SupplyChainParallelEnv(config(small, episode_days=15))
    first, again = episode(env, 5), episode(env, 5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, episode(env, None))  # the next episode draws a new seed from the stream


def test_an_attached_engine_sees_what_the_env_sees(small):
    """Evaluation drives an engine built outside the env: same seed and actions give the same run."""
    cfg = config(small, episode_days=25)
    sim = SupplyChainSim(cfg)
    sim.reset(seed=9)
    done = False
    while not done:
        _, _, done = sim.step(np.full((3, 3), 12))
    trained_path = sim.engine.result().kpis

    other = SupplyChainSim(cfg)
    engine = Engine(small, horizon=25, seed=9, invariants="off", initial_on_hand=other.initial_on_hand)
    other.attach(engine)
    while not engine.done:
        other.observe()
        engine.step(other.orders(np.full((3, 3), 12)))
    assert engine.result().kpis == trained_path


def test_attach_rejects_another_network(small, paper):
    sim = SupplyChainSim(config(small))
    with pytest.raises(SpecError, match="network"):
        sim.attach(Engine(paper, horizon=5, seed=0))


def test_review_period_steps_several_days(small):
    sim = SupplyChainSim(replace(config(small), review_period=7, episode_days=21))
    sim.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, done = sim.step(np.full((3, 3), 10))
        steps += 1
    assert steps == 3 and sim.engine.day == 21
