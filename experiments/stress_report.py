"""The report of a stress test: per-replication figures, summaries with paired deltas, tables, fan charts.

    figures = replication_figures(rep, settings, shock_start)       # one row of stress.csv
    summaries = summarize_cells(figures_by_cell, baseline="baseline", reference="base_stock")
    write_stress_csv(...), write_summary_csv(...), summary_markdown(...), plot_network_fans(...), ...

Figures of a replication (`Figures`), over its KPI days (after warm-up): the network KPIs (fill rate, total
cost, cost per day, lost sales, penalty cost: backorder + lost-sale cost) and the resilience figures of
twin/resilience.py on the stores' daily demand and fill: the worst 7-day fill rate, peak customer backorders,
days whose rolling fill rate (`window` days) is below the service target, and the time to recover: days from
the scenario's first shock start until the rolling fill rate is back within `tolerance` of its level over the
`pre_days` before the shock (None for a scenario without shocks; NaN where it cannot be measured: the shock
starts before the KPI days or no demand before it; inf when the run ends first).

A cell (scenario, policy) is summarised by the mean and 95% CI of each figure (experiments/summary.py), the
cost at risk (CVaR 95% of the replications' total cost, twin/resilience.cvar), the share of replications that
recovered, and paired deltas on the same seeds: against the baseline scenario (same policy) and against the
reference policy (same scenario). Per store (stores.csv): the mean lost sales and fill rate of each store over
a cell's replications, with 95% CIs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from experiments.plots import SHOCK_COLOURS
from experiments.stress_runs import Replication
from experiments.summary import summarize, summarize_paired
from twin import resilience
from twin.shocks import Shock

PERCENTILES = (5, 25, 50, 75, 95)
FAN_WEEK = resilience.WEEK         # the fan charts' fill rate: trailing 7 days
CVAR_LEVEL = 0.95
KPIS = ("fill_rate", "cost", "cost_per_day", "lost_sales", "penalty_cost")
RESILIENCE = ("worst_week_fill_rate", "peak_backorders", "days_below_target")
COMPARED = KPIS + RESILIENCE       # the figures with paired deltas
FAN_METRICS = (("fill_rate_7d", "fill rate (7-day rolling)"), ("on_hand", "on hand (units)"),
               ("backorders", "backorders (units)"))


@dataclass(frozen=True)
class ResilienceSettings:
    """`service_target` and `recovery.*` of conf/stress.yaml."""

    target: float = 0.95     # fill-rate target of days_below_target
    tolerance: float = 0.02  # recovered: rolling fill rate >= pre-shock level - tolerance
    window: int = 7          # days of the rolling fill rate of time to recover and days below target
    pre_days: int = 28       # days before the shock that set the pre-shock level


@dataclass(frozen=True)
class Figures:
    """One replication's figures: a row of stress.csv."""

    scenario: str
    policy: str
    replication: int
    seed: int
    fill_rate: float
    cost: float
    cost_per_day: float
    lost_sales: float
    penalty_cost: float                # backorder + lost-sale cost (twin.costs kinds)
    worst_week_fill_rate: float
    peak_backorders: float
    days_below_target: int
    time_to_recover: float | None      # None: no shock; NaN: not measurable; inf: not within the run
    lost_by_dc: tuple[float, ...]
    lost_by_region: tuple[float, ...]


def replication_figures(rep: Replication, settings: ResilienceSettings, shock_start: int | None) -> Figures:
    """The figures of one replication over its KPI days; `shock_start`: the twin day the scenario's first shock
    starts (None: no shock)."""
    demand, filled = rep.kpi_days(rep.network["demand"]), rep.kpi_days(rep.network["filled"])
    return Figures(
        scenario=rep.scenario, policy=rep.policy, replication=rep.replication, seed=rep.seed,
        fill_rate=rep.fill_rate, cost=rep.cost, cost_per_day=rep.cost_per_day, lost_sales=rep.lost_sales,
        penalty_cost=rep.penalty_cost, worst_week_fill_rate=(float(resilience.worst_week_fill_rate(demand, filled))
                              if len(demand) >= resilience.WEEK else math.nan),
        peak_backorders=float(resilience.peak(rep.kpi_days(rep.network["backorders"]))),
        days_below_target=int(resilience.days_below_target(demand, filled, settings.target, settings.window)),
        time_to_recover=_recovery(demand, filled, None if shock_start is None else shock_start - rep.kpi_start,
                                  settings),
        lost_by_dc=tuple(float(v) for v in rep.lost_by_dc),
        lost_by_region=tuple(float(v) for v in rep.lost_by_region))


