"""Warm start by behaviour cloning: fit the policy to a rule's actions before reinforcement learning begins.

PPO started from random weights on a distribution of worlds learned one year-round buffer and hardly reacted to
the shock flags (README, Reinforcement learning), although its action family holds a rule that reacts. A warm
start gives it that rule as its first policy: the teacher picks, for each (node, SKU) pair, one grid value per
role while calm and another while a disruption is in force (with safety-factor actions, a base-stock that raises
its safety stock while a shock is declared; with profile_safety_factor exactly `ShockAwareBaseStock`); it acts in
the training worlds for `episodes` episodes, and the module's policy head is fitted to its actions (cross-entropy)
and its value head to the discounted returns the pairs received (mean squared error, returns in the rewards'
units). PPO then goes on from there. The teacher sees only what the agents see: the disruptions in force today,
never one to come.

    warm = WarmStart.from_dict({"enabled": True, "calm": {"store": 6, "dc": 10}, "disrupted": {"store": 8, ...}},
                               grid=setup.env.action.grid)
    stats = warm_start(algo, setup, warm, seed=0, gamma=0.99)    # before the first algo.train()

Only with SKU-batched sampling (the pairs as one vector env) and PPO (a policy head to clone). Give it enough
episodes that the shocks fall on many different days: with two (a holiday peak and a covid_2020 from day 180) the
clone, 99.996% faithful on them, keyed on the calendar rather than the shock flags and missed the first week of a
covid_2020 starting on day 70 (2.8% over the teacher's validation cost); the default is 12. The targets are
smoothed (`label_smoothing`, 0.1 of each spread over every action): a clone fitted to certainty (cross-entropy
1e-5) left PPO nothing to explore, and its greedy policy did not change in 36 iterations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.envs.vector import SkuVectorEnv
from twin.config import ConfigReader, SpecError

log = logging.getLogger("agents.rl.warm_start")

ROLES = ("store", "dc")


@dataclass(frozen=True)
class WarmStart:
    """The teacher (its grid value per role while calm and while disrupted) and how long it is imitated."""

    calm: Mapping[str, float]
    disrupted: Mapping[str, float]
    episodes: int = 12
    epochs: int = 10
    lr: float = 1e-3
    minibatch_size: int = 8192
    label_smoothing: float = 0.1  # the share of each target spread over every action: the clone keeps exploring

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, grid: Sequence[float],
                  path: str = "warm_start") -> WarmStart | None:
        """The `warm_start` section; None when not enabled. Every teacher value must be a value of the action grid
        (`grid`): a SpecError names the key and the grid otherwise."""
        r = ConfigReader(data or {}, path)
        enabled = r.flag("enabled", False)
        values = {}
        for key in ("calm", "disrupted"):
            section = r.child(key)
            values[key] = {role: section.number(role, None, optional=True) for role in ROLES}
            section.done()
        episodes = r.integer("episodes", cls.episodes, low=1, high=1000)
        epochs = r.integer("epochs", cls.epochs, low=1, high=10000)
        lr = r.number("lr", cls.lr, low=1e-8, high=1.0)
        minibatch = r.integer("minibatch_size", cls.minibatch_size, low=1, high=10**7)
        smoothing = r.number("label_smoothing", cls.label_smoothing, low=0.0, high=0.99)
        r.done()
        if not enabled:
            return None
        allowed = [float(v) for v in grid]
        for key, by_role in values.items():
            for role, value in by_role.items():
                if value is None:
                    raise SpecError(f"{path}.{key}.{role}: missing; allowed: one of the action grid's values "
                                    f"{_listed(allowed)}")
                if not any(abs(value - g) < 1e-9 for g in allowed):
                    raise SpecError(f"{path}.{key}.{role}: {value:g} is not allowed; allowed: one of the action "
                                    f"grid's values {_listed(allowed)}")
        return cls(values["calm"], values["disrupted"], episodes, epochs, lr, minibatch, smoothing)

    def actions(self, grid: Sequence[float], is_store: np.ndarray, disrupted: bool) -> np.ndarray:
        """The teacher's action index for each pair (`is_store`: 1 for a store's pair, 0 for a DC's)."""
        chosen = self.disrupted if disrupted else self.calm
        grid = np.asarray(grid, dtype=float)
        index = {role: int(np.argmin(np.abs(grid - chosen[role]))) for role in ROLES}
        return np.where(np.asarray(is_store, dtype=bool), index["store"], index["dc"]).astype(np.int64)


