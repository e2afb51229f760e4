"""Scenario files on the command line: `scenario=FILE.yaml` runs experiments.simulate and experiments.evaluate end to
end, every run writes its scenario as run into scenario.yaml (which runs again to the same series), and a bad file
stops before anything runs. The file format itself is tested in tests/scenarios/test_scenario_files.py."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

import scenarios
from experiments.startup import scenario_file_overrides
from twin import SpecError, network_from_dict

ROOT = Path(__file__).resolve().parents[2]
SMALL = network_from_dict(yaml.safe_load((ROOT / "conf" / "network" / "small.yaml").read_text()))
SCENARIO = """\
name: ramped_spring
description: a staples surge that builds and fades, and the DC closed for three days
shocks:
  - {type: demand, groups: [staples], start: 2021-01-11, duration: 12, magnitude: 2.0, ramp_up: 3, ramp_down: 2}
  - {type: dc_closure, nodes: dc_0, start: 25, end: 2021-01-29, reroute: false}
"""


def run(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_a_scenario_file_value_is_rewritten_to_the_file_option():
    assert scenario_file_overrides(["scenario=covid_2020", "horizon=30", "scenario.severity=2"]) == \
        ["scenario=covid_2020", "horizon=30", "scenario.severity=2"]
    assert scenario_file_overrides(["network=small", "scenario=my dir/it's.yaml"]) == \
        ["network=small", "scenario=file", "scenario.path='my dir/it\\'s.yaml'"]
    assert scenario_file_overrides(["scenario=a.yaml,b.YML"]) == ["scenario=file", "scenario.path='a.yaml','b.YML'"]
    parsed = OverridesParser.create().parse_overrides(scenario_file_overrides(["scenario=my dir/it's.yaml"]))
    assert [(o.key_or_group, o.value()) for o in parsed] == [("scenario", "file"),
                                                             ("scenario.path", "my dir/it's.yaml")]
    with pytest.raises(SpecError, match="^scenario: 'covid_2020,a.yaml' mixes scenario files and scenario names"):
        scenario_file_overrides(["scenario=covid_2020,a.yaml"])


def test_a_long_value_of_another_key_passes_through_untouched():
    # no path: the old code asked the file system about every value and crashed on this one (name too long)
    shocks = ",".join(f"{{type:demand,start:{d},end:{d + 1},multiplier:2.0}}" for d in range(60))
    long_value = f"hold_out=[{{name:custom,shocks:[{shocks}]}}]"
    assert len(long_value) > 1000
    assert scenario_file_overrides([long_value, "scenario=baseline"]) == [long_value, "scenario=baseline"]
    # nor does a scenario= value too long to be a file name: it is a list of names (here one unknown to Hydra)
    assert scenario_file_overrides([f"scenario={'x' * 300}"]) == [f"scenario={'x' * 300}"]


def test_simulate_runs_a_scenario_file_and_writes_the_scenario_as_run(tmp_path):
    path = tmp_path / "spring.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "run"
    common = ("network=small", "horizon=40", "warmup=5", "output.plots=false", "invariants=error")
    proc = run("simulate", f"scenario={path}", *common, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    assert "scenario ramped_spring" in proc.stdout
    expected = scenarios.build("file", SMALL, 40, path=str(path))
    assert len(expected.shocks) == 3 + 1 + 2 + 1  # the ramps' daily steps, the full surge, the closure
    report = json.loads((out / "kpis.json").read_text())
    assert report["meta"]["scenario"] == "ramped_spring" and len(report["meta"]["shocks"]) == len(expected.shocks)
    assert yaml.safe_load((out / "config.yaml").read_text())["scenario"] == {"name": "file", "path": str(path)}

    written = out / "scenario.yaml"
    text = written.read_text()
    assert text.startswith(f"# scenario of: python -m experiments.simulate scenario=file scenario.path='{path}'")
    document = yaml.safe_load(text)
    assert document["name"] == "ramped_spring"
    assert document["shocks"][0] == {"type": "demand", "start": 10, "end": 11, "start_date": dt.date(2021, 1, 11),
                                     "end_date": dt.date(2021, 1, 12), "multiplier": 1.25, "groups": ["staples"],
                                     "regions": []}  # 1/4 of the way to 2.0 on the first of 3 ramp days
    assert document["shocks"][-1]["dc"] == "dc_0" and document["shocks"][-1]["end"] == 28
    assert scenarios.build("file", SMALL, 40, path=str(written)) == expected

    # the written scenario runs again, from another directory, to the same series
    again = tmp_path / "again"
    proc = run("simulate", f"scenario={written}", *common, f"hydra.run.dir={again}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (again / "timeseries.csv").read_bytes() == (out / "timeseries.csv").read_bytes()


def test_a_named_scenario_run_writes_its_scenario_too(tmp_path):
    out = tmp_path / "run"
    proc = run("simulate", "network=small", "scenario=flash_sale", "scenario.start_day=5", "horizon=20", "warmup=2",
               "output.plots=false", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    document = yaml.safe_load((out / "scenario.yaml").read_text())
    assert document["name"] == "flash_sale" and document["description"].startswith("A flash sale")
    assert [(s["type"], s["start"], s["end"], s["start_date"].isoformat(), s["multiplier"])
            for s in document["shocks"]] == [("demand", 5, 8, "2021-01-06", 4.0)]


def test_a_bad_scenario_file_stops_with_one_line_before_anything_runs(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SCENARIO.replace("reroute: false", "reroute: false, ramp_up: 1"))
    out = tmp_path / "run"
    proc = run("simulate", f"scenario={path}", "network=small", "horizon=40", f"hydra.run.dir={out}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"config error: {path}: shocks[1].ramp_up: a dc_closure is either on or off, "
                                        f"it cannot ramp; allowed: ramp_up and ramp_down on demand, lead_time and "
                                        f"capacity_cut shocks"]
    assert not list(out.rglob("*")), "nothing is written for a bad scenario file"
    proc = run("simulate", "scenario=covid_2020,missing.yaml", "-m", f"hydra.sweep.dir={out}")
    assert proc.returncode == 2 and proc.stderr.startswith("config error: scenario: 'covid_2020,missing.yaml' mixes")


def test_evaluate_runs_a_scenario_file_and_writes_it(tmp_path):
    path = tmp_path / "spring.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "run"
    proc = run("evaluate", f"scenario={path}", "network=small", "horizon=40", "warmup=5", "seeds=1",
               "policies=[base_stock,rop]", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "evaluation.md").read_text().startswith("# small / ramped_spring")
    assert scenarios.build("file", SMALL, 40, path=str(out / "scenario.yaml")) == \
        scenarios.build("file", SMALL, 40, path=str(path))
