"""The baseline policies by name (conf/policy/<name>.yaml), and a reference case's stated optimal policy.

A policy config is `name` plus safety factors `z: {store: .., dc: ..}` per echelon (and, for
`shock_aware_base_stock`, `z_disrupted`: those while a disruption is in force).
Levels are static: computed once from the true demand model over the run's horizon
(`DemandStats.of(network, horizon, seed)`), or from a planner's demand history when the
run takes its demand from one (`demand`, twin/demand_history.py), never from the shocks
of a scenario.
`optimal_policy(case)` is the policy a reference case states as optimal, with the
case's own levels (experiments.validate runs it; experiments.evaluate and
experiments.train compare against it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.baselines.policies import SS, BaseStock, EchelonBaseStock, ReorderPointEOQ, ShockAwareBaseStock
from agents.baselines.safety import read_safety_factors
from agents.protocol import Policy
from twin.config import ConfigReader
from twin.costs import CostRates, cost_rates
from twin.registry import Registry
from twin.spec import NetworkSpec
from twin.stats import DemandStats

if TYPE_CHECKING:
    from scenarios.reference import ReferenceCase
    from twin.demand_history import DemandSource

ECHELONS = ("store", "dc")
SHOCK_AWARE = "shock_aware_base_stock"  # the one policy with a second set of safety factors, `z_disrupted`


def _base_stock(stats: DemandStats, rates: CostRates, spec: PolicySpec) -> Policy:
    return BaseStock.from_stats(stats, spec.z)


def _echelon_base_stock(stats: DemandStats, rates: CostRates, spec: PolicySpec) -> Policy:
    return EchelonBaseStock.from_stats(stats, spec.z)


def _shock_aware_base_stock(stats: DemandStats, rates: CostRates, spec: PolicySpec) -> Policy:
    return ShockAwareBaseStock.from_stats(stats, spec.z, spec.z_disrupted)


def _ss(stats: DemandStats, rates: CostRates, spec: PolicySpec) -> Policy:
    return SS.from_stats(stats, rates.fixed_order, rates.holding, spec.z)


def _rop(stats: DemandStats, rates: CostRates, spec: PolicySpec) -> Policy:
    return ReorderPointEOQ.from_stats(stats, rates.fixed_order, rates.holding, spec.z)


POLICIES: Registry[Callable[[DemandStats, CostRates, PolicySpec], Policy]] = Registry("policy.name", {
    "base_stock": _base_stock,
    "echelon_base_stock": _echelon_base_stock,
    "shock_aware_base_stock": _shock_aware_base_stock,
    "ss": _ss,
    "rop": _rop,
})


@dataclass(frozen=True)
class PolicySpec:
    """A validated policy config: its registry name and safety factors per echelon (`z_disrupted`: those while a
    disruption is in force, read by shock_aware_base_stock only)."""

    name: str
    z: dict[str, float] = field(default_factory=dict)
    z_disrupted: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str = "policy") -> PolicySpec:
        """Read `name` (one of POLICIES), `z` and, for shock_aware_base_stock, `z_disrupted` (store, dc: within
        SAFETY_FACTOR_BOUNDS, default SAFETY_FACTOR)."""
        r = ConfigReader(data, path)
        name = r.choice("name", POLICIES.names)
        z = read_safety_factors(r.child("z"), ECHELONS)
        # a z_disrupted left out (or a kind left out of it) is the calm z: no reaction, not the default z
        z_disrupted = read_safety_factors(r.child("z_disrupted"), ECHELONS, z) if name == SHOCK_AWARE else {}
        r.done()
        return cls(name=name, z=z, z_disrupted=z_disrupted)

    def to_dict(self) -> dict[str, Any]:
        """The config `from_dict` reads back: name, z and, for shock_aware_base_stock, z_disrupted."""
        data: dict[str, Any] = {"name": self.name, "z": dict(self.z)}
        if self.name == SHOCK_AWARE:
            data["z_disrupted"] = dict(self.z_disrupted)
        return data

    def build(self, network: NetworkSpec, horizon: int, seed: int, demand: DemandSource | None = None) -> Policy:
        """The policy with static levels for `network` (demand statistics over `horizon` days of `seed`, or of the
        demand history `demand` the run takes its demand from)."""
        stats = DemandStats.of(network, horizon, seed, demand)
        return POLICIES[self.name](stats, cost_rates(network), self)


def optimal_policy(case: ReferenceCase, network: NetworkSpec | None = None) -> Policy:
    """The case's stated optimal policy on its twin network (`case.network()` unless given): the levels of
    stage j on node `stage_j`, zero elsewhere."""
    network = network if network is not None else case.network()
    rows = {j: network.index(f"stage_{j}") for j in range(1, case.stages + 1)}

    def levels(values: tuple[float, ...]) -> np.ndarray:
        out = np.zeros((len(network.nodes), 1))
        for j, v in enumerate(values, start=1):
            out[rows[j], 0] = v
        return out

    if case.kind == "serial":
        return EchelonBaseStock(levels(case.levels["S"]))
    if case.kind == "sS":
        return SS(levels(case.levels["s"]), levels(case.levels["S"]))
    return BaseStock(levels(case.levels["S"]))
