"""Scenario files: a disruption scenario a planner writes in YAML, read into the twin's shocks.

    python -m experiments.simulate scenario=examples/scenario_covid_dates.yaml
    scenarios.build("file", network, horizon, path="examples/scenario_covid_dates.yaml")

A file holds a `name` (required), a `description` and a list of `shocks`, each a mapping:

    type        demand | lead_time | supplier_outage | dc_closure | capacity_cut (twin.shocks.SHOCK_TYPES)
    start       the first day of the shock: a day number (day 0 = 2021-01-01) or a date YYYY-MM-DD
    end         the first day WITHOUT the shock (a day number or a date; the window is [start, end)),
    duration    or its length in days (one of the two)
    magnitude   the multiplier of a demand or lead_time shock, the capacity factor of a capacity_cut
                (the shock's own name, `multiplier` or `factor`, is read too); outages and closures have none
    targets     demand: `groups` (SKU groups) and `regions` (store regions), each omitted or [] for all;
                lead_time: `nodes` (suppliers or DCs whose shipments are slower; omitted or [] for all);
                supplier_outage, dc_closure, capacity_cut: `nodes`, one name or a list (one shock each);
                the twin's own field names (`sources`, `supplier`, `dc`, `node`) are read too
    reroute     dc_closure only: the closed DC's customers order from their backup DC (default true)
    ramp_up     optional, demand / lead_time / capacity_cut: the first `ramp_up` days of the window grow
    ramp_down   linearly from no effect to full magnitude, the last `ramp_down` days fall back linearly

A ramp is run as a staircase of one-day shocks: on day k (from 0) of a ramp_up of u days the multiplier is
1 + (k + 1) / (u + 1) * (magnitude - 1), on day j of a ramp_down of d days 1 + (d - j) / (d + 1) * (magnitude - 1),
so every ramp day lies strictly between no effect and full magnitude; ramp_up + ramp_down must leave at least one
day at full magnitude. Shocks compose by multiplication, as the twin composes overlapping shocks.

Every problem raises one `SpecError` naming the file, the shock's index and the field
(`my.yaml: shocks[2].end: ...; allowed: ...`) when the scenario is built, before anything is simulated:
the format when the file is read, the targets once the network is known. `scenario_document` is the
other way: a built scenario as a file of this format (day numbers and dates, ramps as their daily steps),
which `experiments.simulate` and `experiments.evaluate` write into every run directory as scenario.yaml.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scenarios.base import KEY, Scenario, ScenarioBuilder, check_known
from twin.calendar import DAY_ZERO, calendar_date, twin_day
from twin.config import ConfigReader, SpecError
from twin.shocks import SHOCK_TYPES, Shock, shock_to_dict
from twin.spec import NetworkSpec

FILE_KEYS = ("name", "description", "shocks")
WINDOW_KEYS = ("type", "start", "end", "duration", "start_date", "end_date")
RAMP_KEYS = ("ramp_up", "ramp_down")
MAX_DAY = 36_500  # a day number or date at most 100 years after day 0


class DatesAsText(yaml.SafeLoader):
    """YAML's safe loader, but a date stays text, so that `read_day` checks it and names the field."""


DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


@dataclass(frozen=True)
class Kind:
    """What a shock type reads: the field its magnitude sets, the field its node targets set."""

    magnitude: str | None  # the shock's field the magnitude sets (None: an on/off shock, no magnitude, no ramp)
    target: str | None     # the shock's node field (None: demand, which targets groups and regions)
    one_node: bool = True  # one shock per named node (supplier, dc, node) rather than a tuple (sources)
    required: bool = True  # at least one node must be named
    extra: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        keys = list(WINDOW_KEYS)
        if self.magnitude:
            keys += ["magnitude", self.magnitude, *RAMP_KEYS]
        keys += ["nodes", self.target] if self.target else []
        return (*keys, *self.extra)


KINDS: dict[str, Kind] = {
    "demand": Kind(magnitude="multiplier", target=None, extra=("groups", "regions")),
    "lead_time": Kind(magnitude="multiplier", target="sources", one_node=False, required=False),
    "supplier_outage": Kind(magnitude=None, target="supplier"),
    "dc_closure": Kind(magnitude=None, target="dc", extra=("reroute",)),
    "capacity_cut": Kind(magnitude="factor", target="node"),
}
assert set(KINDS) == set(SHOCK_TYPES), "every twin shock type needs a Kind"


