"""The README's Python example runs as written, and its commands name real entry points."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_python_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(block)
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(script))
    kpis, snapshot = capsys.readouterr().out.splitlines()
    fill_rate, dc_cost = map(float, kpis.split())
    assert 0 < fill_rate <= 1 and dc_cost > 0
    assert snapshot.startswith("2021-04-11 ") and "shipments in transit" in snapshot  # day 100 of the calendar


def test_documented_modules_exist():
    modules = set(re.findall(r"python -m (experiments\.\w+)", README))
    assert {"experiments.simulate", "experiments.validate", "experiments.bench", "experiments.tune",
            "experiments.train", "experiments.evaluate", "experiments.forecast"} <= modules
    for module in modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
    assert "make run" in README and "make test" in README


def test_bench_runs_and_prints_its_targets():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "experiments.bench", "--quick", "--days", "3", "--repeat", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "node-SKU-days/s" in done.stdout
    assert done.stdout.count("PASS") + done.stdout.count("MISS") == 3  # figures, not assertions on speed


def test_bench_rl_section_prints_throughput_for_0_1_2_env_runners():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "experiments.bench", "--rl-only", "--quick"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("env alone, node", "RLlib, node, 0 env runner(s)", "RLlib, node, 1 env runner(s)",
                  "RLlib, node, 2 env runner(s)", "RLlib, node_sku, 0 env runner(s)", "SKU-batched, 0 env runner(s)",
                  "SKU-batched, 1 env runner(s)", "SKU-batched, 2 env runner(s)"):
        assert label in done.stdout
    assert "agent-steps/s" in done.stdout and "SKU-batched against one RLlib agent per (node, SKU)" in done.stdout


def test_bench_forecast_section_prints_speed_and_error_against_the_oracle():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "experiments.bench", "--forecast-only", "--forecasters",
                           "seasonal_naive,moving_average,oracle"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()
            and line.split()[0] in ("seasonal_naive", "moving_average", "oracle")}
    assert set(rows) == {"seasonal_naive", "moving_average", "oracle"}
    assert rows["oracle"][5] == "1.000" and float(rows["seasonal_naive"][5]) > 1.0  # MAE / oracle
