"""What planners look at, on real stress runs: the HTML reports (report.html of a run, comparison.html of a
Hydra multirun) and the dashboard (a subprocess on loopback: its JSON API over real HTTP, its page in a real
headless browser, Debian's chromium driven by Playwright; make test installs it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from experiments.run_catalog import _spans_below, find_runs
from experiments.stress_html import markdown_to_html

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder with two small stress runs: `stress/replan` (rolling re-planning under a DC outage) and, written
    last so the dashboard opens it first, `stress/run1` (a baseline and a DC outage on day 40, two policies)."""
    root = tmp_path_factory.mktemp("runs")
    done = subprocess.run(
        [sys.executable, "-m", "experiments.stress", "network=small", "scenarios=[{name: dc_outage, start_day: 20, "
         "days: 14}]", "policies=[replan]", "replications=2", "horizon=50", "warmup=7", "ray.enabled=false",
         "output.plots=false", f"hydra.run.dir={root / 'stress' / 'replan'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "experiments.stress", "network=small", "scenarios=[baseline,{name: dc_outage, "
         "start_day: 40, days: 21}]", "policies=[base_stock,rop]", "replications=4", "horizon=120", "warmup=14",
         "ray.enabled=false", f"hydra.run.dir={root / 'stress' / 'run1'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@contextlib.contextmanager
def serving(runs: Path, log_path: Path):
    """`python -m experiments.dashboard runs=RUNS` on a free loopback port, stopped by its pid at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "experiments.dashboard", f"runs={runs}", f"port={port}"],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/api/runs", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def dashboard(runs):
    with serving(runs, runs / "dashboard.log") as url:
        yield url


def test_the_catalog_reads_the_run_and_raises_the_outage(runs):
    run, replan = find_runs(runs)  # newest first
    assert run.run_id == "stress/run1" and run.network == "small" and replan.run_id == "stress/replan"
    assert run.replan_decisions() == []
    assert run.scenarios == ["baseline", "dc_outage"] and run.policies == ["base_stock", "rop"]
    assert run.replications == 4
    fill = run.summary("fill_rate")
    assert set(fill) == {(s, p) for s in run.scenarios for p in run.policies}
    assert fill["dc_outage", "rop"].vs_baseline is not None and fill["baseline", "rop"].vs_baseline is None
    fan = run.fan("fill_rate_7d", "dc_outage", "base_stock")
    assert fan.percentiles == [5.0, 25.0, 50.0, 75.0, 95.0] and len(fan.days) == 120
    low, high = fan.values[0], fan.values[-1]
    assert all(a <= b for a, b in zip(low, high) if a is not None and b is not None)
    closures = [a for a in run.alerts() if a.kind == "dc_closure"]
    assert [(a.scenario, a.start_day, a.end_day, a.start_date) for a in closures] == [
        ("dc_outage", 40, 61, "2021-02-10")]


def _browser(p):
    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: make test installs it (apt-get install chromium)"
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def test_the_run_report_is_one_file_that_holds_its_plots(runs, tmp_path):
    from playwright.sync_api import sync_playwright

    run = runs / "stress" / "run1"
    report = (run / "report.html").read_text()  # experiments.stress wrote it
    assert "src=\"http" not in report and "href=\"http" not in report and "<script" not in report
    assert report.count("data:image/png;base64,") == len(list(run.glob("fan_*.png"))) > 0
    assert "DC dc_0 closed" in report and "Against the baseline scenario" in report
    alone = tmp_path / "report.html"  # moved away from its run: it must still hold everything
    alone.write_text(report)
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            page.goto(alone.as_uri())
            images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
            assert images and all(images)
            assert page.locator("table").count() >= 4
        finally:
            browser.close()


def test_a_multirun_writes_a_comparison_report(tmp_path):
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.stress", "-m", "network=small", "scenarios=[baseline]",
         "policies=[base_stock],[rop]", "replications=2", "horizon=40", "warmup=7", "ray.enabled=false",
         "output.plots=false", f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    comparison = (sweep / "comparison.html").read_text()
    assert "2 stress runs" in comparison
    assert "baseline / base_stock" in comparison and "baseline / rop" in comparison
    assert comparison.count("data:image/png;base64,") == 1
    assert (sweep / "0" / "report.html").exists() and (sweep / "1" / "report.html").exists()


def test_markdown_tables_become_html_tables():
    text = "# Title\n\nA line\nand more.\n\n| a | b |\n|---|---|\n| 1 | <x> |\n"
    assert markdown_to_html(text) == ("<h2>Title</h2>\n<p>A line and more.</p>\n<table><thead><tr><th>a</th>"
                                      "<th>b</th></tr></thead><tbody><tr><td>1</td><td>&lt;x&gt;</td></tr></tbody>"
                                      "</table>")


def test_spans_below_target_merge_short_gaps():
    assert _spans_below([1, 0.9, 0.9, 1, 1, 0.9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.8], 0.95) == [(1, 6), (15, 16)]
    assert _spans_below([1, 1, 1], 0.95) == []


def test_a_stress_run_keeps_the_re_planning_decisions(runs):
    """Every replication's reviews (every 7 days from day 0 over 50 days: 8 per replication) in
    replan_decisions.csv, in report.html and in the dashboard's overview."""
    run = [r for r in find_runs(runs) if r.run_id == "stress/replan"][0]
    decisions = run.replan_decisions()
    assert [(d["replication"], d["day"]) for d in decisions] == [(str(r), str(day)) for r in range(2)
                                                                  for day in range(0, 50, 7)]
    assert {d["policy"] for d in decisions} == {"replan:seasonal_naive"} and "seconds" not in decisions[0]
    assert "DcClosure[20,34)" in {d["disruptions"] for d in decisions}
    assert "<h2>Re-planning decisions</h2>" in (run.path / "report.html").read_text()


def test_damaged_runs_are_answered_with_4xx_and_rewritten_runs_are_read_again(runs, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(runs / "stress" / "run1", folder / "good", ignore=shutil.ignore_patterns("replications"))
    shutil.copytree(folder / "good", folder / "damaged")
    (folder / "damaged" / "series.npz").write_bytes(b"not an npz")
    rows = [line.split(",") for line in (folder / "damaged" / "summary.csv").read_text().splitlines()]
    rows[1][4] = "lots"  # the first cell's mean
    (folder / "damaged" / "summary.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    (folder / "damaged" / "scenario_dc_outage.yaml").write_text("name: dc_outage\nshocks: [{type: dc_closure, "
                                                                  "start: 40, end: null}]\n")
    (folder / "damaged" / ".hydra" / "config.yaml").write_text("network: [unclosed\n")
    with serving(folder, tmp_path / "dashboard.log") as url:
        assert {r["id"] for r in httpx.get(f"{url}/api/runs").json()} == {"good", "damaged"}
        fan = httpx.get(f"{url}/api/runs/damaged/fan", params={"scenario": "baseline", "policy": "rop"})
        assert fan.status_code == 422 and "series.npz" in fan.json()["detail"]
        figure = httpx.get(f"{url}/api/runs/damaged/summary", params={"figure": "fill_rate"})
        assert figure.status_code == 422 and "'lots' is not a number" in figure.json()["detail"]
        assert httpx.get(f"{url}/api/runs/damaged/overview").status_code == 422  # the fans behind the alerts
        # a run rewritten in place (a rerun, a resume) is read again, not served from what was loaded
        before = httpx.get(f"{url}/api/runs/good/summary", params={"figure": "fill_rate"}).json()
        rows = [line.split(",") for line in (folder / "good" / "summary.csv").read_text().splitlines()]
        for row in rows[1:]:
            if row[2] == "fill_rate":
                row[4] = "0.5"
        time.sleep(0.01)
        (folder / "good" / "summary.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
        after = httpx.get(f"{url}/api/runs/good/summary", params={"figure": "fill_rate"}).json()
        assert {c["mean"] for c in before} != {0.5} and {c["mean"] for c in after} == {0.5}
    assert "Traceback" not in (tmp_path / "dashboard.log").read_text()


def test_the_api_answers_only_for_runs_it_found(dashboard):
    runs = httpx.get(f"{dashboard}/api/runs").json()
    assert [r["id"] for r in runs] == ["stress/run1", "stress/replan"]
    overview = httpx.get(f"{dashboard}/api/runs/stress/run1/overview").json()
    assert overview["dcs"] == ["dc_0"] and "time_to_recover" in [f["name"] for f in overview["figures"]]
    assert any(a["kind"] == "dc_closure" for a in overview["alerts"])
    assert httpx.get(f"{dashboard}/api/runs/..%2F..%2Fetc/overview").status_code == 404
    assert httpx.get(f"{dashboard}/api/runs/nope/overview").status_code == 404
    bad = httpx.get(f"{dashboard}/api/runs/stress/run1/summary", params={"figure": "nope"})
    assert bad.status_code == 422 and "figure: 'nope' is not allowed" in bad.json()["detail"]
    bad = httpx.get(f"{dashboard}/api/runs/stress/run1/fan", params={"scenario": "x", "policy": "rop"})
    assert bad.status_code == 422 and "scenario: 'x' is not allowed" in bad.json()["detail"]
    stores = httpx.get(f"{dashboard}/api/runs/stress/run1/stores",
                       params={"scenario": ["dc_outage"], "policy": ["rop", "base_stock"], "limit": 3}).json()
    assert [(r["scenario"], r["home_dc"]) for r in stores] == [("dc_outage", "dc_0")] * 3
    fill = [r["fill_rate"] for r in stores]  # no lost sales here (stores backorder): the lowest fill rates first
    assert fill == sorted(fill) and all(r["lost_sales"] == 0 for r in stores)
    assert len(httpx.get(f"{dashboard}/api/runs/stress/run1/stores").json()) == 2 * 2 * 2  # all, under 20
    bad = httpx.get(f"{dashboard}/api/runs/stress/run1/stores", params={"policy": "nope"})
    assert bad.status_code == 422 and "policy: 'nope' is not allowed" in bad.json()["detail"]
    assert httpx.get(f"{dashboard}/api/orders").status_code == 404  # no bundle loaded
    assert httpx.get(f"{dashboard}/assets/plotly.min.js").status_code == 200
    assert httpx.get(f"{dashboard}/assets/..%2Fdashboard.py").status_code == 404


def test_the_page_in_headless_chromium(dashboard, tmp_path):
    """The page loads, compares the scenarios, a control changes what is shown, and the console stays clean."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(dashboard + "/")
            page.wait_for_function("document.getElementById('comparison').data?.length === 2")
            page.wait_for_function("document.getElementById('fans').data?.length > 0")
            comparison = page.evaluate("document.getElementById('comparison').data.map(t => [t.name, t.x])")
            assert comparison == [["base_stock", ["baseline", "dc_outage"]], ["rop", ["baseline", "dc_outage"]]]
            assert page.locator("#comparison-table tr").count() == 5  # a header and four cells
            assert "DC dc_0 closed" in page.locator("#alerts").inner_text()
            # per store: the worst stores of the ticked scenarios and policies (2 x 2 cells x 2 stores)
            page.wait_for_function("document.querySelectorAll('#stores tr').length === 9")
            first = page.locator("#stores tr").nth(1).inner_text()
            assert first.startswith("dc_outage") and "store_" in first and "dc_0" in first

            # a control: another fan-chart metric redraws the fans with its own numbers
            before = page.evaluate("document.getElementById('fans').layout.title.text")
            page.select_option("#metric", "backorders")
            page.wait_for_function("document.getElementById('fans').layout.title.text.startsWith('backorders')")
            assert before.startswith("fill rate")
            # another: unticking a policy leaves one bar series
            page.uncheck("input[name=policy][value=rop]")
            page.wait_for_function("document.getElementById('comparison').data.length === 1")
            page.wait_for_function("document.querySelectorAll('#stores tr').length === 5")  # base_stock's 4
            # and the figure select: cost per day, in the table too
            page.select_option("#figure", "cost_per_day")
            page.wait_for_function("document.getElementById('comparison').layout.title.text.startsWith('cost per day')")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert (tmp_path / "dashboard.png").stat().st_size > 10_000
            assert problems == []
        finally:
            browser.close()
