"""Rolling re-planning: every review period, fork the twin from today's snapshot, look ahead, re-tune z, go on.

The policy run between reviews is the forecast-driven base-stock (forecast_policy.py): order up to the live
forecast over lead time + review plus z(kind) times its spread. Every `every` days (a review, from the run's
first day on) `RollingReplanner` re-tunes z per echelon (store, dc) on simulated paths, with only what a
planner knows that day:

* **today's state**: the engine's `Snapshot` (stock, pipeline, backlogs, today's expected lead times);
* **the disruptions in force today**, each held on until its announced end (`Snapshot.disruptions` carry their
  windows), and no shock that has not started yet: a fork is `Engine(network, start=snapshot, shocks=())`, which
  takes the snapshot's disruptions and nothing else;
* **the demand forecast** of the live forecaster attached to the run, which has seen the demand of the days
  before today only (agents/forecasting/live.py). The forecast path of today, `PathForecast`, is both the
  fork's expected store demand (`ForecastDemand`: the twin's demand law drawn around it) and what the
  candidate policies order against in the fork (as the live policy would until its forecaster refits). With
  the oracle forecaster (the twin's true mean, future promotions and weather included) the replanner is an
  upper bound and says so in its name;
* **fresh random numbers**: the fork seeds come from (the run's seed, the day, the path) through their own
  `SeedSequence` (`fork_seeds`), never the run's own streams, which hold its future demand and lead times.

A demand shock in force is known with its multiplier and its end, and the forecaster has seen its effect on the
days before today. By default (`demand_shocks: announced`) the fork's expected demand is the forecast divided by
today's multiplier and multiplied by the one in force on each fork day: the forecast as it is while the shock
lasts, its unshocked level after the announced end. That is right for a forecaster that has caught up with the
shock, and too low after the end for a shock that began in the last few days (the forecast has not risen yet,
yet is divided). With `demand_shocks: forecast` the forecast is taken as it is (no multiplier, the end unused).

Every candidate z is costed on the same `paths` forks (common random numbers) by the tuner's coordinate descent
(tuner.coordinate_descent, warm-started at the last decision) or over the whole grid: the mean cost per day of
the paths, or, with `fill_target`, the cheapest candidate whose paths' mean store fill rate reaches it (if none
does, the one closest to it). Each review's decision is a row of `decisions` (this run) and of `decision_log`
(every run of this policy object, with its seed): experiments.evaluate writes them as replan_decisions.csv.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agents.baselines.policies import check_snapshot
from agents.baselines.safety import SAFETY_FACTOR_BOUNDS, safety_factors
from agents.baselines.tuner import coordinate_descent
from agents.forecasting.live import LiveForecaster, OracleForecaster, forecast_over_protection
from twin.config import ConfigReader, SpecError
from twin.coverage import protection_periods
from twin.engine import Engine
from twin.shocks import ShockEffects
from twin.snapshot import Snapshot, network_hash
from twin.spec import NetworkSpec
from twin.state import NetworkState, orders_up_to

SEARCHES = ("coordinate", "grid")
DEMAND_SHOCKS = ("forecast", "announced")
ECHELONS = ("store", "dc")
FORK_TAG = 0x7265706C616E  # "replan": keeps the fork seeds' SeedSequence apart from any other use of the run seed
SHORTFALL_WEIGHT = 1e9     # a point of fill below the target outweighs any cost difference


@dataclass(frozen=True)
class ReplanSpec:
    """The re-planner's settings (conf/evaluate.yaml `replan:`)."""

    forecaster: str = "seasonal_naive"  # the live forecaster (a conf/forecaster name, or oracle: an upper bound)
    every: int = 7                      # days between reviews
    paths: int = 1                      # forks per review, the same for every candidate
    lookahead: int = 35                 # days each fork runs (> every + the longest lead time through the network)
    grid: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0, 8.0)  # candidate z per echelon
    search: str = "coordinate"          # coordinate descent from the last decision, or the whole grid
    max_rounds: int = 1                 # coordinate-descent sweeps
    fill_target: float | None = 0.99    # None: the cheapest paths; else the cheapest reaching this fill rate
    demand_shocks: str = "announced"    # announced: rescaled to the shocks' ends; forecast: the forecast as is

    @classmethod
    def from_dict(cls, data: Mapping | None, path: str = "replan") -> ReplanSpec:
        """Read and check a `replan` block; SpecError naming the key."""
        r = ConfigReader(data, path)
        low, high = SAFETY_FACTOR_BOUNDS
        default = cls()
        no_target = "fill_target" in r.data and r.data["fill_target"] is None  # null: the cheapest forks
        fill_target = r.number("fill_target", default.fill_target, low=0.0, high=1.0, low_open=True)
        spec = cls(
            forecaster=r.text("forecaster", default.forecaster),
            every=r.integer("every", default.every, low=1, high=3650),
            paths=r.integer("paths", default.paths, low=1, high=1000),
            lookahead=r.integer("lookahead", default.lookahead, low=1, high=3650),
            grid=tuple(sorted(set(r.numbers("grid", default.grid, low=low, high=high)))),
            search=r.choice("search", SEARCHES, default.search),
            max_rounds=r.integer("max_rounds", default.max_rounds, low=1, high=20),
            fill_target=None if no_target else fill_target,
            demand_shocks=r.choice("demand_shocks", DEMAND_SHOCKS, default.demand_shocks),
        )
        r.done()
        if not spec.grid:
            raise SpecError(f"{path}.grid: empty; allowed: at least one z in [{low:g}, {high:g}]")
        return spec


