"""Tables and PNG plots of a forecast backtest (matplotlib's object-oriented API on the Agg canvas)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agents.forecasting.backtest import METRICS, BacktestResult
from agents.forecasting.paired import MIN_CUTOFFS

COLUMNS = (*METRICS, "mae_vs_oracle")


def write_scores(path: Path, rows: list[dict], result: BacktestResult) -> None:
    """One CSV row per (forecaster, horizon): every metric, and the mean fit and predict seconds per origin."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["forecaster", "horizon", *COLUMNS, "fit_seconds", "predict_seconds"])
        for r in rows:
            run = result.runs[r["forecaster"]]
            writer.writerow([r["forecaster"], r["horizon"], *(_round(r[c]) for c in COLUMNS),
                             round(run.fit_seconds, 3), round(run.predict_seconds, 4)])


def _round(x: float) -> float | str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 5)


def _cell(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def format_scores(rows: list[dict], result: BacktestResult, source: str) -> str:
    """A markdown table per horizon: every forecaster's metrics (MAPE n/a where actuals are all zero)."""
    panel, plan = result.panel, result.plan
    lines = [f"Backtest on {source}: {panel.n} series, {panel.length} periods ({panel.freq.name}, season "
             f"{panel.freq.season_length}), {len(plan.origins)} rolling origins "
             f"({panel.dates[plan.origins[0]].date()} .. {panel.dates[plan.origins[-1]].date()})", ""]
    has_oracle = any(not math.isnan(r["mae_vs_oracle"]) for r in rows)
    for h in plan.horizons:
        lines += [f"Horizon {h} (periods 1..{h} after each origin)", "",
                  "| forecaster | MAE | RMSE | MAPE % | sMAPE % | MASE | pinball | 80% coverage |"
                  + (" MAE / oracle |" if has_oracle else "") + " fit s | predict s |",
                  "|---" * (10 + has_oracle) + "|"]
        for r in (r for r in rows if r["horizon"] == h):
            run = result.runs[r["forecaster"]]
            lines.append(f"| {r['forecaster']} | {_cell(r['mae'])} | {_cell(r['rmse'])} | {_cell(r['mape'], 1)} | "
                         f"{_cell(r['smape'], 1)} | {_cell(r['mase'])} | {_cell(r['quantile_loss'])} | "
                         f"{_cell(r['coverage_80'], 2)} |" + (f" {_cell(r['mae_vs_oracle'])} |" if has_oracle else "")
                         + f" {run.fit_seconds:.1f} | {run.predict_seconds:.2f} |")
        lines.append("")
    return "\n".join(lines).rstrip()


PAIRED_COLUMNS = ("forecaster", "horizon", "versus", "compared", "mase", "mase_compared", "ratio", "ci_low",
                  "ci_high", "cutoffs", "verdict")


def write_paired(path: Path, rows: list[dict]) -> None:
    """One CSV row per (horizon, compared forecaster) and a `best single` row per horizon
    (agents.forecasting.paired.paired_rows); an interval left empty under `MIN_CUTOFFS` (3) cutoffs."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PAIRED_COLUMNS)
        for r in rows:
            writer.writerow([_round(r[c]) if isinstance(r[c], float) or r[c] is None else r[c]
                             for c in PAIRED_COLUMNS])


def format_paired(rows: list[dict], source: str) -> str:
    """A markdown table: per horizon, the subject's MASE over each compared forecaster's, its 95% CI (paired
    bootstrap over cutoffs) and the verdict, the best single forecaster's row last in bold."""
    subject = rows[0]["forecaster"]
    lines = [f"MASE of {subject} / MASE of each compared forecaster on {source}, at each horizon (periods 1..h "
             f"after each origin, as in scores.md), with a 95% CI from a paired bootstrap over cutoffs (whole "
             f"origins resampled); better / worse: the CI is below / above 1, tie: it holds 1; n/a: fewer than "
             f"{MIN_CUTOFFS} cutoffs, no CI. Best single: the compared forecaster with the lowest MASE at that "
             f"horizon, in hindsight.", "",
             f"| horizon | versus | MASE {subject} | MASE versus | ratio | 95% CI | cutoffs | verdict |",
             "|---" * 8 + "|"]
    for r in rows:
        ci = "n/a" if r["ci_low"] is None else f"{r['ci_low']:.3f} .. {r['ci_high']:.3f}"
        versus = f"**best single: {r['compared']}**" if r["versus"] != r["compared"] else r["compared"]
        lines.append(f"| {r['horizon']} | {versus} | {_cell(r['mase'])} | {_cell(r['mase_compared'])} | "
                     f"{_cell(r['ratio'])} | {ci} | {r['cutoffs']} | {r['verdict']} |")
    return "\n".join(lines)


def plot_forecasts(result: BacktestResult, path: Path, n_series: int = 4) -> None:
    """Forecast vs actual at the last origin for the busiest series: one row per series, one column per
    forecaster, the 10-90% interval shaded, some history before the origin."""
    if n_series == 0:
        return
    panel, origin = result.panel, result.plan.origins[-1]
    longest = result.plan.horizons[-1]
    busiest = np.argsort(-np.nan_to_num(np.nanmean(panel.values[:, :origin], axis=1)))[:n_series]
    names = list(result.runs)
    fig = Figure(figsize=(4.2 * len(names), 2.6 * len(busiest)), dpi=90)
    FigureCanvasAgg(fig)
    back = min(origin, 2 * longest)
    past = panel.dates[origin - back: origin]
    ahead = panel.dates[origin: origin + longest]
    for row, s in enumerate(busiest):
        for col, name in enumerate(names):
            run = result.runs[name]
            ax = fig.add_subplot(len(busiest), len(names), row * len(names) + col + 1)
            ax.plot(past, panel.values[s, origin - back: origin], color="0.4", lw=0.8)
            ax.plot(ahead, result.actual[-1, s], color="black", lw=0.8, label="actual")
            ax.plot(ahead, run.mean[-1, s], color="tab:blue", lw=1.2, label="forecast")
            if 0.1 in run.levels and 0.9 in run.levels:
                ax.fill_between(ahead, run.quantiles[-1, s, :, run.levels.index(0.1)],
                                run.quantiles[-1, s, :, run.levels.index(0.9)], color="tab:blue", alpha=0.2,
                                label="10-90%")
            if panel.oracle_mean is not None:
                ax.plot(ahead, panel.oracle_mean[s, origin: origin + longest], color="tab:green", lw=0.8, ls="--",
                        label="true mean")
            ax.axvline(panel.dates[origin], color="0.6", lw=0.6)
            ax.set_title(f"{name}: {panel.ids[s]}", fontsize=8)
            ax.tick_params(labelsize=6)
            if row == 0 and col == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)


def plot_error_by_horizon(result: BacktestResult, path: Path) -> None:
    """MAE at each step ahead per forecaster (averaged over origins and series) and, on data with a true mean,
    the same relative to the oracle's MAE at that step (the day's demand level cancels out)."""
    errors = result.mae_by_step()
    relative = "oracle" in errors
    fig = Figure(figsize=(7, 6.5 if relative else 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(2 if relative else 1, 1, i + 1) for i in range(2 if relative else 1)]
    steps = np.arange(1, result.plan.horizons[-1] + 1)
    for name, error in errors.items():
        style = {"lw": 1.0, "ls": "--"} if name == "oracle" else {"lw": 1.5}
        axes[0].plot(steps, error, label=name, **style)
        if relative:
            axes[1].plot(steps, error / errors["oracle"], label=name, **style)
    axes[0].set_ylabel("MAE")
    axes[0].set_title(f"Error by horizon: {result.panel.n} series, {len(result.plan.origins)} origins")
    if relative:
        axes[1].set_ylabel("MAE / oracle MAE")
    for ax in axes:
        for h in result.plan.horizons:
            ax.axvline(h, color="0.8", lw=0.6)
        ax.set_xlabel(f"periods ahead ({result.panel.freq.name})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
