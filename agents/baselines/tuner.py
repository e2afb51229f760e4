"""Search a policy's parameters on the twin with common random numbers.

Every candidate is evaluated on the same seeds, so it sees the same demand and
lead times as every other candidate: differences between candidates are
differences between policies, not noise between samples. The search is a
coordinate descent over grids (one parameter at a time, repeated until no
parameter moves), which suits the few safety factors per echelon that static
policies have and needs no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from agents.protocol import Policy
from twin.engine import Engine
from twin.shocks import Shock
from twin.snapshot import Snapshot
from twin.spec import NetworkSpec

if TYPE_CHECKING:
    from twin.demand_history import DemandSource


@dataclass(frozen=True)
class TuningResult:
    """The best parameters found, their mean cost per day over the seeds, every evaluation made, and the parameters
    whose best value is an end of their grid (`at_grid_edge`: the optimum may lie beyond)."""

    best: dict[str, float]
    best_cost: float
    evaluations: tuple[tuple[tuple[tuple[str, float], ...], float], ...]
    at_grid_edge: dict[str, str] = field(default_factory=dict)


def evaluate(policy: Policy, network: NetworkSpec, *, horizon: int, seeds: Sequence[int],
             shocks: Sequence[Shock] = (), warmup: int = 0, start: Snapshot | None = None,
             initial_on_hand: np.ndarray | None = None, demand: DemandSource | None = None) -> float:
    """Mean network cost per day of `policy` over `seeds` (same seeds => common random numbers), each run from
    `start` (a snapshot) or day 0 with `initial_on_hand`, on the store demand of `demand` (a planner's history,
    twin/demand_history.py) or of the network's model."""
    costs = []
    for seed in seeds:
        engine = Engine(network, horizon=horizon, seed=seed, shocks=shocks, warmup=warmup, invariants="off",
                        start=start, initial_on_hand=initial_on_hand, demand=demand)
        costs.append(engine.run(policy).kpis["network"]["cost_per_day"])
    return float(np.mean(costs))


def tune(make_policy: Callable[[dict[str, float]], Policy], network: NetworkSpec, *,
         grid: Mapping[str, Sequence[float]], horizon: int, seeds: Sequence[int], shocks: Sequence[Shock] = (),
         warmup: int = 0, max_rounds: int = 4, start: Snapshot | None = None,
         initial_on_hand: np.ndarray | None = None, demand: DemandSource | None = None,
         progress: Callable[[dict[str, float], float], None] | None = None) -> TuningResult:
    """Coordinate descent over `grid` (parameter name -> candidate values) minimising mean cost per day, every
    candidate run from `start` (a snapshot: tune from today's position) or from day 0 with `initial_on_hand`."""
    _check_grid(grid)
    if not seeds:
        raise ValueError("seeds: at least one seed is needed")

    def cost_of(params: dict[str, float]) -> float:
        cost = evaluate(make_policy(params), network, horizon=horizon, seeds=seeds, shocks=shocks, warmup=warmup,
                        start=start, initial_on_hand=initial_on_hand, demand=demand)
        if progress is not None:
            progress(dict(params), cost)
        return cost

    return coordinate_descent(cost_of, grid, max_rounds=max_rounds)


def coordinate_descent(cost_of: Callable[[dict[str, float]], float], grid: Mapping[str, Sequence[float]], *,
                       max_rounds: int = 4, start: Mapping[str, float] | None = None) -> TuningResult:
    """Minimise `cost_of(params)` over `grid` (parameter name -> candidate values) one parameter at a time,
    sweeping until no parameter moves (at most `max_rounds` sweeps); each candidate is costed once (cached).

    The search starts at `start` (e.g. the last decision of a rolling re-planner), else at each grid's middle
    value. `cost_of` should cost every candidate on the same random numbers (common random numbers), so that
    candidates differ by their parameters only.
    """
    _check_grid(grid)
    cache: dict[tuple[tuple[str, float], ...], float] = {}

    def cached(params: dict[str, float]) -> float:
        key = tuple(sorted(params.items()))
        if key not in cache:
            cache[key] = cost_of(dict(params))
        return cache[key]

    current = {name: float(values[len(values) // 2]) for name, values in grid.items()}
    if start is not None:
        current.update({name: float(start[name]) for name in grid if name in start})
    best_cost = cached(current)
    for _ in range(max_rounds):
        moved = False
        for name, values in grid.items():
            for value in values:
                candidate = {**current, name: float(value)}
                cost = cached(candidate)
                if cost < best_cost - 1e-12:
                    current, best_cost, moved = candidate, cost, True
        if not moved:
            break
    return TuningResult(best=current, best_cost=best_cost, evaluations=tuple(cache.items()),
                        at_grid_edge=at_grid_edge(current, grid))


def at_grid_edge(best: Mapping[str, float], grid: Mapping[str, Sequence[float]]) -> dict[str, str]:
    """The parameters whose best value is the lowest ("bottom") or highest ("top") of two or more candidates: the
    optimum may lie beyond the grid, which should then be widened."""
    edges = {}
    for name, values in grid.items():
        if len(set(values)) > 1 and name in best:
            if best[name] >= max(values):
                edges[name] = "top"
            elif best[name] <= min(values):
                edges[name] = "bottom"
    return edges


def _check_grid(grid: Mapping[str, Sequence[float]]) -> None:
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError("grid: every parameter needs at least one candidate value")
