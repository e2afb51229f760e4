"""PNG plots of a simulation: inventory and backorders over time, cost breakdown, fill rate.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas (no
pyplot, no display, no global state). Time series are summed over the nodes of
an echelon and averaged over replications; shock windows are shaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from scenarios import Scenario
from twin import NetworkSpec, RunResult
from twin.costs import COST_KINDS

ECHELONS = ("store", "dc")
SHOCK_COLOURS = {"DemandShock": "tab:orange", "LeadTimeShock": "tab:purple", "SupplierOutage": "tab:red",
                 "DcClosure": "tab:red", "CapacityCut": "tab:brown"}
COST_COLOURS = {"holding": "tab:blue", "backorder": "tab:red", "lost_sale": "tab:orange", "ordering": "tab:green",
                "in_transit": "tab:gray"}


def echelon_series(network: NetworkSpec, results: Sequence[RunResult], field: str) -> dict[str, np.ndarray]:
    """Daily `field` summed over each echelon's nodes, averaged over replications: echelon -> (days,)."""
    kinds = np.array([n.kind for n in network.nodes])
    stacked = np.stack([r.series[field] for r in results])  # (replications, days, nodes)
    return {e: stacked[:, :, kinds == e].sum(axis=2).mean(axis=0) for e in ECHELONS if (kinds == e).any()}


def first_day(results: Sequence[RunResult]) -> int:
    """The day the results' series start on (0, or the day of the snapshot a run started from)."""
    return results[0].meta["first_day"]


def _shade(ax, scenario: Scenario, warmup: int) -> list[Patch]:
    """Shade shock windows and mark the warm-up; return legend handles for the shock types shown."""
    seen = {}
    for name, start, end in dict.fromkeys((type(s).__name__, s.start, s.end) for s in scenario.shocks):
        colour = SHOCK_COLOURS.get(name, "tab:gray")
        ax.axvspan(start, end, color=colour, alpha=0.08, lw=0)
        seen[name] = colour
    if warmup:
        ax.axvline(warmup, color="k", ls=":", lw=0.8)
    return [Patch(color=c, alpha=0.3, label=n) for n, c in seen.items()]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def plot_inventory(path: Path, title: str, network: NetworkSpec, results: Sequence[RunResult], scenario: Scenario,
                   warmup: int) -> Path:
    """On-hand stock and backorders per echelon over time."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, field, label in ((axes[0], "on_hand", "On-hand inventory (units)"),
                             (axes[1], "backorders", "Backorders (units)")):
        for echelon, values in echelon_series(network, results, field).items():
            ax.plot(first_day(results) + np.arange(len(values)), values, lw=1.2, label=f"{echelon}s")
        handles = _shade(ax, scenario, warmup)
        ax.set_title(label, loc="left", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(handles=ax.get_legend_handles_labels()[0] + (handles if ax is axes[0] else []), fontsize=8,
                  loc="upper left")
    axes[1].set_xlabel("day")
    fig.suptitle(f"{title}: inventory and backorders (sum over nodes, mean of {len(results)} replication(s))",
                 fontsize=11)
    return _save(fig, path)


def plot_costs(path: Path, title: str, report: Mapping[str, Any]) -> Path:
    """Stacked bar of the cost components per echelon (means over replications)."""
    echelons = report["summary"]["echelons"]
    labels = list(echelons)
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(labels))
    for cost in COST_KINDS:
        values = np.array([echelons[e][f"cost_{cost}"]["mean"] or 0.0 for e in labels])
        if values.any():
            ax.bar(labels, values, bottom=bottom, color=COST_COLOURS.get(cost), label=cost.replace("_", " "))
            bottom += values
    ax.set_ylabel("cost over the KPI days")
    ax.set_title(f"{title}: cost breakdown", fontsize=10)
    ax.yaxis.set_major_formatter("{x:,.0f}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_fill_rate(path: Path, title: str, network: NetworkSpec, results: Sequence[RunResult], scenario: Scenario,
                   warmup: int, window: int = 7) -> Path:
    """Store fill rate over time (rolling window) and per store over the KPI days."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax_time, ax_store = fig.subplots(1, 2, width_ratios=[3, 2])
    demand = echelon_series(network, results, "demand")["store"]
    filled = echelon_series(network, results, "filled")["store"]
    kernel = np.ones(window)
    rolling = np.convolve(filled, kernel, "valid") / np.maximum(np.convolve(demand, kernel, "valid"), 1e-12)
    ax_time.plot(first_day(results) + np.arange(window - 1, len(demand)), rolling, color="tab:blue", lw=1.2,
                 label=f"{window}-day fill rate")
    handles = _shade(ax_time, scenario, warmup)
    ax_time.set_ylim(0, 1.02)
    ax_time.set_xlabel("day")
    ax_time.set_title("Store fill rate over time (all stores)", loc="left", fontsize=10)
    ax_time.grid(alpha=0.3)
    ax_time.legend(handles=ax_time.get_legend_handles_labels()[0] + handles, fontsize=8, loc="lower left")

    stores = [n.name for n in network.nodes_of_kind("store")]
    rates = [np.mean([r.kpis["nodes"][s]["fill_rate"] or 0.0 for r in results]) for s in stores]
    ax_store.bar(range(len(stores)), rates, color="tab:blue")
    ax_store.set_xticks(range(len(stores)), [s.removeprefix("store_") for s in stores], rotation=90, fontsize=7)
    ax_store.set_ylim(min(rates + [1.0]) * 0.95, 1.0)
    ax_store.set_xlabel("store")
    ax_store.set_title("Fill rate per store (KPI days)", loc="left", fontsize=10)
    ax_store.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title}: fill rate", fontsize=11)
    return _save(fig, path)


def write_all(out: Path, network: NetworkSpec, results: Sequence[RunResult], scenario: Scenario,
              report: Mapping[str, Any]) -> list[Path]:
    """All plots into `out`: inventory_backorders.png, cost_breakdown.png, fill_rate.png."""
    meta = report["meta"]
    title = f"{meta['network']} / {meta['scenario']} / {meta['policy']}"
    return [
        plot_inventory(out / "inventory_backorders.png", title, network, results, scenario, meta["warmup"]),
        plot_costs(out / "cost_breakdown.png", title, report),
        plot_fill_rate(out / "fill_rate.png", title, network, results, scenario, meta["warmup"]),
    ]
