"""Paired comparison of policies on the twin: same network, shocks and seeds for every policy.

Every policy runs on the same seeds, so demand, lead times and shocks are the
same for all (common random numbers) and their differences are paired: the 95%
confidence interval of a difference is that of the per-seed differences, far
tighter than two separate intervals.

The paper's comparison (its Table 2) is three figures against the static reorder
point policy: the change in holding cost, the change in stockout penalty
(backorder and lost-sale costs) and the service level (store fill rate).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.summary import summarize, summarize_paired
from twin.demand_history import DemandSource
from twin.engine import Engine
from twin.shocks import Shock
from twin.spec import NetworkSpec

METRICS = ("cost_per_day", "holding_per_day", "stockout_penalty_per_day", "ordering_per_day", "fill_rate",
           "cycle_service_level")
PAPER_TABLE_2 = {"holding_change": -0.174, "stockout_penalty_change": -0.621, "service_level": 0.975}


@dataclass(frozen=True)
class EvalSetting:
    """Where policies are compared: the network, its shocks, the run length and the held-out seeds."""

    network: NetworkSpec
    shocks: tuple[Shock, ...]
    horizon: int
    warmup: int
    seeds: tuple[int, ...]
    initial_on_hand: np.ndarray | None = None
    demand: DemandSource | None = None   # a planner's sales history (None: the network's own demand model)


def network_metrics(kpis: Mapping) -> dict[str, float]:
    """The compared figures of one run, from its network KPIs (per day after warm-up)."""
    net = kpis["network"]
    days = net["cost_total"] / net["cost_per_day"] if net["cost_per_day"] else 1.0
    return {
        "cost_per_day": net["cost_per_day"],
        "holding_per_day": net["cost_holding"] / days,
        "stockout_penalty_per_day": (net["cost_backorder"] + net["cost_lost_sale"]) / days,
        "ordering_per_day": net["cost_ordering"] / days,
        "fill_rate": net["fill_rate"],
        "cycle_service_level": net["cycle_service_level"],
    }


def run_policy(policy, setting: EvalSetting, seed: int) -> dict[str, float]:
    """One run of `policy` on `seed`; a policy with `attach` (a trained one) is attached to the engine first."""
    engine = Engine(setting.network, horizon=setting.horizon, seed=seed, shocks=setting.shocks,
                    warmup=setting.warmup, invariants="warn", initial_on_hand=setting.initial_on_hand,
                    demand=setting.demand)
    if hasattr(policy, "attach"):
        policy.attach(engine)
    return network_metrics(engine.run(policy).kpis)


@dataclass(frozen=True)
class Evaluation:
    """Per-policy, per-seed figures: values[policy][metric] is an array over the seeds."""

    seeds: tuple[int, ...]
    values: dict[str, dict[str, np.ndarray]]

    @property
    def policies(self) -> list[str]:
        return list(self.values)

    def summary(self) -> dict[str, dict[str, dict]]:
        """Mean and 95% CI per policy and metric."""
        return {p: {m: summarize(list(v)) for m, v in metrics.items()} for p, metrics in self.values.items()}

    def paired(self, reference: str) -> dict[str, dict[str, dict]]:
        """Per policy and metric: the mean paired difference to `reference`, its 95% CI, and the relative change."""
        ref = self.values[reference]
        return {p: {m: summarize_paired(v, ref[m]) for m, v in metrics.items()}
                for p, metrics in self.values.items() if p != reference}

    def paper_table(self, reference: str) -> dict[str, dict[str, float]]:
        """The paper's three figures per policy against `reference` (the static ROP in the paper)."""
        ref = self.values[reference]
        table = {}
        for p, metrics in self.values.items():
            table[p] = {
                "holding_change": _relative(metrics["holding_per_day"], ref["holding_per_day"]),
                "stockout_penalty_change": _relative(metrics["stockout_penalty_per_day"],
                                                     ref["stockout_penalty_per_day"]),
                "service_level": float(metrics["fill_rate"].mean()),
            }
        return table

    def write_csv(self, path: Path) -> None:
        """One row per policy and seed."""
        with Path(path).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["policy", "seed", *METRICS])
            for p, metrics in self.values.items():
                for s, seed in enumerate(self.seeds):
                    writer.writerow([p, seed, *(f"{metrics[m][s]:.6g}" for m in METRICS)])


