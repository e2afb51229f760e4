"""RL environments over the twin (docs/architecture.md, RL environments): one simulation core, three APIs.

- SupplyChainParallelEnv: PettingZoo ParallelEnv, the canonical multi-agent interface;
- SupplyChainMultiAgentEnv (agents.envs.rllib): the RLlib adapter (its class is given to RLlib);
- SingleNodeEnv: Gymnasium, registered as `SupplyChainSingleNode-v0`.
"""

from agents.envs.actions import (
    ActionMap,
    OrderDaysOfDemand,
    OrderUnits,
    OrderUpTo,
    ProfileSafetyFactor,
    SafetyFactor,
    action_from_dict,
)
from agents.envs.core import CostWeights, EnvConfig, SupplyChainSim, env_config_from_dict
from agents.envs.observation import ObsInputs, ObsSpec
from agents.envs.parallel import SupplyChainParallelEnv
from agents.envs.single_node import ENV_ID, SingleNodeEnv, register

register()

__all__ = ["ENV_ID", "ActionMap", "CostWeights", "EnvConfig", "ObsInputs", "ObsSpec", "OrderDaysOfDemand", "OrderUnits",
           "OrderUpTo", "ProfileSafetyFactor", "SafetyFactor", "SingleNodeEnv", "SupplyChainParallelEnv",
           "SupplyChainSim", "action_from_dict", "env_config_from_dict"]
