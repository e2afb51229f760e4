"""SKU-batched sampling: the (node, SKU) pairs of whole twins as the sub-environments of one Gymnasium VectorEnv.

With one RLlib agent per (node, SKU) the multi-agent env runner spends most of its
time on per-agent bookkeeping (dicts of 1,250 observations, rewards and episodes
per step on paper_5x20 x 50 SKUs). Here every (node, SKU) pair of a twin is one
sub-environment of a vector env: a twin steps once for all its pairs, and RLlib's
single-agent env runner sees one batch of observations and answers one batch of
actions. Each pair keeps its own reward, episode and advantage, exactly as the
per-(node, SKU) agent of `SupplyChainParallelEnv` (granularity node_sku): with the
same actions and seed, both give the same costs and rewards.

One policy acts for every pair; a pair's observation is the node_sku observation
with one more feature, 1 for a store's pair and 0 for a DC's (`ROLE_FEATURE`), so
the policy can still act differently for the two roles.

All pairs of a twin end together (the episode is a time window, ended by
truncation). Resets follow Gymnasium's next-step autoreset, which RLlib expects:
the step after the last one resets the twins and ignores its actions.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from agents.envs.core import EnvConfig, SupplyChainSim
from agents.envs.observation import OBS_CLIP
from twin.config import SpecError

ROLE_FEATURE = "is_store"  # the feature appended to each pair's observation: 1 store, 0 DC


def role_column(sim: SupplyChainSim) -> np.ndarray:
    """(controlled nodes, SKUs, 1): 1.0 for a store's pairs, 0.0 for a DC's, in observation order."""
    is_store = np.array([kind == "store" for kind in sim.kinds], dtype=np.float32)
    return np.repeat(is_store[:, None, None], sim.n_sku, axis=1)


def pair_observations(obs: np.ndarray, roles: np.ndarray) -> np.ndarray:
    """(controlled nodes, SKUs, features) of the env's observation -> (pairs, features + 1): each pair's row with
    the role feature appended (`role_column`)."""
    rows = np.concatenate([obs, roles], axis=-1)
    return rows.reshape(-1, rows.shape[-1]).astype(np.float32, copy=False)


class SkuVectorEnv(VectorEnv):
    """Gymnasium VectorEnv whose sub-environments are the (node, SKU) pairs of `twins` twins of one EnvConfig.

    Sub-environment i is pair i % pairs of twin i // pairs, pairs in the order of the node_sku agents
    (`<node>/<sku>`, node-major). `reset(seed=s)` starts twin k of T from episode seed s x T + k, so vector envs
    seeded s, s + 1, ... (RLlib seeds each env runner with the run's seed + the runner's index) never share a
    twin's stream; without a seed each twin draws its next episode seed from its own stream.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, config: EnvConfig, twins: int = 1, seed: int = 0) -> None:
        if isinstance(twins, bool) or not isinstance(twins, int):
            raise SpecError(f"twins: {twins!r} is not allowed; allowed: an integer >= 1")
        if config.granularity != "node_sku":
            raise SpecError(f"env.granularity: {config.granularity!r} is not allowed with SKU-batched sampling; "
                            f"allowed: node_sku (one sub-environment per node and SKU)")
        if twins < 1:
            raise SpecError(f"twins: {twins} is not allowed; allowed: >= 1")
        self.config = config
        self.sims = [SupplyChainSim(config) for _ in range(twins)]
        self.seed = seed  # used if the first reset gives none: twins must not share a stream of episode seeds
        self._seeded = False
        first = self.sims[0]
        self.shape = (len(first.controlled), first.n_sku)
        self.pairs = self.shape[0] * self.shape[1]
        self.num_envs = twins * self.pairs
        self.roles = role_column(first)
        features = config.obs_spec.n_features + 1
        self.single_observation_space = spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(features,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(config.action.n)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._ended = False  # the last step ended the episodes: the next step resets (next-step autoreset)
        self._zeros = np.zeros(self.num_envs, dtype=bool)
        self.last_cost = np.zeros(self.num_envs)  # each pair's cost of the last epoch, in money (tests, reports)

    def _observation(self, per_twin: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([pair_observations(o, self.roles) for o in per_twin])

    def _infos(self) -> dict:
        return {"episode_seed": np.repeat([sim.episode_seed for sim in self.sims], self.pairs)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start every twin's next episode (twin k of T from episode seed `seed x T + k` when a seed is given)."""
        if seed is None and not self._seeded:
            seed = self.seed
        twins = len(self.sims)
        obs = [sim.reset(None if seed is None else seed * twins + k) for k, sim in enumerate(self.sims)]
        self._seeded, self._ended = True, False
        return self._observation(obs), self._infos()

    def step(self, actions):
        """One review epoch of every twin: actions (sub-environments,) are each pair's choice."""
        if self._ended:  # next-step autoreset: these actions belong to no episode
            obs, infos = self.reset()
            return obs, np.zeros(self.num_envs), self._zeros, self._zeros, infos
        chosen = np.asarray(actions, dtype=np.int64).reshape(len(self.sims), *self.shape)
        obs, rewards, costs = [], [], []
        done = False
        for sim, twin_actions in zip(self.sims, chosen):
            o, cost, done = sim.step(twin_actions)
            obs.append(o)
            rewards.append(sim.rewards(sim.objective).ravel())
            costs.append(cost.ravel())
        self._ended = done  # every twin has the same episode length
        self.last_cost = np.concatenate(costs)
        truncated = np.full(self.num_envs, done)
        return self._observation(obs), np.concatenate(rewards), self._zeros, truncated, {}

    def close(self, **kwargs) -> None:
        """Nothing to release: the twins are plain Python objects."""

    @staticmethod
    def pairs_of(config: EnvConfig) -> int:
        """How many (node, SKU) pairs, and so sub-environments, one twin of `config` has."""
        sim = SupplyChainSim(config)
        return len(sim.controlled) * sim.n_sku

