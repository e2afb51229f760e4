"""Store demand from a planner's sales history: replayed as it was, or fitted and block-bootstrapped.

    python -m experiments.simulate demand=history demand.path=sales.csv                     # replay
    python -m experiments.simulate demand=history demand.path=sales.csv demand.mode=fitted replications=50

    from twin.demand_history import demand_source_from_dict
    source = demand_source_from_dict({"mode": "fitted", "path": "sales.csv"}, network, horizon=90)
    Engine(network, horizon=90, seed=3, demand=source)      # DemandStats.of(..., demand=source) sizes policies

**The file** is in the forecasting data format (agents/forecasting/data.py), read here with the csv module: a CSV
file (UTF-8, optionally gzip-compressed: .csv.gz) with a header row and the columns

    series_id   store/sku: a store's node name and a SKU's name of the network joined by '/' (the ids of the
                twin's own panels, agents.forecasting.data: 's1/rice')
    date        YYYY-MM-DD (a time of 00:00:00 may follow); one row per series and day
    value       units sold that day: a number >= 0, a whole number when the network counts whole units
                (network.demand.integer_units, the default)

Other columns (covariates, categories) are allowed and ignored. Every series covers the same days, first to last,
with no gap. Every problem is collected and reported at once, before anything is simulated: one
`DemandHistoryError` (a `SpecError`) whose `problems` name the file, the row (as a spreadsheet numbers it: the
header is row 1) and column, or the series, and what is allowed there.

**Dates.** Run day d takes the history's date `start_date` + d (`start_date`: the history's first date unless
given). A run that goes past the history's last date is an error naming `horizon` (the history is never wrapped
or extended). The twin's calendar is not moved: scenario files still read dates as day 0 = 2021-01-01
(twin/calendar.py), so against a history of other dates give shocks in day numbers (days since start_date). A
snapshot does not hold the history: a run continued from a history run's snapshot needs the same `demand`.

**replay**: the demand of store s, SKU k on run day d is the history's value on that date, times the demand
shocks' multiplier in force (so "this history, with a COVID shock"); the expected demand (the oracle forecast,
the policies' statistics) is that same value. Without shocks a run's demand is the history exactly.

**fitted** (Monte Carlo): per series y_t (t = 0 .. T-1 over the history's days), with w(t) its weekday,

    level_t     the mean of y over the `window` days (a multiple of 7: every weekday as often) centred on t,
                the window moved inside the history near either end
    factor_w    the mean of y_t / level_t over the days of weekday w with level_t > 0 (1 if there are none)
    baseline_t  level_t x factor_w(t)
    residual_t  y_t / baseline_t, 1 where baseline_t is 0 (y_t is 0 there too): multiplicative, so y_t =
                baseline_t x residual_t, the residuals of each weekday average 1, and no path goes below 0

A run's path is a moving-block bootstrap of the residuals: the run's days are cut into blocks of `block` days from
run day 0; block j draws one history day t_j, uniformly among the days 0 .. T - block that fall on the weekday of
the history day the block's first run day replays (so a Saturday's residual lands on a Saturday), from the
network's `demand_bootstrap` stream (one draw per block, in order: a longer run extends a shorter one's path, and a
run continued from a snapshot continues it exactly); every store and SKU takes the same t_j (their correlation
across series is kept). Run day d in block j, whose date is history day h, takes

    demand = baseline_h x residual_{t_j + d - j x block} x the shocks' multiplier

(on the same weekday this is y_t x level_h / level_t: the sales of a sampled day, moved from its level to day h's)
and its expected demand is baseline_h x the multiplier; the draw t_j that falls on h itself replays the history.
Over many paths the mean per series is the history's, up to the blocks' edge effect (the first and last days of the
history start fewer blocks) and the covariance of level and residual: tested against the history mean's own
standard error (tests/twin/test_demand_history.py).

**Whole units.** When the network counts whole units, a value with a fraction (a fitted path, a shocked replay)
is rounded down or up at random, up with the probability of its fraction (so rounding keeps the mean), from the
store's own `history_rounding` stream, each day from its own segment; a whole value is kept as it is.

**missing**: a store x SKU of the network without a series in the file is an error (`error`, the default), or draws
from the network's own demand model (`model`: its calendar, promotions and demand laws, the same draws as a run
without a history).

`write_demand_history` writes any run's store demand as such a file (the example to start from).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.calendar import calendar_date
from twin.config import ConfigReader, SpecError
from twin.demand import DAY_STRIDE, Covariates, DemandModel, draw_variance
from twin.spec import NetworkSpec
from twin.streams import Streams

MODES = ("model", "replay", "fitted")  # model: the network's own demand model (no history)
MISSING = ("error", "model")
COLUMNS = ("series_id", "date", "value")
SUFFIXES = (".csv", ".csv.gz", ".txt")
DEFAULT_BLOCK = 7
DEFAULT_WINDOW = 28
SHOWN = 20     # problems listed before the rest are counted
NAMES = 8      # names listed in an 'allowed:' before the rest are counted


class DemandHistoryError(SpecError):
    """Everything wrong with a demand history file: `problems`, one line each (file, row, column or series)."""

    def __init__(self, problems: list[str], path: str, key: str = "demand.path") -> None:
        self.problems = tuple(problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        shown = [f"  {p}" for p in problems[:SHOWN]]
        if len(problems) > SHOWN:
            shown.append(f"  ... and {len(problems) - SHOWN} more")
        super().__init__(f"{key}: {count} in the demand history {path} (nothing was simulated):\n" + "\n".join(shown))


# ---------------------------------------------------------------------------
# The history and its fit
# ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class DemandHistory:
    """A checked history: daily values per (store, SKU) of one network, over consecutive days from `first`."""

    path: str
    network: str                # the network's name
    stores: tuple[str, ...]     # the network's stores, in node order
    skus: tuple[str, ...]       # the network's SKUs, in catalog order
    first: dt.date              # the history's first date
    values: np.ndarray          # (days, stores, SKUs): units sold; 0 where `covered` is False
    covered: np.ndarray         # (stores, SKUs) bool: a series was given

    @property
    def days(self) -> int:
        return len(self.values)

    def date(self, index: int) -> dt.date:
        return self.first + dt.timedelta(days=int(index))


@dataclass(frozen=True, eq=False)
class HistoryFit:
    """The fitted model's parts per history day and series (days, stores, SKUs): see the module docstring."""

    level: np.ndarray
    factor: np.ndarray          # (7, stores, SKUs), by weekday (Monday 0, as datetime.date.weekday)
    baseline: np.ndarray
    residuals: np.ndarray       # multiplicative: values = baseline x residuals


