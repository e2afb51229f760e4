"""A planner's own network, from files: a folder of CSV files or one YAML file.

    from twin.network_files import read_network_files, write_network_files
    network = read_network_files("my_network")              # a folder of CSV files, or "my_network.yaml"
    write_network_files(network, "my_copy")                 # any network as CSV files: the example to start from

    python -m experiments.simulate network=file network.path=my_network     # conf/network/file.yaml

Every problem in the files is collected and reported at once, before anything is simulated: one
`NetworkFileError` (a `SpecError`) whose `problems` are one line each, naming the file, the row (as a spreadsheet
numbers it: the header is row 1), the column (by name and letter) and what is allowed there.

**One YAML file**: the mapping `twin.spec.network_from_dict` reads, as in conf/network/*.yaml (explicit `nodes`,
or a generated `layout`); explicit nodes may come in any order (parents are put first). Problems name the key
(`nodes[3].parent`); each node, the SKUs, the demand and the tree are checked separately, so all come at once.

**A folder of CSV files** (UTF-8, comma-separated, a header row; columns in any order, names in any case; an empty
cell takes the default; lists of numbers separated by spaces or semicolons). Rows are kept in their order where the
tree allows (parents first): `priority` rationing serves customers in that order.

locations.csv, one row per location:
    id                required, unique
    kind              required: supplier, dc or store
    parent            the supplier or dc that supplies it: required for a dc or store (a store without one is an
                      error), empty for a supplier
    backup_parent     a supplier or dc, other than its parent, it orders from while its parent dc is closed; empty: none
    region            a label (the weather index is per region; shocks may name it); default all
    unmet             dc and store: backorder (default) or lost (a store loses the sale; a dc cancels the order)
    storage_capacity  dc and store: units it may hold, all SKUs together; empty: unlimited
    supply_capacity   supplier only: units shipped per day, all SKUs together; empty: unlimited
    holding_factor    dc and store: multiplies each SKU's holding_cost here; default 1
    backorder_factor  dc and store: multiplies each SKU's backorder_cost here; default 1 at a store, 0 at a dc (a
                      dc's backlog is the shortage its stores already pay for)
    lost_sale_factor  store only: multiplies each SKU's lost_sale_cost; default 1
    demand_scale      store only: multiplies every SKU's mean demand; default 1
A supplier is outside the network (no inbound lane, no costs): it takes only id, kind, region and supply_capacity.

lanes.csv, one row per dc and store: the lane into it from its parent (a location re-routed to its backup keeps its
own lane's lead time, so there are no lanes from backups):
    from, to            required: the parent's id and the location's id
    lead_time_dist      deterministic, gamma, lognormal, poisson or empirical; empty: empirical if values or a history
                        are given, gamma if lead_time_cv > 0, else deterministic
    lead_time_mean      days, >= 0 (not for empirical); default 1; draws are rounded to whole days
    lead_time_cv        the spread, as a coefficient of variation: gamma and lognormal only, in (0, 5]
    lead_time_values    empirical: whole days, e.g. "2 3 6"
    lead_time_probs     empirical: their probabilities, summing to 1, e.g. "0.5 0.3 0.2"
    lead_time_history   empirical, instead of values and probs: observed lead times in whole days, e.g. "3 4 3 5 3";
                        each value is drawn with its observed frequency
    lane_capacity       units the lane carries per day, all SKUs together; empty: unlimited
    in_transit_holding  multiplies each SKU's holding_cost for units in transit into the location; default 0

skus.csv, one row per SKU (costs per unit; holding and backorder per unit-day):
    id                  required, unique
    group               a label (demand shocks may name it); default general
    dist                demand per store-day: poisson (default), negative_binomial, normal or zero_inflated_poisson
    mean                required: mean demand per store-day, >= 0, before calendar effects and demand_scale
    cv                  normal only: coefficient of variation in [0, 10]; default 0.3
    dispersion          negative_binomial only: the shape r (variance mean + mean^2 / r), > 0; default 5
    zero_prob           zero_inflated_poisson only: probability of a structural zero in [0, 0.999]; default 0
    holding_cost        >= 0, per unit-day on hand; default 0.05
    backorder_cost      >= 0, per unit-day owed to a customer (the penalty); default 1
    lost_sale_cost      >= 0, per unit lost; default 2
    fixed_order_cost    >= 0, per order line placed (the ordering cost); default 0
    unit_cost           >= 0, per unit dispatched to a location (purchase or transfer); default 0
    price               > 0, the shelf price (promotions discount it); default 10
    price_elasticity    in [0, 20]: demand lift of a discount, (1 - discount)^-elasticity; default 1.5
    weather_sensitivity in [-5, 5]: demand factor exp(sensitivity x weather index); default 0

network.yaml (optional), what holds network-wide, in the YAML schema: name (default: the folder's name), rationing
(proportional, priority or fcfs: how a supplier or dc shares short stock among its customers; default proportional),
backlog_first (default true) and demand (weekly pattern, yearly season, trend, promotions, holidays, weather,
integer_units: see conf/network/paper_5x20.yaml).

The twin has no pack sizes, per-SKU rationing, per-SKU lane capacities or costs per lane: columns for them are
unknown columns.
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from twin.config import ConfigReader, SpecError, check_number
from twin.spec import (
    DEMAND_DISTS,
    LAW_PARAMETERS,
    LEAD_TIME_DISTS,
    NODE_KINDS,
    RATIONING_RULES,
    SKU_DEFAULTS,
    SKU_LIMITS,
    SKU_RANGES,
    SUPPLIER_COSTS,
    UNMET,
    NetworkSpec,
    demand_from_reader,
    network_from_dict,
    node_from_reader,
    skus_from_reader,
    validate_demand,
)

LOCATIONS, LANES, SKUS, SETTINGS = "locations.csv", "lanes.csv", "skus.csv", "network.yaml"
NODE_FACTORS = ("holding_factor", "backorder_factor", "lost_sale_factor", "demand_scale")
LOCATION_COLUMNS = ("id", "kind", "parent", "backup_parent", "region", "unmet", "storage_capacity",
                    "supply_capacity", *NODE_FACTORS)
LANE_COLUMNS = ("from", "to", "lead_time_dist", "lead_time_mean", "lead_time_cv", "lead_time_values",
                "lead_time_probs", "lead_time_history", "lane_capacity", "in_transit_holding")
SKU_COLUMNS = ("id", "group", "dist", *SKU_RANGES)
REQUIRED = {LOCATIONS: ("id", "kind", "parent"), LANES: ("from", "to"), SKUS: ("id", "mean")}
# location columns by the kinds that use them (the rest must be empty)
USED_BY = {"parent": ("dc", "store"), "backup_parent": ("dc", "store"), "unmet": ("dc", "store"),
           "storage_capacity": ("dc", "store"), "supply_capacity": ("supplier",),
           "holding_factor": ("dc", "store"), "backorder_factor": ("dc", "store"), "lost_sale_factor": ("store",),
           "demand_scale": ("store",)}
SETTINGS_KEYS = ("name", "rationing", "backlog_first", "demand")
LIST_SPLIT = re.compile(r"[\s;,]+")
SHOWN = 8  # names listed in an 'allowed:' before the rest is counted


class NetworkFileError(SpecError):
    """Everything wrong with a network's files: `problems`, one line each (file, row, column, what is allowed)."""

    def __init__(self, problems: list[str], where: str, key: str = "network.path") -> None:
        self.problems = tuple(problems)
        self.where = where
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{key}: {count} in the network files {where} (nothing was simulated):\n"
                         + "\n".join(f"  {p}" for p in problems))


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def read_network_files(path: str | Path, key: str = "network.path") -> NetworkSpec:
    """The network in a folder of CSV files or one YAML file; NetworkFileError listing every problem."""
    data = network_data_from_files(path, key)
    try:
        return network_from_dict(data, "network")
    except SpecError as error:  # a check the files' own checks missed: still one problem, still before any run
        raise NetworkFileError([f"{Path(path).name}: {error}"], str(path), key) from None