def fork_seeds(run_seed: int, day: int, paths: int) -> tuple[int, ...]:
    """The seeds of a review's forks: derived from (the run's seed, the day), one per path, never the run's seed.

    The same for every candidate of the review (common random numbers), new each review, reproducible, and
    independent of the run's own streams (which hold its future demand and lead times).
    """
    state = np.random.SeedSequence([FORK_TAG, int(run_seed), int(day)]).generate_state(paths, dtype=np.uint64)
    seeds = [int(s) >> 1 for s in state]  # below 2**63
    return tuple(s ^ 1 if s == run_seed else s for s in seeds)


class PathForecast:
    """A live forecast frozen on day `origin`: expected demand and its variance per (node, SKU) for the days
    origin, origin + 1, ..., as running sums; days past the path count as its last day (as `Refitting` does).

    Answers the `LiveForecaster` questions (`over`, `spread`) for any later day, so a fork, which has no
    demand history of its own, orders against the forecast its planner made on the day it was forked.
    """

    name = "path"

    def __init__(self, origin: int, cumulative_mean: np.ndarray, cumulative_variance: np.ndarray) -> None:
        self.origin = origin
        self.cum_mean = cumulative_mean      # (days + 1, nodes, SKUs), row 0 zero
        self.cum_var = cumulative_variance

    @classmethod
    def from_live(cls, forecaster: LiveForecaster, day: int, days: int, n_nodes: int) -> PathForecast:
        """`forecaster`'s forecast of `day` (its decision point: what it has seen so far) over `days` days."""
        means, variances = [], []
        for j in range(days + 1):
            periods = np.full(n_nodes, j, dtype=np.int64)
            means.append(np.asarray(forecaster.over(day, periods), dtype=float))
            variances.append(np.asarray(forecaster.spread(day, periods), dtype=float) ** 2)
        cum_mean = np.maximum.accumulate(np.stack(means), axis=0)  # float residue never makes a day negative
        cum_var = np.maximum.accumulate(np.stack(variances), axis=0)
        return cls(day, cum_mean, cum_var)

    @property
    def days(self) -> int:
        return self.cum_mean.shape[0] - 1

    def daily(self, day: int) -> np.ndarray:
        """(nodes, SKUs) expected demand on `day` (the last day of the path beyond it)."""
        j = min(max(day - self.origin, 0), self.days - 1)
        return self.cum_mean[j + 1] - self.cum_mean[j]

    def _sums(self, cumulative: np.ndarray, day: int, periods: np.ndarray) -> np.ndarray:
        start = day - self.origin
        if start < 0:
            raise ValueError(f"PathForecast: day {day} is before the forecast's origin {self.origin}")
        periods = np.asarray(periods, dtype=np.int64)
        end = np.minimum(start + periods, self.days)
        nodes = np.arange(cumulative.shape[1])
        first = min(start, self.days)
        known = cumulative[end, nodes] - cumulative[first, nodes]
        beyond = (start + periods - np.maximum(end, start))[:, None]
        return known + beyond * (cumulative[-1] - cumulative[-2])

    def attach(self, engine: Engine) -> None:
        """Nothing to attach: the path is fixed."""

    def over(self, day: int, periods: np.ndarray) -> np.ndarray:
        return self._sums(self.cum_mean, day, periods)

    def spread(self, day: int, periods: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self._sums(self.cum_var, day, periods), 0.0))


