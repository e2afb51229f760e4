"""A distribution of worlds for training episodes: a scenario, its start day and severity, and a demand profile,
drawn per episode from the episode's own seed (`env.worlds` in conf/train.yaml).

    worlds = worlds_from_dict({"scenarios": ["baseline", "port_strike"], "start_day": {"low": 0, "high": 300},
                               "severity": {"low": 0.5, "high": 1.5}, "hold_out": [{"name": "dc_outage"}]})
    EnvConfig(network=network, worlds=worlds)          # checks it against the network and episode_days
    world = worlds.draw(episode_seed)                  # the same seed always gives the same world
    shocks = worlds.shocks(world, network, 365)        # = scenarios.build(world.scenario, ..., **world.params)

What is drawn, in this order, from `Streams(episode_seed).generator("env", "world")` (never the engine's streams,
so a world does not change the episode's demand or lead-time draws):

- the scenario, by `scenarios` weights;
- its `start_day`, uniform over the whole days [low, high] (scenarios with a `start_day` parameter only);
- a severity s, uniform over [low, high], which sets each scenario's severity knobs (`SEVERITY_KNOBS`):
  covid_2020's `severity` times s; flash_sale's `multiplier`, port_strike's `lead_time_multiplier`, holiday_peak's
  `multiplier` and `capacity_factor` moved away from 1 by s (1 + s x (value - 1): s = 1 is the value as configured,
  0 no effect). baseline, dc_outage (an outage has no degree) and custom / file scenarios have no knob;
- the demand profile: every SKU's base mean times `demand_profile.scale`, and the network's
  `demand.yearly_amplitude` replaced by `demand_profile.yearly_amplitude`.

Every draw is made whether or not the drawn scenario uses it, so a world is a function of the seed alone. A
range left out (null) is not drawn: the scenario's configured value (`params`, else its default) is used.

`hold_out` lists scenarios (each a mapping like conf/scenario/<name>.yaml) that training must never see; one that
could be drawn (its name is trained on and each of its parameters lies inside the draws) is a config error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import scenarios
from scenarios.base import ScenarioBuilder
from twin.config import ConfigReader, SpecError
from twin.shocks import Shock
from twin.spec import NetworkSpec
from twin.streams import Streams

KEY = "env.worlds"

# scenario -> {parameter: how severity s sets it}: "times" = value x s, "from_one" = 1 + s x (value - 1)
SEVERITY_KNOBS: dict[str, dict[str, str]] = {
    "covid_2020": {"severity": "times"},
    "flash_sale": {"multiplier": "from_one"},
    "port_strike": {"lead_time_multiplier": "from_one"},
    "holiday_peak": {"multiplier": "from_one", "capacity_factor": "from_one"},
}


@dataclass(frozen=True)
class Range:
    """A closed interval [low, high] a value is drawn from uniformly."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low - 1e-12 <= value <= self.high + 1e-12


@dataclass(frozen=True)
class World:
    """One drawn world: what an episode runs. `params` are the scenario's parameters as `scenarios.build` takes
    them (fixed ones and drawn ones); `start_day` / `severity` are None where the scenario has no such knob."""

    scenario: str
    params: Mapping[str, Any]
    start_day: int | None = None
    severity: float | None = None
    demand_scale: float = 1.0
    yearly_amplitude: float | None = None  # None: the network's own

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "params": dict(self.params), "start_day": self.start_day,
                "severity": self.severity, "demand_scale": self.demand_scale,
                "yearly_amplitude": self.yearly_amplitude}


def knob_value(kind: str, value: float, severity: float) -> float:
    """A severity knob's value for severity `severity`, from its configured `value`."""
    return value * severity if kind == "times" else 1.0 + severity * (value - 1.0)


