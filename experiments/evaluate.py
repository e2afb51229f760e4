"""Evaluate any set of policies on the twin with common random numbers and paired confidence intervals.

    python -m experiments.evaluate 'policies=[checkpoint:outputs/train/RUN/checkpoints/latest,base_stock,rop]'
    python -m experiments.evaluate scenario=covid_2020 'policies=[file:outputs/tune/RUN/tuned_policy.yaml,rop]'
    python -m experiments.evaluate case=tests/reference_cases/case_base_stock_SS_example_4_4_L4.json \
        'policies=[checkpoint:RUN/checkpoints/latest,optimal]' reference=optimal horizon=20000

Policies: conf/policy names (static levels from the demand model, default safety factors), policy files
(`file:PATH.yaml`, e.g. a tuned policy), training checkpoints (`checkpoint:DIR`), bundles (`bundle:DIR`), the
decision service (`service:URL`), the forecast-driven base-stock with a live forecaster (`forecast:lstm`,
`forecast:oracle`, `forecast:seasonal_naive`...; safety factors `forecast_z`, and `forecast_z_disrupted` while a
disruption is in force), rolling re-planning (`replan`, or `replan:NAME` with live forecaster NAME; settings
`replan.every`, `replan.paths`, `replan.lookahead`, `replan.grid`, `replan.fill_target`...: conf/evaluate.yaml),
and, on a reference case, `optimal` (the case's optimal policy).
Every policy starts from the same stock and runs on the same seeds.
Writes evaluation.csv (per policy and seed), evaluation.md (tables), evaluation.png, replan_decisions.csv (every
review of a `replan` policy, per seed: day, chosen z per echelon, the paths' expected fill rate and cost) and, but
on a case, scenario.yaml (the scenario's shocks as run: a scenario file, scenarios/files.py) into the run directory.
A scenario file runs as `scenario=path/to/file.yaml`.
"""

from __future__ import annotations

import csv
import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

import scenarios
from agents.baselines.replan import ReplanSpec, decision_rows
from agents.baselines.safety import read_safety_factors
from experiments.comparison import EvalSetting, evaluate, format_report, plot_comparison
from experiments.policy_entries import load_policies, starting_stock
from experiments.seeds import HELD_OUT_FIRST_SEED, SeedRange
from experiments.startup import config_errors, plain, run_checked, run_dir, write_scenario
from scenarios.reference import load_case
from twin import SpecError
from twin.config import ConfigReader, check_warmup
from twin.demand_history import demand_source_from_dict
from twin.spec import network_from_dict

log = logging.getLogger("experiments.evaluate")


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Validate, run every policy on the held-out seeds, report."""
    data = plain(cfg)
    with config_errors():
        r = ConfigReader(data, "")
        horizon = r.integer("horizon", 365, low=2, high=10**6)
        warmup = check_warmup(r.integer("warmup", 28, low=0), horizon)
        held_out = SeedRange.read(r, count=10, first=HELD_OUT_FIRST_SEED)
        policy_seed = r.integer("policy_seed", 0, low=0)
        reference = r.text("reference", "rop")
        forecast_z = read_safety_factors(r.child("forecast_z"))
        forecast_z_disrupted = (read_safety_factors(r.child("forecast_z_disrupted"), defaults=forecast_z)
                                if r.raw("forecast_z_disrupted") is not None else None)
        refit_every = r.integer("forecast_refit_every", 7, low=0, high=10**6)
        replan = ReplanSpec.from_dict(r.raw("replan"), "replan")
        case_path = r.raw("case")
        entries = r.sequence("policies", ())
        network_data, scenario_data = r.raw("network"), dict(r.raw("scenario") or {})
        demand_data = r.raw("demand")
        r.done()
        case = load_case(to_absolute_path(str(case_path))) if case_path is not None else None
        network = case.network() if case else network_from_dict(network_data, "network")
        scenario = None if case else scenarios.build(scenario_data.pop("name", "baseline"), network, horizon,
                                                     **scenario_data)
        scenario_name, shocks = (scenario.name, scenario.shocks) if scenario else ("baseline", ())
        if case and (demand_data or {}).get("mode", "model") != "model":
            raise SpecError("demand: a reference case runs its own demand law; allowed: demand=model with case=PATH")
        demand = None if case else demand_source_from_dict(demand_data, network, horizon)
        policies = load_policies(entries, network, horizon, policy_seed, case, forecast_z, replan, demand,
                                  forecast_refit_every=refit_every, forecast_z_disrupted=forecast_z_disrupted)
        if reference not in policies:
            raise SpecError(f"reference: {reference!r} is not among the policies {list(policies)}")
    seeds = held_out.seeds
    setting = EvalSetting(network, tuple(shocks), horizon, warmup, seeds, starting_stock(policies, network), demand)
    log.info("evaluating %s on %s / %s, seeds %s", list(policies), network.name, scenario_name, held_out)
    evaluation = evaluate(policies, setting, progress=lambda name, seed: log.info("%s: seed %d done", name, seed))
    out = run_dir()
    out.mkdir(parents=True, exist_ok=True)
    if scenario is not None:
        command = f"python -m experiments.evaluate {' '.join(HydraConfig.get().overrides.task)}"
        write_scenario(out, scenario, command, network.name, horizon)
    evaluation.write_csv(out / "evaluation.csv")
    decisions = decision_rows(policies)
    if decisions:
        with (out / "replan_decisions.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(decisions[0]))
            writer.writeheader()
            writer.writerows(decisions)
    report = format_report(evaluation, reference)
    (out / "evaluation.md").write_text(f"# {network.name} / {scenario_name}, seeds {held_out}\n\n"
                                       + report + "\n")
    plot_comparison(evaluation, reference, out / "evaluation.png",
                    f"{network.name} / {scenario_name}: {len(seeds)} held-out seeds")
    print(report)
    print(f"written to {out}")


if __name__ == "__main__":
    run_checked(main)
