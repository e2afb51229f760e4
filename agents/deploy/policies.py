"""The policies a bundle holds, deciding from a twin `Snapshot` and a `DemandForecast` with numpy (and onnxruntime).

Each one answers `decide(snapshot, forecast) -> PolicyOutput`: the orders (nodes, SKUs), the inventory position
each order aims at (its order-up-to level), and for a learned policy its confidence. Two kinds:

- `RulePolicy`: the baselines' own classes (base-stock, (s, S), the paper's ROP) with the levels computed at
  export, and the forecast-driven base-stock with its safety factors; their order rules are the baselines'
  (`orders_for`), so a bundle orders exactly what the policy orders in the twin.
- `OnnxPolicy`: the greedy heads of trained RLModules as ONNX (`agents.deploy.onnx_head.OnnxHead`), the
  observation built by the env's own ObsSpec from the item profile saved at export, the actions decoded by the
  env's ActionMap, as `agents.rl.policy.TrainedPolicy` does with torch.

`ServedPolicy` runs either inside the twin (`Engine.run`): it attaches a live forecaster to the engine, as the
checkpoint or baseline it was exported from does, so a twin run with the bundle reproduces theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from agents.baselines.policies import SS, BaseStock, ReorderPointEOQ, ShockAwareBaseStock
from agents.deploy.onnx_head import OnnxHead
from agents.envs.actions import ActionMap, anchor_for
from agents.envs.observation import ItemProfile, ObsSpec, observation_inputs
from agents.forecasting.live import DemandForecast, LiveForecaster, forecast_over_protection
from twin.engine import Engine
from twin.snapshot import Snapshot
from twin.state import orders_up_to


@dataclass(frozen=True)
class PolicyOutput:
    """A policy's decision for every (node, SKU) of a snapshot."""

    orders: np.ndarray                  # (nodes, SKUs) units to order today (0 at suppliers)
    levels: np.ndarray                  # (nodes, SKUs) the inventory position the order aims at (NaN: none)
    confidence: np.ndarray | None = None  # (nodes, SKUs) a learned policy's confidence in its action
    # a learned policy's (node, SKU) rows whose observation or scores were not finite: (node, SKU) -> (what, value),
    # what = "observation feature NAME" or "score of action A" (the first one found); their orders mean nothing
    not_finite: Mapping[tuple[int, int], tuple[str, float]] = field(default_factory=dict)


# each rule's parameter arrays (nodes, SKUs), or z (nodes, 1) for the forecast base-stock: what a bundle stores
RULE_ARRAYS = {"base_stock": ("levels",), "ss": ("s", "S"), "rop": ("reorder_point", "quantity"),
               "shock_aware_base_stock": ("calm", "disrupted"), "forecast_base_stock": ("z",)}
RULES = tuple(RULE_ARRAYS)


class RulePolicy:
    """A rule policy with fixed parameters: `rule` one of RULES, `arrays` its parameters (nodes, SKUs) or,
    for the forecast base-stock, `z` (nodes, 1)."""

    def __init__(self, rule: str, arrays: Mapping[str, np.ndarray], is_supplier: np.ndarray) -> None:
        if rule not in RULES:
            raise ValueError(f"rule {rule!r} is not allowed; allowed: {', '.join(RULES)}")
        self.rule = rule
        self.arrays = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
        self.is_supplier = np.asarray(is_supplier, dtype=bool)
        self.needs_forecast = rule == "forecast_base_stock"
        self.needs_spread = self.needs_forecast
        a = self.arrays
        self._static = {"base_stock": lambda: BaseStock(a["levels"]), "ss": lambda: SS(a["s"], a["S"]),
                        "rop": lambda: ReorderPointEOQ(a["reorder_point"], a["quantity"]),
                        "shock_aware_base_stock": lambda: ShockAwareBaseStock(a["calm"], a["disrupted"], is_supplier),
                        }.get(rule, lambda: None)()

    def decide(self, snapshot: Snapshot, forecast: DemandForecast | None = None,
               nodes: np.ndarray | None = None) -> PolicyOutput:
        """Orders and levels for the snapshot (the forecast is read by the forecast base-stock only; a rule is
        cheap for every node, so `nodes` is accepted and not needed)."""
        position = snapshot.inventory_position
        if self.rule == "forecast_base_stock":
            if forecast is None or forecast.spread is None:
                raise ValueError("the forecast base-stock needs a forecast with its spread")
            levels = forecast.mean + self.arrays["z"] * forecast.spread
            return PolicyOutput(orders_up_to(levels, position, self.is_supplier), levels)
        if self.rule == "shock_aware_base_stock":  # the disrupted levels while the state has a disruption in force
            levels = self._static.levels_for(snapshot)
            return PolicyOutput(self._static.act(snapshot), np.where(self.is_supplier[:, None], np.nan, levels))
        orders = self._static.orders_for(position, self.is_supplier)
        if self.rule == "base_stock":
            levels = self.arrays["levels"]
        elif self.rule == "ss":
            levels = np.where(orders > 0, self.arrays["S"], self.arrays["s"])
        else:  # rop: the position after ordering whole batches, or the reorder point it waits for
            levels = np.where(orders > 0, position + orders, self.arrays["reorder_point"])
        return PolicyOutput(orders, np.where(self.is_supplier[:, None], np.nan, levels))