@dataclass(frozen=True)
class ShockEntry:
    """One shock of a file, read and checked as far as it can be without the network."""

    key: str                          # "FILE: shocks[i]", what errors start with
    type: str
    start: int
    end: int
    magnitude: float | None = None
    magnitude_key: str = "magnitude"  # the key the file spelled it with
    nodes: tuple[str, ...] = ()
    nodes_key: str = "nodes"
    groups: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    reroute: bool = True
    ramp_up: int = 0
    ramp_down: int = 0

    def shocks(self, network: NetworkSpec) -> list[Shock]:
        """The twin's shocks of this entry on `network`: one per named node where the type takes one, the ramps
        as one-day steps; targets and magnitude checked, errors naming this entry's keys."""
        kind, cls = KINDS[self.type], SHOCK_TYPES[self.type]
        fields: dict[str, Any] = {}
        if kind.magnitude:
            fields[kind.magnitude] = self.magnitude
        if self.type == "demand":
            fields.update(groups=self.groups, regions=self.regions)
        if self.type == "dc_closure":
            fields["reroute"] = self.reroute
        if kind.target and not kind.one_node:
            per_node = [{kind.target: self.nodes}]
        elif kind.target:
            per_node = [{kind.target: node} for node in self.nodes]
        else:
            per_node = [{}]
        spelled = {kind.target: self.nodes_key, kind.magnitude: self.magnitude_key}
        out: list[Shock] = []
        for target in per_node:
            shock = cls(self.start, self.end, **fields, **target)
            _validate(shock, network, self.key, spelled)
            out += self.staircase(shock, kind.magnitude)
        return out

    def staircase(self, shock: Shock, field: str | None) -> list[Shock]:
        """`shock` with its ramps as one-day steps of interpolated magnitude (itself when it has none)."""
        if not (self.ramp_up or self.ramp_down):
            return [shock]
        full = getattr(shock, field)

        def step(day: int, fraction: float) -> Shock:
            return dataclasses.replace(shock, start=day, end=day + 1, **{field: 1.0 + fraction * (full - 1.0)})

        up, down = self.ramp_up, self.ramp_down
        return ([step(self.start + k, (k + 1) / (up + 1)) for k in range(up)]
                + [dataclasses.replace(shock, start=self.start + up, end=self.end - down)]
                + [step(self.end - down + j, (down - j) / (down + 1)) for j in range(down)])


@dataclass(frozen=True)
class ScenarioFileSpec:
    """A scenario file, read: its name, description and shock entries (targets checked at `shocks`)."""

    source: str
    name: str
    description: str
    entries: tuple[ShockEntry, ...] = ()

    def shocks(self, network: NetworkSpec) -> list[Shock]:
        return [shock for entry in self.entries for shock in entry.shocks(network)]


def read_scenario_file(path: str | Path) -> ScenarioFileSpec:
    """Read and check a scenario file (SpecError naming the file, and the shock and field where there is one)."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(f"{KEY}.path: no such file {source!r}; allowed: a YAML scenario file "
                        f"(examples/scenario_covid_dates.yaml is one)") from None
    except OSError as error:
        raise SpecError(f"{KEY}.path: {source!r} cannot be read ({error.strerror}); allowed: a readable YAML "
                        f"scenario file") from None
    try:
        data = yaml.load(text, Loader=DatesAsText)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"{source}: not valid YAML{where}; allowed: a YAML mapping with name, description, "
                        f"shocks") from None
    return scenario_file_from_dict(data, source)


def scenario_file_from_dict(data: Any, source: str) -> ScenarioFileSpec:
    """A scenario file's content (a plain mapping) read and checked; `source` names it in errors."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a mapping with name, description and shocks, got "
                        f"{type(data).__name__}")
    for name in data:
        if name not in FILE_KEYS:
            raise SpecError(f"{source}: {name!r} is not a key of a scenario file; allowed: {', '.join(FILE_KEYS)}")
    r = ConfigReader(data, "")
    name = _top(source, lambda: r.text("name"))
    description = _top(source, lambda: r.text("description", optional=True)) or ""
    items = _top(source, lambda: r.sequence("shocks", ()))
    entries = tuple(read_entry(item, f"{source}: shocks[{i}]") for i, item in enumerate(items))
    return ScenarioFileSpec(source=source, name=name, description=description, entries=entries)


def _top(source: str, read):
    """A top-level read whose SpecError starts with the file's name."""
    try:
        return read()
    except SpecError as error:
        raise SpecError(f"{source}: {error}") from None