@dataclass(frozen=True)
class Demonstrations:
    """What the teacher did: each pair-step's observation, action and discounted return. The returns stop at the
    episode's end, where PPO's targets bootstrap from the value of the last state: a small bias on the last days,
    which PPO's own updates then correct."""

    observations: np.ndarray  # (rows, features) float32
    actions: np.ndarray       # (rows,) int64
    returns: np.ndarray       # (rows,) float32
    disrupted_share: float    # share of the steps with a disruption in force


def demonstrations(env: SkuVectorEnv, warm: WarmStart, episodes: int, seed: int, gamma: float) -> Demonstrations:
    """Run the teacher on `env` (one twin) for `episodes` episodes from `seed`, recording every pair-step."""
    if len(env.sims) != 1:
        raise ValueError(f"demonstrations: one twin per vector env, got {len(env.sims)}")
    sim, grid = env.sims[0], env.config.action.grid
    is_store = env.roles.reshape(-1)
    obs_rows, action_rows, return_rows, flags = [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        observations, actions, rewards = [], [], []
        done = False
        while not done:
            disrupted = bool(sim.engine.snapshot().disruptions)
            chosen = warm.actions(grid, is_store, disrupted)
            observations.append(obs)
            actions.append(chosen)
            flags.append(disrupted)
            obs, reward, _, truncated, _ = env.step(chosen)
            rewards.append(reward)
            done = bool(truncated.all())
        returns = np.zeros_like(np.asarray(rewards))
        running = np.zeros(env.num_envs)
        for t in range(len(rewards) - 1, -1, -1):
            running = rewards[t] + gamma * running
            returns[t] = running
        obs_rows.append(np.concatenate(observations))
        action_rows.append(np.concatenate(actions))
        return_rows.append(returns.reshape(-1))
    return Demonstrations(np.concatenate(obs_rows).astype(np.float32), np.concatenate(action_rows),
                          np.concatenate(return_rows).astype(np.float32), float(np.mean(flags)))


def fit_module(module, data: Demonstrations, warm: WarmStart, seed: int, device: Any = "cpu") -> dict[str, float]:
    """Fit a PPO RLModule's policy head to the teacher's actions (cross-entropy) and its value head to the
    returns (mean squared error), `warm.epochs` passes over the data in shuffled minibatches. Returns the last
    epoch's mean cross-entropy (against the smoothed targets) and standardised value error, the value fit's R^2
    over all rows and the share of rows where the module's greedy action is the teacher's.

    The returns are in the thousands, and Adam moves a weight by about `lr` per step: a value head fitted on them
    as they are would still be near 0 after thousands of steps. So the critic learns through a temporary head on
    the standardised returns, which is folded into the module's own value head at the end (its weights x the
    returns' standard deviation, its bias x that + their mean): the same function, in the returns' units.
    """
    import torch
    from ray.rllib.core.columns import Columns

    module = module.unwrapped()  # under several learners RLlib wraps it for DDP
    value_head = _value_layer(module)
    generator = torch.Generator().manual_seed(seed)
    obs = torch.as_tensor(data.observations)
    actions = torch.as_tensor(data.actions)
    returns = torch.as_tensor(data.returns)
    mean, std = float(returns.mean()), max(float(returns.std()), 1e-6)
    standardised = (returns - mean) / std
    with torch.random.fork_rng():  # the probe's initial weights from `seed`, leaving torch's global stream alone
        torch.manual_seed(seed)
        probe = torch.nn.Linear(value_head.in_features, 1).to(device)
    optimizer = torch.optim.Adam([*module.parameters(), *probe.parameters()], lr=warm.lr)
    rows = len(actions)
    module.train()
    policy_loss = value_loss = 0.0
    for epoch in range(warm.epochs):
        order = torch.randperm(rows, generator=generator)
        totals, batches = np.zeros(2), 0
        for start in range(0, rows, warm.minibatch_size):
            index = order[start:start + warm.minibatch_size]
            out = module.forward_train({Columns.OBS: obs[index].to(device)})
            pi = torch.nn.functional.cross_entropy(out[Columns.ACTION_DIST_INPUTS], actions[index].to(device),
                                                   label_smoothing=warm.label_smoothing)
            vf = torch.nn.functional.mse_loss(probe(out[Columns.EMBEDDINGS]).squeeze(-1),
                                              standardised[index].to(device))
            optimizer.zero_grad()
            (pi + vf).backward()
            optimizer.step()
            totals += (pi.item(), vf.item())
            batches += 1
        policy_loss, value_loss = totals / batches
        log.info("warm start: epoch %d of %d: cross-entropy %.4f, value error %.4f (standardised; 1: no better than "
                 "the mean)", epoch + 1, warm.epochs, policy_loss, value_loss)
    with torch.no_grad():
        value_head.weight.copy_(probe.weight * std)
        value_head.bias.copy_(probe.bias * std + mean)
        agree, squared = 0, 0.0
        for start in range(0, rows, warm.minibatch_size):
            batch = {Columns.OBS: obs[start:start + warm.minibatch_size].to(device)}
            greedy = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS].argmax(-1).cpu()
            agree += int((greedy == actions[start:start + warm.minibatch_size]).sum())
            values = module.compute_values(batch).cpu()
            squared += float(((values - returns[start:start + warm.minibatch_size]) ** 2).sum())
    return {"cross_entropy": float(policy_loss), "value_error": float(value_loss),
            "value_r2": 1.0 - squared / rows / std**2, "agreement": agree / rows}