class ForecastDemand:
    """A fork's demand: the twin's demand law (the fork's own draws) around the planner's forecast.

    The demand model of a fork (through `Engine(demand=...)`): `mean` is the forecast path's expected demand of the
    store and day (with `announced`, divided by today's demand-shock multiplier and multiplied by the one the
    fork's disruptions give that day); `draw` is the fork's own demand model's, from the fork's seed.
    """

    def __init__(self, model, path: PathForecast, network: NetworkSpec, today_multiplier: np.ndarray | None) -> None:
        self.model = model
        self.path = path
        self.rows = {nd.name: i for i, nd in enumerate(network.nodes) if nd.kind == "store"}
        self.today = today_multiplier  # (nodes, SKUs) with `announced`, else None

    def mean(self, store: str, day: int, multiplier: np.ndarray | float | None = None) -> np.ndarray:
        row = self.rows[store]
        expected = np.maximum(self.path.daily(day)[row], 0.0)
        if self.today is None:
            return expected
        today = self.today[row]
        base = np.divide(expected, today, out=expected.copy(), where=today > 0)
        return base if multiplier is None else base * multiplier

    def draw(self, store: str, day: int, mean: np.ndarray, *args) -> np.ndarray:
        return self.model.draw(store, day, mean, *args)  # any further argument (the day's multiplier) as given


class _ForecastSource:
    """What `Engine(demand=...)` takes (as twin/demand_history.py's DemandSource): the fork's demand model."""

    def __init__(self, path: PathForecast, today_multiplier: np.ndarray | None) -> None:
        self.path, self.today = path, today_multiplier

    def model(self, network: NetworkSpec, horizon: int, streams, base) -> ForecastDemand:
        return ForecastDemand(base, self.path, network, self.today)


class _ForkPolicy:
    """The forecast-driven base-stock with safety factors `z` (nodes, 1) on a fork: levels from the frozen
    forecast path over each node's protection period at the fork's expected lead times (as the live policy)."""

    def __init__(self, levels: _ForkLevels, z: np.ndarray) -> None:
        self.levels, self.z = levels, z

    def attach(self, engine: Engine) -> None:
        self.engine = engine

    def act(self, state: NetworkState) -> np.ndarray:
        mean, spread = self.levels.at(state.day, self.engine.expected_lead_times())
        return orders_up_to(mean + self.z * spread, state.inventory_position, state.topology.is_supplier)


