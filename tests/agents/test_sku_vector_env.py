"""SKU-batched sampling: the (node, SKU) pairs of a twin as one Gymnasium VectorEnv (agents/envs/vector.py) and the
env runner that samples it in batch (agents/rl/sku_runner.py).

Gymnasium 1.2 has a checker for single environments only (`gymnasium.utils.env_checker.check_env`), so the
VectorEnv contract is checked here with Gymnasium's own space utilities; RLlib's side is checked by running the
env through RLlib's stock SingleAgentEnvRunner, which must give exactly what the batched runner gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from agents.envs import EnvConfig, SupplyChainParallelEnv, action_from_dict
from agents.envs.rllib import SkuBatchedVectorEnv
from agents.envs.vector import SkuVectorEnv
from agents.rl.algorithms import PPOAgent, Resources, TrainingSetup
from twin import SpecError
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
DAYS = 20


@pytest.fixture(scope="module")
def small():
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))


def config(network, **kw) -> EnvConfig:
    settings = {"episode_days": DAYS, "granularity": "node_sku", "cooperative_weight": 0.0,
                "downstream_shortage_weight": 1.0,
                "action": action_from_dict({"kind": "safety_factor", "grid": {"start": 0.0, "stop": 6.0, "step": 0.5}}),
                **kw}
    return EnvConfig(network=network, **settings)


def cost_total(engine) -> float:
    return engine.result().kpis["network"]["cost_total"]


def random_actions(days: int, agents: int, choices: int, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(choices, size=(days, agents))


def test_the_vector_env_keeps_gymnasiums_vector_contract(small):
    env = SkuVectorEnv(config(small), twins=2)
    par = SupplyChainParallelEnv(config(small))
    assert env.pairs == len(par.possible_agents) and env.num_envs == 2 * env.pairs
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.observation_space == batch_space(env.single_observation_space, env.num_envs)
    assert env.action_space == batch_space(env.single_action_space, env.num_envs)
    assert env.single_observation_space.shape == (config(small).obs_spec.n_features + 1,)
    obs, infos = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    again, _ = SkuVectorEnv(config(small), twins=2).reset(seed=3)
    assert data_equivalence(obs, again)  # a seed fixes the episode
    # the role feature: 1 for a store's pairs, 0 for a DC's, in the node_sku agents' order
    roles = np.array([par.role(a) == "store" for a in par.possible_agents], dtype=np.float32)
    np.testing.assert_array_equal(obs[:, -1], np.tile(roles, 2))
    # twin k of 2 starts from episode seed 3 x 2 + k: envs seeded 3 and 4 (two env runners) share no twin's stream
    assert set(infos["episode_seed"][:env.pairs]) == {6} and set(infos["episode_seed"][env.pairs:]) == {7}
    actions = random_actions(DAYS, env.num_envs, env.single_action_space.n)
    for day in range(DAYS):
        obs, rewards, terminated, truncated, _ = env.step(actions[day])
        assert env.observation_space.contains(obs) and rewards.shape == (env.num_envs,)
        assert not terminated.any() and truncated.all() == (day == DAYS - 1) and truncated.any() == truncated.all()
    # next-step autoreset: the step after the last one starts new episodes, with no reward, and ignores its actions
    obs, rewards, terminated, truncated, infos = env.step(actions[0])
    assert not rewards.any() and not terminated.any() and not truncated.any()
    assert env.observation_space.contains(obs) and not set(infos["episode_seed"]) & {6, 7}


def test_the_vector_env_gives_the_multi_agent_envs_costs_and_rewards_on_the_same_seed(small):
    """Twin k of 2 of the vector env with seed s is the node_sku multi-agent env with seed 2s + k, pair for pair."""
    env = SkuVectorEnv(config(small), twins=2)
    env.reset(seed=11)
    singles = [SupplyChainParallelEnv(config(small)) for _ in range(2)]
    for k, single in enumerate(singles):
        single.reset(seed=22 + k)
    agents = singles[0].possible_agents
    actions = random_actions(DAYS, env.num_envs, env.single_action_space.n)
    total = np.zeros(env.num_envs)
    for day in range(DAYS):
        _, rewards, _, _, _ = env.step(actions[day])
        total += env.last_cost
        for k, single in enumerate(singles):
            pairs = slice(k * env.pairs, (k + 1) * env.pairs)
            _, expected, _, _, infos = single.step(dict(zip(agents, actions[day, pairs].tolist())))
            np.testing.assert_array_equal(rewards[pairs], [expected[a] for a in agents])
            np.testing.assert_array_equal(env.last_cost[pairs], [infos[a]["cost"] for a in agents])
    for k, single in enumerate(singles):  # and the episodes' costs are the twins' own ledgers
        np.testing.assert_allclose(total[k * env.pairs:(k + 1) * env.pairs].sum(), cost_total(single.sim.engine),
                                   rtol=1e-9)
    assert cost_total(env.sims[0].engine) != cost_total(env.sims[1].engine)  # two worlds, not one


def test_bad_settings_are_named(small):
    with pytest.raises(SpecError, match="env.granularity: 'node' is not allowed with SKU-batched sampling"):
        SkuVectorEnv(config(small, granularity="node"))
    with pytest.raises(SpecError, match="twins: 0 is not allowed"):
        SkuVectorEnv(config(small), twins=0)
    pairs = SkuVectorEnv.pairs_of(config(small))
    with pytest.raises(SpecError, match=f"num_envs: {pairs + 1} is not allowed; allowed: a multiple of the {pairs}"):
        SkuBatchedVectorEnv({"env": config(small), "num_envs": pairs + 1})
    with pytest.raises(SpecError, match="sku_batched: true needs one agent per node and SKU"):
        TrainingSetup.network(config(small, granularity="node"), sku_batched=True)
    setup = TrainingSetup.network(config(small), sku_batched=True)
    with pytest.raises(SpecError, match="agent.use_lstm: not available with sku_batched=true"):
        PPOAgent(use_lstm=True).algorithm_config(setup, Resources(), seed=0)
    with pytest.raises(SpecError, match="env.forecast_refit_every: -1 is not allowed"):
        config(small, forecast_refit_every=-1)


def test_schedules_and_batches_stay_in_twin_steps(small):
    """RLlib counts a step of every (node, SKU) pair; the agents' settings are in twin steps, as with the
    multi-agent env, so they are scaled by the pairs of a twin (9 on the small network)."""
    from agents.rl.algorithms import DQNAgent

    batched, plain = (TrainingSetup.network(config(small), sku_batched=b) for b in (True, False))
    pairs = batched.steps_per_env_step
    assert pairs == 9 and plain.steps_per_env_step == 1
    ppo = PPOAgent(train_batch_size=40, minibatch_size=20, entropy_coeff=0.01, entropy_decay_steps=1000,
                   lr_end=1e-5, lr_decay_steps=2000)
    a, b = (ppo.algorithm_config(s, Resources(), seed=0) for s in (batched, plain))
    assert a.train_batch_size_per_learner == 40 * pairs and b.train_batch_size_per_learner == 40
    assert a.minibatch_size == 20 * pairs
    assert a.entropy_coeff == [[0, 0.01], [1000 * pairs, 0.0]] and b.entropy_coeff == [[0, 0.01], [1000, 0.0]]
    assert a.lr == [[0, ppo.lr], [2000 * pairs, 1e-5]]
    dqn = DQNAgent(learning_starts=100, target_network_update_freq=50, epsilon_timesteps=1000, replay_capacity=500)
    d = dqn.algorithm_config(batched, Resources(), seed=0)
    assert d.num_steps_sampled_before_learning_starts == 100 * pairs
    assert d.target_network_update_freq == 50 * pairs and d.epsilon == [(0, 1.0), (1000 * pairs, 0.02)]
    assert d.replay_buffer_config["capacity"] == 500 * pairs
    assert d.train_batch_size_per_learner == dqn.train_batch_size  # transitions per gradient step: not scaled
    from ray.rllib.utils.serialization import deserialize_type

    from agents.rl.replay import BatchEvictingEpisodeReplayBuffer

    buffer = d.replay_buffer_config["type"]  # by name, as RLlib requires (it tests for "EpisodeReplayBuffer" in it)
    assert "EpisodeReplayBuffer" in buffer and deserialize_type(buffer) is BatchEvictingEpisodeReplayBuffer


def runner_config(small, runner_cls=None):
    setup = TrainingSetup.network(config(small), sku_batched=True)
    algo_config = PPOAgent(train_batch_size=DAYS, minibatch_size=DAYS).algorithm_config(
        setup, Resources(num_env_runners=0, num_envs_per_env_runner=2), seed=0)
    if runner_cls is not None:
        algo_config.env_runners(env_runner_cls=runner_cls)
    return setup, algo_config


def test_the_batched_runner_samples_what_rllibs_own_runner_samples(small):
    """The same module weights and seed: RLlib's stock SingleAgentEnvRunner (one sub-environment at a time,
    connectors and all) and the batched runner return the same greedy episodes, and the batched runner's
    exploring episodes are valid RLlib episodes with the log-probabilities PPO needs."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from agents.rl.sku_runner import SkuBatchedEnvRunner

    setup, batched_config = runner_config(small)
    _, stock_config = runner_config(small, SingleAgentEnvRunner)
    batched, stock = SkuBatchedEnvRunner(config=batched_config), SingleAgentEnvRunner(config=stock_config)
    stock.module.set_state(batched.module.get_state())
    n = 2 * len(setup.roles)
    ours = batched.sample(num_episodes=n, explore=False)
    theirs = stock.sample(num_episodes=n, explore=False)  # all end on the same step: in sub-environment order
    assert len(ours) == len(theirs) == n and len({e.id_ for e in ours}) == n
    assert [len(e) for e in ours] == [DAYS] * n and all(e.is_truncated for e in ours)
    for mine, episode in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine.get_observations(), episode.get_observations())
        np.testing.assert_array_equal(mine.get_actions(), episode.get_actions())
        np.testing.assert_allclose(mine.get_rewards(), episode.get_rewards(), rtol=1e-6)
    assert len({int(a) for e in ours for a in e.get_actions()}) > 1  # the policy's choices, not one constant
    # exploring: fragments that continue the same episodes, each a valid episode with PPO's extra outputs
    first = batched.sample(num_timesteps=n * 5, explore=True)
    second = batched.sample(num_timesteps=n * 5, explore=True)
    for a, b in zip(first, second):
        a.validate(), b.validate()
        assert a.id_ == b.id_ and b.t_started == a.t_started + len(a) and len(a) == 5
        np.testing.assert_array_equal(a.get_observations(-1), b.get_observations(0))
        logp = a.get_extra_model_outputs(Columns.ACTION_LOGP)
        assert logp.shape == (5,) and (logp <= 0).all()
    metrics = batched.get_metrics()
    assert metrics["num_episodes"] == 2  # per twin, as the learning curve counts them
    # more whole episodes than sub-environments: the twins go on to their next episodes, not the same ones again
    episodes = batched.sample(num_episodes=2 * n, explore=False)
    first, second = episodes[:n], episodes[n:]
    assert len(episodes) == 2 * n
    assert not all(np.array_equal(a.get_rewards(), b.get_rewards()) for a, b in zip(first, second))
