"""One disruption playbook for several scenarios: the shock-aware base-stock whose worst cost, relative to the
base-stock tuned on each scenario, is the lowest (a minimax regret ratio).

    python -m experiments.playbook 'scenarios=[covid_2020,port_strike,dc_outage]' workers=2

A planner has to pick one rule before knowing which shock comes. The base-stock tuned on one scenario can cost far
more on another (the one tuned for a long port strike holds a buffer that nearly doubles the calm cost); the
playbook is the rule that is least bad on its worst scenario:

1. per scenario, the static base-stock's z per echelon is tuned on the tuning seeds, as experiments.robustness does
   (coordinate descent over `tune.grid`);
2. the playbook, a shock_aware_base_stock (z per echelon while calm, and while a disruption is in force: it sees a
   shock only once it has begun), is searched by coordinate descent over `search.grid`, minimising the largest
   over the scenarios of its cost on the tuning seeds divided by that scenario's tuned cost. The search starts from
   each scenario's tuned z (calm and disrupted alike: the static base-stock is in the family) and from their
   element-wise maximum, and keeps the best end;
3. the playbook and each scenario's tuned base-stock run on the held-out seeds (common random numbers), paired.

Each scenario's tuned base-stock knows that scenario in hindsight; the playbook is judged against all of them at
once. Writes into the run directory: playbook.yaml (a policy file: experiments.evaluate's `file:`, export),
search.csv (every candidate the search costed, with its ratio on each scenario), playbook.md and playbook.csv (the
held-out comparison). Progress is logged per candidate.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from agents.baselines.catalog import ECHELONS, SHOCK_AWARE, PolicySpec
from agents.baselines.safety import SAFETY_FACTOR_BOUNDS
from agents.baselines.tuner import TuningResult, coordinate_descent, evaluate
from agents.envs.core import EnvConfig, initial_on_hand
from experiments.comparison import METRICS, EvalSetting, Evaluation
from experiments.comparison import evaluate as evaluate_policies
from experiments.scenario_entries import read_scenarios
from experiments.seeds import HELD_OUT_FIRST_SEED, SeedRange
from experiments.startup import config_errors, plain, run_checked, run_dir
from scenarios import Scenario
from twin import SpecError
from twin.config import ConfigReader, check_warmup
from twin.spec import NetworkSpec, network_from_dict

log = logging.getLogger("experiments.playbook")

PLAYBOOK = "playbook"
PARAMETERS = ("calm_store", "calm_dc", "disrupted_store", "disrupted_dc")  # the search's names for its four z


@dataclass(frozen=True)
class PlaybookConfig:
    """What a run needs, checked before any work starts."""

    network: NetworkSpec
    scenarios: dict[str, Scenario]
    tune_grid: tuple[float, ...]
    search_grid: tuple[float, ...]
    tune_seeds: tuple[int, ...]
    tune_rounds: int
    search_rounds: int
    held_out: SeedRange
    horizon: int
    warmup: int
    policy_seed: int
    workers: int


def read_config(data: dict) -> PlaybookConfig:
    """Validate the whole config; one SpecError naming the key on bad input."""
    r = ConfigReader(data, "")
    horizon = r.integer("horizon", 365, low=2, high=10**6)
    warmup = check_warmup(r.integer("warmup", 28, low=0), horizon)
    held_out = SeedRange.read(r, count=10, first=HELD_OUT_FIRST_SEED)
    if len(held_out.seeds) < 2:
        raise SpecError(f"seeds: {len(held_out.seeds)} is not allowed; allowed: at least 2 (the paired 95% CI)")
    t = r.child("tune")
    low, high = SAFETY_FACTOR_BOUNDS
    tune_grid = t.numbers("grid", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0), low=low, high=high)
    if not tune_grid:
        raise SpecError(f"tune.grid: empty; allowed: at least one z value in [{low:g}, {high:g}]")
    n_tune = t.integer("seeds", 2, low=1, high=100)
    first = t.integer("first_seed", 0, low=0)
    tune_rounds = t.integer("max_rounds", 2, low=1, high=20)
    t.done()
    s = r.child("search")
    search_grid = s.numbers("grid", tune_grid, low=low, high=high)
    if not search_grid:
        raise SpecError(f"search.grid: empty; allowed: at least one z value in [{low:g}, {high:g}]")
    search_rounds = s.integer("max_rounds", 2, low=1, high=20)
    s.done()
    network = network_from_dict(r.raw("network"), "network")
    scenarios = read_scenarios(r.sequence("scenarios", ()), network, horizon)
    policy_seed = r.integer("policy_seed", 0, low=0)
    workers = r.integer("workers", 1, low=1, high=64)
    r.done()
    tune_seeds = tuple(range(first, first + n_tune))
    if set(tune_seeds) & set(held_out.seeds):
        raise SpecError(f"tune.first_seed: tuning seeds {tune_seeds[0]}..{tune_seeds[-1]} overlap the held-out "
                        f"seeds {held_out}; allowed: tuning seeds apart from the held-out ones")
    return PlaybookConfig(network, scenarios, tune_grid, tuple(search_grid), tune_seeds, tune_rounds, search_rounds,
                          held_out, horizon, warmup, policy_seed, workers)


Ratios = dict[tuple, dict[str, float]]  # a candidate's four z -> its cost ratio per scenario


@dataclass(frozen=True)
class PlaybookResult:
    """What a run found: the playbook's four z, each scenario's tuned base-stock, every candidate's ratios, the
    search grid's ends the playbook sits on (`at_grid_edge`: its optimum may lie beyond) and the report."""

    params: dict[str, float]
    tuned: dict[str, TuningResult]
    ratios: Ratios
    at_grid_edge: dict[str, str]
    report: str


