"""Simulate a network under a scenario and a baseline policy, with replications, KPIs and plots.

    python -m experiments.simulate                                  # paper_5x20, baseline, base_stock, 365 days
    python -m experiments.simulate scenario=covid_2020 scenario.severity=1.5 replications=5
    python -m experiments.simulate -m scenario=baseline,covid_2020 policy=base_stock,rop
    python -m experiments.simulate -m scenario=flash_sale,dc_outage ++scenario.start_day=30

(In a multirun that sweeps `scenario`, set scenario parameters with `++`: Hydra composes
the sweep's master config with the default scenario, which lacks them.)

Everything is read from the Hydra config (conf/config.yaml) into validated objects
before anything is simulated; a bad value prints one line naming the key and what
is allowed, and exits with status 2 without writing any file. Each run writes into
its Hydra run directory: config.yaml (resolved), kpis.json, timeseries.csv,
timeseries_sku.csv.gz (with output.per_sku) and PNG plots (with output.plots).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import scenarios
from agents.protocol import Policy
from experiments.policies import PolicySpec
from scenarios import Scenario
from twin import TWIN_VERSION, Engine, NetworkSpec, RunResult, SpecError, network_from_dict
from twin.config import ConfigReader
from twin.kpi import SERIES_FIELDS, SKU_SERIES_FIELDS
from twin.spec import INVARIANT_MODES
from twin.stats import DemandStats

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
SLOW_RUN_SECONDS = 2.0  # log progress within a replication once it has taken this long
log = logging.getLogger("experiments.simulate")


# ---------------------------------------------------------------------------
# Configuration: plain containers in, validated objects out
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputOptions:
    """What to write besides kpis.json and timeseries.csv."""

    per_sku: bool = False
    plots: bool = True


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a simulation needs, validated."""

    network: NetworkSpec
    scenario: Scenario
    policy_spec: PolicySpec
    policy: Policy
    horizon: int
    warmup: int
    seed: int
    replications: int
    invariants: str
    output: OutputOptions
    initial_on_hand: np.ndarray | None = None  # (nodes, SKUs) stock at the start; None: the network starts empty

    @property
    def seeds(self) -> list[int]:
        """One seed per replication: seed, seed + 1, ..."""
        return list(range(self.seed, self.seed + self.replications))


def load_config(data: Mapping[str, Any]) -> SimulationConfig:
    """Validate a plain config mapping and build the network, scenario and policy (SpecError naming the key)."""
    r = ConfigReader(data, "")
    horizon = r.integer("horizon", 365, low=1, high=36500)
    warmup = r.integer("warmup", 0, low=0)
    if warmup >= horizon:
        raise SpecError(f"warmup: {warmup} is out of range; allowed: [0, horizon - 1] = [0, {horizon - 1}]")
    seed = r.integer("seed", 0, low=0)
    replications = r.integer("replications", 1, low=1, high=10000)
    invariants = r.choice("invariants", INVARIANT_MODES, "warn")
    stock = r.child("initial_stock_days")
    initial_days = {kind: stock.number(kind, 0.0, low=0, high=365) for kind in ("store", "dc")}
    stock.done()
    out = r.child("output")
    output = OutputOptions(per_sku=out.flag("per_sku", False), plots=out.flag("plots", True))
    out.done()
    network = network_from_dict(r.raw("network"), "network")
    scenario_params = dict(ConfigReader(r.raw("scenario"), "scenario").data)
    scenario = scenarios.build(scenario_params.pop("name", None), network, horizon, **scenario_params)
    policy_spec = PolicySpec.from_dict(r.raw("policy"), "policy")
    r.done()
    return SimulationConfig(network=network, scenario=scenario, policy_spec=policy_spec,
                            policy=policy_spec.build(network, horizon, seed), horizon=horizon, warmup=warmup,
                            seed=seed, replications=replications, invariants=invariants, output=output,
                            initial_on_hand=initial_stock(network, horizon, seed, initial_days))


def initial_stock(network: NetworkSpec, horizon: int, seed: int, days: Mapping[str, float]) -> np.ndarray | None:
    """On-hand stock at the start: `days` of mean daily demand per node kind (None when all are 0: empty)."""
    if not any(days.values()):
        return None
    stats = DemandStats.of(network, horizon, seed)
    per_node = np.array([days.get(node.kind, 0.0) for node in network.nodes])[:, None]
    stock = stats.mean * per_node
    return np.rint(stock) if network.demand.integer_units else stock