def _recovery(demand: np.ndarray, filled: np.ndarray, start: int | None, settings: ResilienceSettings):
    if start is None:
        return None
    if not 1 <= start <= len(demand) - 1:
        return math.nan  # the shock starts before the KPI days (or after the last)
    try:
        return float(resilience.time_to_recover(demand, filled, start, window=settings.window,
                                                tolerance=settings.tolerance, pre_days=settings.pre_days))
    except ValueError:  # no demand before the shock: no pre-shock level
        return math.nan


def first_shock_start(shocks: Sequence[Shock]) -> int | None:
    """The earliest start among a scenario's shocks (None: no shock)."""
    return min((s.start for s in shocks), default=None)


# ---------------------------------------------------------------------------
# Summaries per (scenario, policy)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CellSummary:
    """A (scenario, policy) cell over its replications: means with 95% CIs, cost at risk, recovery, deltas."""

    scenario: str
    policy: str
    n: int
    figures: dict[str, dict]                   # COMPARED figure -> summarize(...)
    cost_cvar95: float
    recovered: float | None                    # share of measurable replications that recovered (None: no shock)
    time_to_recover: dict | None               # summarize(...) over the replications that recovered
    vs_baseline: dict[str, dict] | None        # figure -> summarize_paired against the baseline scenario
    vs_reference: dict[str, dict] | None       # figure -> summarize_paired against the reference policy
    lost_by_dc: dict[str, dict]
    lost_by_region: dict[str, dict]


def _column(rows: Sequence[Figures], name: str) -> np.ndarray:
    return np.array([getattr(r, name) for r in rows], dtype=float)


def summarize_cells(cells: Mapping[tuple[str, str], Sequence[Figures]], baseline: str, reference: str,
                    dc_names: Sequence[str], regions: Sequence[str]) -> list[CellSummary]:
    """One summary per cell, in the cells' order; every cell holds the same replications in the same order."""
    summaries = []
    for (scenario, policy), rows in cells.items():
        values = {m: _column(rows, m) for m in COMPARED}
        recovery = [r.time_to_recover for r in rows]
        measurable = [t for t in recovery if t is not None and not math.isnan(t)]
        recovered = [t for t in measurable if math.isfinite(t)]
        summaries.append(CellSummary(
            scenario=scenario, policy=policy, n=len(rows),
            figures={m: summarize(list(_finite_or_none(v))) for m, v in values.items()},
            cost_cvar95=resilience.cvar(values["cost"], CVAR_LEVEL),
            recovered=None if recovery[0] is None else (len(recovered) / len(measurable) if measurable else None),
            time_to_recover=None if recovery[0] is None else summarize(recovered),
            vs_baseline=None if scenario == baseline else _paired(values, cells[baseline, policy]),
            vs_reference=None if policy == reference else _paired(values, cells[scenario, reference]),
            lost_by_dc={d: summarize([r.lost_by_dc[j] for r in rows]) for j, d in enumerate(dc_names)},
            lost_by_region={g: summarize([r.lost_by_region[j] for r in rows]) for j, g in enumerate(regions)}))
    return summaries


def _paired(values: Mapping[str, np.ndarray], other: Sequence[Figures]) -> dict[str, dict]:
    """Per compared figure: the paired difference of `values` to the same replications of `other`."""
    return {m: summarize_paired(values[m], _column(other, m)) for m in COMPARED}


def _finite_or_none(values: np.ndarray):
    return (float(v) if math.isfinite(v) else None for v in values)


# ---------------------------------------------------------------------------
# Files: stress.csv, summary.csv, summary.md, the printed table
# ---------------------------------------------------------------------------

def _number(value: float | None) -> str:
    """Exact enough to compare runs (10 significant digits); '' for None, 'nan' and 'inf' as such."""
    if value is None:
        return ""
    return f"{value:.10g}"


def write_stress_csv(path: Path, rows: Sequence[Figures], dc_names: Sequence[str], regions: Sequence[str]) -> None:
    """One row per scenario x policy x replication with every figure; lost sales by DC and region as columns."""
    scalar = [f.name for f in fields(Figures) if f.name not in ("lost_by_dc", "lost_by_region")]
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*scalar, *(f"lost_dc_{d}" for d in dc_names), *(f"lost_region_{g}" for g in regions)])
        for row in rows:
            cells = [v if isinstance(v, str) else _number(v) for v in (getattr(row, n) for n in scalar)]
            writer.writerow([*cells, *map(_number, row.lost_by_dc), *map(_number, row.lost_by_region)])


