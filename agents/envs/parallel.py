"""The canonical multi-agent interface: a PettingZoo ParallelEnv over a whole network.

Agents are stable ids: the node's name (`store_7`, `dc_2`) with one agent per
node, whose action is a vector over its SKUs (MultiDiscrete) and whose
observation is (SKUs, features); or `<node>/<sku>` with one agent per (node, SKU),
whose action is one Discrete choice (what DQN needs). `role(agent)` is the node's
kind, which is what policies are mapped by, so one policy serves all stores.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from agents.envs.core import EnvConfig, SupplyChainSim
from agents.envs.observation import OBS_CLIP


class SupplyChainParallelEnv(ParallelEnv):
    """PettingZoo ParallelEnv: every controlled node (or node and SKU) decides at each review epoch."""

    metadata = {"name": "supplychain_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        self.sim = sim = SupplyChainSim(config)
        self.by_sku = config.granularity == "node_sku"
        names, sku_names = sim.node_names, config.network.skus.name
        if self.by_sku:
            self.possible_agents = [f"{node}/{sku}" for node in names for sku in sku_names]
            self._roles = {f"{node}/{sku}": kind for node, kind in zip(names, sim.kinds) for sku in sku_names}
        else:
            self.possible_agents = list(names)
            self._roles = dict(zip(names, sim.kinds))
        self.agents: list[str] = []
        features = config.obs_spec.n_features
        shape = (features,) if self.by_sku else (sim.n_sku, features)
        # spaces are built once and shared by all agents (they are the same for every role)
        self._observation_space = spaces.Box(-OBS_CLIP, OBS_CLIP, shape=shape, dtype=np.float32)
        self._action_space = (spaces.Discrete(config.action.n) if self.by_sku
                              else spaces.MultiDiscrete(np.full(sim.n_sku, config.action.n)))
        self._shape = (len(names), sim.n_sku)

    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._action_space

    def role(self, agent: str) -> str:
        """The kind of the agent's node ('store', 'dc', ...): policies are shared by role."""
        return self._roles[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs = self.sim.reset(seed)
        self.agents = list(self.possible_agents)
        infos = {agent: {"episode_seed": self.sim.episode_seed} for agent in self.agents}
        return self._split(obs), infos

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() after the episode ended: call reset()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions: no action for agent(s) {missing[:5]}; every live agent must act")
        if self.by_sku:
            chosen = np.fromiter((actions[a] for a in self.possible_agents), dtype=np.int64,
                                 count=len(self.possible_agents)).reshape(self._shape)
        else:
            chosen = np.stack([np.asarray(actions[a], dtype=np.int64) for a in self.possible_agents])
        obs, cost, done = self.sim.step(chosen)
        reward = self.sim.rewards(self.sim.objective)
        agents = self.possible_agents
        flat_reward, flat_cost = reward.ravel().tolist(), cost.ravel().tolist()
        rewards = dict(zip(agents, flat_reward))
        infos = {a: {"cost": c} for a, c in zip(agents, flat_cost)}
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, done)  # the episode is a time window: it ends by truncation
        observations = self._split(obs)
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _split(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        flat = obs.reshape(-1, obs.shape[-1]) if self.by_sku else obs
        return dict(zip(self.possible_agents, flat))

    def close(self) -> None:
        pass
