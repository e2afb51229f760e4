"""Sim-to-serve parity, end to end (issue 11 item 8): the twin run with every decision answered by the running
service has the KPIs of the same bundle run in process, and a simulated day's snapshot, sent to the service as an
ERP state, gets exactly the orders the policy placed in the twin that day."""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.deploy.bundle import load_bundle
from agents.deploy.client import CLIENT_ID_ENV, CLIENT_SECRET_ENV, ServiceClient
from agents.deploy.conversion import snapshot_to_state
from twin.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[2]
DAY = 30


def run(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def export(out: Path, *args: str) -> Path:
    done = run("experiments.export", "network=small", "kpi.seeds=1", "kpi.horizon=30", "kpi.warmup=5", *args,
               f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "bundle"


def test_the_twin_through_the_service_has_the_in_process_bundles_kpis(tmp_path, clients, server_class):
    bundle = export(tmp_path / "export", "rule=forecast:oracle")
    server = server_class(tmp_path / "server", bundle, clients)
    try:
        env = {CLIENT_ID_ENV: "erp", CLIENT_SECRET_ENV: clients[1]["erp"]}
        done = run("experiments.evaluate", "network=small", "seeds=2", "horizon=40", "warmup=5",
                   f"policies=[\"service:{server.url}\",\"bundle:{bundle}\"]",
                   "reference=bundle:forecast_base_stock:oracle", f"hydra.run.dir={tmp_path / 'eval'}", env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        server.stop()
    rows = list(csv.DictReader((tmp_path / "eval" / "evaluation.csv").open()))
    by = {}
    for row in rows:
        by.setdefault(row["policy"], {})[row["seed"]] = row
    service, local = by["service:forecast_base_stock:oracle"], by["bundle:forecast_base_stock:oracle"]
    assert set(service) == set(local) and len(service) == 2
    for seed in service:
        for metric in ("cost_per_day", "holding_per_day", "stockout_penalty_per_day", "fill_rate"):
            assert float(service[seed][metric]) == pytest.approx(float(local[seed][metric]), rel=1e-9, abs=1e-12)


def test_a_simulated_days_snapshot_gets_from_the_service_the_orders_placed_in_the_twin(tmp_path, clients,
                                                                                        server_class):
    done = run("experiments.simulate", "network=small", "policy=base_stock", "horizon=60", "seed=0",
               "output.per_sku=true", "output.plots=false", f"output.snapshot_days=[{DAY}]",
               f"hydra.run.dir={tmp_path / 'sim'}")
    assert done.returncode == 0, done.stderr[-3000:]
    # the same levels as the simulation's base-stock: demand statistics of its horizon and seed
    bundle_dir = export(tmp_path / "export", "policy=base_stock", "level_horizon=60", "policy_seed=0")
    bundle = load_bundle(bundle_dir)
    snapshot = Snapshot.load(tmp_path / "sim" / f"snapshot_day{DAY}.json", bundle.network)
    with gzip.open(tmp_path / "sim" / "timeseries_sku.csv.gz", "rt") as f:
        placed = {(r["node"], r["sku"]): float(r["ordered"]) for r in csv.DictReader(f) if int(r["day"]) == DAY}
    server = server_class(tmp_path / "server", bundle_dir, clients)
    client = ServiceClient(server.url, "erp", clients[1]["erp"])
    try:
        response = client.decide(snapshot_to_state(snapshot, bundle.network))
    finally:
        client.close()
        server.stop()
    assert len(response.decisions) == 3 * 3
    for decision in response.decisions:
        assert decision.order_quantity == placed[decision.location, decision.sku], decision.location
    assert sum(placed[d.location, d.sku] for d in response.decisions) > 0  # the day had orders to match
