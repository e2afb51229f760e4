"""The RLlib adapters (AgentSpec passes the classes to RLlib itself): the ParallelEnv as an RLlib MultiAgentEnv, and
the SKU-batched vector env built from RLlib's env context."""

from __future__ import annotations

from collections.abc import Mapping

from ray.rllib.env.multi_agent_env import MultiAgentEnv

from agents.envs.core import EnvConfig
from agents.envs.parallel import SupplyChainParallelEnv
from agents.envs.vector import SkuVectorEnv
from twin.config import SpecError


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


class SkuBatchedVectorEnv(SkuVectorEnv):
    """SkuVectorEnv built by RLlib's `vector_entry_point`: env_config = {"env": EnvConfig, "num_envs": N}, N a
    whole number of twins' (node, SKU) pairs (agents.rl.algorithms sets it)."""

    def __init__(self, env_config: Mapping) -> None:
        config, num_envs = env_config["env"], int(env_config.get("num_envs", 0))
        pairs = SkuVectorEnv.pairs_of(config)
        if num_envs < pairs or num_envs % pairs:
            raise SpecError(f"num_envs: {num_envs} is not allowed; allowed: a multiple of the {pairs} (node, SKU) "
                            f"pairs of one twin")
        super().__init__(config, twins=num_envs // pairs)