SUMMARY_COLUMNS = ("scenario", "policy", "figure", "n", "mean", "std", "ci95", "vs_baseline", "vs_baseline_ci95",
                   "vs_baseline_relative", "vs_reference", "vs_reference_ci95", "vs_reference_relative")


def summary_rows(s: CellSummary) -> list[dict]:
    """A cell as rows of summary.csv: each figure with its CI and paired deltas, then cost at risk, recovery and
    lost sales by DC and region."""
    rows = []

    def add(figure: str, stats: Mapping | None, vs_baseline: Mapping | None = None,
            vs_reference: Mapping | None = None) -> None:
        row = {"scenario": s.scenario, "policy": s.policy, "figure": figure}
        if stats is not None:
            row.update(n=stats.get("n"), mean=stats.get("mean"), std=stats.get("std"), ci95=stats.get("ci95"))
        for prefix, delta in (("vs_baseline", vs_baseline), ("vs_reference", vs_reference)):
            if delta is not None:
                row.update({prefix: delta["mean"], f"{prefix}_ci95": delta["ci95"],
                            f"{prefix}_relative": delta["relative"]})
        rows.append(row)

    for m in COMPARED:
        add(m, s.figures[m], s.vs_baseline and s.vs_baseline[m], s.vs_reference and s.vs_reference[m])
    add("cost_cvar95", {"n": s.n, "mean": s.cost_cvar95})
    if s.time_to_recover is not None:
        add("recovered_share", {"n": s.n, "mean": s.recovered})
        add("time_to_recover", s.time_to_recover)
    for d, stats in s.lost_by_dc.items():
        add(f"lost_sales_dc:{d}", stats)
    for g, stats in s.lost_by_region.items():
        add(f"lost_sales_region:{g}", stats)
    return rows


def _write_rows(path: Path, columns: Sequence[str], rows: Iterable[Mapping]) -> None:
    """A CSV file of `rows` under `columns`, numbers written by `_number`."""
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v if isinstance(v, str) else _number(v) for k, v in row.items()})


def write_summary_csv(path: Path, summaries: Sequence[CellSummary]) -> None:
    _write_rows(path, SUMMARY_COLUMNS, (row for s in summaries for row in summary_rows(s)))


def _pm(stats: Mapping | None, fmt: str = "{:.4g}") -> str:
    if stats is None or stats.get("mean") is None:
        return "-"
    ci = f" ± {stats['ci95']:.2g}" if stats.get("ci95") is not None else ""
    return fmt.format(stats["mean"]) + ci


def _delta(stats: Mapping | None) -> str:
    if stats is None or stats.get("mean") is None:
        return "-"
    ci = f" ± {stats['ci95']:.2g}" if stats.get("ci95") is not None else ""
    relative = stats.get("relative")
    rel = f" ({relative:+.1%})" if relative is not None and math.isfinite(relative) else ""
    return f"{stats['mean']:+.4g}{ci}{rel}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _recovery_cell(s: CellSummary) -> str:
    if s.time_to_recover is None:
        return "none (no shock)"
    if s.recovered is None:
        return "not measurable"
    days = _pm(s.time_to_recover, "{:.1f}") if s.time_to_recover["n"] else "-"
    return f"{days} d ({s.recovered:.0%} recovered)"


def summary_markdown(summaries: Sequence[CellSummary], baseline: str, reference: str, title: str,
                     settings: ResilienceSettings) -> str:
    """summary.md: KPIs, resilience, deltas against the baseline scenario and the reference policy, lost sales."""
    lines = [f"# {title}", "",
             "Means over the replications with 95% confidence half-widths; deltas are paired on the same seeds.", "",
             "## KPIs", ""]
    lines += _table(["scenario", "policy", "n", "fill rate", "cost", "cost/day", "lost sales", "penalty cost",
                     "cost CVaR 95%"],
                    [[s.scenario, s.policy, str(s.n), _pm(s.figures["fill_rate"]), _pm(s.figures["cost"]),
                      _pm(s.figures["cost_per_day"]), _pm(s.figures["lost_sales"]), _pm(s.figures["penalty_cost"]),
                      f"{s.cost_cvar95:.4g}"] for s in summaries])
    lines += ["", "## Resilience", "",
              f"Worst 7-day fill rate; peak customer backorders; days with a {settings.window}-day fill rate below "
              f"{settings.target:g}; time to recover: days from the first shock until the {settings.window}-day "
              f"fill rate is back within {settings.tolerance:g} of its level over the {settings.pre_days} days "
              f"before (mean over the replications that recovered).", ""]
    lines += _table(["scenario", "policy", "worst week fill rate", "peak backorders", "days below target",
                     "time to recover"],
                    [[s.scenario, s.policy, _pm(s.figures["worst_week_fill_rate"]), _pm(s.figures["peak_backorders"]),
                      _pm(s.figures["days_below_target"], "{:.1f}"), _recovery_cell(s)] for s in summaries])
    for title_, attr in ((f"Against the baseline scenario {baseline} (same policy, same seeds)", "vs_baseline"),
                         (f"Against the reference policy {reference} (same scenario, same seeds)", "vs_reference")):
        rows = [[s.scenario, s.policy, *(_delta(getattr(s, attr)[m]) for m in COMPARED)]
                for s in summaries if getattr(s, attr) is not None]
        if rows:
            lines += ["", f"## {title_}", ""]
            lines += _table(["scenario", "policy", "fill rate", "cost", "cost/day", "lost sales", "penalty cost",
                             "worst week", "peak backorders", "days below"], rows)
    for what, attr in (("home DC", "lost_by_dc"), ("region", "lost_by_region")):
        names = list(getattr(summaries[0], attr))
        if not names:
            continue
        lines += ["", f"## Lost sales by {what} (stores, KPI days)", ""]
        if all(not getattr(s, attr)[k]["mean"] for s in summaries for k in names):
            lines.append("None in any replication.")
        else:
            lines += _table(["scenario", "policy", *names],
                            [[s.scenario, s.policy, *(_pm(getattr(s, attr)[k]) for k in names)] for s in summaries])
    return "\n".join(lines) + "\n"