@dataclass(frozen=True)
class WorldSpec:
    """The distribution of training worlds (picklable: env runners get it inside the EnvConfig)."""

    scenarios: tuple[str, ...]
    weights: tuple[float, ...]
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # scenario -> fixed parameters
    start_day: Range | None = None
    severity: Range | None = None
    demand_scale: Range | None = None
    yearly_amplitude: Range | None = None
    hold_out: tuple[Mapping[str, Any], ...] = ()  # {name, params...} each

    # ---------------------------------------------------------------- drawing

    def draw(self, seed: int) -> World:
        """The world of the episode with seed `seed` (the same seed, the same world)."""
        rng = Streams(int(seed)).generator("env", "world")
        p = np.asarray(self.weights, dtype=float)
        index = int(rng.choice(len(self.scenarios), p=p / p.sum()))
        day = int(rng.integers(int(self.start_day.low), int(self.start_day.high) + 1)) if self.start_day else 0
        u_severity, u_scale, u_amplitude = rng.random(3)
        name = self.scenarios[index]
        params = dict(self.params.get(name, {}))
        start_day = severity = None
        if self.start_day is not None and self.has_start_day(name):
            start_day = params["start_day"] = day
        knobs = SEVERITY_KNOBS.get(name, {})
        if self.severity is not None and knobs:
            severity = float(self.severity.low + u_severity * (self.severity.high - self.severity.low))
            base = self.base(name)
            for knob, kind in knobs.items():
                params[knob] = knob_value(kind, getattr(base, knob), severity)
        scale = 1.0
        if self.demand_scale is not None:
            scale = float(self.demand_scale.low + u_scale * (self.demand_scale.high - self.demand_scale.low))
        amplitude = None
        if self.yearly_amplitude is not None:
            r = self.yearly_amplitude
            amplitude = float(r.low + u_amplitude * (r.high - r.low))
        return World(name, params, start_day, severity, scale, amplitude)

    def shocks(self, world: World, network: NetworkSpec, horizon: int) -> tuple[Shock, ...]:
        """The world's shocks on `network` over `horizon` days: exactly what `scenarios.build` gives."""
        return scenarios.build(world.scenario, network, horizon, **dict(world.params)).shocks

    @staticmethod
    def network(world: World, network: NetworkSpec) -> NetworkSpec:
        """`network` with the world's demand profile (itself when the profile is the network's own)."""
        if world.demand_scale == 1.0 and world.yearly_amplitude is None:
            return network
        skus = dataclasses.replace(network.skus, mean=network.skus.mean * world.demand_scale)
        demand = network.demand if world.yearly_amplitude is None else dataclasses.replace(
            network.demand, yearly_amplitude=world.yearly_amplitude)
        return dataclasses.replace(network, skus=skus, demand=demand)

    @property
    def randomises_demand(self) -> bool:
        return self.demand_scale is not None or self.yearly_amplitude is not None

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def builder(name: str) -> type[ScenarioBuilder]:
        return scenarios.SCENARIOS.resolve(name)

    def has_start_day(self, name: str) -> bool:
        return "start_day" in {f.name for f in fields_of(self.builder(name))}

    def base(self, name: str) -> ScenarioBuilder:
        """The training scenario `name` with its fixed parameters (`params`), before any draw."""
        return self.builder(name).from_params(dict(self.params.get(name, {})))

    # ---------------------------------------------------------------- checks

    def check(self, network: NetworkSpec, horizon: int) -> None:
        """SpecError naming the key for a setting that cannot run: raised when the EnvConfig is built."""
        if not self.scenarios:
            raise SpecError(f"{KEY}.scenarios: empty; allowed: at least one scenario name")
        for name in self.scenarios:
            scenarios.SCENARIOS.check(name, f"{KEY}.scenarios")
        if len(set(self.scenarios)) != len(self.scenarios):
            raise SpecError(f"{KEY}.scenarios: a scenario is listed twice; allowed: each name once")
        if len(self.weights) != len(self.scenarios) or any(not (np.isfinite(w) and w >= 0) for w in self.weights) \
                or sum(self.weights) <= 0:
            raise SpecError(f"{KEY}.scenarios: weights {list(self.weights)} are not allowed; allowed: one number "
                            f">= 0 per scenario, not all 0")
        for name in self.params:
            if name not in self.scenarios:
                raise SpecError(f"{KEY}.params.{name}: not a scenario of {KEY}.scenarios; allowed: "
                                f"{', '.join(self.scenarios)}")
        for key, r in (("start_day", self.start_day), ("severity", self.severity),
                       ("demand_profile.scale", self.demand_scale),
                       ("demand_profile.yearly_amplitude", self.yearly_amplitude)):
            if r is not None and r.low > r.high:
                raise SpecError(f"{KEY}.{key}: low {r.low:g} > high {r.high:g}; allowed: low <= high")
        if self.start_day is not None and not (0 <= self.start_day.low and self.start_day.high < horizon):
            raise SpecError(f"{KEY}.start_day: [{self.start_day.low:g}, {self.start_day.high:g}] is out of range; "
                            f"allowed: whole days in [0, {horizon - 1}] (env.episode_days - 1)")
        if self.severity is not None and self.severity.low < 0:
            raise SpecError(f"{KEY}.severity.low: {self.severity.low:g} is out of range; allowed: [0, inf]")
        if self.demand_scale is not None and not (self.demand_scale.low > 0 and self.demand_scale.high <= 10):
            raise SpecError(f"{KEY}.demand_profile.scale: [{self.demand_scale.low:g}, {self.demand_scale.high:g}] "
                            f"is out of range; allowed: (0, 10]")
        if self.yearly_amplitude is not None and not (0 <= self.yearly_amplitude.low
                                                      and self.yearly_amplitude.high <= 0.99):
            raise SpecError(f"{KEY}.demand_profile.yearly_amplitude: [{self.yearly_amplitude.low:g}, "
                            f"{self.yearly_amplitude.high:g}] is out of range; allowed: [0, 0.99]")
        for name in self.scenarios:
            self.check_scenario(name, network, horizon)
        for i, held in enumerate(self.hold_out):
            self.check_held_out(i, held, network, horizon)

    def check_scenario(self, name: str, network: NetworkSpec, horizon: int) -> None:
        """Build the scenario with its fixed parameters and at both ends of each drawn range."""
        fixed = dict(self.params.get(name, {}))
        try:
            scenarios.build(name, network, horizon, **fixed)
        except SpecError as e:
            raise SpecError(f"{KEY}.params.{name}: {e}") from None
        if self.start_day is not None and self.has_start_day(name) and "start_day" in fixed:
            raise SpecError(f"{KEY}.params.{name}.start_day: drawn from {KEY}.start_day; allowed: one of the two "
                            f"(or {KEY}.start_day: null)")
        ends: list[tuple[str, dict[str, Any]]] = []
        if self.start_day is not None and self.has_start_day(name):
            ends += [(f"start_day.{end}", {"start_day": int(getattr(self.start_day, end))}) for end in ("low", "high")]
        knobs = SEVERITY_KNOBS.get(name, {})
        if self.severity is not None and knobs:
            base = self.base(name)
            for end in ("low", "high"):
                s = getattr(self.severity, end)
                values = {k: knob_value(kind, getattr(base, k), s) for k, kind in knobs.items()}
                ends.append((f"severity.{end}", values))
        for key, drawn in ends:
            try:
                scenarios.build(name, network, horizon, **{**fixed, **drawn})
            except SpecError as e:
                raise SpecError(f"{KEY}.{key}: scenario {name!r} cannot run with it: {e}") from None

    def check_held_out(self, i: int, held: Mapping[str, Any], network: NetworkSpec, horizon: int) -> None:
        """A held-out scenario must build, and must be one that training never draws."""
        key = f"{KEY}.hold_out[{i}]"
        params = dict(held)
        name = scenarios.SCENARIOS.check(params.pop("name", None), f"{key}.name")
        try:
            scenarios.build(name, network, horizon, **params)
        except SpecError as e:
            raise SpecError(f"{key}: {e}") from None
        if name in self.scenarios and self.could_draw(name, self.builder(name).from_params(params)):
            raise SpecError(f"{key}: scenario {name!r} with these parameters is also a training world ({name!r} is in "
                            f"{KEY}.scenarios and every parameter lies inside the draws); allowed: a scenario not in "
                            f"{KEY}.scenarios, or a parameter outside what training draws (a start day or severity "
                            f"outside the ranges, another fixed value)")

    def could_draw(self, name: str, held: ScenarioBuilder) -> bool:
        """True if training scenario `name` can be drawn with exactly `held`'s parameters."""
        base = self.base(name)
        knobs = SEVERITY_KNOBS.get(name, {}) if self.severity is not None else {}
        for f in fields_of(type(held)):
            value = getattr(held, f.name)
            if f.name == "start_day" and self.start_day is not None:
                if not (self.start_day.contains(value)):
                    return False
            elif f.name in knobs:
                low, high = (knob_value(knobs[f.name], getattr(base, f.name), s)
                             for s in (self.severity.low, self.severity.high))
                if not Range(min(low, high), max(low, high)).contains(value):
                    return False
            elif value != getattr(base, f.name):
                return False
        return True


