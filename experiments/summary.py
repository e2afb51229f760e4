"""KPIs across replications or seeds: mean, standard deviation and 95% confidence half-width, and the KPI table.

The interval is Student's t over the n values (`scipy.stats.t`); a paired
difference (two policies on the same seeds) is the same interval over the
per-seed differences, far tighter than two separate intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided `confidence` quantile of Student's t with `df` degrees of freedom (1.96 as df grows)."""
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def summarize(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, standard deviation and 95% confidence half-width over the values (None values skipped; None where
    undefined: no values, or one value for the spread)."""
    x = np.array([v for v in values if v is not None], dtype=float)
    n = len(x)
    if n == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    std = float(x.std(ddof=1)) if n > 1 else None
    ci = t_quantile(n - 1) * std / math.sqrt(n) if std is not None else None
    return {"mean": float(x.mean()), "std": std, "ci95": ci, "n": n}


def summarize_paired(values: np.ndarray, reference: np.ndarray) -> dict[str, float | int | None]:
    """The paired difference `values - reference` (same seeds): its mean, standard deviation and 95% confidence
    half-width, and `relative`, the mean difference over the reference's mean (NaN when that is 0)."""
    diff = summarize(list(np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)))
    base = float(np.mean(reference))
    diff["relative"] = diff["mean"] / base if base else math.nan
    return diff


def summarize_block(blocks: Sequence[Mapping[str, Any]]) -> dict[str, dict]:
    """Summaries of every numeric KPI of a block (network or echelon) across replications."""
    keys = [k for k, v in blocks[0].items() if v is None or isinstance(v, (int, float))]
    return {k: summarize([b.get(k) for b in blocks]) for k in keys}


TABLE = (  # column title, KPI key, format
    ("fill", "fill_rate", "{:.3f}"), ("CSL", "cycle_service_level", "{:.3f}"),
    ("holding", "cost_holding", "{:,.0f}"), ("backorder", "cost_backorder", "{:,.0f}"),
    ("lost sale", "cost_lost_sale", "{:,.0f}"), ("ordering", "cost_ordering", "{:,.0f}"),
    ("total", "cost_total", "{:,.0f}"), ("turnover", "inventory_turnover", "{:.1f}"),
    ("DoI", "days_of_inventory", "{:.1f}"), ("bullwhip", "bullwhip_ratio", "{:.2f}"),
)


def kpi_table(report: Mapping[str, Any]) -> str:
    """A text table of the mean KPIs of a KPI report (kpis.json): the network and each echelon (costs summed
    over the KPI days), and the 95% CI of total cost and fill rate when there are replications."""
    meta, summary = report["meta"], report["summary"]
    rows = [("network", summary["network"])] + list(summary["echelons"].items())
    cells = [["", *(title for title, _, _ in TABLE)]]
    for label, block in rows:
        mean = [block.get(key, {}).get("mean") for _, key, _ in TABLE]
        cells.append([label, *("-" if v is None else fmt.format(v) for v, (_, _, fmt) in zip(mean, TABLE))])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [f"KPIs: network {meta['network']}, scenario {meta['scenario']}, policy {meta['policy']}; "
             f"days {max(meta['warmup'], meta.get('start_day', 0))}-{meta['horizon'] - 1}, "
             f"{len(meta['seeds'])} replication(s)"]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in cells]
    total, fill = summary["network"]["cost_total"], summary["network"]["fill_rate"]
    if total["ci95"] is not None:
        lines.append(f"network total cost {total['mean']:,.0f} +/- {total['ci95']:,.0f}, fill rate "
                     f"{fill['mean']:.3f} +/- {fill['ci95']:.3f} (95% CI over replications)")
    return "\n".join(lines)
