"""Self-contained HTML reports of stress runs: one file, plots embedded, opens offline.

    write_run_report(Path("outputs/stress/RUN"))          # RUN/report.html (experiments.stress writes it itself)
    write_comparison_report(Path("multirun/DAY/TIME"))     # comparison.html over every stress run below
    python -m experiments.stress_html outputs/stress/RUN [more runs or sweep folders...]

A run's report holds, for a node sweep, its ranked table (node_sweep.md, experiments/node_sweep.py) and risk
matrix (risk_matrix.png); its summary (summary.md, the tables experiments/stress_report.py writes, as HTML), the
alerts (experiments/run_catalog.py), the re-planning decisions where the run has them, and its fan charts (the
run's PNGs, embedded as data URIs). A comparison report puts every (run, scenario, policy) of a Hydra multirun
side by side: one table and one chart of the headline figures. `MultirunReport` is the Hydra callback that
writes it when a sweep ends (conf/stress.yaml registers it). Nothing is fetched: no scripts, fonts or styles
from elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.run_catalog import FIGURES, RunError, StressRun, find_runs

log = logging.getLogger("experiments.stress_html")

REPORT = "report.html"
COMPARISON = "comparison.html"
HEADLINE = ("fill_rate", "cost_per_day", "cost_cvar95", "worst_week_fill_rate", "time_to_recover")
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: right; }
th { background: #f3f5f7; } td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
.meta { color: #555; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_to_html(text: str) -> str:
    """The markdown experiments/stress_report.py writes (headings, paragraphs, pipe tables) as HTML."""
    out, table, paragraph = [], [], []

    def flush() -> None:
        if table:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
            out.append(_table(rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]))
            table.clear()
        if paragraph:
            out.append(f"<p>{html.escape(' '.join(paragraph))}</p>")
            paragraph.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            if paragraph:
                flush()
            table.append(line)
        elif line.startswith("#"):
            flush()
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)  # the file's # is the page's h2
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            if table:
                flush()
            paragraph.append(line.strip())
        else:
            flush()
    flush()
    return "\n".join(out)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def run_report_html(run: StressRun, target: float = 0.95) -> str:
    """The report of one stress run (see the module docstring)."""
    parts = [f"<h1>Stress test: {html.escape(run.run_id)}</h1>",
             f"<p class=\"meta\">network {html.escape(run.network)}; scenarios "
             f"{html.escape(', '.join(run.scenarios))}; policies {html.escape(', '.join(run.policies))}; "
             f"{run.replications} replications per cell; written "
             f"{dt.datetime.now().isoformat(timespec='seconds')} from {html.escape(str(run.path))}</p>"]
    sweep, matrix = run.path / "node_sweep.md", run.path / "risk_matrix.png"
    if sweep.exists():
        parts.append(markdown_to_html(sweep.read_text()))
    if matrix.exists():
        parts.append("<h2>Risk matrix</h2>" + _image(matrix, "risk matrix"))
    summary = run.path / "summary.md"
    if summary.exists():
        parts.append(markdown_to_html(summary.read_text()))
    alerts = run.alerts(target)
    parts.append("<h2>Alerts</h2>" + (_table(["from", "to (excl.)", "scenario", "policy", "alert"], [
        (a.start_date, a.end_date, a.scenario, a.policy or "all", a.message) for a in alerts]) if alerts
        else "<p>None.</p>"))
    decisions = run.replan_decisions()
    if decisions:
        parts.append("<h2>Re-planning decisions</h2>" + _table(list(decisions[0]), [list(d.values())
                                                                                   for d in decisions]))
    images = sorted(run.path.glob("fan_*.png"))
    missing = ("No fan charts in a node sweep (the dashboard draws them from series.npz)." if sweep.exists() else
               "No plots in this run (output.plots=false).")
    parts.append("<h2>Fan charts</h2>" + ("".join(_image(p, p.stem) for p in images) if images else
                                          f"<p>{missing}</p>"))
    return _page(f"Stress test {run.run_id}", "\n".join(parts))


def write_run_report(path: Path, target: float = 0.95) -> Path:
    """Write report.html into the stress run directory `path`."""
    runs = [r for r in find_runs(path) if r.path == Path(path)]
    if not runs:
        raise RunError(f"{path}: not a stress run (summary.csv, stress.csv and series.npz)")
    out = Path(path) / REPORT
    out.write_text(run_report_html(runs[0], target))
    return out


def _headline_chart(runs: Sequence[StressRun]) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    for ax, figure in zip(fig.subplots(1, 2), ("fill_rate", "cost_per_day")):
        labels, means, errors = [], [], []
        for run in runs:
            for (scenario, policy), cell in run.summary(figure).items():
                labels.append(f"{run.run_id}\n{scenario} / {policy}" if len(runs) > 1 else f"{scenario} / {policy}")
                means.append(cell.mean if cell.mean is not None else float("nan"))
                errors.append(cell.ci95 or 0.0)
        ax.barh(range(len(labels)), means, xerr=errors, color="tab:blue", alpha=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{FIGURES[figure][0]} (mean, 95% CI)", fontsize=10)
    return _png(fig)


def comparison_html(runs: Sequence[StressRun], title: str) -> str:
    """Every (run, scenario, policy) of `runs` side by side: the headline figures and a chart."""
    header = ["run", "scenario / policy", *(FIGURES[f][0] for f in HEADLINE)]
    rows = []
    for run in runs:
        cells = {f: run.summary(f) for f in HEADLINE}
        for scenario in run.scenarios:
            for policy in run.policies:
                row = [run.run_id, f"{scenario} / {policy}"]
                for f in HEADLINE:
                    cell = cells[f].get((scenario, policy))
                    row.append("-" if cell is None or cell.mean is None else
                               f"{cell.mean:.4g}" + (f" ± {cell.ci95:.2g}" if cell.ci95 else ""))
                rows.append(row)
    chart = base64.b64encode(_headline_chart(runs)).decode()
    reports = "".join(f"<li>{html.escape(r.run_id)}: {html.escape(str(r.path / REPORT))}</li>" for r in runs)
    body = (f"<h1>{html.escape(title)}</h1><p class=\"meta\">{len(runs)} stress runs; written "
            f"{dt.datetime.now().isoformat(timespec='seconds')}</p>"
            f"<h2>Headline figures</h2>{_table(header, rows)}"
            f'<figure><img alt="headline figures" src="data:image/png;base64,{chart}"></figure>'
            f"<h2>The runs' own reports</h2><ul>{reports}</ul>")
    return _page(title, body)


def write_comparison_report(folder: Path) -> Path:
    """Write comparison.html into `folder` over every stress run below it (a Hydra multirun's sweep folder)."""
    runs = sorted(find_runs(folder), key=lambda r: r.run_id)
    if not runs:
        raise RunError(f"{folder}: no stress runs below it")
    out = Path(folder) / COMPARISON
    out.write_text(comparison_html(runs, f"Stress tests compared: {folder}"))
    return out


try:  # the Hydra callback: only where hydra is installed (it always is with experiments.stress)
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


class MultirunReport(Callback):
    """Hydra callback: when a sweep of experiments.stress ends, comparison.html in its sweep folder."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        folder = Path(config.hydra.sweep.dir)
        try:
            log.info("comparison report: %s", write_comparison_report(folder))
        except Exception as error:  # the sweep's runs are done and kept: a report that fails only says so
            log.warning("no comparison report: %s", error)


def main(argv: Sequence[str]) -> int:
    """report.html for every stress run named, and comparison.html for a folder holding several."""
    if not argv:
        print("usage: python -m experiments.stress_html RUN_OR_SWEEP_FOLDER [...]", file=sys.stderr)
        return 2
    for name in argv:
        folder = Path(name)
        runs = find_runs(folder) if folder.is_dir() else []
        if not runs:
            print(f"{name}: no stress runs (summary.csv, stress.csv and series.npz)", file=sys.stderr)
            return 2
        for run in runs:
            print(write_run_report(run.path))
        if len(runs) > 1:
            print(write_comparison_report(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