def network_data_from_files(path: str | Path, key: str = "network.path") -> dict[str, Any]:
    """The files' network as the plain mapping `network_from_dict` reads (explicit `nodes` in tree order), checked:
    what a config or a bundle stores in place of the path."""
    p = Path(path)
    problems: list[str] = []
    if p.is_dir():
        data = _folder(p, problems)
    elif p.is_file():
        data = _yaml_file(p, problems)
    else:
        raise NetworkFileError([f"{path}: no such folder or file; allowed: a folder with {LOCATIONS}, {LANES} and "
                                f"{SKUS} (and optionally {SETTINGS}), or one YAML file"], str(path), key)
    if problems:
        raise NetworkFileError(sorted(problems, key=_file_row), str(path), key)
    return data


FILE_ORDER = {name: i for i, name in enumerate((LOCATIONS, LANES, SKUS, SETTINGS))}
ROW = re.compile(r"^([^,:]+)(?:, row (\d+))?")


def _file_row(problem: str) -> tuple[int, int]:
    """Problems in file order (locations, lanes, SKUs, settings), then by row (a stable sort keeps the rest)."""
    match = ROW.match(problem)
    return FILE_ORDER.get(match.group(1), len(FILE_ORDER)), int(match.group(2) or 0)


def expand_network_path(config: dict[str, Any], key: str = "network") -> dict[str, Any]:
    """`config` with a `network: {path: ...}` entry replaced by the files' network mapping (other configs as they
    are), so the run records, and a bundle stores, the network itself rather than a path."""
    network = config.get(key)
    if not isinstance(network, Mapping) or "path" not in network:
        return config
    r = ConfigReader(network, key)
    path = r.required_path("path", "network=file",
                           f"a folder of CSV files ({LOCATIONS}, {LANES}, {SKUS}) or one YAML file of a network")
    r.done()
    return {**config, key: network_data_from_files(path, r.key("path"))}