def static_spec(z: dict[str, float]) -> PolicySpec:
    """The static base-stock with z per echelon."""
    return PolicySpec(name="base_stock", z=dict(z))


def playbook_spec(params: dict[str, float]) -> PolicySpec:
    """The shock-aware base-stock of the search's four z (PARAMETERS)."""
    return PolicySpec(name=SHOCK_AWARE, z={"store": params["calm_store"], "dc": params["calm_dc"]},
                      z_disrupted={"store": params["disrupted_store"], "dc": params["disrupted_dc"]})


def static_start(z: dict[str, float]) -> dict[str, float]:
    """The playbook's four z that make it the static base-stock with z (the same z calm and disrupted)."""
    return {"calm_store": z.get("store", 0.0), "calm_dc": z.get("dc", 0.0),
            "disrupted_store": z.get("store", 0.0), "disrupted_dc": z.get("dc", 0.0)}


def scenario_cost(config: PlaybookConfig, label: str, spec: PolicySpec, initial: np.ndarray) -> float:
    """The policy's mean cost per day on the scenario over the tuning seeds (common random numbers)."""
    policy = spec.build(config.network, config.horizon, config.policy_seed)
    return evaluate(policy, config.network, horizon=config.horizon, seeds=config.tune_seeds,
                    shocks=config.scenarios[label].shocks, warmup=config.warmup, initial_on_hand=initial)


def tune_scenario(config: PlaybookConfig, label: str, initial: np.ndarray) -> TuningResult:
    """The static base-stock's z per echelon tuned on one scenario."""
    echelons = [e for e in ECHELONS if any(n.kind == e for n in config.network.nodes)]
    result = coordinate_descent(lambda z: scenario_cost(config, label, static_spec(z), initial),
                                {e: config.tune_grid for e in echelons}, max_rounds=config.tune_rounds)
    log.info("%s: the base-stock tuned there: z %s, cost per day %.2f", label, result.best, result.best_cost)
    return result