def _relative(values: np.ndarray, reference: np.ndarray) -> float:
    base = float(reference.mean())
    return float(values.mean()) / base - 1.0 if base else math.nan


def evaluate(policies: Mapping[str, object], setting: EvalSetting,
             progress: Callable[[str, int], None] | None = None) -> Evaluation:
    """Run every policy on every seed of `setting` (the same seeds for all)."""
    values: dict[str, dict[str, list[float]]] = {}
    for name, policy in policies.items():
        rows = {m: [] for m in METRICS}
        for seed in setting.seeds:
            for m, v in run_policy(policy, setting, seed).items():
                rows[m].append(v)
            if progress is not None:
                progress(name, seed)
        values[name] = {m: np.array(v, dtype=float) for m, v in rows.items()}
    return Evaluation(seeds=tuple(setting.seeds), values=values)


def format_report(evaluation: Evaluation, reference: str) -> str:
    """Markdown tables: KPIs per policy, paired differences to `reference`, the paper's comparison."""
    lines = ["| policy | cost/day | holding/day | stockout penalty/day | fill rate | cycle service |",
             "|---|---|---|---|---|---|"]
    for p, metrics in evaluation.summary().items():
        cells = [_pm(metrics[m]) for m in ("cost_per_day", "holding_per_day", "stockout_penalty_per_day",
                                           "fill_rate", "cycle_service_level")]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired differences to {reference} (same seeds; 95% CI):", "",
              "| policy | cost/day | holding/day | stockout penalty/day | fill rate |", "|---|---|---|---|---|"]
    for p, metrics in evaluation.paired(reference).items():
        cells = [f"{_pm(metrics[m])} ({metrics[m]['relative']:+.1%})" for m in
                 ("cost_per_day", "holding_per_day", "stockout_penalty_per_day")]
        cells.append(_pm(metrics["fill_rate"]))
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    paper = PAPER_TABLE_2
    lines += ["", f"The paper's Table 2 figures against {reference} (paper's DQN: holding "
              f"{paper['holding_change']:+.1%}, stockout penalty {paper['stockout_penalty_change']:+.1%}, "
              f"service level {paper['service_level']:.1%}):", "",
              "| policy | holding change | stockout penalty change | service level | beats the paper on all three |",
              "|---|---|---|---|---|"]
    for p, row in evaluation.paper_table(reference).items():
        if p == reference:
            continue
        wins = (row["holding_change"] <= PAPER_TABLE_2["holding_change"]
                and row["stockout_penalty_change"] <= PAPER_TABLE_2["stockout_penalty_change"]
                and row["service_level"] >= PAPER_TABLE_2["service_level"])
        lines.append(f"| {p} | {row['holding_change']:+.1%} | {row['stockout_penalty_change']:+.1%} | "
                     f"{row['service_level']:.1%} | {'yes' if wins else 'no'} |")
    return "\n".join(lines)


def _pm(s: Mapping) -> str:
    if s["mean"] is None:
        return "n/a"
    ci = f" ± {s['ci95']:.3g}" if s.get("ci95") is not None else ""
    return f"{s['mean']:.4g}{ci}"


def plot_comparison(evaluation: Evaluation, reference: str, path: Path, title: str = "") -> None:
    """Bars of the paper's three figures per policy, with the paper's own values as dashed lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = evaluation.paper_table(reference)
    names = [p for p in table if p != reference]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    panels = [("holding_change", "holding cost change vs " + reference, True),
              ("stockout_penalty_change", "stockout penalty change vs " + reference, True),
              ("service_level", "service level (fill rate)", False)]
    for ax, (key, label, percent_change) in zip(axes, panels):
        values = [table[p][key] * 100 for p in names]
        ax.bar(names, values, color=["tab:blue" if v >= 0 or key == "service_level" else "tab:green" for v in values])
        ax.axhline(PAPER_TABLE_2[key] * 100, color="k", ls="--", lw=1, label="paper's DQN")
        if percent_change:
            ax.axhline(0, color="grey", lw=0.8)
        else:
            ax.set_ylim(min(values + [PAPER_TABLE_2[key] * 100]) - 3, 100)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("%")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title or f"Policies vs {reference} ({len(evaluation.seeds)} held-out seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