@dataclass
class Table:
    """A CSV file's data rows: (spreadsheet row, {column: stripped cell}) and the column letters."""

    file: str
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    letters: dict[str, str] = field(default_factory=dict)

    def at(self, row: int, column: str) -> str:
        return f"{self.file}, row {row}, column {column} ({self.letters.get(column, '?')})"


def _letter(index: int) -> str:
    """Spreadsheet column letters: 0 -> A, 25 -> Z, 26 -> AA."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def read_table(path: Path, columns: tuple[str, ...], problems: list[str]) -> Table | None:
    """A CSV file's rows, with problems of its structure (missing, required and unknown columns) collected."""
    file = path.name
    required = REQUIRED[file]
    if not path.is_file():
        problems.append(f"{file}: missing; allowed: a CSV file with a header row naming at least "
                        f"{', '.join(required)}")
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        problems.append(f"{file}: not UTF-8 text (byte {error.start}); allowed: a CSV file saved as UTF-8")
        return None
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        problems.append(f"{file}: not a readable CSV file ({error}); allowed: comma-separated values")
        return None
    table = Table(file)
    header = [cell.strip().lower() for cell in records[0]] if records else []
    if not any(header):
        problems.append(f"{file}, row 1: no header; allowed: a first row naming the columns, at least "
                        f"{', '.join(required)}")
        return None
    if len(header) == 1 and ";" in header[0]:
        problems.append(f"{file}, row 1: one column named {header[0]!r}: the file is separated by semicolons; "
                        f"allowed: comma-separated values (save as 'CSV (comma delimited)')")
        return None
    used: dict[str, int] = {}
    for i, name in enumerate(header):
        if not name:
            if any(len(r) > i and r[i].strip() for r in records[1:]):
                problems.append(f"{file}, row 1, column {_letter(i)}: no column name above values; allowed: one of "
                                f"{', '.join(columns)}")
        elif name in used:
            problems.append(f"{file}, row 1, column {name} ({_letter(i)}): given twice (columns "
                            f"{_letter(used[name])} and {_letter(i)}); allowed: each column once")
        elif name not in columns:
            problems.append(f"{file}, row 1, column {name} ({_letter(i)}): unknown column; allowed: "
                            f"{', '.join(columns)}")
        else:
            used[name] = i
    table.letters = {name: _letter(i) for name, i in used.items()}
    for name in required:
        if name not in used:
            problems.append(f"{file}, row 1: missing required column {name}; required: {', '.join(required)}")
    if any(name not in used for name in required):
        return None
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue  # a blank row
        extra = [j for j in range(len(header), len(record)) if record[j].strip()]
        if extra:
            problems.append(f"{file}, row {number}, column {_letter(extra[0])}: a value beyond the last column; "
                            f"allowed: values under the header's {len(header)} columns")
        table.rows.append((number, {name: (record[i].strip() if i < len(record) else "") for name, i in used.items()}))
    return table


