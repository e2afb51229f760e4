"""Simulate a network under a scenario and a baseline policy, with replications, KPIs and plots.

    python -m experiments.simulate                                  # paper_5x20, baseline, base_stock, 365 days
    python -m experiments.simulate scenario=covid_2020 scenario.severity=1.5 replications=5
    python -m experiments.simulate -m scenario=baseline,covid_2020 policy=base_stock,rop
    python -m experiments.simulate -m scenario=flash_sale,dc_outage ++scenario.start_day=30
    python -m experiments.simulate scenario=examples/scenario_covid_dates.yaml    # a scenario file
    python -m experiments.simulate demand=history demand.path=sales.csv            # a planner's sales history
    python -m experiments.simulate demand=history demand.path=sales.csv demand.mode=fitted replications=50

(In a multirun that sweeps `scenario`, set scenario parameters with `++`: Hydra composes
the sweep's master config with the default scenario, which lacks them.)

Everything is read from the Hydra config (conf/config.yaml) into validated objects
before anything is simulated; a bad value prints one line naming the key and what
is allowed, and exits with status 2 without writing any file. Each run writes into
its Hydra run directory: config.yaml (resolved), scenario.yaml (the scenario's shocks as
run, in day numbers and dates: a scenario file, `scenario=RUN/scenario.yaml` runs it
again), kpis.json, timeseries.csv,
timeseries_sku.csv.gz (with output.per_sku), PNG plots (with output.plots) and
snapshot_day<D>.json (with output.snapshot_days=[D, ...]: the network at day D's
decision point, twin/snapshot.py).

    python -m experiments.simulate output.snapshot_days=[200]
    python -m experiments.simulate start=outputs/simulate/.../snapshot_day200.json   # from day 200 on

A run from a snapshot with the same seed reproduces the uninterrupted run's
timeseries.csv rows from the snapshot's day on exactly; its KPIs count from that day.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments.run_config import SimulationConfig, load_config
from experiments.startup import config_errors, plain, run_checked, run_dir, write_scenario
from experiments.summary import kpi_table, summarize_block
from twin import TWIN_VERSION, Engine, NetworkSpec, RunResult
from twin.kpi import SERIES_FIELDS, SKU_SERIES_FIELDS

SLOW_RUN_SECONDS = 2.0  # log progress within a replication once it has taken this long
log = logging.getLogger("experiments.simulate")


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

class ProgressLog:
    """Engine progress callback: logs every few simulated days once a replication has run for a while."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.perf_counter()

    def __call__(self, day: int, horizon: int) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed >= SLOW_RUN_SECONDS and day < horizon:
            log.info("%s: day %d/%d (%.1f s)", self.label, day, horizon, elapsed)


def simulate(config: SimulationConfig, out: Path | None = None) -> list[RunResult]:
    """Run every replication (seeds seed, seed + 1, ...) and return their results; snapshots of
    `config.output.snapshot_days` are written into `out`."""
    results = []
    policy = config.policy
    for rep, seed in enumerate(config.seeds, start=1):
        label = f"replication {rep}/{config.replications} (seed {seed})"
        progress = ProgressLog(label)
        engine = Engine(config.network, horizon=config.horizon, seed=seed, shocks=config.scenario.shocks,
                        warmup=config.warmup, invariants=config.invariants, per_sku_series=config.output.per_sku,
                        initial_on_hand=config.initial_on_hand, progress=progress, start=config.start,
                        demand=config.demand)
        while not engine.done:
            if engine.day in config.output.snapshot_days and out is not None:
                path = engine.snapshot().save(out / snapshot_name(engine.day, rep, config.replications))
                log.info("%s: snapshot of day %d in %s", label, engine.day, path.name)
            engine.step(policy.act(engine.state_for(policy)))
        result = engine.result(policy=type(policy).__name__)
        network = result.kpis["network"]
        log.info("%s: %.1f s, fill rate %.3f, total cost %s", label, time.perf_counter() - progress.started,
                 network["fill_rate"] or 0.0, f"{network['cost_total']:,.0f}")
        if result.violations:
            log.warning("%s: %d ledger invariant violations, first: %s", label, len(result.violations),
                        result.violations[0])
        results.append(result)
    return results


def snapshot_name(day: int, replication: int, replications: int) -> str:
    """snapshot_day<D>.json; with several replications, snapshot_day<D>_rep<R>.json (R from 1)."""
    return f"snapshot_day{day}.json" if replications == 1 else f"snapshot_day{day}_rep{replication}.json"


# ---------------------------------------------------------------------------
# KPIs across replications
# ---------------------------------------------------------------------------