def _value_layer(module):
    """The module's value head when it is one linear layer (RLlib's default PPO head on the critic's embedding)."""
    import torch

    layers = [m for m in module.vf.modules() if isinstance(m, torch.nn.Linear)] if hasattr(module, "vf") else []
    if len(layers) != 1 or layers[0].out_features != 1:
        raise ValueError(f"warm start: the module's value head is not one linear layer ({type(module).__name__}); "
                         f"allowed: RLlib's default PPO module (agent.hidden sets its encoder)")
    return layers[0]


def warm_start(algo, setup, warm: WarmStart, seed: int, gamma: float) -> dict[str, float]:
    """Clone the teacher into the first learner's module, then give every learner and env runner its weights.
    Returns fit_module's figures plus the demonstration's size and share of disrupted steps."""
    if not setup.sku_batched:
        raise SpecError("warm_start.enabled: true needs sku_batched: true (the teacher acts on the (node, SKU) "
                        "pairs as one vector env); allowed: sku_batched=true")
    env = SkuVectorEnv(setup.env, twins=1, seed=seed)
    data = demonstrations(env, warm, warm.episodes, seed, gamma)
    log.info("warm start: %d pair-steps from %d teacher episodes (%.0f%% of steps with a disruption in force)",
             len(data.actions), warm.episodes, 100 * data.disrupted_share)
    module_id = setup.policy_ids[0]

    def fit(learner) -> dict[str, float]:
        return fit_module(learner.module[module_id], data, warm, seed, learner._device)

    group = algo.learner_group
    # the first learner fits (with several, each would fit its own copy apart); then every learner and env runner
    # gets its weights
    results = list(group.foreach_learner(fit) if group.is_local else
                   group.foreach_learner(fit, remote_actor_ids=[0], healthy_only=False))
    if not results:
        raise RuntimeError("warm start: no learner answered (trainer.num_learners)")
    for result in results:
        if not result.ok:
            raise RuntimeError(f"warm start: the learner failed: {result.get()}")
    stats = results[0].get()
    if not group.is_local:
        group.set_weights(group.get_weights())
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=group, inference_only=True)
    if data.disrupted_share == 0:
        log.warning("warm start: no disruption was in force in the teacher's %d episodes, so its values while "
                    "disrupted were never shown (warm_start.episodes, or worlds with shocks)", warm.episodes)
    return {**stats, "pair_steps": float(len(data.actions)), "disrupted_share": data.disrupted_share}


def _listed(values: Sequence[float]) -> str:
    shown = [f"{v:g}" for v in values]
    return "[" + ", ".join(shown if len(shown) <= 12 else [*shown[:5], "...", *shown[-5:]]) + "]"