class Cells:
    """Typed reads of one row's cells; a bad cell adds one problem and reads as None (its default)."""

    def __init__(self, table: Table, row: int, cells: dict[str, str], problems: list[str]) -> None:
        self.table, self.row, self.cells, self.problems = table, row, cells, problems
        self.bad: set[str] = set()

    def at(self, column: str) -> str:
        return self.table.at(self.row, column)

    def has(self, column: str) -> bool:
        return bool(self.cells.get(column, ""))

    def problem(self, column: str, message: str) -> None:
        self.bad.add(column)
        self.problems.append(f"{self.at(column)}: {message}")

    def text(self, column: str) -> str | None:
        return self.cells.get(column) or None

    def choice(self, column: str, allowed: tuple[str, ...]) -> str | None:
        """One of `allowed`, in any case ('DC' is dc)."""
        text = self.text(column)
        if text is None:
            return None
        if text.lower() not in allowed:
            self.problem(column, f"{text!r} is not allowed; allowed: {', '.join(allowed)}")
            return None
        return text.lower()

    def number(self, column: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float | None:
        value = self.text(column)
        if value is None:
            return None
        parsed = _float(value)
        if parsed is None:
            self.problem(column, f"{value!r} is not a number; allowed: a number such as 2.5 (a decimal point, no "
                                 f"thousands separator or unit)")
            return None
        try:
            return check_number(self.at(column), parsed, low=low, high=high, low_open=low_open)
        except SpecError as error:
            self.bad.add(column)
            self.problems.append(str(error))
            return None

    def numbers(self, column: str, *, low: float | None = None, high: float | None = None,
                whole: bool = False) -> list[float] | None:
        value = self.text(column)
        if value is None:
            return None
        items = [v for v in LIST_SPLIT.split(value) if v]
        parsed = [_float(v) for v in items]
        kind = "whole days >= 0" if whole else "numbers"
        if not items or any(v is None or not math.isfinite(v) for v in parsed):
            self.problem(column, f"{value!r} is not a list of numbers; allowed: {kind} separated by spaces or "
                                 f"semicolons, e.g. \"2 3 6\"")
            return None
        out_of_range = [items[i] for i, v in enumerate(parsed)
                        if (low is not None and v < low) or (high is not None and v > high)
                        or (whole and v != int(v))]
        if out_of_range:
            lo, hi = ("-inf" if low is None else f"{low:g}"), ("inf" if high is None else f"{high:g}")
            bounds = "whole days >= 0" if whole else f"numbers in [{lo}, {hi}]"
            self.problem(column, f"{', '.join(out_of_range)} not allowed in {value!r}; allowed: {bounds}")
            return None
        return [int(v) if whole else v for v in parsed]


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class Location:
    """A location as the tree checks see it, wherever it came from (a CSV row or a YAML node)."""

    name: str
    kind: str | None  # None: its kind was bad (reported already)
    parent: str | None
    backup: str | None
    where: Callable[[str], str]  # column or key -> "file, row R, column C (L)"
    order: int


def _named(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "") if names else "none"


def check_tree(locations: list[Location], problems: list[str], source: str) -> list[str] | None:
    """Collect the tree's problems (duplicates, unknown or impossible parents and backups, cycles, a dc that
    supplies nothing, no store); return the names in tree order (parents and backups first, else as listed) when
    there are none."""
    start = len(problems)
    by_name: dict[str, Location] = {}
    for loc in locations:
        if loc.name in by_name:
            problems.append(f"{loc.where('id')}: {loc.name!r} is used twice (also {by_name[loc.name].where('id')});"
                            f" allowed: a unique id")
        else:
            by_name[loc.name] = loc
    suppliers = [n for n, loc in by_name.items() if loc.kind in ("supplier", "dc")]
    edges: dict[str, list[tuple[str, str]]] = {}  # name -> [(column, name it depends on)]
    for loc in by_name.values():
        edges[loc.name] = []
        if loc.kind in ("dc", "store") and loc.parent is None:
            problems.append(f"{loc.where('parent')}: empty: a {loc.kind} needs the supplier or dc that supplies it"
                            f"{' (a store without a dc)' if loc.kind == 'store' else ''}; allowed: a supplier or dc "
                            f"({_named(suppliers)})")
        if loc.kind == "supplier" and loc.parent is not None:
            problems.append(f"{loc.where('parent')}: {loc.parent!r}, but a supplier is a root outside the network; "
                            f"allowed: empty")
        for column, ref in (("parent", loc.parent), ("backup_parent", loc.backup)):
            if ref is None or loc.kind in (None, "supplier"):
                continue
            target = by_name.get(ref)
            if target is None:
                problems.append(f"{loc.where(column)}: {ref!r} is not a location of {source}; allowed: a supplier "
                                f"or dc ({_named(suppliers)})")
            elif target.kind == "store":
                problems.append(f"{loc.where(column)}: {ref!r} is a store, and stores supply no location; allowed: a "
                                f"supplier or dc ({_named(suppliers)})")
            elif column == "backup_parent" and ref == loc.parent:
                problems.append(f"{loc.where(column)}: {ref!r} is already its parent; allowed: another supplier or dc, "
                                f"or empty")
            elif ref == loc.name:
                problems.append(f"{loc.where(column)}: {ref!r} is the location itself; allowed: another supplier or "
                                f"dc")
            elif target.kind is not None:
                edges[loc.name].append((column, ref))
    _report_cycles(by_name, edges, problems)
    children = {loc.parent for loc in by_name.values() if loc.kind in ("dc", "store")}
    for loc in by_name.values():
        if loc.kind == "dc" and loc.name not in children:
            problems.append(f"{loc.where('kind')}: dc {loc.name!r} supplies no location; allowed: a dc that some dc "
                            f"or store names as its parent (or kind store)")
    if not any(loc.kind == "store" for loc in locations) and all(loc.kind for loc in locations):
        problems.append(f"{source}: no location of kind store; allowed: at least one store (only stores face "
                        f"customer demand)")
    if len(problems) > start:
        return None
    # tree order: the earliest listed location whose parent and backup are placed comes next
    waiting = {name: {ref for _, ref in deps} for name, deps in edges.items()}
    dependants: dict[str, list[str]] = {name: [] for name in by_name}
    for name, refs in waiting.items():
        for ref in refs:
            dependants[ref].append(name)
    ready = [(loc.order, name) for name, loc in by_name.items() if not waiting[name]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in dependants[name]:
            waiting[child].discard(name)
            if not waiting[child]:
                heapq.heappush(ready, (by_name[child].order, child))
    return order


def _report_cycles(by_name: dict[str, Location], edges: dict[str, list[tuple[str, str]]],
                   problems: list[str]) -> None:
    """One problem per cycle of 'is supplied by' (parent or backup), at its earliest listed location."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    seen_cycles: set[frozenset[str]] = set()
    for root in sorted(by_name, key=lambda n: by_name[n].order):
        if root in state:
            continue
        path: list[tuple[str, str]] = []  # (name, column of the edge taken out of it)
        stack = [(root, iter(edges[root]))]
        state[root] = 1
        while stack:
            name, it = stack[-1]
            step = next(it, None)
            if step is None:
                state[name] = 2
                stack.pop()
                if path:
                    path.pop()
                continue
            column, ref = step
            if state.get(ref) == 1:
                names = [n for n, _ in stack]
                cycle = list(zip(names[names.index(ref):], [c for _, c in path[names.index(ref):]] + [column]))
                key = frozenset(n for n, _ in cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    first = min(range(len(cycle)), key=lambda i: by_name[cycle[i][0]].order)
                    cycle = cycle[first:] + cycle[:first]
                    links = [f"{n!r}{' is supplied' if i == 0 else ''} by {cycle[(i + 1) % len(cycle)][0]!r} ({c})"
                             for i, (n, c) in enumerate(cycle)]
                    problems.append(f"{by_name[cycle[0][0]].where(cycle[0][1])}: a cycle: {', '.join(links)}, so no "
                                    f"supplier is at its root; allowed: chains of parents and backups that end at a "
                                    f"supplier")
            elif ref not in state:
                path.append((name, column))
                state[ref] = 1
                stack.append((ref, iter(edges[ref])))


# --- a folder of CSV files --------------------------------------------------

def _folder(folder: Path, problems: list[str]) -> dict[str, Any]:
    locations = read_table(folder / LOCATIONS, LOCATION_COLUMNS, problems)
    lanes = read_table(folder / LANES, LANE_COLUMNS, problems)
    skus = read_table(folder / SKUS, SKU_COLUMNS, problems)
    settings = _settings(folder, problems)
    nodes, order = _locations(locations, problems) if locations else ({}, None)
    if locations is not None and lanes is not None:
        _lanes(lanes, locations, nodes, problems)
    items = _skus(skus, problems) if skus else []
    if problems or order is None:
        return {}
    return {**settings, "skus": {"items": items}, "nodes": [nodes[name][1] for name in order]}


def _settings(folder: Path, problems: list[str]) -> dict[str, Any]:
    """network.yaml: name, rationing, backlog_first, demand (each checked on its own)."""
    path = folder / SETTINGS
    data: Any = {}
    if path.is_file():
        ok, data = _load_yaml(path, problems)
        if not ok:
            return {}
        if data is None:
            data = {}  # an empty file
        if not isinstance(data, Mapping):
            problems.append(f"{SETTINGS}: expected a mapping of {', '.join(SETTINGS_KEYS)}, got "
                            f"{type(data).__name__}")
            return {}
    for name in data:
        if name not in SETTINGS_KEYS:
            listed = " (locations, lanes and SKUs are the CSV files)" if name in ("nodes", "layout", "skus") else ""
            problems.append(f"{SETTINGS}: unknown key {name!r}{listed}; allowed: {', '.join(SETTINGS_KEYS)}")
    out = {"name": folder.resolve().name or "network",
           **{name: data[name] for name in SETTINGS_KEYS if data.get(name) is not None}}
    _network_wide(ConfigReader(out, ""), problems, SETTINGS)
    return out


def _network_wide(r: ConfigReader, problems: list[str], file: str) -> None:
    """The keys that hold network-wide (name, rationing, backlog_first, demand), each checked on its own."""
    _collect(lambda: r.text("name"), problems, file)
    _collect(lambda: validate_demand(demand_from_reader(r.child("demand")), "demand"), problems, file)
    rationing = backlog_first = None
    if _collect(lambda: r.choice("rationing", RATIONING_RULES, "proportional"), problems, file):
        rationing = r.raw("rationing", "proportional")
    if _collect(lambda: r.flag("backlog_first", True), problems, file):
        backlog_first = r.raw("backlog_first", True)
    if rationing == "fcfs" and backlog_first is False:
        problems.append(f"{file}: backlog_first: false has no effect with rationing fcfs (first-come-first-served "
                        f"always serves the oldest orders first); allowed: true, or rationing proportional or "
                        f"priority")


def _collect(check: Callable[[], Any], problems: list[str], file: str) -> bool:
    """Run one check; a SpecError becomes one problem of `file`. True when it passed."""
    try:
        check()
    except SpecError as error:
        problems.append(f"{file}: {error}")
        return False
    return True


def _locations(table: Table, problems: list[str]) -> tuple[dict[str, tuple[int, dict]], list[str] | None]:
    """locations.csv as {id: (row, node mapping)} (the lanes add their lead time) and the ids in tree order (None
    if the tree has problems)."""
    nodes: dict[str, Any] = {}
    tree: list[Location] = []
    for order, (row, cells) in enumerate(table.rows):
        c = Cells(table, row, cells, problems)
        name = c.text("id")
        if name is None:
            c.problem("id", "empty; allowed: a unique id for the location")
        kind = c.choice("kind", NODE_KINDS)
        if not c.has("kind"):
            c.problem("kind", f"empty; allowed: {', '.join(NODE_KINDS)}")
        node: dict[str, Any] = {"name": name, "kind": kind}
        for column in USED_BY:
            if kind is not None and kind not in USED_BY[column] and c.has(column):
                if kind == "supplier":
                    why = "a supplier is outside the network (no parent, lane, storage limit or costs)"
                elif column == "supply_capacity":
                    why = f"only a supplier has a supply_capacity (a {kind} has storage_capacity, its lane a " \
                          f"lane_capacity in {LANES})"
                elif column == "demand_scale":
                    why = "only stores face customer demand"
                else:
                    why = "only a store loses sales at a cost"
                c.problem(column, f"{c.text(column)!r} does nothing on a {kind}: {why}; allowed on a {kind}: empty")
        for column in LOCATION_COLUMNS[2:]:  # a column this kind does not use is reported above, not read
            if kind is None or column not in USED_BY or kind in USED_BY[column]:
                value = _location_cell(c, column)
                if value is not None:
                    node[column] = value
        if name is not None:
            nodes.setdefault(name, (row, node))
            tree.append(Location(name, kind, node.get("parent"), node.get("backup_parent"),
                                 lambda column, row=row: table.at(row, column), order))
    return nodes, check_tree(tree, problems, LOCATIONS)


def _location_cell(c: Cells, column: str) -> Any:
    """One cell of locations.csv beyond id and kind, typed (None: empty or bad)."""
    if column == "unmet":
        return c.choice(column, UNMET)
    if column in ("storage_capacity", "supply_capacity"):
        return c.number(column, low=0, low_open=True)
    if column in NODE_FACTORS:
        return c.number(column, low=0)
    return c.text(column)


def _lanes(table: Table, locations: Table, nodes: dict[str, tuple[int, dict]], problems: list[str]) -> None:
    """Each lane's lead time, capacity and in-transit holding, onto the node it leads into."""
    into: dict[str, int] = {}
    for row, cells in table.rows:
        c = Cells(table, row, cells, problems)
        source, target = c.text("from"), c.text("to")
        for column, value in (("from", source), ("to", target)):
            if value is None:
                c.problem(column, f"empty; allowed: the id of a location in {LOCATIONS}")
            elif value not in nodes:
                c.problem(column, f"{value!r} is not a location of {LOCATIONS}; allowed: {_named(list(nodes))}")
        lead_time = _lead_time(c)
        capacity = c.number("lane_capacity", low=0, low_open=True)
        transit = c.number("in_transit_holding", low=0)
        if "to" in c.bad or "from" in c.bad or target is None or source is None:
            continue
        node_row, node = nodes[target]
        if node["kind"] == "supplier":
            c.problem("to", f"{target!r} is a supplier, which has no inbound lane; allowed: a dc or store")
            continue
        if target in into:
            c.problem("to", f"a second lane into {target!r} (the first is row {into[target]}); allowed: one lane into "
                            f"each dc and store, from its parent")
            continue
        into[target] = row
        if node.get("parent") in nodes and source != node["parent"]:
            c.problem("from", f"{source!r} does not supply {target!r}: {LOCATIONS} row {node_row} names "
                              f"{node['parent']!r} as its parent (a re-routed location keeps this lane's lead time); "
                              f"allowed: {node['parent']!r}")
        if lead_time is not None:
            node["lead_time"] = lead_time
        if capacity is not None:
            node["lane_capacity"] = capacity
        if transit is not None:
            node["in_transit_holding"] = transit
    for name, (row, node) in nodes.items():
        if node["kind"] in ("dc", "store") and node.get("parent") is not None and name not in into:
            problems.append(f"{locations.at(row, 'id')}: no lane into {name!r} in {LANES}; allowed: a row of "
                            f"{LANES} with to {name!r} and from its parent {node['parent']!r}")


def _lead_time(c: Cells) -> dict[str, Any] | None:
    """The lane's lead time as the YAML's `lead_time` mapping (None: all cells empty, or a problem)."""
    start = len(c.problems)
    dist = c.choice("lead_time_dist", LEAD_TIME_DISTS)
    mean = c.number("lead_time_mean", low=0)
    cv = c.number("lead_time_cv", low=0, high=5)
    values = c.numbers("lead_time_values", low=0, whole=True)
    probs = c.numbers("lead_time_probs", low=0, high=1)
    history = c.numbers("lead_time_history", low=0, whole=True)
    if c.bad & {"lead_time_dist", "lead_time_values", "lead_time_probs", "lead_time_history"}:
        return None
    empirical = bool(c.has("lead_time_values") or c.has("lead_time_probs") or c.has("lead_time_history"))
    if dist is None:
        dist = "empirical" if empirical else "gamma" if cv else "deterministic"
    if dist == "empirical":
        if c.has("lead_time_mean"):
            c.problem("lead_time_mean", "an empirical lead time is drawn from its values (or history), a mean would "
                                        "be ignored; allowed: empty")
        if history is not None and (values is not None or probs is not None):
            c.problem("lead_time_history", "give either a history or values and probs, not both; allowed: empty, "
                                           "or lead_time_values and lead_time_probs empty")
        elif history is not None:
            counts = np.unique(np.asarray(history), return_counts=True)
            values = [int(v) for v in counts[0]]
            probs = [float(n) / len(history) for n in counts[1]]
        elif values is None or probs is None:
            missing = "lead_time_values" if values is None else "lead_time_probs"
            c.problem(missing, "empty: an empirical lead time needs lead_time_values and lead_time_probs of equal "
                               "length, or a lead_time_history; allowed: whole days (values), their probabilities")
        elif len(values) != len(probs):
            c.problem("lead_time_probs", f"{len(probs)} probabilities for {len(values)} values; allowed: one "
                                         f"probability per value")
        elif abs(sum(probs) - 1) > 1e-6:
            c.problem("lead_time_probs", f"sum to {sum(probs):g}; allowed: probabilities summing to 1")
    else:
        for column in ("lead_time_values", "lead_time_probs", "lead_time_history"):
            if c.has(column):
                c.problem(column, f"only an empirical lead time uses {column}, this one is {dist}; allowed: empty, "
                                  f"or lead_time_dist empirical")
    if cv and dist not in ("gamma", "lognormal"):
        c.problem("lead_time_cv", f"{cv:g} has no effect on a {dist} lead time; allowed: empty or 0, or "
                                  f"lead_time_dist gamma or lognormal")
    if dist in ("gamma", "lognormal") and "lead_time_mean" not in c.bad and "lead_time_cv" not in c.bad:
        if not cv:
            c.problem("lead_time_cv", f"a {dist} lead time needs a spread; allowed: a coefficient of variation in "
                                      f"(0, 5]")
        if mean is not None and mean <= 0:
            c.problem("lead_time_mean", f"a {dist} lead time needs a mean > 0; allowed: days > 0")
    if len(c.problems) > start or c.bad & {"lead_time_mean", "lead_time_cv"}:
        return None
    given = {c.has(col) for col in ("lead_time_dist", "lead_time_mean", "lead_time_cv", "lead_time_values",
                                    "lead_time_probs", "lead_time_history")}
    if given == {False}:
        return None
    out: dict[str, Any] = {"dist": dist}
    if dist == "empirical":
        out.update(values=values, probs=probs)
    else:
        if mean is not None:
            out["mean"] = mean
        if cv:
            out["cv"] = cv
    return out


def _skus(table: Table, problems: list[str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for row, cells in table.rows:
        c = Cells(table, row, cells, problems)
        name = c.text("id")
        if name is None:
            c.problem("id", "empty; allowed: a unique SKU id")
        elif name in seen:
            c.problem("id", f"{name!r} is used twice (also row {seen[name]}); allowed: a unique SKU id")
        else:
            seen[name] = row
        item: dict[str, Any] = {"name": name}
        if c.has("group"):
            item["group"] = c.text("group")
        dist = c.choice("dist", DEMAND_DISTS)
        if dist is not None:
            item["dist"] = dist
        law = dist or "poisson"
        if not c.has("mean"):
            c.problem("mean", "empty; allowed: the mean demand per store-day, a number >= 0")
        for attr in SKU_RANGES:
            low, high = SKU_LIMITS[attr]
            if attr in LAW_PARAMETERS and LAW_PARAMETERS[attr] != law and c.has(attr):
                if "dist" not in c.bad:
                    c.problem(attr, f"only the {LAW_PARAMETERS[attr]} demand law uses {attr}, this SKU's dist is "
                                    f"{law}; allowed: empty (or dist {LAW_PARAMETERS[attr]})")
                continue
            value = c.number(attr, low=low, high=high)
            if value is not None:
                item[attr] = value
        items.append(item)
    if not table.rows:
        problems.append(f"{table.file}: no SKUs; allowed: at least one row under the header")
    return items


# --- one YAML file ----------------------------------------------------------

def _load_yaml(path: Path, problems: list[str]) -> tuple[bool, Any]:
    """(True, the file's data), or (False, None) with the problem collected."""
    try:
        return True, yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        message = " ".join(str(error).split())
        problems.append(f"{path.name}: not readable YAML ({message}); allowed: a YAML mapping")
        return False, None


def _yaml_file(path: Path, problems: list[str]) -> dict[str, Any]:
    """One YAML file of network_from_dict's schema: each node, the SKUs, the demand and the tree checked apart."""
    file = path.name
    ok, data = _load_yaml(path, problems)
    if not ok:
        return {}
    if not isinstance(data, Mapping):
        problems.append(f"{file}: expected a mapping (name, nodes or layout, skus, demand, rationing, "
                        f"backlog_first), got {type(data).__name__}")
        return {}
    data = {"name": path.stem, **data}
    nodes = data.get("nodes")
    if "layout" in data or not isinstance(nodes, list):  # a generated layout (or no nodes): the reader says it all
        _collect(lambda: network_from_dict(data, ""), problems, file)
        return data
    tree = []
    for i, item in enumerate(nodes):
        _collect(lambda item=item, i=i: node_from_reader(ConfigReader(item, f"nodes[{i}]")), problems, file)
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):  # the tree is checked as far as it reads
            text = {k: v if isinstance(v, str) else None for k, v in item.items()}
            tree.append(Location(item["name"], text.get("kind") if text.get("kind") in NODE_KINDS else None,
                                 text.get("parent"), text.get("backup_parent"),
                                 lambda column, i=i: f"{file}: nodes[{i}].{'name' if column == 'id' else column}", i))
    order = check_tree(tree, problems, file) if len(tree) == len(nodes) else None
    r = ConfigReader(data, "")
    r.raw("nodes")
    _collect(lambda: skus_from_reader(r.child("skus")), problems, file)
    _network_wide(r, problems, file)
    _collect(r.done, problems, file)
    if order is None:
        return data
    position = {name: i for i, name in enumerate(order)}
    return {**data, "nodes": sorted(nodes, key=lambda n: position[n["name"]])}


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def write_network_files(network: NetworkSpec, directory: str | Path) -> Path:
    """Write `network` as locations.csv, lanes.csv, skus.csv and network.yaml into `directory` (created);
    `read_network_files(directory)` reads back an equal network. Every column is written, empty where it does
    not apply. Returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    locations, lanes = [], []
    for node in network.nodes:
        _check_writable(node)
        kind = node.kind
        row = {"id": node.name, "kind": kind, "region": node.region,
               "supply_capacity": _num(node.supply_capacity) if kind == "supplier" else ""}
        if kind != "supplier":
            row.update(parent=node.parent, backup_parent=node.backup_parent or "", unmet=node.unmet,
                       storage_capacity=_num(node.storage_capacity), holding_factor=_num(node.holding_factor),
                       backorder_factor=_num(node.backorder_factor))
            if kind == "store":
                row.update(lost_sale_factor=_num(node.lost_sale_factor), demand_scale=_num(node.demand_scale))
            lt = node.lead_time
            empirical = lt.dist == "empirical"
            lanes.append({"from": node.parent, "to": node.name, "lead_time_dist": lt.dist,
                          "lead_time_mean": "" if empirical else _num(lt.mean),
                          "lead_time_cv": _num(lt.cv) if lt.dist in ("gamma", "lognormal") else "",
                          "lead_time_values": " ".join(str(int(v)) for v in lt.values),
                          "lead_time_probs": " ".join(_num(p) for p in lt.probs),
                          "lane_capacity": _num(node.lane_capacity),
                          "in_transit_holding": _num(node.in_transit_holding)})
        locations.append(row)
    skus = network.skus
    rows = []
    for k, name in enumerate(skus.name):
        row = {"id": name, "group": skus.group[k], "dist": skus.dist[k]}
        for attr in SKU_RANGES:
            value = float(getattr(skus, attr)[k])
            if attr in LAW_PARAMETERS and LAW_PARAMETERS[attr] != skus.dist[k]:
                if value != SKU_DEFAULTS[attr]:
                    raise SpecError(f"network.skus[{k}].{attr}: {value:g} on a {skus.dist[k]} SKU cannot be written "
                                    f"(the files leave it to its default {SKU_DEFAULTS[attr]:g}, as the YAML does)")
                row[attr] = ""
            else:
                row[attr] = _num(value)
        rows.append(row)
    _write_csv(out / LOCATIONS, LOCATION_COLUMNS, locations)
    _write_csv(out / LANES, tuple(c for c in LANE_COLUMNS if c != "lead_time_history"), lanes)
    _write_csv(out / SKUS, SKU_COLUMNS, rows)
    d = network.demand
    settings = {
        "name": network.name, "rationing": network.rationing, "backlog_first": network.backlog_first,
        "demand": {
            "weekly": [float(w) for w in d.weekly], "yearly_amplitude": float(d.yearly_amplitude),
            "yearly_peak_day": int(d.yearly_peak_day), "trend_per_year": float(d.trend_per_year),
            "promotion": {"weekly_probability": float(d.promotion.weekly_probability),
                          "duration_days": int(d.promotion.duration_days), "discount": float(d.promotion.discount),
                          "extra_lift": float(d.promotion.extra_lift)},
            "holidays": [{"name": h.name, "day": int(h.day), "lift": float(h.lift),
                          "duration_days": int(h.duration_days)} for h in d.holidays],
            "weather_ar": float(d.weather_ar), "weather_sd": float(d.weather_sd),
            "truncate_normal": bool(d.truncate_normal), "integer_units": bool(d.integer_units),
        },
    }
    header = "# Network-wide settings of the CSV files beside this one (twin/network_files.py).\n"
    (out / SETTINGS).write_text(header + yaml.safe_dump(settings, sort_keys=False, default_flow_style=None))
    return out


def _check_writable(node) -> None:
    """Values the files cannot express (they have no effect, but a spec built by hand may hold them)."""
    if node.kind == "supplier":
        fixed = SUPPLIER_COSTS
    elif node.kind == "dc":
        fixed = {"lost_sale_factor": 1.0, "demand_scale": 1.0}
    else:
        return
    for attr, value in fixed.items():
        if getattr(node, attr) != value:
            raise SpecError(f"network node {node.name!r}: {attr} {getattr(node, attr):g} on a {node.kind} cannot be "
                            f"written (the files leave it to {value:g}, as the YAML reader does)")


def _num(value: float | None) -> str:
    """A number as its shortest exact text (2 rather than 2.0); empty for None."""
    if value is None:
        return ""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