def search(config: PlaybookConfig, tuned: dict[str, TuningResult],
           costs_of: Callable[[PolicySpec], dict[str, float]]) -> tuple[TuningResult, Ratios]:
    """The search's best end (its `best` the playbook's four z, `best_cost` its worst ratio), and every candidate
    costed (its parameters -> ratio per scenario). `costs_of(spec)` gives a policy's tuning-seed cost per
    scenario."""
    ratios: Ratios = {}

    def worst(params: dict[str, float]) -> float:
        key = tuple(params[p] for p in PARAMETERS)
        if key not in ratios:
            costs = costs_of(playbook_spec(params))
            ratios[key] = {label: costs[label] / tuned[label].best_cost for label in tuned}
            log.info("playbook candidate %s: worst ratio %.4f", dict(params), max(ratios[key].values()))
        return max(ratios[key].values())

    grid = {p: config.search_grid for p in PARAMETERS}
    starts = [static_start(t.best) for t in tuned.values()]
    starts.append({p: max(start[p] for start in starts) for p in PARAMETERS})
    best: TuningResult | None = None
    for start in starts:
        result = coordinate_descent(worst, grid, max_rounds=config.search_rounds, start=start)
        if best is None or result.best_cost < best.best_cost:
            best = result
    return best, ratios


def write_search(path: Path, ratios: Ratios) -> None:
    """Every candidate costed, the best (lowest worst ratio) first."""
    labels = list(next(iter(ratios.values())))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*PARAMETERS, *(f"ratio:{label}" for label in labels), "worst_ratio"])
        for key, by_label in sorted(ratios.items(), key=lambda item: max(item[1].values())):
            writer.writerow([*key, *(f"{by_label[label]:.12g}" for label in labels), f"{max(by_label.values()):.12g}"])


