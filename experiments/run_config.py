"""A simulation run's config, validated: plain containers in (conf/config.yaml, composed), typed objects out.

    config = load_config(plain(cfg))     # SpecError naming the key if anything is bad
    config.network, config.scenario, config.policy, config.seeds, config.initial_on_hand, config.start,
    config.demand (None: the network's own demand model; else a planner's history, twin/demand_history.py)

experiments.simulate runs it; experiments.tune reads the same config to tune the
policy's safety factors, and its `tune` block with `read_tune_options` (as experiments.robustness does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import scenarios
from agents.baselines.catalog import PolicySpec
from agents.baselines.safety import SAFETY_FACTOR_BOUNDS
from agents.protocol import Policy
from experiments.seeds import SeedRange
from scenarios import Scenario
from twin import NetworkSpec, network_from_dict
from twin.config import ConfigReader, SpecError, check_warmup
from twin.coverage import starting_stock
from twin.demand_history import DemandSource, demand_source_from_dict
from twin.snapshot import Snapshot
from twin.spec import INVARIANT_MODES
from twin.stats import DemandStats


@dataclass(frozen=True)
class OutputOptions:
    """What to write besides kpis.json and timeseries.csv."""

    per_sku: bool = False
    plots: bool = True
    snapshot_days: tuple[int, ...] = ()  # write snapshot_day<D>.json at these decision points


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a simulation needs, validated."""

    network: NetworkSpec
    scenario: Scenario
    policy_spec: PolicySpec
    policy: Policy
    horizon: int
    warmup: int
    seed: int
    replications: int
    invariants: str
    output: OutputOptions
    initial_on_hand: np.ndarray | None = None  # (nodes, SKUs) stock at the start; None: the network starts empty
    start: Snapshot | None = None              # start from this snapshot instead of day 0
    demand: DemandSource | None = None         # store demand from a history (conf/demand/history.yaml); None: model

    @property
    def seeds(self) -> list[int]:
        """One seed per replication: seed, seed + 1, ..."""
        return list(SeedRange(self.seed, self.replications).seeds)


def load_config(data: Mapping[str, Any]) -> SimulationConfig:
    """Validate a plain config mapping and build the network, scenario and policy (SpecError naming the key)."""
    r = ConfigReader(data, "")
    horizon = r.integer("horizon", 365, low=1, high=36500)
    warmup = check_warmup(r.integer("warmup", 0, low=0), horizon)
    seed = r.integer("seed", 0, low=0)
    replications = r.integer("replications", 1, low=1, high=10000)
    invariants = r.choice("invariants", INVARIANT_MODES, "warn")
    stock = r.child("initial_stock_days")
    initial_days = {kind: stock.number(kind, 0.0, low=0, high=365) for kind in ("store", "dc")}
    stock.done()
    out = r.child("output")
    days = out.sequence("snapshot_days", ())
    for i, d in enumerate(days):
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < horizon:
            raise SpecError(f"output.snapshot_days[{i}]: {d!r} is not allowed; allowed: whole days in "
                            f"[0, {horizon - 1}] (decision points before the horizon)")
    snapshot_days = tuple(sorted(set(days)))
    output = OutputOptions(per_sku=out.flag("per_sku", False), plots=out.flag("plots", True),
                           snapshot_days=snapshot_days)
    out.done()
    network = network_from_dict(r.raw("network"), "network")
    demand = demand_source_from_dict(r.raw("demand"), network, horizon, "demand")
    start = _start(r.text("start", optional=True), network, horizon, initial_days, snapshot_days)
    scenario_params = dict(ConfigReader(r.raw("scenario"), "scenario").data)
    scenario = scenarios.build(scenario_params.pop("name", None), network, horizon, **scenario_params)
    policy_spec = PolicySpec.from_dict(r.raw("policy"), "policy")
    r.done()
    return SimulationConfig(network=network, scenario=scenario, policy_spec=policy_spec,
                            policy=policy_spec.build(network, horizon, seed, demand), horizon=horizon,
                            warmup=warmup, seed=seed, replications=replications, invariants=invariants,
                            output=output, start=start, demand=demand,
                            initial_on_hand=None if start else initial_stock(network, horizon, seed, initial_days,
                                                                             demand))


def _start(path: str | None, network: NetworkSpec, horizon: int, initial_days: Mapping[str, float],
           snapshot_days: tuple[int, ...]) -> Snapshot | None:
    """The snapshot at `path` (checked against the network), or None; SpecError naming the key if it cannot be."""
    if path is None:
        return None
    if any(initial_days.values()):
        raise SpecError("start: a run from a snapshot starts with the snapshot's stock; allowed: "
                        "initial_stock_days of 0 (the default), or no start")
    snapshot = Snapshot.load(path, network, key="start")
    if snapshot.day >= horizon:
        raise SpecError(f"horizon: {horizon} is not after the start snapshot's day {snapshot.day}; "
                        f"allowed: horizon > {snapshot.day}")
    early = [d for d in snapshot_days if d < snapshot.day]
    if early:
        raise SpecError(f"output.snapshot_days: day {early[0]} is before the start snapshot's day {snapshot.day}; "
                        f"allowed: days in [{snapshot.day}, {horizon - 1}]")
    return snapshot


def initial_stock(network: NetworkSpec, horizon: int, seed: int, days: Mapping[str, float],
                  demand: DemandSource | None = None) -> np.ndarray | None:
    """On-hand stock at the start: `days` of mean daily demand per node kind (None when all are 0: empty), the
    mean of the run's demand (its history's, if it has one)."""
    if not any(days.values()):
        return None
    per_node = np.array([days.get(node.kind, 0.0) for node in network.nodes])
    return starting_stock(DemandStats.of(network, horizon, seed, demand).mean, per_node,
                          integer_units=network.demand.integer_units)


def read_tune_options(data) -> tuple[tuple[float, ...], int, int]:
    """Validate the `tune` block: grid of z values, number of seeds, rounds."""
    r = ConfigReader(data, "tune")
    low, high = SAFETY_FACTOR_BOUNDS
    grid = r.numbers("grid", (0.0, 1.0, 2.0), low=low, high=high)
    if not grid:
        raise SpecError(f"tune.grid: empty; allowed: at least one z value in [{low:g}, {high:g}]")
    seeds = r.integer("seeds", 2, low=1, high=100)
    rounds = r.integer("max_rounds", 3, low=1, high=20)
    r.done()
    return grid, seeds, rounds
