"""An RLlib env runner that samples every (node, SKU) pair of a twin as one batch (agents/envs/vector.py).

RLlib's SingleAgentEnvRunner handles a vector env one sub-environment at a time:
per step and sub-environment it unbatches the observation and action, runs the
connectors item by item and appends to an episode object, about 50 us each, which
is all of its time with 1,250 sub-environments per twin. This runner keeps what
it inherits (the module, weight syncing, metrics, `sample()`'s contract) and
replaces only the sampling loop: one forward pass and one env step per twin step
on whole arrays, the rollout kept as arrays, and one SingleAgentEpisode per
sub-environment built from those arrays at the end of the fragment. Every pair
still has its own episode, reward and advantage, as with one agent per pair.

Episode metrics (return, length) are per twin, the sum over its pairs, so the
learning curve reads like the multi-agent env's (whose return sums its agents).
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO

from agents.envs.vector import SkuVectorEnv


class SkuBatchedEnvRunner(SingleAgentEnvRunner):
    """SingleAgentEnvRunner for SkuVectorEnv: whole-batch sampling, episodes built from arrays."""

    _rollout: dict | None = None

    def _sample(self, *, num_timesteps: int | None = None, num_episodes: int | None = None, explore: bool,
                random_actions: bool = False, force_reset: bool = False) -> list[SingleAgentEpisode]:
        env: SkuVectorEnv = self.env.unwrapped
        if not isinstance(env, SkuVectorEnv):
            raise TypeError(f"SkuBatchedEnvRunner samples a SkuVectorEnv, not {type(env).__name__}")
        if force_reset or num_episodes is not None or self._needs_initial_reset or self._rollout is None:
            # only the runner's first reset is seeded (as RLlib's own runner does); later episodes continue the
            # twins' streams of episode seeds
            self._reset(env, self._seed if self._needs_initial_reset else None)
            self._needs_initial_reset = False
        done: list[SingleAgentEpisode] = []
        steps = episodes = twin_episodes = 0
        while (steps < num_timesteps) if num_timesteps is not None else (episodes < num_episodes):
            actions, extra = self._act(env, explore, random_actions, steps)
            obs, rewards, terminated, truncated, _ = env.step(actions)
            rollout = self._rollout
            rollout["obs"].append(obs)
            rollout["actions"].append(actions)
            rollout["rewards"].append(rewards.astype(np.float32))
            for key, value in extra.items():
                rollout["extra"].setdefault(key, []).append(value)
            rollout["twin_return"] += rewards.reshape(len(env.sims), env.pairs).sum(axis=1)
            steps += env.num_envs
            if truncated.all() or terminated.all():  # every pair of every twin ends together
                done += self._episodes(env, terminated=bool(terminated.all()), truncated=bool(truncated.all()))
                episodes += env.num_envs
                twin_episodes += len(env.sims)
                seconds = time.perf_counter() - rollout["started"]
                for twin_return in rollout["twin_return"]:
                    self._log_episode_metrics(rollout["t"] + len(rollout["actions"]), float(twin_return), seconds)
                self._reset(env, None)
        ongoing: list[SingleAgentEpisode] = []
        if num_timesteps is not None and self._rollout["actions"]:
            ongoing = self._episodes(env, terminated=False, truncated=False)
            rollout = self._rollout
            rollout["t"] += len(rollout["actions"])
            rollout["obs"] = rollout["obs"][-1:]
            rollout["actions"], rollout["rewards"], rollout["extra"] = [], [], {}
        if num_episodes is not None:  # as RLlib's runner: the next call starts new episodes from the seed again
            self._needs_initial_reset = True
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=steps)
        self._increase_sampled_metrics(steps, twin_episodes)  # episodes of twins, as the learning curve counts
        return done + ongoing

    def _reset(self, env: SkuVectorEnv, seed: int | None) -> None:
        """New episodes in every twin (from `seed`, or the twins' next episode seeds) and an empty rollout."""
        obs, _ = env.reset(seed=seed)
        self._rollout = {"ids": [uuid.uuid4().hex for _ in range(env.num_envs)], "t": 0, "obs": [obs],
                         "actions": [], "rewards": [], "extra": {}, "twin_return": np.zeros(len(env.sims)),
                         "started": time.perf_counter()}

    def _act(self, env: SkuVectorEnv, explore: bool, random_actions: bool, steps: int):
        """Actions (sub-environments,) for the current observations, and the outputs the learner needs."""
        n, choices = env.num_envs, env.single_action_space.n
        if random_actions or self.module is None:
            actions = self._random.integers(choices, size=n)
            return actions, {WEIGHTS_SEQ_NO: np.full(n, self._weights_seq_no),
                             Columns.ACTION_LOGP: np.full(n, -np.log(choices), np.float32)}
        batch = {Columns.OBS: torch.from_numpy(self._rollout["obs"][-1])}
        with torch.no_grad():
            if explore:
                runners = self.config.num_env_runners or 1
                t = (self.num_env_steps_sampled_lifetime // runners + steps) * runners
                out = self.module.forward_exploration(batch, t=t)
            else:
                out = self.module.forward_inference(batch)
        extra = {WEIGHTS_SEQ_NO: np.full(n, self._weights_seq_no)}
        if Columns.ACTIONS in out:  # the module chose (DQN's epsilon-greedy)
            return out[Columns.ACTIONS].numpy().astype(np.int64), extra
        logits = out[Columns.ACTION_DIST_INPUTS]
        dist_cls = (self.module.get_exploration_action_dist_cls() if explore
                    else self.module.get_inference_action_dist_cls())
        dist = dist_cls.from_logits(logits)
        if not explore:
            dist = dist.to_deterministic()
        actions = dist.sample()
        extra[Columns.ACTION_DIST_INPUTS] = logits.numpy()
        if explore:
            extra[Columns.ACTION_LOGP] = dist.logp(actions).numpy().astype(np.float32)
        return actions.numpy().astype(np.int64), extra

    @property
    def _random(self) -> np.random.Generator:
        """The generator of random actions (`random_actions=True`), from the runner's seed."""
        if not hasattr(self, "_random_generator"):
            self._random_generator = np.random.default_rng(self._seed)
        return self._random_generator

    def _episodes(self, env: SkuVectorEnv, terminated: bool, truncated: bool) -> list[SingleAgentEpisode]:
        """One SingleAgentEpisode chunk per sub-environment from the rollout's arrays (numpy, no lookback)."""
        rollout = self._rollout
        obs = np.stack(rollout["obs"], axis=1)          # (envs, T + 1, features)
        actions = np.stack(rollout["actions"], axis=1)  # (envs, T)
        rewards = np.stack(rollout["rewards"], axis=1)
        extra = {key: np.stack(values, axis=1) for key, values in rollout["extra"].items()}
        length = actions.shape[1]

        out = []
        for i in range(env.num_envs):
            episode = SingleAgentEpisode(
                id_=rollout["ids"][i],
                observations=InfiniteLookbackBuffer(obs[i], space=env.single_observation_space),
                actions=InfiniteLookbackBuffer(actions[i], space=env.single_action_space),
                rewards=InfiniteLookbackBuffer(rewards[i]),
                infos=InfiniteLookbackBuffer([{} for _ in range(length + 1)]),
                extra_model_outputs={key: InfiniteLookbackBuffer(value[i]) for key, value in extra.items()},
                observation_space=env.single_observation_space, action_space=env.single_action_space,
                terminated=terminated, truncated=truncated, t_started=rollout["t"], len_lookback_buffer=0)
            out.append(episode)
        return out