def short_table(summaries: Sequence[CellSummary]) -> str:
    """The table printed at the end: one line per cell."""
    header = ("scenario", "policy", "fill rate", "cost/day", "CVaR95 cost", "worst week", "recover (days)")
    rows = [(s.scenario, s.policy, _pm(s.figures["fill_rate"], "{:.3f}"), _pm(s.figures["cost_per_day"], "{:,.0f}"),
             f"{s.cost_cvar95:,.0f}", _pm(s.figures["worst_week_fill_rate"], "{:.3f}"), _recovery_cell(s))
            for s in summaries]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in (header, *rows))


# ---------------------------------------------------------------------------
# Per store: stores.csv
# ---------------------------------------------------------------------------

STORE_COLUMNS = ("scenario", "policy", "store", "home_dc", "region", "n", "lost_sales", "lost_sales_ci95",
                 "fill_rate", "fill_rate_ci95")


def store_rows(scenario: str, policy: str, reps: Sequence[Replication], groups) -> list[dict]:
    """One row per store of a cell: mean lost sales and fill rate over its replications (KPI days), 95% CIs.
    `groups`: the network's experiments.stress_runs.NodeGroups."""
    lost = np.stack([r.store_lost for r in reps])
    fill = np.stack([r.store_fill_rate for r in reps])
    rows = []
    for j, store in enumerate(groups.store_names):
        home = int(groups.store_dc[j])
        lost_stats = summarize(list(lost[:, j]))
        fill_stats = summarize(list(_finite_or_none(fill[:, j])))
        rows.append({"scenario": scenario, "policy": policy, "store": store,
                     "home_dc": groups.dc_names[home] if home >= 0 else "",
                     "region": groups.regions[groups.store_region[j]], "n": len(reps),
                     "lost_sales": lost_stats["mean"], "lost_sales_ci95": lost_stats["ci95"],
                     "fill_rate": fill_stats["mean"], "fill_rate_ci95": fill_stats["ci95"]})
    return rows


def write_stores_csv(path: Path, rows: Sequence[Mapping]) -> None:
    """stores.csv: one row per scenario x policy x store (`store_rows`)."""
    _write_rows(path, STORE_COLUMNS, rows)


# ---------------------------------------------------------------------------
# Fan charts: quantiles across replications, the PNGs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Fans:
    """Percentiles across a cell's replications over days: network[metric] (P, days), dcs[metric]
    (P, days, DCs), for the FAN_METRICS."""

    days: np.ndarray
    network: dict[str, np.ndarray]
    dcs: dict[str, np.ndarray]


def fans(reps: Sequence[Replication]) -> Fans:
    """The fan-chart quantiles (PERCENTILES) of a cell's replications."""
    def paths(block: str, metric: str) -> np.ndarray:
        series = [getattr(r, block) for r in reps]
        if metric == "fill_rate_7d":
            return np.stack([resilience.rolling_fill_rate(s["demand"], s["filled"], FAN_WEEK) for s in series])
        return np.stack([s[metric] for s in series])

    return Fans(days=reps[0].days,
                network={m: resilience.fan_quantiles(paths("network", m), PERCENTILES) for m, _ in FAN_METRICS},
                dcs={m: resilience.fan_quantiles(paths("dcs", m), PERCENTILES) for m, _ in FAN_METRICS})