def kpi_report(config: SimulationConfig, results: Sequence[RunResult]) -> dict:
    """The content of kpis.json: meta, per-replication KPIs and their summary."""
    kpis = [r.kpis for r in results]
    echelons = list(kpis[0]["echelons"])
    return {
        "meta": {
            "network": config.network.name,
            "scenario": config.scenario.name,
            "policy": config.policy_spec.name,
            "horizon": config.horizon,
            "warmup": config.warmup,
            "seeds": config.seeds,
            **({"start_day": config.start.day} if config.start else {}),
            **({"demand": config.demand.describe()} if config.demand else {}),
            "twin_version": TWIN_VERSION,
            "shocks": [{"type": type(s).__name__, **dataclasses.asdict(s)} for s in config.scenario.shocks],
        },
        "replications": [{"seed": r.meta["seed"], **r.kpis} for r in results],
        "summary": {
            "network": summarize_block([k["network"] for k in kpis]),
            "echelons": {e: summarize_block([k["echelons"][e] for k in kpis]) for e in echelons},
        },
    }


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------

def write_timeseries(path: Path, network: NetworkSpec, results: Sequence[RunResult]) -> None:
    """One row per (replication, day, node) with every SeriesRecorder field (summed over SKUs)."""
    kinds = [n.kind for n in network.nodes]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["replication", "seed", "day", "node", "kind", *SERIES_FIELDS])
        for rep, result in enumerate(results):
            names = result.meta["nodes"]
            table = np.stack([result.series[k] for k in SERIES_FIELDS], axis=-1).tolist()  # (days, nodes, fields)
            for day, by_node in enumerate(table, start=result.meta["first_day"]):
                for i, values in enumerate(by_node):
                    writer.writerow([rep, result.meta["seed"], day, names[i], kinds[i], *values])


def write_sku_timeseries(path: Path, network: NetworkSpec, results: Sequence[RunResult]) -> None:
    """One row per (replication, day, node, SKU): the per-SKU series (expected_demand is the true mean of a
    store's customer demand, shocks included) and the covariates a forecaster may use; gzip-compressed."""
    skus = network.skus.name
    regions = [n.region for n in network.nodes]
    with gzip.open(path, "wt", newline="", compresslevel=5) as f:
        writer = csv.writer(f)
        writer.writerow(["replication", "seed", "day", "node", "sku", *SKU_SERIES_FIELDS,
                         "promotion", "price", "holiday", "weather"])
        for rep, result in enumerate(results):
            names = result.meta["nodes"]
            cov = result.covariates
            table = np.stack([result.sku_series[k] for k in SKU_SERIES_FIELDS], axis=-1)  # (days, nodes, SKUs, f)
            first = result.meta["first_day"]
            for row, day in enumerate(range(first, first + table.shape[0])):
                promotion = cov.promotion[day].astype(int).tolist()
                price = cov.price[day].round(4).tolist()
                for i, name in enumerate(names):
                    weather = round(float(cov.weather[regions[i]][day]), 4)
                    for k, values in enumerate(table[row, i].tolist()):
                        writer.writerow([rep, result.meta["seed"], day, name, skus[k], *values, promotion[k],
                                         price[k], cov.holiday[day], weather])


def write_outputs(out: Path, config: SimulationConfig, resolved: Mapping[str, Any], overrides: Sequence[str],
                  results: Sequence[RunResult]) -> dict:
    """Write config.yaml, scenario.yaml, kpis.json, the time series and the plots into `out`; return the KPI
    report."""
    out.mkdir(parents=True, exist_ok=True)
    command = f"python -m experiments.simulate {' '.join(overrides)}"
    (out / "config.yaml").write_text(f"# resolved config of: {command}\n"
                                     + OmegaConf.to_yaml(OmegaConf.create(dict(resolved))))
    write_scenario(out, config.scenario, command, config.network.name, config.horizon)
    report = kpi_report(config, results)
    with (out / "kpis.json").open("w") as f:
        json.dump(report, f, indent=2)
    write_timeseries(out / "timeseries.csv", config.network, results)
    if config.output.per_sku:
        write_sku_timeseries(out / "timeseries_sku.csv.gz", config.network, results)
    if config.output.plots:
        from experiments import plots  # matplotlib is only imported when plots are asked for

        plots.write_all(out, config.network, results, config.scenario, report)
    return report


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Validate the config, simulate every replication, write the outputs and print the KPI table."""
    resolved = plain(cfg)
    with config_errors():
        config = load_config(resolved)
    out = run_dir()
    log.info("network %s (%d nodes, %d SKUs), scenario %s (%d shocks), policy %s, %d days x %d replication(s)",
             config.network.name, len(config.network.nodes), config.network.skus.n, config.scenario.name,
             len(config.scenario.shocks), config.policy_spec.name, config.horizon, config.replications)
    if config.demand is not None:
        history = config.demand.history
        log.info("demand: %s of %s (%d series, %s to %s), run day 0 = %s", config.demand.mode, history.path,
                 int(history.covered.sum()), history.first, history.date(history.days - 1), config.demand.start_date)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    results = simulate(config, out)
    report = write_outputs(out, config, resolved, HydraConfig.get().overrides.task, results)
    print(kpi_table(report))
    log.info("done in %.1f s; outputs in %s", time.perf_counter() - started, out)


if __name__ == "__main__":
    run_checked(main)
