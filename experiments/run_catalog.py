"""Stress runs read back from their run directories: for the planners' dashboard and the HTML reports.

    runs = find_runs(Path("outputs"))             # every stress run below, newest first
    run = runs[0]
    run.summary("fill_rate")                       # {(scenario, policy): SummaryCell}
    run.fan("fill_rate_7d", scenario, policy)      # Fan: percentiles over days, network-wide or of one DC
    run.alerts(target=0.95)                        # what a planner should look at first
    run.stores(scenarios, policies, limit=20)      # the worst stores by lost sales (stores.csv)

A stress run is a directory that holds summary.csv, stress.csv and series.npz (`python -m experiments.stress`
writes them, with scenario_<name>.yaml per scenario, and stores.csv, absent from runs written before it); a
node sweep (mode=node_sweep) is one too, its scenarios the disrupted nodes; a Hydra multirun of stress runs is a
folder of them. The files are the record: nothing here reruns the twin. Run ids are the directories' paths
relative to the folder searched, and only ids found by `find_runs` are ever opened (a web request cannot name
another path).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from twin.calendar import calendar_date
from twin.config import SpecError

RUN_FILES = ("summary.csv", "stress.csv", "series.npz")
FAN_METRICS = {"fill_rate_7d": "fill rate (7-day rolling)", "on_hand": "on hand (units)",
               "backorders": "backorders (units)"}
FIGURES = {  # summary.csv figures shown side by side: name -> (label, higher is better)
    "fill_rate": ("fill rate", True), "cost": ("total cost", False), "cost_per_day": ("cost per day", False),
    "lost_sales": ("lost sales (units)", False), "penalty_cost": ("penalty cost (backorder + lost sale)", False),
    "worst_week_fill_rate": ("worst-week fill rate", True),
    "peak_backorders": ("peak backorders (units)", False), "days_below_target": ("days below target", False),
    "cost_cvar95": ("cost at risk (CVaR 95%)", False), "time_to_recover": ("time to recover (days)", False),
    "recovered_share": ("share recovered", True)}
MAX_RUNS = 500           # a folder with more stress runs than this lists the newest MAX_RUNS
DEMAND_SPIKE = 1.2       # a demand shock with a multiplier at least this is a demand spike alert
SUPPLY_DELAY = 1.2       # a lead-time shock with a multiplier at least this is a supply delay alert
STORE_COLUMNS = ("scenario", "policy", "store", "home_dc", "region", "lost_sales", "lost_sales_ci95", "fill_rate",
                 "fill_rate_ci95")
SPAN_GAP = 7             # days: service-below-target spans closer than this are one alert


class RunError(SpecError):
    """A run directory whose files cannot be read: names the file and what is wrong."""


@dataclass(frozen=True)
class SummaryCell:
    """One figure of one (scenario, policy): mean, 95% CI half-width, paired deltas (None where not given)."""

    mean: float | None
    ci95: float | None
    vs_baseline: float | None
    vs_baseline_ci95: float | None
    vs_reference: float | None
    vs_reference_ci95: float | None


@dataclass(frozen=True)
class StoreRow:
    """One store of one (scenario, policy), from stores.csv: means over the replications with 95% CIs."""

    scenario: str
    policy: str
    store: str
    home_dc: str
    region: str
    lost_sales: float | None
    lost_sales_ci95: float | None
    fill_rate: float | None
    fill_rate_ci95: float | None


@dataclass(frozen=True)
class Fan:
    """Percentiles of a metric across replications, per day: `values[p]` is percentile `percentiles[p]`."""

    days: list[int]
    dates: list[str]
    percentiles: list[float]
    values: list[list[float | None]]


@dataclass(frozen=True)
class Alert:
    """Something a planner should see: a demand spike, a supply delay or closure, service below target."""

    kind: str          # demand_spike | supply_delay | dc_closure | capacity_cut | service_below_target
    scenario: str
    policy: str | None
    start_day: int
    end_day: int       # the first day without it
    start_date: str
    end_date: str
    message: str
    target: str = ""              # the nodes, groups or regions it hits
    magnitude: float | None = None  # a shock's multiplier or factor


@dataclass
class StressRun:
    """One stress run directory (see the module docstring)."""

    run_id: str
    path: Path
    _series: dict[str, np.ndarray] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ what the run holds

    @cached_property
    def summary_rows(self) -> list[dict[str, str]]:
        return _read_csv(self.path / "summary.csv", ("scenario", "policy", "figure", "mean", "ci95"))

    @cached_property
    def replication_rows(self) -> list[dict[str, str]]:
        return _read_csv(self.path / "stress.csv", ("scenario", "policy"))

    @cached_property
    def scenarios(self) -> list[str]:
        return _unique(r["scenario"] for r in self.summary_rows)

    @cached_property
    def policies(self) -> list[str]:
        return _unique(r["policy"] for r in self.summary_rows)

    @cached_property
    def dcs(self) -> list[str]:
        return [str(d) for d in self.series["dcs"]]

    @cached_property
    def figures(self) -> list[str]:
        present = {r["figure"] for r in self.summary_rows}
        return [f for f in FIGURES if f in present]

    @cached_property
    def config(self) -> dict:
        """The run's resolved config (.hydra/config.yaml), {} when absent or unreadable (it only labels)."""
        path = self.path / ".hydra" / "config.yaml"
        try:
            data = yaml.safe_load(path.read_text()) if path.exists() else {}
        except (OSError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def warmup(self) -> int:
        """Days before the run's figures count (its config's warmup)."""
        return int(self.config.get("warmup", 0) or 0)

    @property
    def replications(self) -> int:
        counts = {r["scenario"] + "/" + r["policy"] for r in self.replication_rows}
        return len(self.replication_rows) // max(len(counts), 1)

    @property
    def created(self) -> str:
        return dt.datetime.fromtimestamp((self.path / "summary.csv").stat().st_mtime).isoformat(timespec="seconds")

    @property
    def network(self) -> str:
        network = self.config.get("network")
        return str(network.get("name", "?")) if isinstance(network, dict) else "?"

    @property
    def series(self) -> dict[str, np.ndarray]:
        if self._series is None:
            try:
                with np.load(self.path / "series.npz", allow_pickle=False) as data:
                    self._series = {k: data[k] for k in data.files}
            except Exception as error:  # not an npz, damaged, half written: whatever np.load says
                raise RunError(f"{self.path / 'series.npz'}: {error}") from error
        return self._series

    # ------------------------------------------------------------------ tables

    def summary(self, figure: str) -> dict[tuple[str, str], SummaryCell]:
        """`figure` of every (scenario, policy), from summary.csv."""
        cells = {}
        for r in self.summary_rows:
            if r["figure"] == figure:
                cells[r["scenario"], r["policy"]] = SummaryCell(
                    _float(r.get("mean")), _float(r.get("ci95")), _float(r.get("vs_baseline")),
                    _float(r.get("vs_baseline_ci95")), _float(r.get("vs_reference")),
                    _float(r.get("vs_reference_ci95")))
        return cells

    def lost_sales(self, by: str) -> dict[tuple[str, str], dict[str, SummaryCell]]:
        """Lost sales by DC (`by` = "dc") or region ("region") per (scenario, policy): name -> SummaryCell."""
        prefix = f"lost_sales_{by}:"
        out: dict[tuple[str, str], dict[str, SummaryCell]] = {}
        for r in self.summary_rows:
            if r["figure"].startswith(prefix):
                out.setdefault((r["scenario"], r["policy"]), {})[r["figure"][len(prefix):]] = SummaryCell(
                    _float(r.get("mean")), _float(r.get("ci95")), None, None, None, None)
        return out

    @cached_property
    def store_rows(self) -> list[StoreRow]:
        """stores.csv, [] for a run written before it."""
        path = self.path / "stores.csv"
        if not path.exists():
            return []
        return [StoreRow(r["scenario"], r["policy"], r["store"], r["home_dc"], r["region"], _float(r["lost_sales"]),
                         _float(r["lost_sales_ci95"]), _float(r["fill_rate"]), _float(r["fill_rate_ci95"]))
                for r in _read_csv(path, STORE_COLUMNS)]

    def stores(self, scenarios: Sequence[str] | None = None, policies: Sequence[str] | None = None,
               limit: int | None = None) -> list[StoreRow]:
        """The stores of the given scenarios and policies (None: all), worst first: most lost sales, then lowest
        fill rate; at most `limit` rows."""
        rows = [r for r in self.store_rows if (scenarios is None or r.scenario in scenarios)
                and (policies is None or r.policy in policies)]
        rows.sort(key=lambda r: (-(r.lost_sales or 0.0), r.fill_rate if r.fill_rate is not None else math.inf))
        return rows[:limit]

    # ------------------------------------------------------------------ fan charts

    def fan(self, metric: str, scenario: str, policy: str, dc: str | None = None) -> Fan:
        """The fan of `metric` (FAN_METRICS) for one (scenario, policy), network-wide or of DC `dc`."""
        s, p = self.scenarios.index(scenario), self.policies.index(policy)
        block = "network" if dc is None else "dc"
        key = f"s{s}_p{p}_{block}_{metric}"
        if key not in self.series:
            raise RunError(f"{self.path / 'series.npz'}: no {key}")
        values = self.series[key] if dc is None else self.series[key][:, :, self.dcs.index(dc)]
        days = [int(d) for d in self.series["days"]]
        return Fan(days=days, dates=[calendar_date(d).isoformat() for d in days],
                   percentiles=[float(q) for q in self.series["percentiles"]],
                   values=[[None if not math.isfinite(v) else float(v) for v in row] for row in values])

    # ------------------------------------------------------------------ alerts

    def shocks(self, scenario: str) -> list[dict]:
        """The scenario's shocks as run (scenario_<name>.yaml), [] when it has none or no file."""
        for path in sorted(self.path.glob("scenario_*.yaml")):
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as error:
                raise RunError(f"{path}: {error}") from error
            if not isinstance(data, dict):
                continue
            if data.get("name") == scenario or path.stem == f"scenario_{scenario}":
                return [shock for shock in data.get("shocks") or [] if isinstance(shock, dict)]
        return []

    def alerts(self, target: float = 0.95) -> list[Alert]:
        """The scenarios' demand spikes, supply delays, closures and capacity cuts (from their shocks), and for
        every (scenario, policy) the spans after the warm-up where the median 7-day fill rate is below `target`."""
        alerts = []
        for scenario in self.scenarios:
            alerts += _merged([a for a in (_shock_alert(s, scenario) for s in self.shocks(scenario)) if a])
            for policy in self.policies:
                fan = self.fan("fill_rate_7d", scenario, policy)
                if 50.0 not in fan.percentiles:
                    continue
                median = fan.values[fan.percentiles.index(50.0)]
                counted = [v if day >= self.warmup else None for v, day in zip(median, fan.days)]
                for start, end in _spans_below(counted, target):
                    d0, d1 = fan.days[start], fan.days[end - 1] + 1
                    low = min(v for v in counted[start:end] if v is not None)
                    alerts.append(Alert("service_below_target", scenario, policy, d0, d1, _date(d0), _date(d1),
                                        f"median 7-day fill rate below {target:.0%} from {_date(d0)} for "
                                        f"{d1 - d0} days (lowest {low:.1%})"))
        return sorted(alerts, key=lambda a: (a.start_day, a.scenario, a.policy or ""))

    def replan_decisions(self) -> list[dict[str, str]]:
        """The re-planning decisions written by the run (replan_decisions.csv), [] if none."""
        path = self.path / "replan_decisions.csv"
        return _read_csv(path) if path.exists() else []


def find_runs(root: Path, limit: int = MAX_RUNS) -> list[StressRun]:
    """Every stress run directory under `root` (root itself included), newest first, at most `limit`."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"runs: {root} is not a directory; allowed: a folder of stress runs (e.g. outputs)")
    found = [p.parent for p in root.rglob("summary.csv") if all((p.parent / f).is_file() for f in RUN_FILES)]
    found.sort(key=lambda p: (p / "summary.csv").stat().st_mtime, reverse=True)
    return [StressRun(run_id=p.relative_to(root).as_posix() if p != root else root.resolve().name, path=p)
            for p in found[:limit]]


# ---------------------------------------------------------------------------- helpers


def _read_csv(path: Path, required: Sequence[str] = ()) -> list[dict[str, str]]:
    """The rows of a CSV file of the run; RunError if it cannot be read or lacks a `required` column."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RunError(f"{path}: {error}") from error
    lacking = [c for c in required if c not in columns]
    if lacking:
        raise RunError(f"{path}: no column {', '.join(lacking)}; allowed: the files experiments.stress writes")
    return rows


def _unique(values) -> list[str]:
    return list(dict.fromkeys(values))


def _float(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise RunError(f"{text!r} is not a number in one of the run's CSV files; allowed: the files "
                       f"experiments.stress writes") from None
    return value if math.isfinite(value) else None


def _date(day: int) -> str:
    return calendar_date(day).isoformat()


def _spans_below(values: Sequence[float | None], target: float, gap: int = SPAN_GAP) -> list[tuple[int, int]]:
    """[start, end) index spans where the value is below target (None ends a span); spans less than `gap` apart
    are one (a fill rate hovering at the target is one episode, not many)."""
    spans: list[tuple[int, int]] = []
    start = None
    for i, v in enumerate([*values, None]):
        below = v is not None and v < target
        if below and start is None:
            start = i
        elif not below and start is not None:
            if spans and start - spans[-1][1] < gap:
                start = spans.pop()[0]
            spans.append((start, i))
            start = None
    return spans


def _merged(alerts: list[Alert]) -> list[Alert]:
    """Back-to-back alerts of one kind on the same target (a ramp runs as daily steps) as one, with the message
    of its largest step (the peak of the ramp)."""
    out: list[Alert] = []
    for alert in sorted(alerts, key=lambda a: (a.kind, a.target, a.start_day)):
        last = out[-1] if out else None
        if last and (last.kind, last.target, last.end_day) == (alert.kind, alert.target, alert.start_day):
            peak = max((last, alert), key=lambda a: abs((a.magnitude or 1.0) - 1.0))
            out[-1] = Alert(last.kind, last.scenario, None, last.start_day, alert.end_day, last.start_date,
                            alert.end_date, peak.message, last.target, peak.magnitude)
        else:
            out.append(alert)
    return out


def _shock_alert(shock: dict, scenario: str) -> Alert | None:
    kind, start, end = shock.get("type"), shock.get("start"), shock.get("end")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        return None  # not a shock as experiments.stress writes it (day numbers): nothing to raise
    size = shock.get("multiplier", shock.get("factor"))
    size = None if size is None else float(size)
    names = shock.get("groups") or shock.get("regions") or shock.get("sources") or [
        shock.get("dc") or shock.get("supplier") or shock.get("node")]
    target = ", ".join(str(v) for v in names if v)
    if kind == "demand" and size is not None and size >= DEMAND_SPIKE:
        kind, message = "demand_spike", f"demand spike x{size:g} ({target or 'every store'})"
    elif kind == "lead_time" and size is not None and size >= SUPPLY_DELAY:
        kind, message = "supply_delay", f"supply delay: lead times x{size:g} from {target or 'every source'}"
    elif kind == "supplier_outage":
        kind, message = "supply_delay", f"supply delay: supplier {target} ships nothing"
    elif kind == "dc_closure":
        message = f"DC {target} closed" + (" (its stores re-routed)" if shock.get("reroute") else "")
    elif kind == "capacity_cut" and size is not None:
        message = f"capacity of {target} cut to {size:.0%}"
    else:
        return None
    return Alert(kind, scenario, None, start, end, _date(start), _date(end), message, target, size)
