"""A Gymnasium env for one node and one SKU: the paper's single-node DQN and the optimality-gap checks.

Build it from a reference case file (any single-stage case of the schema of
tests/reference_cases) or from an EnvConfig whose network has one stocking node and
one SKU:

    env = gymnasium.make("SupplyChainSingleNode-v0", case="case_base_stock_SS_example_4_4_L4.json")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.envs.core import EnvConfig, SupplyChainSim
from agents.envs.observation import OBS_CLIP
from scenarios.reference import ReferenceCase, load_case
from twin.config import SpecError

ENV_ID = "SupplyChainSingleNode-v0"


def single_node_config(case: ReferenceCase, base: EnvConfig | None = None) -> EnvConfig:
    """The EnvConfig of a single-stage reference case (SpecError for a multi-stage one)."""
    if case.stages != 1:
        raise SpecError(f"case: {case.case_id!r} has {case.stages} stages; allowed: a single-stage case "
                        f"(base-stock, (s,S) or newsvendor)")
    network = case.network()
    if base is None:
        return EnvConfig(network=network, episode_days=365)
    return replace(base, network=network, scenario="baseline", scenario_params={})


class SingleNodeEnv(gym.Env):
    """One node, one SKU: obs = the ObsSpec features (F,), action = Discrete(grid), reward = -cost / (h x mean)."""

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | Mapping | None = None, case: str | Path | None = None) -> None:
        if isinstance(config, Mapping):  # RLlib passes its env_config, {"env": EnvConfig}
            config = config["env"]
        if (config is None) == (case is None):
            raise SpecError("SingleNodeEnv: give exactly one of config= or case=")
        if case is not None:
            config = single_node_config(load_case(case))
        if config.granularity != "node":
            config = replace(config, granularity="node")
        self.sim = SupplyChainSim(config)
        if len(self.sim.controlled) != 1 or self.sim.n_sku != 1:
            raise SpecError(f"env.network: {len(self.sim.controlled)} stocking nodes x {self.sim.n_sku} SKUs; "
                            f"allowed: exactly 1 x 1 for the single-node env (use the multi-agent env)")
        self.config = config
        self.observation_space = spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(config.obs_spec.n_features,),
                                            dtype=np.float32)
        self.action_space = spaces.Discrete(config.action.n)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.sim.reset(seed)
        return obs[0, 0], {"episode_seed": self.sim.episode_seed}

    def step(self, action):
        obs, cost, done = self.sim.step(np.array([[int(action)]]))
        reward = float(self.sim.rewards(self.sim.objective)[0])
        return obs[0, 0], reward, False, done, {"cost": float(cost[0])}


def register() -> None:
    """Register ENV_ID with Gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="agents.envs.single_node:SingleNodeEnv")