def format_report(config: PlaybookConfig, params: dict[str, float], tuned: dict[str, TuningResult],
                  ratios: Ratios, held: dict[str, Evaluation], at_grid_edge: dict[str, str]) -> str:
    """The playbook against each scenario's tuned base-stock on the held-out seeds, and the worst ratios."""
    key = tuple(params[p] for p in PARAMETERS)
    lines = [f"# {config.network.name}: one playbook for {len(held)} scenarios, held-out seeds {config.held_out}", "",
             f"Playbook (shock_aware_base_stock): z store / dc {params['calm_store']:g} / {params['calm_dc']:g} "
             f"while calm, {params['disrupted_store']:g} / {params['disrupted_dc']:g} while a disruption is in force. "
             f"Its worst cost ratio to the base-stock tuned on each scenario, on the tuning seeds "
             f"{list(config.tune_seeds)}: **{max(ratios[key].values()):.3f}**."
             + "".join(f" Its {name} z is the {end} end of search.grid: a wider grid may do better."
                       for name, end in at_grid_edge.items()), "",
             "| scenario | tuned base-stock: z store / dc | cost | fill | playbook: cost | fill | playbook - tuned "
             "(paired) | verdict | tuning-seed ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for label, ev in held.items():
        summary = ev.summary()
        diff = ev.paired(label_tuned(label))[PLAYBOOK]["cost_per_day"]
        ci = diff["ci95"] or 0.0
        verdict = "win" if diff["mean"] + ci < 0 else "loss" if diff["mean"] - ci > 0 else "tie"
        z = tuned[label].best
        t, p = summary[label_tuned(label)], summary[PLAYBOOK]
        digits = 0 if t["cost_per_day"]["mean"] >= 100 else 2
        lines.append(f"| {label} | {z.get('store', 0):g} / {z.get('dc', 0):g} | "
                     f"{t['cost_per_day']['mean']:,.{digits}f} | {t['fill_rate']['mean']:.1%} | "
                     f"{p['cost_per_day']['mean']:,.{digits}f} | {p['fill_rate']['mean']:.1%} | "
                     f"{diff['mean']:+,.{digits}f} ± {ci:,.{digits}f} ({diff['relative']:+.1%}) | {verdict} | "
                     f"{ratios[key][label]:.3f} |")
    lines += ["", "Each scenario's own tuned base-stock, used everywhere: its worst ratio on the tuning seeds "
              "(the search's starts):", ""]
    for label, t in tuned.items():
        start = tuple(static_start(t.best)[p] for p in PARAMETERS)
        if start in ratios:
            lines.append(f"- tuned on {label}: {max(ratios[start].values()):.3f}")
    return "\n".join(lines) + "\n"


def label_tuned(label: str) -> str:
    return f"base-stock tuned on {label}"


def write_held(path: Path, held: dict[str, Evaluation]) -> None:
    """One row per scenario, policy and held-out seed."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scenario", "policy", "seed", *METRICS])
        for label, ev in held.items():
            for policy, metrics in ev.values.items():
                for s, seed in enumerate(ev.seeds):
                    writer.writerow([label, policy, seed, *(f"{metrics[m][s]:.6g}" for m in METRICS)])


def _costs_in_pool(pool, config: PlaybookConfig, initial: np.ndarray) -> Callable[[PolicySpec], dict[str, float]]:
    labels = list(config.scenarios)

    def costs_of(spec: PolicySpec) -> dict[str, float]:
        if pool is None:
            return {label: scenario_cost(config, label, spec, initial) for label in labels}
        futures = [pool.submit(scenario_cost, config, label, spec, initial) for label in labels]
        return {label: f.result() for label, f in zip(labels, futures)}

    return costs_of


def run(config: PlaybookConfig, out: Path) -> PlaybookResult:
    """Tune per scenario, search the playbook, compare on the held-out seeds; write the files."""
    initial = initial_on_hand(EnvConfig(network=config.network))
    pool = (ProcessPoolExecutor(config.workers, mp_context=get_context("spawn")) if config.workers > 1 else None)
    try:
        if pool is None:
            tuned = {label: tune_scenario(config, label, initial) for label in config.scenarios}
        else:
            futures = {label: pool.submit(tune_scenario, config, label, initial) for label in config.scenarios}
            tuned = {label: f.result() for label, f in futures.items()}
        found, ratios = search(config, tuned, _costs_in_pool(pool, config, initial))
    finally:
        if pool is not None:
            pool.shutdown()
    params = dict(found.best)
    for name, end in found.at_grid_edge.items():
        log.warning("the playbook's %s z %g is the %s end of search.grid: a wider grid may find a better one", name,
                    params[name], end)
    out.mkdir(parents=True, exist_ok=True)
    write_search(out / "search.csv", ratios)
    spec = playbook_spec(params)
    key = tuple(params[p] for p in PARAMETERS)
    (out / "playbook.yaml").write_text(
        f"# one playbook for {', '.join(config.scenarios)} on {config.network.name}: worst cost ratio "
        f"{max(ratios[key].values()):.4f} to the base-stock tuned on each (tuning seeds {list(config.tune_seeds)})\n"
        + OmegaConf.to_yaml(OmegaConf.create(spec.to_dict())))
    held: dict[str, Evaluation] = {}
    for label, scenario in config.scenarios.items():
        policies = {PLAYBOOK: spec.build(config.network, config.horizon, config.policy_seed),
                    label_tuned(label): static_spec(tuned[label].best).build(config.network, config.horizon,
                                                                                config.policy_seed)}
        setting = EvalSetting(config.network, tuple(scenario.shocks), config.horizon, config.warmup,
                              config.held_out.seeds, initial)
        held[label] = evaluate_policies(policies, setting)
        log.info("%s: held-out seeds done", label)
    write_held(out / "playbook.csv", held)
    report = format_report(config, params, tuned, ratios, held, found.at_grid_edge)
    (out / "playbook.md").write_text(report)
    return PlaybookResult(params, tuned, ratios, dict(found.at_grid_edge), report)


@hydra.main(config_path="../conf", config_name="playbook", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Validate, then tune, search and compare, and report."""
    with config_errors():
        config = read_config(plain(cfg))
    log.info("%s: a playbook for %s, tuning seeds %s, held-out seeds %s", config.network.name,
             ", ".join(config.scenarios), list(config.tune_seeds), config.held_out)
    out = run_dir()
    print(run(config, out).report)
    print(f"written to {out}")


if __name__ == "__main__":
    run_checked(main)
