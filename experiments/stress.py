"""Stress test: scenarios x policies x replications on common random numbers, with resilience figures.

    python -m experiments.stress 'scenarios=[baseline,covid_2020]' 'policies=[base_stock,ss,rop]' replications=200
    python -m experiments.stress 'scenarios=[baseline,examples/scenario_covid_dates.yaml]' ray.enabled=false
    python -m experiments.stress start=outputs/simulate/RUN/snapshot_day200.json     # every replication from there
    python -m experiments.stress ... hydra.run.dir=outputs/stress/RUN                 # resume an interrupted run
    python -m experiments.stress ... ray.address=auto                                 # join a running Ray cluster
    python -m experiments.stress mode=node_sweep 'closure_days=[7,14,28]' replications=50   # every DC and supplier

Replication r of every (scenario, policy) cell runs on held-out seed first_seed + r, so policies and scenarios
are compared on the same demand and lead-time draws (common random numbers), and every delta is paired. The
replications run as Ray tasks (experiments/stress_runs.py; `ray.enabled=false`: in this process, with the same
numbers) and are kept one file each under `replications/`; a run started again with the same run directory
reuses them. The report (experiments/stress_report.py) is written into the run directory:

    stress.csv          one row per scenario x policy x replication: KPIs and resilience figures
    summary.csv, .md    per scenario and policy: means with 95% CIs, cost at risk, time to recover, paired deltas
                        against the baseline scenario and the reference policy, lost sales by DC and region
    series.npz          fan-chart percentiles (p5 p25 p50 p75 p95 over days) network-wide and per DC
    fan_<scenario>.png  network-wide fan charts, a column per policy; fan_<scenario>_<policy>_dcs.png per DC
    stores.csv          per scenario x policy x store: mean lost sales and fill rate with 95% CIs
    scenario_<name>.yaml each scenario as run (a scenario file)
    replan_decisions.csv a re-planning policy's reviews (day, safety factors, the forks' expected fill and cost)
    report.html         all of it in one self-contained page (experiments/stress_html.py); a Hydra multirun
                        (-m) also writes comparison.html into its sweep folder

`mode=node_sweep` (experiments/node_sweep.py) disrupts every DC and supplier in turn for each of `closure_days`
from `sweep_start`, one policy, next to the undisrupted baseline, and adds node_sweep.csv, node_sweep.md (time to
survive against time to recover, lost sales and penalty cost increase, ranked) and risk_matrix.png; it draws no
fan charts (series.npz holds them for the dashboard).

A bad config (unknown scenario or policy, replications < 1, a target outside (0, 1], a bad start file, a run
directory written by another configuration or an older version, a node sweep's closure_days empty or not
positive, a likelihood of an unknown node or outside [0, 1]) stops before anything runs with one `config error:`
line naming the key.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from agents.baselines.safety import read_safety_factors
from experiments import node_sweep
from experiments.node_sweep import MODES, NodeSweep, read_node_sweep, sweep_scenarios
from experiments.policy_entries import load_policies, starting_stock
from experiments.ray_cluster import check_reachable
from experiments.scenario_entries import read_scenarios
from experiments.seeds import HELD_OUT_FIRST_SEED, SeedRange
from experiments.startup import config_errors, plain, run_checked, run_dir, write_scenario
from experiments.stress_html import write_run_report
from experiments.stress_report import (
    ResilienceSettings,
    fan_arrays,
    fans,
    first_shock_start,
    plot_dc_fans,
    plot_network_fans,
    replication_figures,
    short_table,
    store_rows,
    summarize_cells,
    summary_markdown,
    write_stores_csv,
    write_stress_csv,
    write_summary_csv,
)
from experiments.stress_runs import (
    FILE_FORMAT,
    Job,
    NodeGroups,
    Progress,
    RayOptions,
    ReplicationStore,
    StressSetup,
    fingerprint,
    run_jobs,
    safe_names,
)
from scenarios import Scenario
from twin import TWIN_VERSION, SpecError
from twin.config import ConfigReader, check_warmup
from twin.demand_history import DemandSource, demand_source_from_dict
from twin.shocks import Shock, shock_to_dict
from twin.snapshot import SNAPSHOT_FORMAT, Snapshot, network_hash, snapshot_from_dict
from twin.spec import NetworkSpec, network_from_dict

log = logging.getLogger("experiments.stress")

ERP_FORMAT = "erp.state/1"


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StartState:
    """The state every replication starts from, and where it came from."""

    snapshot: Snapshot
    kind: str                       # SNAPSHOT_FORMAT or ERP_FORMAT
    digest: str                     # sha256 of the file
    later_shocks: tuple[Shock, ...] = ()  # an ERP state's disruptions that begin after its as_of date


@dataclass(frozen=True)
class StressConfig:
    """conf/stress.yaml, validated."""

    network: NetworkSpec
    scenarios: dict[str, Scenario]       # label -> scenario (later shocks of an ERP start added)
    baseline: str
    policies: dict[str, object]          # label -> policy, never run itself (each replication runs a copy)
    policy_entries: dict[str, str]       # label -> its entry in `policies`
    reference: str
    seeds: SeedRange
    horizon: int
    warmup: int
    start: StartState | None
    settings: ResilienceSettings
    ray: RayOptions
    plots: bool
    policy_settings: dict                # policy_seed and forecast_z: part of each cell's fingerprint
    sweep: NodeSweep | None = None       # mode=node_sweep: the nodes, closure lengths and start day
    demand: DemandSource | None = None   # demand=history: the planner's sales history (None: the network's model)


def load_stress_config(data: Mapping) -> StressConfig:
    """Read and build everything from the plain config (SpecError naming the key if anything is bad)."""
    r = ConfigReader(data, "")
    mode = r.choice("mode", MODES, "scenarios")
    horizon = r.integer("horizon", 365, low=2, high=10**6)
    warmup = check_warmup(r.integer("warmup", 28, low=0), horizon)
    seeds = SeedRange.read(r, count=200, first=HELD_OUT_FIRST_SEED, high=100_000, count_key="replications")
    policy_seed = r.integer("policy_seed", 0, low=0)
    forecast_z = read_safety_factors(r.child("forecast_z"))
    target = r.number("service_target", 0.95, low=0.0, high=1.0, low_open=True)
    recovery = r.child("recovery")
    settings = ResilienceSettings(target=target, tolerance=recovery.number("tolerance", 0.02, low=0.0, high=1.0),
                                  window=recovery.integer("window", 7, low=1, high=365),
                                  pre_days=recovery.integer("pre_days", 28, low=1, high=3650))
    recovery.done()
    ray = r.child("ray")
    options = RayOptions(enabled=ray.flag("enabled", True), address=ray.text("address", optional=True),
                         num_cpus=ray.integer("num_cpus", None, low=1, high=4096, optional=True),
                         batch=ray.integer("batch", 4, low=1, high=10_000))
    ray.done()
    if options.enabled and importlib.util.find_spec("ray") is None:
        raise SpecError("ray.enabled: true, but ray is not installed (pip install .[rl]); allowed: false, to run "
                        "every replication in this process")
    if options.enabled and options.address and options.address != "auto" and "://" not in options.address:
        check_reachable(options.address, key="ray.address")  # before anything is written
    output = r.child("output")
    plots = output.flag("plots", True)
    output.done()
    network = network_from_dict(r.raw("network"), "network")
    start_path = r.text("start", optional=True)
    start = read_start(start_path, network, horizon) if start_path else None
    first_day = max(warmup, start.snapshot.day if start else 0)
    sweep = read_node_sweep(r, network, horizon, first_day, active=mode == "node_sweep")
    if sweep is None:
        built = read_scenarios(r.sequence("scenarios", ()), network, horizon)
        if start is not None and start.later_shocks:
            built = {label: Scenario(s.name, s.description, s.shocks + start.later_shocks)
                     for label, s in built.items()}
        baseline = _among(r.text("baseline_scenario", optional=True), list(built), "baseline_scenario",
                          "scenarios")
    else:  # the sweep's own scenarios: `scenarios` and `baseline_scenario` are not used
        r.raw("scenarios"), r.raw("baseline_scenario")
        built = sweep_scenarios(sweep, start.later_shocks if start else ())
        baseline = node_sweep.BASELINE
    demand = demand_source_from_dict(r.raw("demand"), network, horizon)
    entries = r.sequence("policies", ())
    policies = load_policies(entries, network, horizon, policy_seed, None, forecast_z, demand=demand)
    reference = _among(r.text("reference_policy", optional=True), list(policies), "reference_policy", "policies")
    policy_entries = dict(zip(policies, map(str, entries)))
    if sweep is not None:  # one policy
        policies, policy_entries = {reference: policies[reference]}, {reference: policy_entries[reference]}
    r.done()
    return StressConfig(network=network, scenarios=built, baseline=baseline, policies=policies,
                        policy_entries=policy_entries, reference=reference, seeds=seeds,
                        horizon=horizon, warmup=warmup, start=start, settings=settings, ray=options, plots=plots,
                        policy_settings={"policy_seed": policy_seed, "forecast_z": forecast_z}, sweep=sweep,
                        demand=demand)


def _among(value: str | None, labels: list[str], key: str, listed: str) -> str:
    """`value`, one of `labels`; None: the first."""
    if value is None:
        return labels[0]
    if value not in labels:
        raise SpecError(f"{key}: {value!r} is not among the {listed} {labels}; allowed: one of them (null: the "
                        f"first)")
    return value


def read_start(path_text: str, network: NetworkSpec, horizon: int) -> StartState:
    """A state file: a twin snapshot (format twin.snapshot/1) or an ERP state (erp.state/1, converted with
    agents.deploy.conversion.state_to_twin), told apart by its `format` field (or, without one, by its keys).
    SpecError naming `start` (and the field) if it cannot be read, or is not a state of the network."""
    path = Path(to_absolute_path(path_text))
    allowed = (f"allowed: a twin snapshot JSON ({SNAPSHOT_FORMAT!r}, experiments.simulate output.snapshot_days) or "
               f"an ERP state JSON ({ERP_FORMAT!r})")
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError:
        raise SpecError(f"start: {path_text!r} does not exist; {allowed}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpecError(f"start: {path_text!r} is not a readable JSON file ({error}); {allowed}") from None
    if not isinstance(data, dict):
        raise SpecError(f"start: {path_text!r} holds a JSON {type(data).__name__}, not a state; {allowed}")
    kind = data.get("format") or (ERP_FORMAT if "as_of" in data else SNAPSHOT_FORMAT if "nodes" in data else None)
    later: tuple[Shock, ...] = ()
    if kind == SNAPSHOT_FORMAT:
        snapshot = snapshot_from_dict(data, network, "start")
    elif kind == ERP_FORMAT:
        from pydantic import ValidationError

        from agents.deploy.conversion import error_fields, state_to_twin
        from agents.deploy.erp_state import ErpState

        try:
            inputs = state_to_twin(ErpState.model_validate_json(raw), network)
        except ValidationError as error:
            field, message = error_fields(error)[0]
            raise SpecError(f"start: {path_text!r}: {field or 'state'}: {message}") from None
        except SpecError as error:  # an ErpStateError names the ERP field
            raise SpecError(f"start: {path_text!r}: {error}") from None
        snapshot, later = inputs.snapshot, tuple(inputs.later_shocks)
    else:
        raise SpecError(f"start: {path_text!r} is neither a twin snapshot nor an ERP state (format "
                        f"{data.get('format')!r}); {allowed}")
    if snapshot.day >= horizon:
        raise SpecError(f"horizon: {horizon} is not after the start state's day {snapshot.day}; allowed: horizon > "
                        f"{snapshot.day}")
    return StartState(snapshot=snapshot, kind=kind, digest=hashlib.sha256(raw).hexdigest(), later_shocks=later)


# ---------------------------------------------------------------------------
# The run: setup, files, jobs
# ---------------------------------------------------------------------------

def stress_setup(config: StressConfig) -> StressSetup:
    """What the replications share: every policy starts from the same stock (as in experiments.evaluate), or
    from the start state."""
    stock = None if config.start else starting_stock(config.policies, config.network)
    return StressSetup(network=config.network, horizon=config.horizon, warmup=config.warmup,
                       first_seed=config.seeds.first, shocks={k: s.shocks for k, s in config.scenarios.items()},
                       policies=config.policies, initial_on_hand=stock,
                       start=config.start.snapshot if config.start else None, demand=config.demand)


def cell_fingerprints(config: StressConfig, setup: StressSetup) -> dict[tuple[str, str], str]:
    """Per (scenario, policy): the fingerprint of everything its replications depend on but their index."""
    common = {"format": FILE_FORMAT, "twin": TWIN_VERSION, "network": network_hash(config.network),
              "horizon": config.horizon, "warmup": config.warmup, "first_seed": config.seeds.first,
              "start": config.start.digest if config.start else None, **config.policy_settings,
              "demand": None if config.demand is None else {
                  **config.demand.describe(), "sha256": hashlib.sha256(Path(config.demand.history.path).read_bytes())
                  .hexdigest()},
              "initial_on_hand": (None if setup.initial_on_hand is None
                                  else hashlib.sha256(np.ascontiguousarray(setup.initial_on_hand)).hexdigest())}
    prints = {}
    for label, scenario in config.scenarios.items():
        shocks = [shock_to_dict(s) for s in scenario.shocks]
        for policy, entry in config.policy_entries.items():
            kind, _, rest = entry.partition(":")
            policy_file = (hashlib.sha256(Path(to_absolute_path(rest)).read_bytes()).hexdigest()
                           if kind == "file" else None)
            prints[label, policy] = fingerprint({**common, "shocks": shocks, "policy": entry,
                                                 "policy_file": policy_file})
    return prints


def all_jobs(config: StressConfig) -> list[Job]:
    """Every replication, replication-major (an interrupted run has done about as many of every cell)."""
    return [Job(s, p, r) for r in range(config.seeds.count) for s in config.scenarios for p in config.policies]


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

def write_report(out: Path, config: StressConfig, store: ReplicationStore, title: str) -> str:
    """Load every replication, write stress.csv, summary.csv/.md, stores.csv, series.npz and the fan charts (a
    node sweep: node_sweep.csv/.md and the risk matrix instead of the fan charts); return the short table."""
    groups = NodeGroups.of(config.network)
    figures, cell_fans, stores, samples, decisions = {}, {}, [], {}, []
    for scenario, built in config.scenarios.items():
        shock_start = first_shock_start(built.shocks)
        for policy in config.policies:
            reps = [store.load(Job(scenario, policy, r)) for r in range(config.seeds.count)]
            figures[scenario, policy] = [replication_figures(rep, config.settings, shock_start) for rep in reps]
            cell_fans[scenario, policy] = fans(reps)
            stores += store_rows(scenario, policy, reps, groups)
            decisions += [{"scenario": scenario, "policy": policy, "replication": rep.replication, "seed": rep.seed,
                           **d} for rep in reps for d in rep.decisions]
            if config.sweep is not None:
                samples[scenario] = [node_sweep.sample(rep, config.sweep, config.settings.target,
                                                       config.settings.window) for rep in reps]
    summaries = summarize_cells(figures, config.baseline, config.reference, groups.dc_names, groups.regions)
    write_stress_csv(out / "stress.csv", [row for rows in figures.values() for row in rows], groups.dc_names,
                     groups.regions)
    write_summary_csv(out / "summary.csv", summaries)
    (out / "summary.md").write_text(summary_markdown(summaries, config.baseline, config.reference, title,
                                                     config.settings))
    write_stores_csv(out / "stores.csv", stores)
    if decisions:  # a re-planning policy's reviews, every replication's
        with (out / "replan_decisions.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for d in decisions for k in d)))
            writer.writeheader()
            writer.writerows(decisions)
    np.savez_compressed(out / "series.npz", **fan_arrays(cell_fans, list(config.scenarios), list(config.policies),
                                                         groups.dc_names))
    if config.sweep is not None:
        rows = node_sweep.node_rows(samples, config.sweep)
        node_sweep.write_node_sweep(out, rows, config.sweep, title, config.settings.target, config.settings.window,
                                    config.plots)
        return node_sweep.short_table(rows)
    if config.plots:
        for scenario, built in config.scenarios.items():
            name = store.scenario_dirs[scenario]
            plot_network_fans(out / f"fan_{name}.png", f"{title} / {scenario}",
                              {p: cell_fans[scenario, p] for p in config.policies}, built.shocks, config.warmup,
                              config.settings.target)
            if groups.dc_names:
                for policy in config.policies:
                    plot_dc_fans(out / f"fan_{name}_{store.policy_dirs[policy]}_dcs.png",
                                 f"{title} / {scenario} / {policy}", cell_fans[scenario, policy], groups.dc_names,
                                 built.shocks, config.warmup, config.settings.target)
    return short_table(summaries)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

@hydra.main(config_path="../conf", config_name="stress", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Validate, plan (reusing finished replications), run the rest, report."""
    data = plain(cfg)
    out = run_dir()
    with config_errors():
        config = load_stress_config(data)
        setup = stress_setup(config)
        store = ReplicationStore(out / "replications", safe_names(list(config.scenarios)),
                                 safe_names(list(config.policies)), cell_fingerprints(config, setup),
                                 config.seeds.first)
        jobs = all_jobs(config)
        missing = store.missing(jobs)
    out.mkdir(parents=True, exist_ok=True)
    command = f"python -m experiments.stress {' '.join(HydraConfig.get().overrides.task)}"
    for label, scenario in config.scenarios.items():
        write_scenario(out, scenario, command, config.network.name, config.horizon,
                       filename=f"scenario_{store.scenario_dirs[label]}.yaml")
    start = (f", from the {config.start.kind} state of day {config.start.snapshot.day}" if config.start else "")
    if config.sweep is not None:
        log.info("node sweep: %d nodes %s x closures of %s days from day %d (+ the baseline), policy %s",
                 len(config.sweep.nodes), [n.name for n in config.sweep.nodes], list(config.sweep.lengths),
                 config.sweep.start, config.reference)
    log.info("%s: %d scenario(s) %s x %d policies %s x %d replications (seeds %s), %d days%s", config.network.name,
             len(config.scenarios), list(config.scenarios), len(config.policies), list(config.policies),
             config.seeds.count, config.seeds, config.horizon, start)
    reused = len(jobs) - len(missing)
    log.info("reused %d of %d replications already in %s; running %d %s", reused, len(jobs), store.root,
             len(missing), "as Ray tasks" if config.ray.enabled else "in this process")
    # live forecasters log every refit of every replication (as Ray workers' logs, unseen with Ray): the progress
    # line says enough
    logging.getLogger("agents.forecasting.live").setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        run_jobs(setup, missing, store.save, config.ray, Progress(len(jobs), reused))
    except KeyboardInterrupt:
        log.warning("interrupted: the finished replications are kept in %s; run the same command with "
                    "hydra.run.dir=%s to run the rest", store.root, out)
        raise
    ran = time.perf_counter() - started
    title = f"{config.network.name}, {config.seeds.count} replications, seeds {config.seeds}"
    if config.sweep is not None:
        title = f"{config.network.name}, policy {config.reference}, {config.seeds.count} replications, seeds " \
                f"{config.seeds}"
    table = write_report(out, config, store, title)
    report = write_run_report(out, config.settings.target)
    print(table)
    print(f"reused {reused} of {len(jobs)} replications; ran {len(missing)} in {ran:.1f} s"
          + (f" ({ran / len(missing):.3f} s per replication)" if missing else ""))
    print(f"written to {out} (open {report.name} in a browser)")


if __name__ == "__main__":
    run_checked(main)
