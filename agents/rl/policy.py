"""A trained RL policy as a twin OrderPolicy, so it is evaluated exactly like the baselines.

    policy = TrainedPolicy.from_checkpoint("outputs/train/.../checkpoints/latest")
    policy.attach(engine); engine.run(policy)

The policy builds its observation with the env's ObsSpec and decodes its actions
with the env's ActionMap (both rebuilt from the setup saved with the checkpoint,
agents.rl.checkpoint), and acts greedily:
the most probable action (PPO) or the highest Q-value (DQN).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import tree
from ray.rllib.core.columns import Columns

from agents.envs.core import SupplyChainSim
from agents.envs.vector import pair_observations, role_column
from agents.forecasting.live import DemandForecast
from agents.rl.algorithms import RoleMapping, TrainingSetup
from agents.rl.checkpoint import read_setup
from twin.engine import Engine
from twin.snapshot import Snapshot


def checkpoint_label(checkpoint: Path) -> str:
    """A checkpoint's default policy name: its run directory's (RUN/checkpoints/iter_N -> rl:RUN)."""
    resolved = Path(checkpoint).resolve()
    run = resolved.parent.parent if resolved.parent.name == "checkpoints" else resolved
    return f"rl:{run.name}"


def module_dir(checkpoint: Path, policy_id: str) -> Path:
    return Path(checkpoint) / "learner_group" / "learner" / "rl_module" / policy_id


class TrainedPolicy:
    """Greedy decisions of trained RLModules (one per policy id) for a snapshot of the network and a forecast."""

    needs_snapshot = True  # Engine.run hands act() a Snapshot, from which the observation is built

    def __init__(self, setup: TrainingSetup, modules: dict, name: str = "rl") -> None:
        self.setup = setup
        self.modules = modules
        self.name = name
        self.sim = SupplyChainSim(setup.env)
        mapping = RoleMapping(dict(setup.roles), setup.shared_policy)
        by_sku = setup.env.granularity == "node_sku" and not setup.single_node
        n_nodes, n_sku = len(self.sim.controlled), self.sim.n_sku
        # rows of the (agents, ...) observation each policy answers for
        if setup.single_node:
            self.rows = {"default_policy": np.array([0])}
        elif setup.sku_batched:  # one policy for every (node, SKU) pair, which also reads the pair's role
            self.rows = {"default_policy": np.arange(n_nodes * n_sku)}
            self.roles = role_column(self.sim)
        else:
            agents = [f"{node}/{sku}" for node in self.sim.node_names for sku in setup.env.network.skus.name] \
                if by_sku else list(self.sim.node_names)
            policy_of = np.array([mapping(a) for a in agents])
            self.rows = {pid: np.flatnonzero(policy_of == pid) for pid in setup.policy_ids}
        self.by_sku = by_sku or setup.single_node
        self.shape = (n_nodes, n_sku)
        self.state: dict = {}

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, name: str | None = None) -> TrainedPolicy:
        """Load the modules (learner copies, with every head) and the env setup saved with the checkpoint."""
        from ray.rllib.core.rl_module.rl_module import RLModule

        checkpoint = Path(checkpoint).resolve()
        setup = read_setup(checkpoint)
        modules = {pid: RLModule.from_checkpoint(module_dir(checkpoint, pid)) for pid in setup.policy_ids}
        for module in modules.values():
            module.eval()
        return cls(setup, modules, name or checkpoint_label(checkpoint))

    @property
    def initial_on_hand(self) -> np.ndarray:
        return self.sim.initial_on_hand

    def attach(self, engine: Engine) -> None:
        """Decide for `engine` from now on (a fresh run: recurrent states start again)."""
        self.sim.attach(engine)
        self.state = {}

    def act(self, state: Snapshot) -> np.ndarray:
        """Greedy orders (nodes, SKUs) for the network in `state`, with the attached run's forecast.

        `Engine.run` hands this policy `engine.snapshot()` (it sets `needs_snapshot`); the decision depends
        only on the snapshot and the forecast, never on the attached engine's own state.
        """
        if not isinstance(state, Snapshot):
            raise TypeError(f"TrainedPolicy.act: expected a twin Snapshot (engine.snapshot()), got "
                            f"{type(state).__name__}; Engine.run passes one to a policy with needs_snapshot")
        if self.sim.engine is None:
            raise RuntimeError("TrainedPolicy.act: call attach(engine) first (its forecaster forecasts), or "
                               "decide(snapshot, forecast) with a forecast of your own")
        return self.decide(state, self.sim.forecast(state))

    def decide(self, snapshot: Snapshot, forecast: DemandForecast) -> np.ndarray:
        """Greedy orders (nodes, SKUs) for any snapshot of the training network with `forecast` over each node's
        protection period (mean, and spread for safety-factor actions)."""
        obs = self.sim.observe_snapshot(snapshot, forecast)  # (controlled nodes, SKUs, features)
        if self.setup.sku_batched:
            flat = pair_observations(obs, self.roles)
        else:
            flat = obs.reshape(-1, obs.shape[-1]) if self.by_sku else obs
        actions = np.zeros(flat.shape[:-1] if self.by_sku else flat.shape[:2], dtype=np.int64)
        with torch.no_grad():
            for pid, rows in self.rows.items():
                if len(rows):
                    actions[rows] = self._greedy(pid, torch.from_numpy(flat[rows]))
        return self.sim.orders(actions.reshape(self.shape))

    def _greedy(self, pid: str, obs: torch.Tensor) -> np.ndarray:
        module = self.modules[pid]
        batch = {Columns.OBS: obs}
        stateful = module.is_stateful()
        if stateful:  # one time step per call, the recurrent state carried between calls
            if pid not in self.state:
                initial = module.get_initial_state()
                self.state[pid] = tree.map_structure(
                    lambda v: v.unsqueeze(0).repeat(len(obs), *([1] * v.dim())), initial)
            batch = {Columns.OBS: obs.unsqueeze(1), Columns.STATE_IN: self.state[pid]}
        out = module.forward_inference(batch)
        if stateful:
            self.state[pid] = out[Columns.STATE_OUT]
        if Columns.ACTIONS in out:
            chosen = out[Columns.ACTIONS]
        else:
            chosen = torch.argmax(out[Columns.ACTION_DIST_INPUTS], dim=-1)
        if stateful:
            chosen = chosen.squeeze(1)
        return chosen.numpy()
