"""RLlib algorithm configs for the twin's environments: one class per algorithm, one for the Ray resources.

    setup = TrainingSetup.from_plain({"network": {...}, "scenario": {...}, "env": {...}})   # as experiments.train
    setup = TrainingSetup.network(env_config)          # or TrainingSetup.single_node_env(env_config), not saveable
    algo = PPOAgent().algorithm_config(setup, Resources(), seed=0).build_algo()

The multi-agent setup maps policies by role (store, dc): one policy is shared by
all stores, one by all DCs, so the number of policies does not grow with the
network. With one agent per node, PPO uses SkuSharedPPOModule (a network shared
across the node's SKUs); with one agent per (node, SKU), RLlib's default modules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from agents.envs.core import EnvConfig, env_config_from_dict
from agents.envs.parallel import SupplyChainParallelEnv
from agents.envs.single_node import single_node_config
from scenarios.reference import case_from_dict
from twin.config import ConfigReader, SpecError
from twin.registry import Registry
from twin.spec import network_from_dict


@dataclass(frozen=True)
class RoleMapping:
    """policy_mapping_fn: an agent's policy is its node's role (picklable, so env runners get it)."""

    roles: Mapping[str, str]
    shared: bool = False

    def __call__(self, agent_id: str, episode: Any = None, **kwargs: Any) -> str:
        return "shared" if self.shared else self.roles[agent_id]


@dataclass(frozen=True)
class TrainingSetup:
    """Which environment is trained: the single-node Gymnasium env or the multi-agent network env.

    `plain` is the plain data it was built from (`from_plain`), which a checkpoint stores
    (agents.rl.checkpoint); a setup built from typed objects has none and cannot be saved.
    """

    env: EnvConfig
    single_node: bool
    roles: Mapping[str, str] = field(default_factory=dict)  # agent id -> role (multi-agent only)
    shared_policy: bool = False
    sku_batched: bool = False  # the (node, SKU) pairs as one vector env, sampled in batch (agents/envs/vector.py)
    plain: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_plain(cls, data: Mapping[str, Any], discrete_only: bool = False) -> TrainingSetup:
        """Build from plain data through the config readers (SpecError naming the key):

            {network: {...}, scenario: {name, params...}, env: {...}, shared_policy: bool, sku_batched: bool}
                                                                                 the network env
            {case: {...the case file's data}, env: {...}}                       the single-node env

        `env.granularity: auto` becomes node_sku for a `discrete_only` algorithm or with `sku_batched`, node
        otherwise; `plain` keeps the data with the granularity resolved, so it rebuilds the same setup without
        the algorithm.
        """
        data = plain_data(data, "setup")
        r = ConfigReader(data, "")
        env_data = r.raw("env") or {}
        case_data = r.raw("case")
        if case_data is not None:
            case = case_from_dict(case_data)
            env = env_config_from_dict(env_data, case.network())
            setup = cls.single_node_env(single_node_config(case, env))
        else:
            network = network_from_dict(r.raw("network"), "network")
            batched = r.flag("sku_batched", False)
            env = env_config_from_dict(env_data, network, r.raw("scenario"),
                                       auto_granularity="node_sku" if discrete_only or batched else "node")
            setup = cls.network(env, shared_policy=r.flag("shared_policy", False), sku_batched=batched)
        r.done()
        data["env"] = {**env_data, "granularity": setup.env.granularity}
        return replace(setup, plain=data)

    @classmethod
    def network(cls, env: EnvConfig, shared_policy: bool = False, sku_batched: bool = False) -> TrainingSetup:
        """The multi-agent network env (or, with `sku_batched`, its (node, SKU) pairs as one vector env)."""
        if sku_batched and env.granularity != "node_sku":
            raise SpecError(f"sku_batched: true needs one agent per node and SKU; env.granularity is "
                            f"{env.granularity!r}; allowed: node_sku (or auto)")
        par = SupplyChainParallelEnv(env)
        return cls(env=env, single_node=False, roles={a: par.role(a) for a in par.possible_agents},
                   shared_policy=shared_policy, sku_batched=sku_batched)

    @classmethod
    def single_node_env(cls, env: EnvConfig) -> TrainingSetup:
        return cls(env=env, single_node=True)

    @property
    def policy_ids(self) -> list[str]:
        if self.single_node or self.sku_batched:
            return ["default_policy"]
        return ["shared"] if self.shared_policy else sorted(set(self.roles.values()))

    @property
    def sku_shared_module(self) -> bool:
        """One agent per node with several SKUs per agent: the SKU is a batch dimension of the module."""
        return not self.single_node and self.env.granularity == "node"

    @property
    def steps_per_env_step(self) -> int:
        """RLlib's env steps per step of the twin: the (node, SKU) pairs when they are sub-environments."""
        return len(self.roles) if self.sku_batched else 1


def plain_data(value: Any, path: str) -> Any:
    """A deep copy of `value` as YAML/JSON data (dicts with string keys, lists, strings, numbers, booleans,
    None); SpecError naming the key of anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise SpecError(f"{path}: key {key!r} is not allowed; allowed: strings")
        return {key: plain_data(v, f"{path}.{key}") for key, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain_data(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise SpecError(f"{path}: {type(value).__name__} is not allowed; allowed: plain data (mappings, lists, "
                    f"strings, numbers, booleans, null)")


@dataclass(frozen=True)
class TorchThreads:
    """RLlib callback: set torch's intra-op threads in each env runner process when its env is created.

    Measured on 2 cores: the policy forward pass of sampling ran 4x faster with 1 thread than with torch's
    default of one per core (tiny matrices; the threads contend with the learner and the other runners).
    """

    threads: int

    def __call__(self, *args, **kwargs) -> None:
        import torch
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


@dataclass(frozen=True)
class Resources:
    """Ray and the parallel workers: from config, with the GPU chosen by detection when `num_gpus_per_learner`
    is 'auto'. A `ray_address` of 'auto' joins a running cluster; None starts Ray on this machine."""

    ray_address: str | None = None
    num_env_runners: int = 0
    num_envs_per_env_runner: int = 1
    num_learners: int = 0
    num_gpus_per_learner: float | str = "auto"
    torch_threads: int = 1  # per process; the modules are small, and more threads only fight over the cores

    def __post_init__(self) -> None:
        if self.ray_address is None:
            cores = os.cpu_count() or 1
            if self.num_env_runners > cores:
                raise SpecError(f"trainer.num_env_runners: {self.num_env_runners} is more than allowed on this "
                                f"machine; allowed: 0..{cores} (one per CPU core; 0 samples in the driver)")
            if self.num_learners > cores:
                raise SpecError(f"trainer.num_learners: {self.num_learners} is more than allowed on this machine; "
                                f"allowed: 0..{cores}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Resources:
        r = ConfigReader(data or {}, "trainer")
        gpus = r.raw("num_gpus_per_learner", "auto")
        if gpus != "auto" and (isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0):
            raise SpecError(f"trainer.num_gpus_per_learner: {gpus!r} is not allowed; allowed: 'auto' or a number >= 0")
        address = r.text("ray_address", None, optional=True)
        out = cls(ray_address=address, num_env_runners=r.integer("num_env_runners", 0, low=0),
                  num_envs_per_env_runner=r.integer("num_envs_per_env_runner", 1, low=1, high=1024),
                  num_learners=r.integer("num_learners", 0, low=0), num_gpus_per_learner=gpus,
                  torch_threads=r.integer("torch_threads", 1, low=1, high=256))
        r.done()
        if address is None and out.num_learners == 0 and gpus != "auto" and gpus > 0:
            import torch
            # Ray on this machine alone, the learner in this process: it needs a GPU here (on a cluster a sweep's
            # trials may run on its GPU nodes)
            if not torch.cuda.is_available():
                raise SpecError(f"trainer.num_gpus_per_learner: {gpus!r} asks for a GPU, but torch "
                                f"{torch.__version__} sees none on this machine; allowed here: 0 or 'auto' "
                                f"(trainer=local), or a cluster with GPUs (trainer.ray_address)")
        return out

    @property
    def gpus_per_learner(self) -> float:
        if self.num_gpus_per_learner != "auto":
            return float(self.num_gpus_per_learner)
        import torch
        return 1.0 if torch.cuda.is_available() else 0.0

    def apply(self, config):
        """Set env runners, learners, GPUs and torch threads on an RLlib AlgorithmConfig."""
        config.env_runners(num_env_runners=self.num_env_runners, num_envs_per_env_runner=self.num_envs_per_env_runner,
                           num_cpus_per_env_runner=1)
        config.callbacks(on_environment_created=TorchThreads(self.torch_threads))
        config.learners(num_learners=self.num_learners, num_gpus_per_learner=self.gpus_per_learner)
        return config


@dataclass(frozen=True)
class AgentSpec:
    """Base class: an algorithm's hyper-parameters and how they become an RLlib AlgorithmConfig."""

    name: ClassVar[str] = ""
    discrete_only: ClassVar[bool] = False  # True: needs Discrete actions, so one agent per (node, SKU) on a network
    hidden: tuple[int, ...] = (64, 64)
    lr: float = 3e-4
    lr_end: float = 0.0          # > 0: the learning rate falls linearly from lr to lr_end over lr_decay_steps
    lr_decay_steps: int = 500000
    gamma: float = 0.99

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentSpec:
        """Read the agent's section (`agent.<key>`); unknown keys and bad values raise SpecError naming them."""
        r = ConfigReader(data, "agent")
        r.raw("name")
        values = {}
        for f in fields(cls):
            default = f.default
            if isinstance(default, bool):
                values[f.name] = r.flag(f.name, default)
            elif isinstance(default, int):
                values[f.name] = r.integer(f.name, default, low=0)
            elif isinstance(default, float):
                values[f.name] = r.number(f.name, default, low=0.0)
            elif isinstance(default, tuple):
                values[f.name] = tuple(int(v) for v in r.numbers(f.name, default, low=1))
            else:
                values[f.name] = r.raw(f.name)
        r.done()
        return cls(**values)

    def algorithm_config(self, setup: TrainingSetup, resources: Resources, seed: int):
        raise NotImplementedError

    def learning_rate(self, steps_per_env_step: int = 1):
        """RLlib's lr: a number, or a [[env step, lr], ...] schedule when lr_end is set (RLlib counts
        `steps_per_env_step` env steps per twin step with sku_batched: the schedule stays in twin steps)."""
        end = self.lr_decay_steps * steps_per_env_step
        return [[0, self.lr], [end, self.lr_end]] if self.lr_end > 0 else self.lr

    # shared by the algorithms
    def _base(self, config, setup: TrainingSetup, resources: Resources, seed: int, module_spec):
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

        from agents.envs.rllib import SupplyChainMultiAgentEnv
        from agents.envs.single_node import SingleNodeEnv

        config = config.framework("torch").debugging(seed=seed, log_level="ERROR")
        config.reporting(metrics_num_episodes_for_smoothing=20)
        if setup.sku_batched:
            from agents.envs.rllib import SkuBatchedVectorEnv
            from agents.rl.sku_runner import SkuBatchedEnvRunner

            config.environment(SkuBatchedVectorEnv, env_config={"env": setup.env})
            config.rl_module(rl_module_spec=module_spec)
            resources.apply(config)
            # a sub-environment per (node, SKU) pair of each of the runner's twins (trainer.num_envs_per_env_runner)
            return config.env_runners(
                num_envs_per_env_runner=setup.steps_per_env_step * resources.num_envs_per_env_runner,
                gym_env_vectorize_mode="vector_entry_point", env_runner_cls=SkuBatchedEnvRunner)
        if setup.single_node:
            config.environment(SingleNodeEnv, env_config={"env": setup.env})
            config.rl_module(rl_module_spec=module_spec)
        else:
            config.environment(SupplyChainMultiAgentEnv, env_config={"env": setup.env})
            config.multi_agent(policies=set(setup.policy_ids),
                               policy_mapping_fn=RoleMapping(dict(setup.roles), setup.shared_policy))
            config.rl_module(rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={pid: module_spec for pid in setup.policy_ids}))
        return resources.apply(config)


@dataclass(frozen=True)
class PPOAgent(AgentSpec):
    """PPO (clipped surrogate, GAE); optionally an LSTM policy (`use_lstm`) for partial observability."""

    name: ClassVar[str] = "ppo"
    lambda_: float = 0.95
    train_batch_size: int = 4000
    minibatch_size: int = 500
    num_epochs: int = 5
    clip_param: float = 0.2
    vf_clip_param: float = 10000.0  # returns are tens to hundreds: RLlib's default of 10 stops the critic learning
    vf_loss_coeff: float = 0.5
    entropy_coeff: float = 0.0
    entropy_decay_steps: int = 0  # > 0: the entropy bonus falls linearly to 0 over this many env steps
    use_lstm: bool = False
    lstm_cell_size: int = 64
    max_seq_len: int = 20

    def algorithm_config(self, setup: TrainingSetup, resources: Resources, seed: int):
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from agents.rl.sku_module import SkuSharedPPOModule

        if self.minibatch_size > self.train_batch_size:
            raise SpecError(f"agent.minibatch_size: {self.minibatch_size} is more than agent.train_batch_size "
                            f"({self.train_batch_size}); allowed: <= train_batch_size")
        if setup.sku_batched and self.use_lstm:
            raise SpecError("agent.use_lstm: not available with sku_batched=true (the batched sampler carries no "
                            "recurrent state); allowed: use_lstm with sku_batched=false")
        if setup.sku_shared_module:
            if self.use_lstm:
                raise SpecError("agent.use_lstm: not available with env.granularity=node (the SKU-shared module "
                                "is feed-forward); allowed: use_lstm with granularity=node_sku or a case")
            spec = RLModuleSpec(module_class=SkuSharedPPOModule, model_config={"hidden": list(self.hidden)})
        else:
            spec = RLModuleSpec(model_config=DefaultModelConfig(
                fcnet_hiddens=list(self.hidden), fcnet_activation="tanh", vf_share_layers=False,
                use_lstm=self.use_lstm, lstm_cell_size=self.lstm_cell_size, max_seq_len=self.max_seq_len))
        steps = setup.steps_per_env_step  # batch sizes and schedules are in twin steps, as with the multi-agent env
        config = PPOConfig().training(
            lr=self.learning_rate(steps), gamma=self.gamma, lambda_=self.lambda_,
            train_batch_size_per_learner=self.train_batch_size * steps,
            minibatch_size=self.minibatch_size * steps, num_epochs=self.num_epochs, clip_param=self.clip_param,
            vf_clip_param=self.vf_clip_param, vf_loss_coeff=self.vf_loss_coeff, entropy_coeff=self.entropy(steps))
        return self._base(config, setup, resources, seed, spec)

    def entropy(self, steps_per_env_step: int = 1):
        """RLlib's entropy_coeff: a number, or a schedule to 0 when entropy_decay_steps (twin steps) is set."""
        if self.entropy_decay_steps > 0 and self.entropy_coeff > 0:
            return [[0, self.entropy_coeff], [self.entropy_decay_steps * steps_per_env_step, 0.0]]
        return self.entropy_coeff


@dataclass(frozen=True)
class DQNAgent(AgentSpec):
    """DQN as in the paper: double and dueling Q, replay buffer, target network, epsilon decaying from 1.0.

    Discrete actions only: with a network, use env.granularity=node_sku (one agent per node and SKU).
    """

    name: ClassVar[str] = "dqn"
    discrete_only: ClassVar[bool] = True
    lr: float = 5e-4
    train_batch_size: int = 64
    replay_capacity: int = 100000
    learning_starts: int = 1000
    target_network_update_freq: int = 500
    epsilon_start: float = 1.0
    epsilon_end: float = 0.02
    epsilon_timesteps: int = 50000
    double_q: bool = True
    dueling: bool = True
    n_step: int = 1
    training_intensity: float = 0.0  # replayed / sampled steps; 0: RLlib's default of one update per step
    rollout_fragment_length: int = 32

    def algorithm_config(self, setup: TrainingSetup, resources: Resources, seed: int):
        from ray.rllib.algorithms.dqn import DQNConfig
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        if setup.sku_shared_module:
            raise SpecError("agent: dqn needs Discrete actions; allowed: env.granularity=node_sku or a case "
                            "(single-node env)")
        # RLlib takes the buffer by name: a dotted path to ours (agents/rl/replay.py), whose name it must contain
        buffer = ("agents.rl.replay.BatchEvictingEpisodeReplayBuffer" if setup.single_node or setup.sku_batched
                  else "MultiAgentEpisodeReplayBuffer")
        # counts of env steps are in twin steps; with sku_batched RLlib counts a step of each (node, SKU) pair
        steps = setup.steps_per_env_step
        config = DQNConfig().training(
            lr=self.learning_rate(steps), gamma=self.gamma, train_batch_size_per_learner=self.train_batch_size,
            replay_buffer_config={"type": buffer, "capacity": self.replay_capacity * steps},
            num_steps_sampled_before_learning_starts=self.learning_starts * steps,
            target_network_update_freq=self.target_network_update_freq * steps,
            epsilon=[(0, self.epsilon_start), (self.epsilon_timesteps * steps, self.epsilon_end)],
            double_q=self.double_q, dueling=self.dueling, n_step=self.n_step,
            training_intensity=self.training_intensity or None)
        config.env_runners(rollout_fragment_length=self.rollout_fragment_length)
        spec = RLModuleSpec(model_config=DefaultModelConfig(fcnet_hiddens=list(self.hidden), fcnet_activation="relu",
                                                            head_fcnet_hiddens=[]))
        return self._base(config, setup, resources, seed, spec)


AGENTS: Registry[type[AgentSpec]] = Registry.of("agent.name", PPOAgent, DQNAgent)


def agent_from_dict(data: Mapping[str, Any] | None) -> AgentSpec:
    """The agent of config section `agent` ({name: ppo|dqn, hyper-parameters...}); SpecError naming the key."""
    data = dict(data or {})
    return AGENTS.resolve(data.get("name")).from_dict(data)
