"""Warm start by behaviour cloning (agents/rl/warm_start.py): the teacher's actions, its demonstrations on the SKU
vector env, fitting a PPO module to them, and the settings' errors. tests/experiments/test_train_warm_start.py
trains with it end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.envs import EnvConfig, action_from_dict
from agents.envs.vector import SkuVectorEnv
from agents.rl.warm_start import WarmStart, demonstrations, fit_module
from twin import SpecError
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
GRID = (0.0, 1.5, 4.0, 6.0)


@pytest.fixture(scope="module")
def small():
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))


def strike_env(network) -> SkuVectorEnv:
    config = EnvConfig(network=network, episode_days=60, granularity="node_sku", downstream_shortage_weight=1.0,
                       action=action_from_dict({"kind": "profile_safety_factor", "grid": list(GRID)}),
                       scenario="port_strike", scenario_params={"start_day": 10, "days": 25})
    return SkuVectorEnv(config, twins=1)


TEACHER = {"enabled": True, "calm": {"store": 1.5, "dc": 4.0}, "disrupted": {"store": 4.0, "dc": 6.0}}


def test_the_teacher_picks_its_grid_value_per_role_and_disruption():
    warm = WarmStart.from_dict(TEACHER, GRID)
    is_store = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(warm.actions(GRID, is_store, disrupted=False), [2, 2, 1, 1])
    np.testing.assert_array_equal(warm.actions(GRID, is_store, disrupted=True), [3, 3, 2, 2])


def test_demonstrations_follow_the_disruptions_in_force_and_discount_the_rewards(small):
    """The teacher raises its values exactly on the strike's 25 days; each return is the reward plus gamma x the
    next step's return, and the last step's return is its reward."""
    env = strike_env(small)
    warm = WarmStart.from_dict(TEACHER, GRID)
    data = demonstrations(env, warm, episodes=1, seed=3, gamma=0.9)
    pairs = env.pairs
    actions = data.actions.reshape(60, pairs)
    disrupted_days = (actions[:, 0] == 3).sum()  # pair 0 is the DC's first SKU
    assert disrupted_days == 25 and data.disrupted_share == pytest.approx(25 / 60)
    assert set(actions[actions[:, 0] == 3][:, -1]) == {2}  # a store's pair while disrupted: 4.0
    assert data.observations.shape == (60 * pairs, env.single_observation_space.shape[0])
    # the same episode stepped again with the teacher's actions gives the rewards
    env.reset(seed=3)
    rewards = []
    for t in range(60):
        rewards.append(env.step(actions[t])[1])
    rewards = np.array(rewards)
    returns = data.returns.reshape(60, pairs)
    np.testing.assert_allclose(returns[-1], rewards[-1], rtol=1e-5)
    np.testing.assert_allclose(returns[:-1], rewards[:-1] + 0.9 * returns[1:], rtol=1e-4, atol=1e-3)


def ppo_module(features: int, actions: int):
    from gymnasium import spaces
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    return RLModuleSpec(module_class=DefaultPPOTorchRLModule,
                        observation_space=spaces.Box(-10, 10, (features,), np.float32),
                        action_space=spaces.Discrete(actions),
                        model_config=DefaultModelConfig(fcnet_hiddens=[32, 32], fcnet_activation="tanh",
                                                        vf_share_layers=False)).build()


def test_the_fitted_module_acts_as_the_teacher_and_values_in_the_returns_units():
    """A rule on the observation (action 3 where feature 0 is positive, else 1) and returns in the thousands: the
    module's greedy actions follow the rule, and its value head, in raw units, tracks the returns (the
    standardised head folded back)."""
    import torch
    from ray.rllib.core.columns import Columns

    from agents.rl.warm_start import Demonstrations

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(6000, 5)).astype(np.float32)
    actions = np.where(obs[:, 0] > 0, 3, 1)
    returns = (-3000.0 + 800.0 * np.tanh(obs[:, 1])).astype(np.float32)
    module = ppo_module(5, 4)
    warm = WarmStart({"store": 0.0, "dc": 0.0}, {"store": 0.0, "dc": 0.0}, epochs=40, lr=3e-3, minibatch_size=512)
    stats = fit_module(module, Demonstrations(obs, actions, returns, 0.0), warm, seed=0)
    assert stats["agreement"] > 0.97 and stats["value_r2"] > 0.9
    test = rng.normal(size=(2000, 5)).astype(np.float32)
    with torch.no_grad():
        batch = {Columns.OBS: torch.as_tensor(test)}
        probs = torch.softmax(module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS], -1).numpy()
        values = module.compute_values(batch).numpy()
    teacher = np.where(test[:, 0] > 0, 3, 1)
    assert (probs.argmax(-1) == teacher).mean() > 0.95
    # smoothed targets (0.1 spread over the 4 actions): about 0.925 on the teacher's action, not 1
    assert 0.85 < probs[np.arange(len(test)), teacher].mean() < 0.97
    truth = -3000.0 + 800.0 * np.tanh(test[:, 1])
    assert np.abs(values - truth).mean() < 0.15 * truth.std()


@pytest.mark.parametrize("change, match", [
    ({"calm": {"store": 2.0, "dc": 4.0}}, r"warm_start.calm.store: 2 is not allowed; allowed: one of the action "
                                          r"grid's values \[0, 1.5, 4, 6\]"),
    ({"disrupted": {"store": 4.0}}, r"warm_start.disrupted.dc: missing"),
    ({"episodes": 0}, r"warm_start.episodes"),
    ({"label_smoothing": 1.0}, r"warm_start.label_smoothing"),
    ({"teacher": "base_stock"}, r"warm_start: unknown key .teacher."),
])
def test_bad_warm_start_settings_name_their_key(change, match):
    with pytest.raises(SpecError, match=match):
        WarmStart.from_dict({**TEACHER, **change}, GRID)


def test_a_warm_start_not_enabled_is_none():
    assert WarmStart.from_dict({"enabled": False, "calm": {"store": None, "dc": None}}, GRID) is None
    assert WarmStart.from_dict(None, GRID) is None


def test_a_second_episode_is_the_next_seeds_and_the_flags_match_the_observation(small):
    """With two episodes the second is the episode of seed + 1 (no autoreset step recorded between them), and the
    teacher's disrupted days are those whose observation shows a shock flag."""
    env = strike_env(small)
    warm = WarmStart.from_dict(TEACHER, GRID)
    two = demonstrations(env, warm, episodes=2, seed=3, gamma=0.9)
    second = demonstrations(strike_env(small), warm, episodes=1, seed=4, gamma=0.9)
    rows = len(second.actions)
    assert len(two.actions) == 2 * rows
    np.testing.assert_array_equal(two.observations[rows:], second.observations)
    np.testing.assert_allclose(two.returns[rows:], second.returns)
    names = env.config.obs_spec.feature_names
    flags = [i for i, name in enumerate(names) if name.startswith("shock_")]
    shown = two.observations[:, flags].max(axis=1) > 0
    disrupted_action = np.where(env.roles.reshape(-1) > 0, 2, 3)  # per pair: a store's 4.0, a DC's 6.0
    raised = two.actions == np.tile(disrupted_action, len(two.actions) // env.pairs)
    np.testing.assert_array_equal(shown, raised)


SYNC_SCRIPT = """
import numpy as np, yaml, ray, torch
from agents.envs import EnvConfig, action_from_dict
from agents.rl.algorithms import PPOAgent, Resources, TrainingSetup
from agents.rl.warm_start import WarmStart, warm_start
from twin.spec import network_from_dict

small = network_from_dict(yaml.safe_load(open("conf/network/small.yaml").read()))
env = EnvConfig(network=small, episode_days=30, granularity="node_sku",
                action=action_from_dict({"kind": "profile_safety_factor", "grid": [0.0, 1.5, 4.0, 6.0]}),
                scenario="port_strike", scenario_params={"start_day": 5, "days": 10})
setup = TrainingSetup.network(env, sku_batched=True)
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
algo = PPOAgent(train_batch_size=30, minibatch_size=30).algorithm_config(setup, Resources(), seed=0).build_algo()
before = {k: v.clone() for k, v in algo.env_runner.module.state_dict().items()}
warm = WarmStart({"store": 1.5, "dc": 4.0}, {"store": 4.0, "dc": 6.0}, episodes=1, epochs=3)
stats = warm_start(algo, setup, warm, seed=0, gamma=0.99)
learner = algo.learner_group.get_weights()["default_policy"]
runner = algo.env_runner.module.state_dict()
moved = any(not torch.equal(before[k], runner[k]) for k in runner)
same = all(np.allclose(np.asarray(learner[k]), runner[k].numpy()) for k in runner)
print("SYNC", moved, same, sorted(stats))
algo.stop(); ray.shutdown()
"""


def test_the_env_runner_samples_with_the_clone():
    """After the warm start the env runner that samples (the driver's, with no remote runners) holds the
    learner's new weights, not its initial ones."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SYNC_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("SYNC"))
    assert line.startswith("SYNC True True"), line
    assert "agreement" in line and "value_r2" in line