def fan_arrays(cells: Mapping[tuple[str, str], Fans], scenarios: Sequence[str], policies: Sequence[str],
               dc_names: Sequence[str]) -> dict[str, np.ndarray]:
    """series.npz: `s<i>_p<j>_<network|dc>_<metric>` arrays, with the labels, days and percentiles."""
    arrays = {"scenarios": np.array(scenarios), "policies": np.array(policies), "dcs": np.array(dc_names),
              "percentiles": np.array(PERCENTILES, dtype=float)}
    for (scenario, policy), fan in cells.items():
        prefix = f"s{scenarios.index(scenario)}_p{policies.index(policy)}"
        arrays["days"] = fan.days
        for m, _ in FAN_METRICS:
            arrays[f"{prefix}_network_{m}"] = fan.network[m]
            arrays[f"{prefix}_dc_{m}"] = fan.dcs[m]
    return arrays


def _figure(rows: int, columns: int, width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(rows, columns, sharex=True, squeeze=False)


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def _fan(ax, days: np.ndarray, q: np.ndarray, colour: str = "tab:blue") -> None:
    """One fan: p5-p95 and p25-p75 bands and the median."""
    ax.fill_between(days, q[0], q[4], color=colour, alpha=0.15, lw=0, label="p5-p95")
    ax.fill_between(days, q[1], q[3], color=colour, alpha=0.35, lw=0, label="p25-p75")
    ax.plot(days, q[2], color=colour, lw=1.1, label="median")


def _shade(ax, shocks: Sequence[Shock], warmup: int) -> None:
    for name, start, end in dict.fromkeys((type(s).__name__, s.start, s.end) for s in shocks):
        ax.axvspan(start, end, color=SHOCK_COLOURS.get(name, "tab:gray"), alpha=0.12, lw=0)
    if warmup:
        ax.axvline(warmup, color="k", ls=":", lw=0.8)
    ax.grid(alpha=0.3)


def plot_network_fans(path: Path, title: str, cells: Mapping[str, Fans], shocks: Sequence[Shock], warmup: int,
                      target: float) -> Path:
    """One scenario, network-wide: a row per metric (fill rate, on hand, backorders), a column per policy."""
    policies = list(cells)
    fig, axes = _figure(len(FAN_METRICS), len(policies), 3.6 * len(policies) + 1, 7.5)
    for j, policy in enumerate(policies):
        fan = cells[policy]
        for i, (metric, label) in enumerate(FAN_METRICS):
            ax = axes[i, j]
            _fan(ax, fan.days, fan.network[metric])
            _shade(ax, shocks, warmup)
            if metric == "fill_rate_7d":
                ax.axhline(target, color="tab:red", ls="--", lw=0.8, label=f"target {target:g}")
            if i == 0:
                ax.set_title(policy, fontsize=10)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
        axes[-1, j].set_xlabel("day")
    for i in range(len(FAN_METRICS)):  # the same scale across policies
        low = min(ax.get_ylim()[0] for ax in axes[i])
        high = max(ax.get_ylim()[1] for ax in axes[i])
        for ax in axes[i]:
            ax.set_ylim(low, high)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{title}: network-wide (customers at stores; on hand in DCs and stores), "
                 f"p5/p25/p50/p75/p95 across replications", fontsize=10)
    return _save(fig, path)


def plot_dc_fans(path: Path, title: str, fan: Fans, dc_names: Sequence[str], shocks: Sequence[Shock], warmup: int,
                 target: float) -> Path:
    """One scenario and policy, per DC: a row per DC, a column per metric (the DC's own orders, stock and
    backorders owed to its stores)."""
    fig, axes = _figure(len(dc_names), len(FAN_METRICS), 12, 1.9 * len(dc_names) + 1)
    for k, dc in enumerate(dc_names):
        for i, (metric, label) in enumerate(FAN_METRICS):
            ax = axes[k, i]
            _fan(ax, fan.days, fan.dcs[metric][:, :, k], "tab:green")
            _shade(ax, shocks, warmup)
            if metric == "fill_rate_7d":
                ax.axhline(target, color="tab:red", ls="--", lw=0.8)
            if k == 0:
                ax.set_title(label, fontsize=10)
            if i == 0:
                ax.set_ylabel(dc, fontsize=9)
    for i in range(len(FAN_METRICS)):
        axes[-1, i].set_xlabel("day")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{title}: per DC (orders from its stores), p5/p25/p50/p75/p95 across replications", fontsize=10)
    return _save(fig, path)
