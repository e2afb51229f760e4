"""experiments.simulate network=file network.path=...: a planner's own network (twin/network_files.py) runs end to
end, the run records the network itself, and bad files stop before anything runs with every problem listed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from twin.network_files import LOCATIONS, SKUS, read_network_files
from twin.snapshot import network_hash
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
CSV_DIR = ROOT / "tests" / "twin" / "data" / "network_csv"


def simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.simulate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_a_network_from_csv_files_simulates_end_to_end(tmp_path):
    out = tmp_path / "run"
    relative = CSV_DIR.relative_to(ROOT)  # as a planner types it, from the project folder
    done = simulate("network=file", f"network.path={relative}", "horizon=40", "warmup=5", "output.plots=false",
                    "invariants=error", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "kpis.json").read_text())
    assert report["meta"]["network"] == "planner_demo"
    network = report["replications"][0]
    assert network["network"]["demand"] > 0 and set(network["nodes"]) == {"dc_north", "dc_south", "s1", "s2", "s3",
                                                                           "s4"}
    # config.yaml holds the network itself, not the path: it reproduces the run without the files
    recorded = yaml.safe_load((out / "config.yaml").read_text())["network"]
    assert "path" not in recorded
    assert network_hash(network_from_dict(recorded)) == network_hash(read_network_files(CSV_DIR))


def test_bad_network_files_stop_the_run_with_every_problem(tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(CSV_DIR, folder)
    rows = (folder / LOCATIONS).read_text().splitlines()
    rows[3] = rows[3].replace(",dc,", ",warehouse,")  # row 4: dc_north
    (folder / LOCATIONS).write_text("\n".join(rows) + "\n")
    (folder / SKUS).write_text((folder / SKUS).read_text().replace("rice,staples,poisson,12", "rice,staples,poisson,"
                                                                                              "many"))
    out = tmp_path / "run"
    done = simulate("network=file", f"network.path={folder}", f"hydra.run.dir={out}")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"config error: network.path: 2 problems in the network files {folder} (nothing was simulated):"
    assert lines[1].startswith("  locations.csv, row 4, column kind (B): 'warehouse' is not allowed")
    assert lines[2].startswith("  skus.csv, row 2, column mean (D): 'many' is not a number")
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not out.exists() or not any(out.iterdir()), "nothing written"


def test_network_file_without_a_path_says_what_it_needs(tmp_path):
    done = simulate("network=file", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.strip() == ("config error: network.path: required with network=file; allowed: a folder of CSV "
                                   "files (locations.csv, lanes.csv, skus.csv) or one YAML file of a network")
