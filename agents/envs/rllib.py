"""The RLlib adapter: the ParallelEnv as an RLlib MultiAgentEnv (AgentSpec passes the class to RLlib itself)."""

from __future__ import annotations

from collections.abc import Mapping

from ray.rllib.env.multi_agent_env import MultiAgentEnv

from agents.envs.core import EnvConfig
from agents.envs.parallel import SupplyChainParallelEnv


class SupplyChainMultiAgentEnv(MultiAgentEnv):
    """RLlib MultiAgentEnv over SupplyChainParallelEnv; env_config = {"env": EnvConfig}."""

    def __init__(self, env_config: Mapping | EnvConfig) -> None:
        super().__init__()
        config = env_config if isinstance(env_config, EnvConfig) else env_config["env"]
        self.par_env = par = SupplyChainParallelEnv(config)
        self.possible_agents = list(par.possible_agents)
        self.agents = list(par.possible_agents)
        self.observation_spaces = {a: par.observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: par.action_space(a) for a in self.possible_agents}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        return obs, infos

    def step(self, action_dict: dict):
        obs, rewards, terminated, truncated, infos = self.par_env.step(action_dict)
        terminated["__all__"] = all(terminated.values())
        truncated["__all__"] = all(truncated.values())
        self.agents = list(self.par_env.agents)
        return obs, rewards, terminated, truncated, infos