def fields_of(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)


def _range(r: ConfigReader, name: str, *, integer: bool = False) -> Range | None:
    """`name: {low, high}` (both required), or None when absent."""
    if not r.has(name):
        r.raw(name)
        return None
    c = r.child(name)
    read = c.integer if integer else c.number
    low, high = read("low"), read("high")
    c.done()
    return Range(low, high)


def worlds_from_dict(data: Mapping[str, Any] | None) -> WorldSpec | None:
    """The `env.worlds` section (None: no distribution, every episode runs the env's `scenario`); SpecError
    naming the key for a bad key or value. What needs the network and horizon (scenarios, ranges, held-out
    scenarios) is checked by `WorldSpec.check`, which `EnvConfig` runs when it is built."""
    if data is None:
        return None
    r = ConfigReader(data, KEY)
    listed = r.raw("scenarios")
    if isinstance(listed, Mapping):
        names = tuple(str(k) for k in listed)
        weights = tuple(r.child("scenarios").number(n, low=0.0) for n in names)
    elif isinstance(listed, (list, tuple)):
        names, weights = tuple(listed), (1.0,) * len(listed)
    else:
        raise SpecError(f"{KEY}.scenarios: required; allowed: a list of scenario names, or a mapping of names to "
                        f"weights")
    params_reader = r.child("params")
    params = {str(k): dict(params_reader.child(str(k)).data) for k in params_reader.data}
    demand = r.child("demand_profile")
    spec = WorldSpec(
        scenarios=names, weights=weights, params=params,
        start_day=_range(r, "start_day", integer=True), severity=_range(r, "severity"),
        demand_scale=_range(demand, "scale"), yearly_amplitude=_range(demand, "yearly_amplitude"),
        hold_out=tuple(_held_out(c) for c in r.children("hold_out")),
    )
    demand.done()
    r.done()
    return spec


def _held_out(c: ConfigReader) -> dict[str, Any]:
    if "name" not in c.data:
        raise SpecError(f"{c.path}.name: required; allowed: a scenario name ({scenarios.SCENARIOS.allowed()})")
    return dict(c.data)