def read_entry(data: Any, key: str) -> ShockEntry:
    """One shock mapping of a file, checked but for its targets (which need the network)."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{key}: expected a mapping with type, start, end or duration and the shock's fields, "
                        f"got {data!r}")
    r = ConfigReader(data, key)
    kind_name = r.raw("type")
    SHOCK_TYPES.check(kind_name, r.key("type"))
    kind = KINDS[kind_name]
    allowed = kind.keys()
    for name in data:
        if name in allowed:
            continue
        if name in RAMP_KEYS:
            raise SpecError(f"{r.key(name)}: a {kind_name} is either on or off, it cannot ramp; allowed: "
                            f"ramp_up and ramp_down on demand, lead_time and capacity_cut shocks")
        if name == "magnitude":
            raise SpecError(f"{r.key(name)}: a {kind_name} has no magnitude (it shuts the node); allowed keys: "
                            f"{', '.join(allowed)}")
        raise SpecError(f"{r.key(name)}: not a key of a {kind_name} shock; allowed: {', '.join(allowed)}")

    start = read_day(r, "start")
    if r.has("end") and r.has("duration"):
        raise SpecError(f"{r.key('duration')}: given with end; allowed: one of end (the first day without the "
                        f"shock) or duration (days)")
    if r.has("duration"):
        end = start + r.integer("duration", low=1, high=MAX_DAY)
    elif r.has("end"):
        end = read_day(r, "end")
        if end <= start:
            raise SpecError(f"{r.key('end')}: {_shown(r.raw('end'), end)} is not after start "
                            f"{_shown(r.raw('start'), start)}; "
                            f"allowed: an end after start (the first day without the shock; the window is "
                            f"[start, end))")
    else:
        raise SpecError(f"{r.key('end')}: required, either end (a day number or date) or duration (days)")
    for name, day in (("start_date", start), ("end_date", end)):
        _check_date(r, name, day)

    fields: dict[str, Any] = {}
    if kind.magnitude:
        fields["magnitude_key"] = _one_of(r, "magnitude", kind.magnitude, required=True)
        fields["magnitude"] = r.number(fields["magnitude_key"])
        fields["ramp_up"] = r.integer("ramp_up", 0, low=0)
        fields["ramp_down"] = r.integer("ramp_down", 0, low=0)
        _check_ramps(r, fields["ramp_up"], fields["ramp_down"], end - start)
    if kind.target:
        nodes_key = _one_of(r, "nodes", kind.target, required=kind.required)
        nodes = _names(r, nodes_key) if nodes_key else ()
        if kind.required and not nodes:
            raise SpecError(f"{r.key(nodes_key)}: names no node; allowed: one {_node_kind(kind_name)} name or "
                            f"a list of them")
        fields.update(nodes=nodes, nodes_key=nodes_key or "nodes")
    if kind_name == "demand":
        fields.update(groups=_names(r, "groups"), regions=_names(r, "regions"))
    if kind_name == "dc_closure":
        fields["reroute"] = r.flag("reroute", True)
    return ShockEntry(key=key, type=kind_name, start=start, end=end, **fields)


def read_day(r: ConfigReader, name: str) -> int:
    """A day: a whole day number >= 0, or a date YYYY-MM-DD on or after day 0 (converted with twin.calendar)."""
    value = r.raw(name)
    allowed = f"allowed: a day number >= 0 (day 0 = {DAY_ZERO}) or a date YYYY-MM-DD from {DAY_ZERO} on"
    if value is None:
        raise SpecError(f"{r.key(name)}: required; {allowed}")
    if isinstance(value, dt.datetime):
        raise SpecError(f"{r.key(name)}: {value} has a time of day; {allowed}")
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise SpecError(f"{r.key(name)}: {value!r} is neither a day number nor a date; {allowed}") from None
    if isinstance(value, dt.date):
        day = twin_day(value)
        if day > MAX_DAY:
            raise SpecError(f"{r.key(name)}: {value} is more than {MAX_DAY} days after day 0; {allowed}, "
                            f"up to day {MAX_DAY}")
        if day < 0:
            raise SpecError(f"{r.key(name)}: {value} is before day 0 ({DAY_ZERO}); {allowed}")
        return day
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value:
        raise SpecError(f"{r.key(name)}: {value!r} is neither a day number nor a date; {allowed}")
    if value < 0:
        raise SpecError(f"{r.key(name)}: {value!r} is before day 0; {allowed}")
    if value > MAX_DAY:
        raise SpecError(f"{r.key(name)}: {value!r} is more than {MAX_DAY} days after day 0; {allowed}, "
                        f"up to day {MAX_DAY}")
    return int(value)


def _shown(value: Any, day: int) -> str:
    """A day as the file wrote it: `day 10`, or `2021-03-01 (day 59)`."""
    return f"day {day}" if isinstance(value, (int, float)) else f"{value} (day {day})"


def _check_date(r: ConfigReader, name: str, day: int) -> None:
    """start_date / end_date (what scenario.yaml in a run directory writes beside start / end): the same day."""
    if not r.has(name):
        return
    given = read_day(r, name)
    if given != day:
        field = name.removesuffix("_date")
        raise SpecError(f"{r.key(name)}: {calendar_date(given)} is not the date of {field} (day {day}, "
                        f"{calendar_date(day)}); allowed: the date of {field}, or no {name}")


def _check_ramps(r: ConfigReader, up: int, down: int, days: int) -> None:
    if up + down >= days:
        name = "ramp_up" if up >= days else "ramp_down"
        raise SpecError(f"{r.key(name)}: ramp_up {up} + ramp_down {down} days leave no day at full magnitude in a "
                        f"{days}-day shock; allowed: ramp_up + ramp_down <= {days - 1}")


def _one_of(r: ConfigReader, name: str, alias: str, *, required: bool) -> str | None:
    """Which of two spellings of one field the entry uses (SpecError if both, or neither when required)."""
    if r.has(name) and r.has(alias):
        raise SpecError(f"{r.key(alias)}: given with {name}, which is the same field; allowed: one of {name}, "
                        f"{alias}")
    if r.has(alias):
        return alias
    if r.has(name):
        return name
    if required:
        raise SpecError(f"{r.key(name)}: required (or {alias}, the same field)")
    return None


def _names(r: ConfigReader, name: str) -> tuple[str, ...]:
    """A name or a list of names (omitted: none)."""
    value = r.raw(name, [])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, Sequence) or not all(isinstance(v, str) and v for v in values):
        raise SpecError(f"{r.key(name)}: expected a name or a list of names, got {value!r}")
    return tuple(values)


def _node_kind(kind_name: str) -> str:
    return {"supplier_outage": "supplier", "dc_closure": "DC", "capacity_cut": "node"}.get(kind_name, "node")


def _validate(shock: Shock, network: NetworkSpec, key: str, spelled: Mapping[str | None, str]) -> None:
    """The twin's own checks of `shock`, with the field named as the file spelled it (`nodes`, `magnitude`)."""
    try:
        shock.validate(network, key)
    except SpecError as error:
        message = str(error)
        for field, name in spelled.items():
            if field and message.startswith(f"{key}.{field}:"):
                message = f"{key}.{name}:" + message[len(f"{key}.{field}:"):]
        raise SpecError(message) from None


