"""The simulation core every environment shares: one twin Engine stepped one review epoch at a time.

`SupplyChainSim` knows nothing of PettingZoo, Gymnasium or RLlib: it turns action
indices (controlled nodes, SKUs) into orders, steps the engine, and returns the
observation (controlled nodes, SKUs, features) and costs. The env classes in
this package only reshape these arrays into their APIs' dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import scenarios
from agents.envs.actions import ActionMap, action_from_dict, anchor_for
from agents.envs.observation import ItemProfile, ObsSpec, observation_inputs
from agents.envs.worlds import World, WorldSpec, worlds_from_dict
from agents.forecasting import forecaster_from_name
from agents.forecasting.factory import FORECASTERS
from agents.forecasting.live import DemandForecast, forecast_over_protection
from twin.config import ConfigReader, SpecError
from twin.costs import cost_rates
from twin.coverage import protection_periods, starting_stock
from twin.engine import Engine
from twin.snapshot import Snapshot
from twin.spec import NetworkSpec
from twin.state import Topology
from twin.stats import DemandStats
from twin.streams import Streams

GRANULARITIES = ("node", "node_sku")
MIN_SCALE = 0.05  # units/day: a (node, SKU) with less mean demand is scaled as if it had this much


@dataclass(frozen=True)
class CostWeights:
    """How much each kind of the twin's cost counts in the rewards (1 each: the twin's own cost).

    The KPIs and the evaluation always report the twin's full cost; these weights
    only change what the agents are trained to minimise. `ordering` = 0, for
    example, trains on holding + shortage, the two costs of the paper's Table 2.
    """

    holding: float = 1.0
    shortage: float = 1.0      # backorders (per unit-day) and lost sales (per unit)
    ordering: float = 1.0      # fixed cost per order line and unit cost
    in_transit: float = 1.0

    KINDS = {"holding": ("holding",), "shortage": ("backorder", "lost_sale"), "ordering": ("ordering",),
             "in_transit": ("in_transit",)}

    def __post_init__(self) -> None:
        for name in self.KINDS:
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise SpecError(f"env.cost_weights.{name}: {value!r} is not allowed; allowed: a number >= 0")

    @property
    def unit(self) -> bool:
        """True when every weight is 1 (the reward is the twin's cost)."""
        return all(getattr(self, name) == 1.0 for name in self.KINDS)

    def apply(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """The weighted sum of costs by the engine's kinds (`Engine.day_costs`, `day_sku_costs`, or totals)."""
        return sum(getattr(self, name) * parts[kind] for name, kinds in self.KINDS.items() for kind in kinds)


@dataclass(frozen=True)
class EnvConfig:
    """Everything an environment needs; picklable, so RLlib can ship it to env runners."""

    network: NetworkSpec
    scenario: str = "baseline"
    scenario_params: Mapping[str, Any] = field(default_factory=dict)
    episode_days: int = 365
    review_period: int = 1
    granularity: str = "node"
    action: ActionMap = field(default_factory=lambda: action_from_dict(None))
    cooperative_weight: float = 0.0
    cost_weights: CostWeights = field(default_factory=CostWeights)
    downstream_shortage_weight: float = 0.0  # a DC's reward also counts this share of its stores' shortage cost
    forecaster: str = "oracle"
    forecast_refit_every: int = 7  # days between the learned forecaster's refits; 0: fitted once before the run
    initial_stock: float = 1.0  # start with this multiple of forecast demand over lead time + review on hand
    obs_spec: ObsSpec = field(default_factory=ObsSpec)
    worlds: WorldSpec | None = None  # a distribution of worlds drawn per episode (agents/envs/worlds.py);
    # None: every episode runs `scenario`

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise SpecError(f"env.granularity: {self.granularity!r} is not allowed; "
                            f"allowed: {', '.join(GRANULARITIES)}")
        if not 0.0 <= self.cooperative_weight <= 1.0:
            raise SpecError(f"env.cooperative_weight: {self.cooperative_weight!r} is not allowed; allowed: [0, 1]")
        if not 0.0 <= self.downstream_shortage_weight <= 1.0:
            raise SpecError(f"env.downstream_shortage_weight: {self.downstream_shortage_weight!r} is not allowed; "
                            f"allowed: [0, 1]")
        if self.forecast_refit_every < 0:
            raise SpecError(f"env.forecast_refit_every: {self.forecast_refit_every} is not allowed; allowed: >= 1 "
                            f"day, or 0 (fitted once before the run)")
        if self.episode_days < 1 or self.review_period < 1:
            raise SpecError("env.episode_days and env.review_period: allowed: integers >= 1")
        forecaster_from_name(self.forecaster, self.forecast_refit_every)
        # a scenario error names its key now, not in an env runner later
        scenarios.build(self.scenario, self.network, self.episode_days, **dict(self.scenario_params))
        if self.worlds is not None:
            self.worlds.check(self.network, self.episode_days)


def env_config_from_dict(data: Mapping[str, Any] | None, network: NetworkSpec,
                         scenario: Mapping[str, Any] | None = None, auto_granularity: str = "node") -> EnvConfig:
    """An EnvConfig from the `env` config section (SpecError naming the key); `scenario` = {name, params...}.

    `granularity: auto` becomes `auto_granularity` (the trainer picks node_sku for Discrete-only algorithms).
    """
    r = ConfigReader(data or {}, "env")
    scenario = dict(scenario or {"name": "baseline"})
    name = scenario.pop("name", "baseline")
    config = EnvConfig(
        network=network, scenario=name, scenario_params=scenario,
        episode_days=r.integer("episode_days", 365, low=1, high=36500),
        review_period=r.integer("review_period", 1, low=1, high=365),
        granularity=_granularity(r.choice("granularity", ("auto", *GRANULARITIES), "auto"), auto_granularity),
        action=action_from_dict(r.raw("action")),
        cooperative_weight=r.number("cooperative_weight", 0.0, low=0.0, high=1.0),
        cost_weights=_cost_weights(r.raw("cost_weights")),
        downstream_shortage_weight=r.number("downstream_shortage_weight", 0.0, low=0.0, high=1.0),
        forecaster=r.choice("forecaster", tuple(FORECASTERS), "oracle"),
        forecast_refit_every=r.integer("forecast_refit_every", 7, low=0, high=36500),
        initial_stock=r.number("initial_stock", 1.0, low=0.0, high=100.0),
        obs_spec=ObsSpec(pipeline_ages=r.integer("pipeline_ages", 8, low=1, high=365)),
        worlds=worlds_from_dict(r.raw("worlds")),
    )
    r.done()
    return config


def _cost_weights(data: Any) -> CostWeights:
    r = ConfigReader(data or {}, "env.cost_weights")
    weights = CostWeights(**{name: r.number(name, 1.0, low=0.0) for name in CostWeights.KINDS})
    r.done()
    return weights


def _granularity(value: str, auto: str) -> str:
    return auto if value == "auto" else value


def initial_on_hand(config: EnvConfig, topology: Topology | None = None,
                    daily_mean: np.ndarray | None = None) -> np.ndarray:
    """The stock (nodes, SKUs) an episode starts with: `config.initial_stock` x each node's mean daily demand
    over its protection period (nominal lead time + review period), none at suppliers (twin/coverage.py).

    `topology` and `daily_mean` (the demand model's mean over `episode_days`, seed 0) are computed when not given.
    """
    network = config.network
    topology = topology if topology is not None else Topology.of(network)
    if daily_mean is None:
        daily_mean = DemandStats.of(network, config.episode_days, seed=0).mean
    days = config.initial_stock * protection_periods(topology.lead_time_mean, config.review_period)
    days[topology.is_supplier] = 0.0
    return starting_stock(daily_mean, days, integer_units=network.demand.integer_units)


class SupplyChainSim:
    """A twin run driven by action indices: reset(seed) -> obs; step(actions) -> obs, costs, done."""

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        network = config.network
        self.network = network
        self.shocks = scenarios.build(config.scenario, network, config.episode_days,
                                      **dict(config.scenario_params)).shocks
        self.topology = Topology.of(network)
        rates = cost_rates(network)
        self.controlled = np.flatnonzero(~self.topology.is_supplier)
        self.node_names = tuple(self.topology.names[i] for i in self.controlled)
        # [c, i]: store i is below controlled node c (and is not c): whose shortage a DC's reward may count
        topo = self.topology
        below = topo.descendants[self.controlled] & topo.is_store[None, :]
        below[np.arange(len(self.controlled)), self.controlled] = False
        self.stores_below = below.astype(float)
        self.kinds = tuple(self.topology.kinds[i] for i in self.controlled)
        self.n_sku = network.skus.n
        stats = DemandStats.of(network, config.episode_days, seed=0)
        self.scale = np.maximum(stats.mean, MIN_SCALE)
        self.profile = ItemProfile(scale=self.scale, demand_cv=np.sqrt(stats.variance) / self.scale,
                                   critical_ratio=rates.critical_ratio,
                                   nominal_lead_time=self.topology.lead_time_mean,
                                   lead_time_variance=stats.lead_time_variance)
        self._profile_anchor = self.profile.over_protection(config.review_period)  # ProfileSafetyFactor's levels
        # what a day of demand costs to hold: the unit that rewards are measured in
        self.cost_scale = np.maximum(rates.holding * self.scale, 1e-6)[self.controlled]
        self.integer = network.demand.integer_units
        self._daily_mean = stats.mean
        self.initial_on_hand = initial_on_hand(config, self.topology, stats.mean)
        self.engine: Engine | None = None
        self.forecaster = forecaster_from_name(config.forecaster, config.forecast_refit_every)
        self._episode_seeds: np.random.Generator | None = None
        self.episode_seed = 0
        self._forecast = np.zeros((len(self.topology.names), self.n_sku))
        self._spread: np.ndarray | None = None
        self.objective = np.zeros(0)  # the last epoch's cost as the rewards weigh it (cost_weights)
        self.world: World | None = None  # the episode's drawn world (with config.worlds)

    # ---------------------------------------------------------------- episodes

    def reset(self, seed: int | None = None) -> np.ndarray:
        """A new run; with `seed` the episode seeds restart from it, without it the next one is drawn."""
        if seed is not None:
            self._episode_seeds = Streams(int(seed)).generator("env", "episodes")
            self.episode_seed = int(seed)
        else:
            if self._episode_seeds is None:
                self._episode_seeds = Streams(0).generator("env", "episodes")
            self.episode_seed = int(self._episode_seeds.integers(2**31 - 1))
        network, shocks, on_hand = self.network, self.shocks, self.initial_on_hand
        worlds = self.config.worlds
        if worlds is not None:  # the episode's world comes from its own seed: reproducible, whoever runs it
            self.world = world = worlds.draw(self.episode_seed)
            shocks = worlds.shocks(world, network, self.config.episode_days)
            network = worlds.network(world, network)
            if world.demand_scale != 1.0:
                on_hand = initial_on_hand(self.config, self.topology, self._daily_mean * world.demand_scale)
        self.engine = Engine(network, horizon=self.config.episode_days, seed=self.episode_seed,
                             shocks=shocks, invariants="off", initial_on_hand=on_hand,
                             sku_costs=self.config.granularity == "node_sku")
        self.forecaster.attach(self.engine)
        return self.observe()

    def attach(self, engine: Engine) -> None:
        """Drive an engine built elsewhere (an evaluation run) with this env's observations and actions."""
        self.check_shape("network", engine.network.name, engine.topology.names, tuple(engine.network.skus.name))
        self.engine = engine
        self.forecaster.attach(engine)

    def check_shape(self, key: str, name: str, nodes: tuple[str, ...], skus: tuple[str, ...]) -> None:
        """Refuse a run or snapshot whose nodes or SKUs (names, in order) are not this env's network's.

        Other parameters may differ (a policy tried on a network with longer lead times or dearer stock is a
        stress test); its observation then still reads this network's demand profile.
        """
        ours_skus = tuple(self.network.skus.name)
        for what, theirs, ours in (("nodes", nodes, self.topology.names), ("SKUs", skus, ours_skus)):
            if theirs != ours:
                differ = next((f"{a!r} where it has {b!r}" for a, b in zip(theirs, ours) if a != b),
                              f"{len(theirs)} where it has {len(ours)}")
                raise SpecError(f"{key}: network {name!r} does not have the {what} of the policy's network "
                                f"{self.network.name!r} ({differ}); allowed: its {what}, in its order")

    def observe(self) -> np.ndarray:
        """The observation (controlled nodes, SKUs, features) at the engine's decision point."""
        snapshot = self.engine.snapshot()
        return self.observe_snapshot(snapshot, self.forecast(snapshot))

    def forecast(self, snapshot: Snapshot) -> DemandForecast:
        """This env's forecaster's demand over each node's protection period from the snapshot's day."""
        return forecast_over_protection(snapshot, self.forecaster, self.config.review_period,
                                        with_spread=self.config.action.needs_spread)

    def observe_snapshot(self, snapshot: Snapshot, forecast: DemandForecast) -> np.ndarray:
        """The observation (controlled nodes, SKUs, features) of any snapshot of this network with `forecast`;
        `orders(actions)` then decides for it."""
        self.check_shape("snapshot", snapshot.network_name, snapshot.nodes, snapshot.skus)
        inputs = observation_inputs(snapshot, forecast, self.profile, self.config.obs_spec)
        anchor = anchor_for(self.config.action, forecast, self._profile_anchor)
        self._forecast = anchor.mean
        self._spread = anchor.spread
        self._position = snapshot.inventory_position
        return self.config.obs_spec.build(inputs)[self.controlled]

    def orders(self, actions: np.ndarray) -> np.ndarray:
        """Orders (nodes, SKUs) for action indices (controlled nodes, SKUs) at the current decision point."""
        c = self.controlled
        orders = np.zeros_like(self._forecast)
        spread = None if self._spread is None else self._spread[c]
        orders[c] = self.config.action.orders(np.asarray(actions, dtype=np.int64), self._position[c],
                                              self._forecast[c], self.scale[c], spread)
        return np.rint(orders) if self.integer else orders

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Order, simulate one review epoch; returns (obs, cost per (controlled node, SKU) or node, done).

        Costs are per controlled node, (nodes,), or per (node, SKU), (nodes, SKUs), with the node_sku
        granularity; in money, summed over the epoch's days.
        """
        engine = self.engine
        if engine is None:
            raise RuntimeError("call reset() before step()")
        by_sku = self.config.granularity == "node_sku"
        cost = np.zeros((len(self.controlled), self.n_sku) if by_sku else len(self.controlled))
        weights, downstream = self.config.cost_weights, self.config.downstream_shortage_weight
        plain = weights.unit and downstream == 0.0
        objective = cost if plain else cost.copy()
        orders = self.orders(actions)
        for d in range(self.config.review_period):
            if engine.done:
                break
            engine.step(orders if d == 0 else np.zeros_like(orders))
            cost += engine.day_sku_cost[self.controlled] if by_sku else engine.day_cost[self.controlled]
            if plain:
                continue
            parts = engine.day_sku_costs if by_sku else engine.day_costs
            objective += weights.apply(parts)[self.controlled]
            if downstream:
                shortage = weights.shortage * (parts["backorder"] + parts["lost_sale"])
                objective += downstream * (self.stores_below @ shortage)
        self.objective = objective
        return self.observe(), cost, engine.done

    def rewards(self, cost: np.ndarray) -> np.ndarray:
        """Minus each agent's cost in days-of-demand holding units, mixed with the network's by cooperative_weight.

        The envs pass `objective`, the last epoch's cost weighed by `cost_weights`.
        """
        scale = self.cost_scale if cost.ndim == 2 else self.cost_scale.sum(axis=1)
        own = cost / scale
        network = cost.sum() / scale.sum()
        w = self.config.cooperative_weight
        return -((1.0 - w) * own + w * network)