@dataclass(frozen=True)
class Head:
    """One policy id's ONNX head and the controlled nodes it answers for."""

    policy_id: str
    onnx: OnnxHead
    nodes: np.ndarray   # indices into the controlled nodes
    layout: str         # "per_sku": rows (agents, features); "per_node": (nodes, SKUs, features)


class OnnxPolicy:
    """Greedy decisions of exported RLModules: observation (ObsSpec) -> ONNX scores -> argmax -> ActionMap."""

    needs_forecast = True
    initial_on_hand: np.ndarray | None = None  # the stock its training episodes started with, where known

    def __init__(self, heads: list[Head], obs_spec: ObsSpec, profile: ItemProfile, action: ActionMap,
                 controlled: np.ndarray, integer_units: bool, review_period: int = 1) -> None:
        self.heads, self.obs_spec, self.profile, self.action = heads, obs_spec, profile, action
        self.controlled = np.asarray(controlled)
        self.integer_units = integer_units
        self.needs_spread = action.needs_spread
        # a profile-anchored action's levels, fixed for the bundle: computed once, as the env does
        self.profile_anchor = profile.over_protection(review_period) if action.anchor == "profile" else None

    def decide(self, snapshot: Snapshot, forecast: DemandForecast | None = None,
               nodes: np.ndarray | None = None) -> PolicyOutput:
        """Greedy orders, levels and confidence for every controlled (node, SKU) of the snapshot, or for those of
        `nodes` (indices) only: a served request asks for its locations, and the others are left at 0 / NaN."""
        if forecast is None or (self.needs_spread and forecast.spread is None):
            raise ValueError("a learned policy needs a forecast" + (" with its spread" if self.needs_spread else ""))
        at = np.arange(len(self.controlled)) if nodes is None else np.flatnonzero(np.isin(self.controlled, nodes))
        c = self.controlled[at]
        inputs = observation_inputs(snapshot, forecast, self.profile, self.obs_spec)
        obs = self.obs_spec.build(inputs.rows(c))
        n_sku = obs.shape[1]
        actions = np.zeros((len(c), n_sku), dtype=np.int64)  # rows no head answers for: action 0, as TrainedPolicy
        confidence = np.full((len(c), n_sku), np.nan)
        not_finite: dict[tuple[int, int], tuple[str, float]] = {}
        bad_obs = ~np.isfinite(obs).all(axis=-1)  # (rows, SKUs)
        for r, k in zip(*np.nonzero(bad_obs)):
            f = int(np.flatnonzero(~np.isfinite(obs[r, k]))[0])
            not_finite[int(c[r]), int(k)] = (f"observation feature {self.obs_spec.feature_names[f]}",
                                             float(obs[r, k, f]))
        for head in self.heads:
            mine = np.flatnonzero(np.isin(at, head.nodes))
            if not len(mine):
                continue
            rows = obs[mine]
            x = rows.reshape(-1, rows.shape[-1]) if head.layout == "per_sku" else rows
            scores = head.onnx.scores(x).reshape(len(mine), n_sku, -1)
            chosen, sure = head.onnx.choose(scores)
            actions[mine] = chosen
            confidence[mine] = sure
            for r, k in zip(*np.nonzero(~np.isfinite(scores).all(axis=-1))):
                a = int(np.flatnonzero(~np.isfinite(scores[r, k]))[0])
                not_finite.setdefault((int(c[mine[r]]), int(k)), (f"score of action {a}", float(scores[r, k, a])))
        shape = snapshot.on_hand.shape
        orders, levels, full_confidence = np.zeros(shape), np.full(shape, np.nan), np.full(shape, np.nan)
        position = snapshot.inventory_position
        anchor = anchor_for(self.action, forecast, self.profile_anchor)
        spread = None if anchor.spread is None else anchor.spread[c]
        args = (actions, position[c], anchor.mean[c], self.profile.scale[c], spread)
        orders[c] = self.action.orders(*args)
        levels[c] = self.action.levels(*args)
        full_confidence[c] = confidence
        if self.integer_units:  # as the envs round (SupplyChainSim.orders)
            orders = np.rint(orders)
        return PolicyOutput(orders, levels, full_confidence, not_finite)


class ServedPolicy:
    """A bundle's policy as a twin OrderPolicy: `attach(engine)`, then `Engine.run` hands it snapshots.

    `forecaster` forecasts inside the twin run (the one the policy was trained or built with); a rule policy
    without a forecast ignores it.
    """

    needs_snapshot = True

    def __init__(self, policy: RulePolicy | OnnxPolicy, forecaster: LiveForecaster | None, review_period: int,
                 name: str, initial_on_hand: np.ndarray | None = None) -> None:
        self.policy, self.forecaster, self.review_period, self.name = policy, forecaster, review_period, name
        self.initial_on_hand = initial_on_hand
        if policy.needs_forecast and forecaster is None:
            raise ValueError(f"{name}: this policy decides from a forecast; give a live forecaster")

    def attach(self, engine: Engine) -> None:
        """Decide for `engine` from now on (its forecaster sees that run's demand)."""
        if self.forecaster is not None:
            self.forecaster.attach(engine)

    def act(self, state: Snapshot) -> np.ndarray:
        forecast = None
        if self.policy.needs_forecast:
            forecast = forecast_over_protection(state, self.forecaster, self.review_period,
                                                with_spread=self.policy.needs_spread)
        return self.policy.decide(state, forecast).orders