class _ForkLevels:
    """Forecast mean and spread over the protection periods per fork day, computed once for all candidates
    and paths of a review (the forks' lead times follow the same disruptions)."""

    def __init__(self, path: PathForecast, review_period: int = 1) -> None:
        self.path, self.review_period = path, review_period
        self.cache: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}

    def at(self, day: int, lead_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        periods = protection_periods(lead_times, self.review_period)
        key = (day, periods.tobytes())
        if key not in self.cache:
            self.cache[key] = (self.path.over(day, periods), self.path.spread(day, periods))
        return self.cache[key]


class RollingReplanner:
    """Rolling re-planning over the forecast-driven base-stock (see the module docstring).

    `attach(engine)` for each run (it attaches the live forecaster; the replanner keeps only the network, the
    run's seed and first day); `act(snapshot)` reviews on review days, then orders up to
    forecast + z x spread with the z of the last review.
    """

    needs_snapshot = True

    def __init__(self, network: NetworkSpec, forecaster: LiveForecaster, spec: ReplanSpec | None = None,
                 name: str | None = None) -> None:
        self.network = network
        self.forecaster = forecaster
        self.spec = spec or ReplanSpec()
        self.upper_bound = isinstance(forecaster, OracleForecaster)
        label = getattr(forecaster, "name", type(forecaster).__name__)
        self.name = name or (f"replan:{label}" + ("[upper bound]" if self.upper_bound else ""))
        kinds = [nd.kind for nd in network.nodes]
        self.kinds = kinds
        self.echelons = [e for e in ECHELONS if e in kinds]
        self.is_supplier = np.array([k == "supplier" for k in kinds])
        self.decisions: list[dict] = []
        self.decision_log: list[dict] = []
        self.candidates: dict[tuple[tuple[str, float], ...], tuple[float, float]] = {}
        self._seed: int | None = None

    # ------------------------------------------------------------------ the run

    def attach(self, engine: Engine) -> None:
        """Decide for `engine` (a fresh run): attach the forecaster, start a new list of decisions."""
        if engine.network is not self.network and network_hash(engine.network) != network_hash(self.network):
            raise SpecError(f"{self.name}: the run's network {engine.network.name!r} is not the one the replanner "
                            f"was built for ({self.network.name!r})")
        self.forecaster.attach(engine)
        self._seed, self._first_day = int(engine.seed), int(engine.first_day)
        self.z = {e: float(self.spec.grid[len(self.spec.grid) // 2]) for e in self.echelons}
        self.decisions = []

    def is_review(self, day: int) -> bool:
        return (day - self._first_day) % self.spec.every == 0

    def act(self, state: Snapshot) -> np.ndarray:
        if self._seed is None:
            raise RuntimeError(f"{self.name}: call attach(engine) before act (experiments.evaluate does)")
        check_snapshot(self.name, state)
        if self.is_review(state.day):
            self.review(state)
        return orders_up_to(self.levels(state), state.inventory_position, self.is_supplier)

    def levels(self, snapshot: Snapshot) -> np.ndarray:
        """Today's order-up-to levels (nodes, SKUs): the live forecast plus z (of the last review) x its spread."""
        forecast = forecast_over_protection(snapshot, self.forecaster, 1, with_spread=True)
        return forecast.mean + safety_factors(self.kinds, self.z) * forecast.spread

    # ------------------------------------------------------------------ a review

    def path_forecast(self, snapshot: Snapshot) -> PathForecast:
        """Today's forecast over the lookahead plus the longest protection period in force today."""
        longest = int(protection_periods(snapshot.expected_lead_time, 1).max())
        return PathForecast.from_live(self.forecaster, snapshot.day, self.spec.lookahead + longest,
                                      len(self.network.nodes))

    def fork(self, snapshot: Snapshot, path: PathForecast, seed: int) -> Engine:
        """A fork of the run at `snapshot` over the lookahead: the disruptions in force today until their
        announced end and no other shock, demand drawn (from `seed`) around the forecast path."""
        today = None
        if self.spec.demand_shocks == "announced":
            effects = ShockEffects.neutral(len(self.network.nodes), self.network.skus.n)
            for shock in snapshot.disruptions:
                shock.apply(effects, self.network)
            today = effects.demand
        return Engine(self.network, horizon=snapshot.day + self.spec.lookahead, seed=seed, start=snapshot,
                      invariants="off", demand=_ForecastSource(path, today))

    def review(self, snapshot: Snapshot) -> dict:
        """Re-tune z on forks of `snapshot`; record and apply the decision (returned)."""
        started = time.perf_counter()
        spec = self.spec
        path = self.path_forecast(snapshot)
        levels = _ForkLevels(path)
        seeds = fork_seeds(self._seed, snapshot.day, spec.paths)
        figures: dict[tuple[tuple[str, float], ...], tuple[float, float]] = {}

        def run_paths(params: dict[str, float]) -> tuple[float, float]:
            key = tuple(sorted(params.items()))
            if key not in figures:
                z = safety_factors(self.kinds, params)
                costs, fills = [], []
                for seed in seeds:
                    engine = self.fork(snapshot, path, seed)
                    policy = _ForkPolicy(levels, z)
                    policy.attach(engine)
                    net = engine.run(policy).kpis["network"]
                    costs.append(net["cost_per_day"])
                    fills.append(1.0 if net["fill_rate"] is None else net["fill_rate"])
                figures[key] = (float(np.mean(costs)), float(np.mean(fills)))
            return figures[key]

        def score(params: dict[str, float]) -> float:
            cost, fill = run_paths(params)
            if spec.fill_target is None or fill >= spec.fill_target:
                return cost
            return cost + SHORTFALL_WEIGHT * (spec.fill_target - fill)

        grid = {e: spec.grid for e in self.echelons}
        if spec.search == "grid":
            candidates = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
            best = min(candidates, key=score)
        else:
            best = coordinate_descent(score, grid, max_rounds=spec.max_rounds, start=self.z).best
        self.z = {e: float(best[e]) for e in self.echelons}
        self.candidates = dict(figures)  # every candidate of this review: (cost per day, fill rate) on the paths
        cost, fill = run_paths(best)
        today_levels = self.levels(snapshot)
        decision = {"day": int(snapshot.day), **{f"z_{e}": self.z[e] for e in self.echelons},
                    "expected_fill_rate": fill, "expected_cost_per_day": cost,
                    "meets_target": None if spec.fill_target is None else fill >= spec.fill_target,
                    **{f"level_{e}": float(today_levels[[k == e for k in self.kinds]].sum()) for e in self.echelons},
                    "candidates": len(figures), "paths": spec.paths, "lookahead": spec.lookahead,
                    "disruptions": ";".join(f"{type(s).__name__}[{s.start},{s.end})" for s in snapshot.disruptions),
                    "seconds": time.perf_counter() - started}
        self.decisions.append(decision)
        self.decision_log.append({"seed": self._seed, **decision})
        return decision


def decision_rows(policies: Mapping[str, object]) -> list[dict]:
    """Every recorded review decision of the policies that keep a `decision_log`, with the policy's label."""
    return [{"policy": label, **row} for label, policy in policies.items()
            for row in getattr(policy, "decision_log", ())]