def fit_history(values: np.ndarray, first: dt.date, window: int) -> HistoryFit:
    """Level (centred moving average of `window` days) x weekday factor, and the multiplicative residuals."""
    days = len(values)
    if window % 7 or not 7 <= window <= days:
        raise ValueError(f"window: {window} is not allowed; allowed: a multiple of 7 in [7, {days}]")
    cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    begin = np.clip(np.arange(days) - window // 2, 0, days - window)
    level = (cumulative[begin + window] - cumulative[begin]) / window
    weekday = (first.weekday() + np.arange(days)) % 7
    positive = level > 0
    to_level = np.divide(values, level, out=np.zeros_like(values), where=positive)
    factor = np.ones((7, *values.shape[1:]))
    for w in range(7):
        on = weekday == w
        count = positive[on].sum(axis=0)
        np.divide(to_level[on].sum(axis=0), count, out=factor[w], where=count > 0)
    baseline = level * factor[weekday]
    residuals = np.divide(values, baseline, out=np.ones_like(values), where=baseline > 0)
    return HistoryFit(level=level, factor=factor, baseline=baseline, residuals=residuals)


@dataclass(frozen=True, eq=False)
class DemandSource:
    """Where store demand comes from in a run: a history `replay`ed, or `fitted` and block-bootstrapped.

    `Engine(..., demand=source)` runs on it; `DemandStats.of(..., demand=source)` sizes policies from it.
    """

    mode: str                   # replay | fitted
    history: DemandHistory
    start: int = 0              # the history day replayed on run day 0
    missing: str = "error"
    block: int | None = None    # fitted only
    window: int | None = None   # fitted only
    fit: HistoryFit | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in ("replay", "fitted"):
            raise ValueError(f"mode: {self.mode!r} is not allowed; allowed: replay, fitted")
        if not 0 <= self.start < self.history.days:
            raise ValueError(f"start: {self.start} is not allowed; allowed: a history day in [0, "
                             f"{self.history.days - 1}]")
        if self.mode == "fitted":
            if self.block is None or not 1 <= self.block <= self.history.days - 6:
                raise ValueError(f"block: {self.block!r} is not allowed; allowed: whole days in [1, history days - 6"
                                 f" = {self.history.days - 6}]")
            if self.fit is None:
                object.__setattr__(self, "fit", fit_history(self.history.values, self.history.first,
                                                            self.window or DEFAULT_WINDOW))

    @property
    def start_date(self) -> dt.date:
        return self.history.date(self.start)

    def check(self, network: NetworkSpec, horizon: int, key: str = "demand") -> None:
        """SpecError unless the source was read for `network` and covers run days 0 .. horizon - 1."""
        stores = tuple(n.name for n in network.nodes if n.kind == "store")
        if stores != self.history.stores or tuple(network.skus.name) != self.history.skus:
            raise SpecError(f"{key}: the demand history {self.history.path} was read for network "
                            f"{self.history.network!r}, whose stores or SKUs differ from network {network.name!r}'s; "
                            f"allowed: the history read for this network")
        left = self.history.days - self.start
        if horizon > left:
            raise SpecError(f"horizon: {horizon} days from {key}.start_date {self.start_date} run to "
                            f"{calendar_plus(self.start_date, horizon - 1)}, after the demand history's last date "
                            f"{self.history.date(self.history.days - 1)} ({self.history.path}); allowed: horizon <= "
                            f"{left}, an earlier {key}.start_date, or a longer history (runs never wrap it)")

    def bootstrap_days(self, horizon: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The block starts (one per block of run days) and, per run day, the history day whose residual it takes.

        Block j (run days j x block ..) starts on a history day t_j drawn uniformly among 0 .. T - block on the
        weekday of the history day the block's first run day replays; draws are made in block order."""
        block, days = self.block, self.history.days
        starts = []
        source = np.empty(horizon, dtype=np.int64)
        for first in range(0, horizon, block):
            offset = (self.start + first) % 7   # history days of this weekday are offset, offset + 7, ...
            count = (days - block - offset) // 7 + 1
            t = offset + 7 * int(rng.integers(count))
            n = min(block, horizon - first)
            source[first:first + n] = t + np.arange(n)
            starts.append(t)
        return np.array(starts, dtype=np.int64), source

    def model(self, network: NetworkSpec, horizon: int, streams: Streams,
              base: DemandModel | None = None) -> HistoryDemand:
        """The demand model of one run (`streams` of its seed); `base`: the network's own model over at least
        `horizon` days (built if not given), for covariates and the store x SKUs without a series."""
        self.check(network, horizon)
        return HistoryDemand(self, network, horizon, streams, base or DemandModel(network, horizon, streams))

    def describe(self) -> dict[str, Any]:
        """The source as recorded in a run's outputs."""
        out = {"mode": self.mode, "path": self.history.path, "start_date": self.start_date.isoformat(),
               "history": [self.history.first.isoformat(), self.history.date(self.history.days - 1).isoformat()],
               "missing": self.missing, "series": int(self.history.covered.sum())}
        if self.mode == "fitted":
            out.update(block=self.block, window=self.window)
        return out


def calendar_plus(date: dt.date, days: int) -> dt.date:
    return date + dt.timedelta(days=int(days))


class HistoryDemand:
    """A run's store demand from a `DemandSource`, with the interface of `twin.demand.DemandModel`."""

    def __init__(self, source: DemandSource, network: NetworkSpec, horizon: int, streams: Streams,
                 base: DemandModel) -> None:
        history = source.history
        self.source, self.base, self.horizon = source, base, horizon
        self.fitted = source.mode == "fitted"
        self.integer = network.demand.integer_units
        self.skus = network.skus
        self.days = source.start + np.arange(horizon)   # the history day of each run day
        if self.fitted:
            self.block_starts, self.residual_days = source.bootstrap_days(
                horizon, streams.generator("network", "demand_bootstrap"))
            self._expected = source.fit.baseline
        else:
            self._expected = history.values
        self._index = {name: i for i, name in enumerate(history.stores)}
        self._covered = history.covered
        self._all_covered = history.covered.all(axis=1)
        self._rounding = {name: streams.generator(name, "history_rounding") for name in history.stores}
        self._rounding_start = {name: rng.bit_generator.state for name, rng in self._rounding.items()}
        # the network model's covariates over this run's days (the history brings none)
        self.promotion, self.price = base.promotion[:horizon], base.price[:horizon]
        self.holiday = base.holiday[:horizon]
        self.weather = {region: w[:horizon] for region, w in base.weather.items()}

    def mean(self, store: str, day: int, multiplier: np.ndarray | float | None = None) -> np.ndarray:
        """Expected demand of every SKU at `store` on `day`: the history's value (replay) or the baseline (fitted)."""
        i = self._index[store]
        out = self._expected[self.days[day], i].copy()
        if not self._all_covered[i]:
            out = np.where(self._covered[i], out, self.base.mean(store, day))
        return out if multiplier is None else out * multiplier

    def path(self, store: str, day: int) -> np.ndarray:
        """The day's demand before shocks and rounding: the history (replay), or the baseline times the
        bootstrapped residual (fitted); store x SKUs without a series read 0."""
        i, h = self._index[store], self.days[day]
        if self.fitted:
            return self.source.fit.baseline[h, i] * self.source.fit.residuals[self.residual_days[day], i]
        return self.source.history.values[h, i].copy()

    def draw(self, store: str, day: int, mean: np.ndarray, multiplier: np.ndarray | float | None = None) -> np.ndarray:
        """Day `day`'s demand of every SKU at `store`: its path times `multiplier` (never below 0), rounded to whole
        units (at random, keeping the mean) where the network counts them. `mean` is only used for the store x
        SKUs without a series, which the network's model draws as without a history."""
        value = self.path(store, day)
        if multiplier is not None:
            value *= multiplier
        np.maximum(value, 0.0, out=value)
        if self.integer:
            whole = np.floor(value)
            fraction = value - whole
            if fraction.any():
                rng = self._rounding[store]
                rng.bit_generator.state = self._rounding_start[store]
                rng.bit_generator.advance(day * DAY_STRIDE)
                value = whole + (rng.random(len(value)) < fraction)
        i = self._index[store]
        if not self._all_covered[i]:
            value = np.where(self._covered[i], value, self.base.draw(store, day, self.base.mean(store, day,
                                                                                                  multiplier)))
        return value

    def sample(self, store: str, day: int, multiplier: np.ndarray | float | None = None) -> np.ndarray:
        """One day's demand of every SKU at `store`."""
        return self.draw(store, day, self.mean(store, day, multiplier), multiplier)

    def mean_matrix(self, store: str) -> np.ndarray:
        """Expected demand (days, SKUs) at `store` over the run, without shocks."""
        i = self._index[store]
        out = self._expected[self.days, i]
        if not self._all_covered[i]:
            out = np.where(self._covered[i], out, self.base.mean_matrix(store)[:self.horizon])
        return out

    def variance_matrix(self, store: str) -> np.ndarray:
        """Variance (days, SKUs) of each day's demand around its expected demand: 0 for a replay; for a fitted
        series the baseline squared times the residuals' mean square deviation from 1 over the history; the demand
        law's for a series of the network's model."""
        i = self._index[store]
        if self.fitted:
            spread = np.mean((self.source.fit.residuals[:, i] - 1) ** 2, axis=0)
            out = self.source.fit.baseline[self.days, i] ** 2 * spread
        else:
            out = np.zeros((self.horizon, self.skus.n))
        if not self._all_covered[i]:
            out = np.where(self._covered[i], out, draw_variance(self.base.mean_matrix(store)[:self.horizon],
                                                                 self.skus))
        return out

    def covariates(self) -> Covariates:
        """The network model's covariates over the run (promotions and weather of the seed; the history has none)."""
        return Covariates(promotion=self.promotion, price=self.price, holiday=self.holiday, weather=self.weather)


# ---------------------------------------------------------------------------
# Config and file
# ---------------------------------------------------------------------------

def demand_source_from_dict(data: Mapping[str, Any] | None, network: NetworkSpec, horizon: int,
                            key: str = "demand") -> DemandSource | None:
    """The `demand` config (conf/demand/*.yaml) read and its file checked: None for mode `model` (the network's
    own demand model), else a `DemandSource` covering run days 0 .. horizon - 1 (SpecError naming the key)."""
    r = ConfigReader(data, key)
    mode = r.choice("mode", MODES, "model")
    history_keys = ("path", "start_date", "missing", "block", "window")
    if mode == "model":
        for name in history_keys:
            if r.has(name):
                raise SpecError(f"{r.key(name)}: only a demand history uses {name}, and {key}.mode is model (the "
                                f"network's own demand model); allowed: left out, or demand=history "
                                f"({key}.mode replay or fitted)")
            r.raw(name)
        r.done()
        return None
    path = r.required_path("path", f"{key}.mode {mode}", "a CSV file of series_id (store/sku), date, value")
    missing = r.choice("missing", MISSING, "error")
    start_date = _date_setting(r, "start_date")
    block = window = None
    if mode == "replay":
        for name in ("block", "window"):
            if r.has(name):
                raise SpecError(f"{r.key(name)}: only mode fitted resamples its residuals in blocks, and a replay "
                                f"has no fit; allowed: left out, or {key}.mode fitted")
            r.raw(name)
    else:
        block = r.integer("block", DEFAULT_BLOCK, low=1, high=3650)
        window = r.integer("window", DEFAULT_WINDOW, low=7, high=3640)
        if window % 7:
            raise SpecError(f"{r.key('window')}: {window} is not allowed; allowed: a multiple of 7 (every weekday "
                            f"as often in the moving average), such as 28")
    r.done()
    history = read_demand_history(path, network, missing=missing, key=r.key("path"))
    start = 0
    if start_date is not None:
        start = (start_date - history.first).days
        if not 0 <= start < history.days:
            raise SpecError(f"{r.key('start_date')}: {start_date} is not a date of the demand history {path}; "
                            f"allowed: {history.first} to {history.date(history.days - 1)}")
    if mode == "fitted":
        if window > history.days:
            raise SpecError(f"{r.key('window')}: {window} days is longer than the demand history {path} "
                            f"({history.days} days); allowed: a multiple of 7 up to {history.days // 7 * 7}, or a "
                            f"longer history")
        if block + 6 > history.days:
            raise SpecError(f"{r.key('block')}: blocks of {block} days need a history of at least block + 6 = "
                            f"{block + 6} days (a block may start on any weekday); {path} has {history.days}; "
                            f"allowed: block <= {history.days - 6}, or a longer history")
    source = DemandSource(mode=mode, history=history, start=start, missing=missing, block=block, window=window)
    source.check(network, horizon, key)
    return source


def _date_setting(r: ConfigReader, name: str) -> dt.date | None:
    value = r.raw(name)
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SpecError(f"{r.key(name)}: {value!r} is not a date; allowed: YYYY-MM-DD, a date of the history, or "
                        f"null (the history's first date)") from None


class _Problems:
    """Problems in file order; a kind of row problem is reported once, at its first row, with its count."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._first: dict[str, int] = {}
        self._count: dict[str, int] = {}

    def add(self, line: str) -> None:
        self.lines.append(line)

    def row(self, kind: str, line: str) -> None:
        if kind not in self._first:
            self._first[kind] = len(self.lines)
            self.lines.append(line)
        self._count[kind] = self._count.get(kind, 0) + 1

    def result(self) -> list[str]:
        lines = list(self.lines)
        for kind, at in self._first.items():
            if self._count[kind] > 1:
                lines[at] += f" ({self._count[kind]} rows in all)"
        return lines


def _named(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES])
    return shown + (f" ... ({len(names)} in all)" if len(names) > NAMES else "")


def _letter(index: int) -> str:
    """Spreadsheet column letters: 0 -> A, 25 -> Z, 26 -> AA."""
    name, index = "", index + 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def _parse_date(text: str) -> dt.date | None:
    if len(text) > 10 and text[10] in "T " and text[11:].strip() in ("00:00", "00:00:00", "00:00:00.000"):
        text = text[:10]
    if len(text) != 10:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _read_text(path: Path, problems: _Problems) -> str | None:
    name = path.name.lower()
    if not path.is_file():
        problems.add(f"{path}: not a file; allowed: a CSV file of series_id, date, value")
        return None
    if not name.endswith(SUFFIXES):
        problems.add(f"{path}: suffix {''.join(path.suffixes)!r} is not allowed; allowed: {', '.join(SUFFIXES)} "
                     f"(a Parquet file: save it as CSV, e.g. with pandas' to_csv)")
        return None
    try:
        raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        return raw.decode("utf-8-sig")
    except (OSError, EOFError) as error:
        problems.add(f"{path}: could not be read ({error}); allowed: a CSV file, optionally gzip-compressed (.csv.gz)")
    except UnicodeDecodeError as error:
        problems.add(f"{path}: not UTF-8 text (byte {error.start}); allowed: a CSV file saved as UTF-8")
    return None


def read_demand_history(path: str | Path, network: NetworkSpec, *, missing: str = "error",
                        key: str = "demand.path") -> DemandHistory:
    """The history of `network`'s stores in file `path` (see the module docstring), every problem collected into
    one `DemandHistoryError`; `missing` (error or model): whether every store x SKU needs a series."""
    if missing not in MISSING:
        raise ValueError(f"missing: {missing!r} is not allowed; allowed: {', '.join(MISSING)}")
    file = Path(path)
    problems = _Problems()
    text = _read_text(file, problems)
    if text is None:
        raise DemandHistoryError(problems.result(), str(path), key)
    try:
        records = csv.reader(io.StringIO(text, newline=""))
        header = [cell.strip().lower() for cell in next(records, [])]
        rows = list(records)
    except csv.Error as error:
        raise DemandHistoryError([f"{file.name}: not a readable CSV file ({error}); allowed: comma-separated "
                                  f"values"], str(path), key) from None
    column = {name: header.index(name) for name in COLUMNS if name in header}
    absent = [name for name in COLUMNS if name not in column]
    if absent:
        seen = ", ".join(repr(c) for c in header if c) or "none"
        raise DemandHistoryError([f"{file.name}, row 1: missing column(s) {', '.join(absent)} (columns seen: {seen});"
                                  f" required: {', '.join(COLUMNS)} (others, such as covariates, are ignored)"],
                                 str(path), key)
    at = {name: f"column {name} ({_letter(i)})" for name, i in column.items()}
    stores = tuple(n.name for n in network.nodes if n.kind == "store")
    skus = tuple(network.skus.name)
    store_index = {s: i for i, s in enumerate(stores)}
    sku_index = {k: i for i, k in enumerate(skus)}
    integer = network.demand.integer_units

    ids: dict[str, tuple[int, int] | None] = {}
    dates: dict[str, dt.date | None] = {}
    series, days, values = [], [], []
    width = max(column.values()) + 1
    for number, record in enumerate(rows, start=2):
        if not any(cell.strip() for cell in record):
            continue  # a blank row
        if len(record) < width:
            record = record + [""] * (width - len(record))
        name, date_text, value_text = (record[column[c]].strip() for c in COLUMNS)
        where = f"{file.name}, row {number}"
        if name not in ids:
            ids[name] = _series(name, store_index, sku_index, network.name, stores, skus, f"{where}, "
                                f"{at['series_id']}", problems)
        if date_text not in dates:
            dates[date_text] = _parse_date(date_text)
        date = dates[date_text]
        if date is None:
            problems.row("date", f"{where}, {at['date']}: {date_text!r} is not a date; allowed: YYYY-MM-DD, one row "
                                 f"per series and day")
        value = _value(value_text)
        if value is None:
            problems.row("number", f"{where}, {at['value']}: {value_text!r} is not a number; allowed: units sold, a "
                                   f"number >= 0 (a decimal point, no thousands separator or unit)")
        elif value < 0:
            problems.row("negative", f"{where}, {at['value']}: {value_text!r} is negative; allowed: units sold, a "
                                     f"number >= 0 (returns are not demand)")
            value = None
        elif integer and value != math.floor(value):
            problems.row("fraction", f"{where}, {at['value']}: {value_text!r} is not a whole number, and network "
                                     f"{network.name!r} counts whole units; allowed: whole units, or the network's "
                                     f"demand.integer_units: false")
            value = None
        if ids[name] is not None and date is not None and value is not None:
            series.append(ids[name])
            days.append(date.toordinal())
            values.append(value)
    if not series and not problems.lines:
        problems.add(f"{file.name}: no rows of data; allowed: one row per series and day under the header")
    if problems.lines:
        raise DemandHistoryError(problems.result(), str(path), key)

    pairs = np.array(series, dtype=np.int64).reshape(-1, 2)
    ordinals = np.array(days, dtype=np.int64)
    first, last = int(ordinals.min()), int(ordinals.max())
    n_days = last - first + 1
    distinct = np.unique(ordinals)
    if n_days > 2 * len(distinct) + 366:  # refused before the (days, stores, SKUs) arrays are made: a typo in one
        # year (2204 for 2024) would otherwise ask for gigabytes
        jump = int(np.argmax(np.diff(distinct)))
        problems.add(f"{file.name}: dates jump from {dt.date.fromordinal(int(distinct[jump]))} to "
                     f"{dt.date.fromordinal(int(distinct[jump + 1]))} ({len(distinct):,} dates over {n_days:,} "
                     f"days); allowed: one row per day from the first date to the last, no gaps")
        raise DemandHistoryError(problems.result(), str(path), key)
    cube = np.zeros((n_days, len(stores), len(skus)))
    counts = np.zeros((n_days, len(stores), len(skus)), dtype=np.int64)
    t = ordinals - first
    np.add.at(counts, (t, pairs[:, 0], pairs[:, 1]), 1)
    cube[t, pairs[:, 0], pairs[:, 1]] = values
    covered = counts.any(axis=0)
    start, end = dt.date.fromordinal(first), dt.date.fromordinal(last)
    twice = np.argwhere(counts > 1)
    if len(twice):
        d, s, k = twice[0]
        problems.add(f"{file.name}: series {stores[s] + '/' + skus[k]!r} has {counts[d, s, k]} rows for "
                     f"{dt.date.fromordinal(first + int(d))}" + (f" ({len(twice)} series-days in all)"
                                                                 if len(twice) > 1 else "")
                     + "; allowed: one row per series and day")
    for s, k in np.argwhere(covered):
        gaps = np.flatnonzero(counts[:, s, k] == 0)
        if len(gaps):
            more = f" (and {len(gaps) - 1} more day{'s' if len(gaps) > 2 else ''})" if len(gaps) > 1 else ""
            problems.add(f"{file.name}: series {stores[s] + '/' + skus[k]!r} has no row for "
                         f"{dt.date.fromordinal(first + int(gaps[0]))}{more}; allowed: one row per day from {start} "
                         f"to {end} (the history's first and last dates) for every series, no gaps")
    if missing == "error" and not covered.all():
        absent = [f"{stores[s]}/{skus[k]}" for s, k in np.argwhere(~covered)]
        problems.add(f"{file.name}: no series for {len(absent)} of the network's {covered.size} store/SKU pairs: "
                     f"{_named(absent)}; allowed: a series for every store and SKU of network {network.name!r}, or "
                     f"demand.missing: model (those draw from the network's own demand model)")
    if problems.lines:
        raise DemandHistoryError(problems.result(), str(path), key)
    cube.setflags(write=False)
    covered.setflags(write=False)
    return DemandHistory(path=str(path), network=network.name, stores=stores, skus=skus, first=start, values=cube,
                         covered=covered)


def _value(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _series(name: str, store_index: Mapping[str, int], sku_index: Mapping[str, int], network: str,
            stores: Sequence[str], skus: Sequence[str], where: str, problems: _Problems) -> tuple[int, int] | None:
    """(store, SKU) positions of id `name`, or None with one problem (at the id's first row)."""
    if not name:
        problems.row("empty id", f"{where}: empty; allowed: a series id store/sku")
        return None
    cuts = [i for i, c in enumerate(name) if c == "/"]
    for i in cuts:  # a store or SKU name may itself hold '/': any cut that names both is the one
        if name[:i] in store_index and name[i + 1:] in sku_index:
            return store_index[name[:i]], sku_index[name[i + 1:]]
    if not cuts:
        problems.add(f"{where}: {name!r} is not a store/sku id; allowed: a store's and a SKU's names of network "
                     f"{network!r} joined by '/', e.g. {stores[0] + '/' + skus[0]!r}")
    elif not any(name[:i] in store_index for i in cuts):
        problems.add(f"{where}: series {name!r}: {name[:cuts[0]]!r} is not a store of network {network!r}; "
                     f"allowed: {_named(list(stores))}")
    else:
        i = next(i for i in cuts if name[:i] in store_index)
        problems.add(f"{where}: series {name!r}: {name[i + 1:]!r} is not a SKU of network {network!r}; "
                     f"allowed: {_named(list(skus))}")
    return None


def write_demand_history(path: str | Path, network: NetworkSpec, demand: np.ndarray, first_day: int = 0) -> Path:
    """Write the store demand of a run, `demand` (days, nodes, SKUs) as in `RunResult.sku_series['demand']`, as a
    history file (series_id, date, value; dates of the twin's calendar from `first_day`; .csv.gz compressed)."""
    path = Path(path)
    demand = np.asarray(demand, dtype=float)
    stores = [i for i, n in enumerate(network.nodes) if n.kind == "store"]
    if demand.ndim != 3 or demand.shape[1:] != (len(network.nodes), network.skus.n):
        raise ValueError(f"demand: shape {demand.shape} is not allowed; allowed: (days, nodes, SKUs) = (days, "
                         f"{len(network.nodes)}, {network.skus.n})")
    integer = network.demand.integer_units
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in stores:
        for k, sku in enumerate(network.skus.name):
            name = f"{network.nodes[i].name}/{sku}"
            for day, value in enumerate(demand[:, i, k].tolist(), start=first_day):
                writer.writerow([name, calendar_date(day).isoformat(), int(value) if integer else repr(value)])
    data = buffer.getvalue().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.lower().endswith(".gz") else data)
    return path