def unknown_choice(overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> str | None:
    """A message for a `group=option` override naming an option that conf/<group>/ lacks (Hydra's own error
    exits with status 1 and a traceback hint; this one is one line, like every other config error)."""
    groups = {p.name for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra"}
    for item in overrides:
        group, sep, value = item.partition("=")
        if not sep or group not in groups or any(c in value for c in "()[]*$"):
            continue
        allowed = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for option in value.split(","):
            if option.strip() not in allowed:
                return f"{group}: {option.strip()!r} is not allowed; allowed: {', '.join(allowed)}"
    return None


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


def simulate(config: SimulationConfig) -> list[RunResult]:
    """Run every replication (seeds seed, seed + 1, ...) and return their results."""
    results = []
    for rep, seed in enumerate(config.seeds, start=1):
        label = f"replication {rep}/{config.replications} (seed {seed})"
        progress = ProgressLog(label)
        engine = Engine(config.network, horizon=config.horizon, seed=seed, shocks=config.scenario.shocks,
                        warmup=config.warmup, invariants=config.invariants, per_sku_series=config.output.per_sku,
                        initial_on_hand=config.initial_on_hand, progress=progress)
        result = engine.run(config.policy)
        network = result.kpis["network"]
        log.info("%s: %.1f s, fill rate %.3f, total cost %s", label, time.perf_counter() - progress.started,
                 network["fill_rate"] or 0.0, f"{network['cost_total']:,.0f}")
        if result.violations:
            log.warning("%s: %d ledger invariant violations, first: %s", label, len(result.violations),
                        result.violations[0])
        results.append(result)
    return results


# ---------------------------------------------------------------------------
# KPIs across replications
# ---------------------------------------------------------------------------

T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # Student t, df 1..10


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (table, then a Cornish-Fisher expansion)."""
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarize(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, standard deviation and 95% confidence half-width over replications (None where undefined)."""
    x = np.array([v for v in values if v is not None], dtype=float)
    n = len(x)
    if n == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    std = float(x.std(ddof=1)) if n > 1 else None
    ci = t_quantile_975(n - 1) * std / math.sqrt(n) if std is not None else None
    return {"mean": float(x.mean()), "std": std, "ci95": ci, "n": n}


def summarize_block(blocks: Sequence[Mapping[str, Any]]) -> dict[str, dict]:
    """Summaries of every numeric KPI of a block (network or echelon) across replications."""
    keys = [k for k, v in blocks[0].items() if v is None or isinstance(v, (int, float))]
    return {k: summarize([b.get(k) for b in blocks]) for k in keys}


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
            "twin_version": TWIN_VERSION,
            "shocks": [{"type": type(s).__name__, **dataclasses.asdict(s)} for s in config.scenario.shocks],
        },
        "replications": [{"seed": r.meta["seed"], **r.kpis} for r in results],
        "summary": {
            "network": summarize_block([k["network"] for k in kpis]),
            "echelons": {e: summarize_block([k["echelons"][e] for k in kpis]) for e in echelons},
        },
    }


TABLE = (  # column title, KPI key, format
    ("fill", "fill_rate", "{:.3f}"), ("CSL", "cycle_service_level", "{:.3f}"),
    ("holding", "cost_holding", "{:,.0f}"), ("backorder", "cost_backorder", "{:,.0f}"),
    ("lost sale", "cost_lost_sale", "{:,.0f}"), ("ordering", "cost_ordering", "{:,.0f}"),
    ("total", "cost_total", "{:,.0f}"), ("turnover", "inventory_turnover", "{:.1f}"),
    ("DoI", "days_of_inventory", "{:.1f}"), ("bullwhip", "bullwhip_ratio", "{:.2f}"),
)


def kpi_table(report: Mapping[str, Any]) -> str:
    """A text table of the mean KPIs: the network and each echelon (costs summed over the KPI days)."""
    meta, summary = report["meta"], report["summary"]
    rows = [("network", summary["network"])] + list(summary["echelons"].items())
    cells = [["", *(title for title, _, _ in TABLE)]]
    for label, block in rows:
        mean = [block.get(key, {}).get("mean") for _, key, _ in TABLE]
        cells.append([label, *("-" if v is None else fmt.format(v) for v, (_, _, fmt) in zip(mean, TABLE))])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [f"KPIs: network {meta['network']}, scenario {meta['scenario']}, policy {meta['policy']}; "
             f"days {meta['warmup']}-{meta['horizon'] - 1}, {len(meta['seeds'])} replication(s)"]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in cells]
    total, fill = summary["network"]["cost_total"], summary["network"]["fill_rate"]
    if total["ci95"] is not None:
        lines.append(f"network total cost {total['mean']:,.0f} +/- {total['ci95']:,.0f}, fill rate "
                     f"{fill['mean']:.3f} +/- {fill['ci95']:.3f} (95% CI over replications)")
    return "\n".join(lines)


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
            for day, by_node in enumerate(table):
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
            for day in range(table.shape[0]):
                promotion = cov.promotion[day].astype(int).tolist()
                price = cov.price[day].round(4).tolist()
                for i, name in enumerate(names):
                    weather = round(float(cov.weather[regions[i]][day]), 4)
                    for k, values in enumerate(table[day, i].tolist()):
                        writer.writerow([rep, result.meta["seed"], day, name, skus[k], *values, promotion[k],
                                         price[k], cov.holiday[day], weather])


def write_outputs(out: Path, config: SimulationConfig, resolved: Mapping[str, Any], overrides: Sequence[str],
                  results: Sequence[RunResult]) -> dict:
    """Write config.yaml, kpis.json, the time series and the plots into `out`; return the KPI report."""
    out.mkdir(parents=True, exist_ok=True)
    header = f"# resolved config of: python -m experiments.simulate {' '.join(overrides)}\n"
    (out / "config.yaml").write_text(header + OmegaConf.to_yaml(OmegaConf.create(dict(resolved))))
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
    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        config = load_config(resolved)
    except SpecError as error:
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
    hydra_config = HydraConfig.get()
    out = Path(hydra_config.runtime.output_dir)
    log.info("network %s (%d nodes, %d SKUs), scenario %s (%d shocks), policy %s, %d days x %d replication(s)",
             config.network.name, len(config.network.nodes), config.network.skus.n, config.scenario.name,
             len(config.scenario.shocks), config.policy_spec.name, config.horizon, config.replications)
    started = time.perf_counter()
    results = simulate(config)
    report = write_outputs(out, config, resolved, hydra_config.overrides.task, results)
    print(kpi_table(report))
    log.info("done in %.1f s; outputs in %s", time.perf_counter() - started, out)


def run_checked(hydra_main) -> None:
    """Run a Hydra entry point after checking its `group=option` overrides (one-line error, exit status 2)."""
    message = unknown_choice(sys.argv[1:])
    if message:
        print(f"config error: {message}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    run_checked(main)