# ---------------------------------------------------------------------------
# The scenario `file` and the way back: a built scenario as a file
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ScenarioFile(ScenarioBuilder):
    """A scenario file (`path`), read when the config is; the scenario takes the file's name and description."""

    name = "file"
    description = "A scenario file: shocks written in YAML, with dates, durations and ramps (scenarios/files.py)."

    path: str | None = None
    spec: ScenarioFileSpec | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ScenarioFile:
        check_known(cls.name, params, ["path"])
        path = ConfigReader(params, KEY).text("path", optional=True)
        if path is None:
            raise SpecError(f"{KEY}.path: required, the scenario file to run; allowed: a YAML file "
                            f"(scenario=FILE.yaml, or scenario=file scenario.path=FILE.yaml)")
        return cls(path=path, spec=read_scenario_file(path))

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        return self.spec.shocks(network)

    def build(self, network: NetworkSpec, horizon: int) -> Scenario:
        scenario = super().build(network, horizon)
        return dataclasses.replace(scenario, name=self.spec.name, description=self.spec.description)


def scenario_document(scenario: Scenario) -> dict[str, Any]:
    """A built scenario as the content of a scenario file: each shock as the twin runs it, its window in day
    numbers (`start`, `end`) and dates (`start_date`, `end_date`), ramps as their one-day steps. Reading it
    back (`scenario_file_from_dict`) on the same network gives the same shocks."""
    shocks = []
    for shock in scenario.shocks:
        data = shock_to_dict(shock)
        window = {"start": data.pop("start"), "end": data.pop("end")}
        shocks.append({"type": data.pop("type"), **window, "start_date": calendar_date(window["start"]),
                       "end_date": calendar_date(window["end"]), **data})
    return {"name": scenario.name, "description": scenario.description, "shocks": shocks}


class _FlowMapping(dict):
    """A mapping written on one line (`{type: demand, start: 70, ...}`), one per shock."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FlowMapping, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))


def scenario_yaml(scenario: Scenario, header: str = "") -> str:
    """`scenario_document` as YAML text (one line per shock), after a comment `header` (lines without '#')."""
    document = scenario_document(scenario)
    document["shocks"] = [_FlowMapping(shock) for shock in document["shocks"]]
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    note = ("# as run: windows [start, end) in twin days (day 0 = 2021-01-01) and dates (end_date: the first day\n"
            "# without the shock), clipped to the horizon, ramps as their daily steps; a scenario file itself\n")
    return comment + note + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000)
