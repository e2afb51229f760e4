"""Robustness of a policy to shocks: on every scenario, against the base-stock tuned on that scenario.

    python -m experiments.robustness under_test=checkpoint:RUN/checkpoints/best
    python -m experiments.robustness under_test=checkpoint:RUN/checkpoints/best 'scenarios=[baseline]' seeds=5

For each scenario (the named ones in `scenarios`, then the held-out ones: by default the scenarios the
checkpoint's training never saw, `env.worlds.hold_out` of its run), in this order:

1. the static base-stock's safety factors z per echelon are tuned on that scenario (coordinate descent over
   `tune.grid` on the tuning seeds `tune.first_seed`, ...: never the held-out seeds), as `experiments.tune` does;
2. the policy under test, that tuned base-stock and the `also` policies (the paper's static ROP by default) run
   on the same held-out seeds (common random numbers), and the policy's paired difference to the tuned
   base-stock is taken per seed.

A scenario is a win when the paired 95% CI of the cost difference lies below 0, a loss when above, else a tie.
The tuned base-stock knows the scenario it is tuned on (its shocks, through its tuning runs), which a policy
facing an unforeseen shock does not: it is the strong comparison, not a fair fight (`also` can add the base-stock
tuned on the baseline, what a planner without foresight runs). With `reactive.enabled` (the default) each scenario
also gets the base-stock reacting to disruptions (shock_aware_base_stock): its calm z (`reactive.calm_z`, or the
base-stock tuned with no shocks, once per run) on days without a disruption in force, and its z while disrupted
tuned on the scenario. It sees a shock only once it has begun, as the RL agents' shock flags do: where it loses to
the tuned base-stock, what that one has over it is stock held before the shock began, which only foresight (or
paying to hold it on every calm day) buys.

Writes into the run directory: robustness.csv (per scenario, policy and seed), robustness.md (the table, with the
covid_2020 fill rate against the paper's 95% service; a tuned z at an end of `tune.grid` marked * and warned about,
`agents.baselines.tuner.at_grid_edge`), robustness.png (paired differences with CIs, and fill
rates), and per scenario `scenarios/<folder>/` (its label in letters, digits, - and _) with tuned_policy.yaml,
tuning.csv, scenario.yaml (the shocks as run) and reacting_policy.yaml with reacting_tuning.csv (the reacting
base-stock and its tuning). Progress is logged per tuning candidate and per seed.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from agents.baselines import tune
from agents.baselines.catalog import ECHELONS, SHOCK_AWARE, PolicySpec
from agents.baselines.safety import read_safety_factors
from agents.baselines.tuner import TuningResult
from experiments.comparison import METRICS, EvalSetting, Evaluation, evaluate
from experiments.policy_entries import load_policies, starting_stock
from experiments.run_config import read_tune_options
from experiments.scenario_entries import read_scenarios
from experiments.seeds import HELD_OUT_FIRST_SEED, SeedRange
from experiments.startup import config_errors, plain, run_checked, run_dir, write_scenario
from scenarios import Scenario
from twin import SpecError
from twin.config import ConfigReader, check_warmup
from twin.spec import NetworkSpec, network_from_dict

log = logging.getLogger("experiments.robustness")

TUNED = "base-stock, tuned on the scenario"
REACTIVE = "base-stock reacting to disruptions"
PAPER_COVID_SERVICE = 0.95  # the seed paper's service level under its COVID-2020 scenario


@dataclass(frozen=True)
class ScenarioCase:
    """One scenario the policy is judged on: its label, the scenario as built, whether training held it out, and
    the folder (under scenarios/) its files go to, unique within the run."""

    label: str
    scenario: Scenario
    held_out: bool
    folder: str = ""


@dataclass(frozen=True)
class ScenarioResult:
    """A scenario's tuned base-stock (`tuning`: its z per echelon, tuning cost, evaluations and the z at an end of
    `tune.grid`), with `reactive` the reacting base-stock's tuning, and every policy's figures on its seeds."""

    case: ScenarioCase
    tuning: TuningResult
    evaluation: Evaluation
    reactive: TuningResult | None = None  # the reacting base-stock's z while disrupted, tuned here (`reactive`)

    def difference(self, policy: str) -> dict:
        """The paired difference policy - tuned base-stock of the cost per day: mean, ci95, relative."""
        return self.evaluation.paired(TUNED)[policy]["cost_per_day"]

    def verdict(self, policy: str) -> str:
        """win / loss / tie: where the 95% CI of the paired cost difference lies against 0."""
        diff = self.difference(policy)
        mean, ci = diff["mean"], diff["ci95"] or 0.0
        return "win" if mean + ci < 0 else "loss" if mean - ci > 0 else "tie"


@dataclass(frozen=True)
class RobustnessConfig:
    """What a run needs beside the policies (read_config loads those), checked before any work starts."""

    network: NetworkSpec
    cases: tuple[ScenarioCase, ...]
    grid: tuple[float, ...]
    tune_seeds: tuple[int, ...]
    rounds: int
    held_out: SeedRange
    horizon: int
    warmup: int
    policy_seed: int
    workers: int
    reactive: bool = False
    calm_z: dict[str, float] | None = None  # the reacting base-stock's z while calm; None: tuned on no shocks


def read_config(data: dict) -> tuple[RobustnessConfig, dict[str, object]]:
    """Validate the whole config and load the policies; one SpecError naming the key on bad input."""
    r = ConfigReader(data, "")
    horizon = r.integer("horizon", 365, low=2, high=10**6)
    warmup = check_warmup(r.integer("warmup", 28, low=0), horizon)
    held_out = SeedRange.read(r, count=10, first=HELD_OUT_FIRST_SEED)
    if len(held_out.seeds) < 2:
        raise SpecError(f"seeds: {len(held_out.seeds)} is not allowed; allowed: at least 2 (the verdict rests on the "
                        f"95% CI of the paired differences, which needs two seeds)")
    policy_seed = r.integer("policy_seed", 0, low=0)
    forecast_z = read_safety_factors(r.child("forecast_z"))
    refit_every = r.integer("forecast_refit_every", 7, low=0, high=10**6)
    entry = r.text("under_test", optional=True)
    if not entry:
        raise SpecError("under_test: missing; allowed: the policy under test, as an experiments.evaluate entry "
                        "(checkpoint:DIR, bundle:DIR, file:PATH.yaml, forecast:NAME, a conf/policy name)")
    also = tuple(r.sequence("also", ()))
    tune_data = r.raw("tune") or {}
    if not isinstance(tune_data, Mapping):
        raise SpecError(f"tune: {tune_data!r} is not allowed; allowed: a mapping of grid, seeds, first_seed, "
                        f"max_rounds")
    tune_data = dict(tune_data)
    first_tuning_seed = tune_data.pop("first_seed", 0)
    if not isinstance(first_tuning_seed, int) or isinstance(first_tuning_seed, bool) or first_tuning_seed < 0:
        raise SpecError(f"tune.first_seed: {first_tuning_seed!r} is not allowed; allowed: a whole number >= 0")
    grid, n_tune, rounds = read_tune_options(tune_data)
    network = network_from_dict(r.raw("network"), "network")
    named = read_scenarios(r.sequence("scenarios", ()), network, horizon)
    hold_out_entry = r.raw("hold_out")
    workers = r.integer("workers", 1, low=1, high=64)
    reactive_reader = r.child("reactive")
    reactive = reactive_reader.flag("enabled", True)
    calm = reactive_reader.raw("calm_z")
    calm_z = None if calm is None else read_safety_factors(reactive_reader.child("calm_z"), ECHELONS)
    if calm_z is not None and not reactive:
        raise SpecError(f"reactive.calm_z: {calm!r} with reactive.enabled=false is not allowed; allowed: null (or "
                        f"reactive.enabled=true)")
    reactive_reader.done()
    r.done()
    tune_seeds = tuple(range(first_tuning_seed, first_tuning_seed + n_tune))
    if set(tune_seeds) & set(held_out.seeds):
        raise SpecError(f"tune.first_seed: tuning seeds {tune_seeds[0]}..{tune_seeds[-1]} overlap the held-out "
                        f"seeds {held_out}; allowed: tuning seeds apart from the held-out ones")
    policies = load_policies([entry, *also], network, horizon, policy_seed, forecast_z=forecast_z,
                             forecast_refit_every=refit_every,
                             keys=["under_test", *(f"also[{i}]" for i in range(len(also)))])
    under_test = next(iter(policies.values()))
    held = _held_out_entries(hold_out_entry, under_test)
    key = "the checkpoint's env.worlds.hold_out" if hold_out_entry == "from_policy" else "hold_out"
    cases = [ScenarioCase(label, scenario, held_out=False) for label, scenario in named.items()]
    for scenario in (read_scenarios(held, network, horizon, key=key) if held else {}).values():
        label = f"held out: {scenario.name}"
        while label in [c.label for c in cases]:
            label += "'"
        cases.append(ScenarioCase(label, scenario, held_out=True))
    config = RobustnessConfig(network=network, cases=unique_folders(cases), grid=grid, tune_seeds=tune_seeds,
                              rounds=rounds, held_out=held_out, horizon=horizon, warmup=warmup, policy_seed=policy_seed,
                              workers=workers, reactive=reactive, calm_z=calm_z)
    return config, policies


def _held_out_entries(entry, policy) -> list:
    """`hold_out`: `from_policy` (the checkpoint's env.worlds.hold_out; none for a policy trained without worlds),
    or a list of scenario entries as `scenarios` takes them."""
    if entry == "from_policy":
        setup = getattr(policy, "setup", None)
        worlds = getattr(getattr(setup, "env", None), "worlds", None)
        if worlds is None:
            log.info("hold_out=from_policy: %s was not trained on worlds (only a checkpoint: of a run with "
                     "env.worlds has held-out scenarios); judging the named scenarios only",
                     getattr(policy, "name", "the policy"))
            return []
        # a scenario file held out in training ({name: file, path}) is named by its path here, as in `scenarios`
        return [h["path"] if h.get("name") == "file" else dict(h) for h in worlds.hold_out]
    if entry is None:
        return []
    if isinstance(entry, (list, tuple)):
        return list(entry)
    raise SpecError(f"hold_out: {entry!r} is not allowed; allowed: from_policy (the scenarios the checkpoint's "
                    f"training held out), or a list of scenario names, mappings {{name: ..}} or scenario files")


def tune_policy(config: RobustnessConfig, label: str, shocks, initial_on_hand, spec_of, what: str) -> TuningResult:
    """The safety factors `spec_of(params)` (a PolicySpec) leaves free, tuned per echelon under `shocks` on the
    tuning seeds (common random numbers), as experiments.tune does; logged, with a warning for a z at an end of
    `tune.grid`. `what` names the z tuned in the log."""
    echelons = [e for e in ECHELONS if any(n.kind == e for n in config.network.nodes)]

    def make_policy(params: dict[str, float]):
        return spec_of(dict(params)).build(config.network, config.horizon, config.policy_seed)

    def progress(params: dict[str, float], cost: float) -> None:
        log.info("%s: tuning %s %s: cost per day %.2f", label, what, params, cost)

    result = tune(make_policy, config.network, grid={e: config.grid for e in echelons}, horizon=config.horizon,
                  seeds=config.tune_seeds, shocks=shocks, warmup=config.warmup, max_rounds=config.rounds,
                  initial_on_hand=initial_on_hand, progress=progress)
    log.info("%s: %s %s (cost per day %.2f on the tuning seeds)", label, what, dict(result.best), result.best_cost)
    for echelon, end in result.at_grid_edge.items():
        log.warning("%s: the tuned %s z %g (%s) is the %s end of tune.grid: a wider grid may tune it better",
                    label, echelon, result.best[echelon], what, end)
    return result


def base_stock_spec(z: dict[str, float]) -> PolicySpec:
    """The static base-stock with safety factors `z`: what each scenario's tuning searches."""
    return PolicySpec(name="base_stock", z=z)


def tune_calm_z(config: RobustnessConfig, initial_on_hand) -> dict[str, float]:
    """The reacting base-stock's z while calm: the base-stock tuned with no shocks (what a planner runs before
    any disruption)."""
    return dict(tune_policy(config, "no shocks", (), initial_on_hand, base_stock_spec,
                            "the reacting base-stock's calm z").best)


def run_case(config: RobustnessConfig, policies: dict[str, object], case: ScenarioCase, out: Path,
             command: str) -> ScenarioResult:
    """Tune the base-stock (and the reacting one) on the scenario, then run every policy on the held-out seeds."""
    initial = starting_stock(policies, config.network)
    shocks = case.scenario.shocks
    tuning = tune_policy(config, case.label, shocks, initial, base_stock_spec, "base-stock z")
    tuned = base_stock_spec(dict(tuning.best))
    compared = {**policies, TUNED: tuned.build(config.network, config.horizon, config.policy_seed)}
    reactive, reacting = None, None
    if config.reactive:
        calm_z = config.calm_z if config.calm_z is not None else tune_calm_z(config, initial)
        if shocks:  # its z while disrupted, with calm_z held: the best that reacting to this shock can do
            reactive = tune_policy(config, case.label, shocks, initial,
                                   lambda z: PolicySpec(name=SHOCK_AWARE, z=calm_z, z_disrupted=z),
                                   "the reacting base-stock's z while disrupted")
        reacting = PolicySpec(name=SHOCK_AWARE, z=calm_z, z_disrupted=dict(reactive.best) if reactive else calm_z)
        compared[REACTIVE] = reacting.build(config.network, config.horizon, config.policy_seed)
    setting = EvalSetting(config.network, tuple(shocks), config.horizon, config.warmup, config.held_out.seeds, initial)
    evaluation = evaluate(compared, setting,
                          progress=lambda name, seed: log.info("%s: %s: seed %d done", case.label, name, seed))
    folder = out / "scenarios" / case.folder
    folder.mkdir(parents=True, exist_ok=True)
    write_scenario(folder, case.scenario, command, config.network.name, config.horizon)
    where = f"{config.network.name} / {case.label}, seeds {list(config.tune_seeds)}"
    write_tuning(folder, "tuned_policy.yaml", "tuning.csv", tuned, tuning, f"tuned on {where}")
    if reacting is not None:
        write_tuning(folder, "reacting_policy.yaml", "reacting_tuning.csv", reacting, reactive,
                     f"{REACTIVE}: z while disrupted tuned on {where}, calm z held")
    return ScenarioResult(case, tuning, evaluation, reactive)


def write_tuning(folder: Path, policy_file: str, tuning_file: str, spec: PolicySpec, tuning: TuningResult | None,
                 note: str) -> None:
    """The tuned policy as a policy file (experiments.evaluate's `file:`), headed by `note` and its tuning cost,
    and, where it was tuned (`tuning`), every candidate's cost per day, cheapest first."""
    cost = f": cost per day {tuning.best_cost:.4f}" if tuning is not None else ""
    (folder / policy_file).write_text(f"# {note}{cost}\n" + OmegaConf.to_yaml(OmegaConf.create(spec.to_dict())))
    if tuning is None:
        return
    with (folder / tuning_file).open("w", newline="") as f:
        writer = csv.writer(f)
        names = sorted(tuning.best)
        writer.writerow([*names, "cost_per_day"])
        for params, cost_per_day in sorted(tuning.evaluations, key=lambda item: item[1]):
            values = dict(params)
            writer.writerow([values[n] for n in names] + [cost_per_day])


def unique_folders(cases: list[ScenarioCase]) -> tuple[ScenarioCase, ...]:
    """Each case with a folder name from its label (letters, digits, - and _), `_2`, `_3`... where two collide."""
    done: list[ScenarioCase] = []
    for case in cases:
        base = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case.label).strip("_") or "scenario"
        folder, n = base, 1
        while folder in {c.folder for c in done}:
            n += 1
            folder = f"{base}_{n}"
        done.append(dataclasses.replace(case, folder=folder))
    return tuple(done)


def run_case_in_worker(data: dict, index: int, out: str, command: str) -> ScenarioResult:
    """`run_case` for the index-th scenario in a worker process, which reads the config and loads the policies
    itself (a trained policy is not sent between processes)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(levelname)s] %(message)s", datefmt="%H:%M:%S")
    config, policies = read_config(data)
    return run_case(config, policies, config.cases[index], Path(out), command)


def write_csv(path: Path, results: list[ScenarioResult]) -> None:
    """One row per scenario, policy and seed, with whether the scenario was held out of training."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scenario", "held_out", "policy", "seed", *METRICS])
        for res in results:
            for policy, metrics in res.evaluation.values.items():
                for s, seed in enumerate(res.evaluation.seeds):
                    writer.writerow([res.case.label, res.case.held_out, policy, seed,
                                     *(f"{metrics[m][s]:.6g}" for m in METRICS)])


def format_report(results: list[ScenarioResult], policy: str, title: str) -> str:
    """The table: per scenario, the policy against the base-stock tuned there, paired, and the verdict."""
    others = _others(results, policy)
    lines = [f"# {title}", "",
             f"Policy under test: `{policy}`. Per day, mean ± 95% CI over the held-out seeds; the difference is "
             f"paired per seed (common random numbers) against the base-stock tuned on each scenario.", "",
             "| scenario | held out of training | policy: cost | fill | tuned base-stock: z store / dc | cost | fill "
             "| policy - tuned | verdict |" + "".join(f" {p}: cost |" for p in others),
             "|---|---|---|---|---|---|---|---|---|" + "---|" * len(others)]
    for res in results:
        summary = res.evaluation.summary()
        mine, tuned = summary[policy], summary[TUNED]
        diff = res.difference(policy)
        z, digits = _z_text(res.tuning), _digits(res)
        lines.append(f"| {res.case.label} | {'yes' if res.case.held_out else 'no'} | "
                     f"{_pm(mine['cost_per_day'], digits)} | {mine['fill_rate']['mean']:.1%} | {z} | "
                     f"{_pm(tuned['cost_per_day'], digits)} | {tuned['fill_rate']['mean']:.1%} | "
                     f"{_diff_text(diff, digits)} | {res.verdict(policy)} |"
                     + "".join(f" {_pm(summary[p]['cost_per_day'], digits)} |" for p in others))
    verdicts = [res.verdict(policy) for res in results]
    lines += ["", f"Wins {verdicts.count('win')}, ties {verdicts.count('tie')}, losses {verdicts.count('loss')} "
              f"of {len(results)} scenarios (win: the paired CI of the cost difference lies below 0)."]
    if any(res.tuning.at_grid_edge for res in results):
        lines.append("z marked * is an end of `tune.grid`: the base-stock's optimum may lie beyond it (widen the grid "
                     "to tune it fully).")
    covid = [res for res in results if res.case.scenario.name == "covid_2020" and not res.case.held_out]
    for res in covid:
        fill = res.evaluation.summary()[policy]["fill_rate"]
        lines.append(f"Under {res.case.label} the policy's fill rate is {fill['mean']:.1%} ± {fill['ci95'] or 0:.1%} "
                     f"against the paper's {PAPER_COVID_SERVICE:.0%} service.")
    lines += _reactive_report(results)
    return "\n".join(lines) + "\n"


def _reactive_report(results: list[ScenarioResult]) -> list[str]:
    """The reacting base-stock against the tuned one per scenario: can a policy that only reacts to a shock (no
    foresight) match one that holds for it all along?"""
    if not results or REACTIVE not in results[0].evaluation.policies:
        return []
    lines = ["", f"**{REACTIVE}** (shock_aware_base_stock: its calm z on every day without a disruption in force, "
             "its z while disrupted tuned on each scenario; it sees a shock only once it has begun), against the "
             "base-stock tuned on each scenario, paired:", "",
             "| scenario | z while disrupted: store / dc | cost | fill | reacting - tuned | verdict |",
             "|---|---|---|---|---|---|"]
    for res in results:
        summary, digits = res.evaluation.summary()[REACTIVE], _digits(res)
        diff = res.difference(REACTIVE)
        z = "no disruption" if res.reactive is None else _z_text(res.reactive)
        lines.append(f"| {res.case.label} | {z} | {_pm(summary['cost_per_day'], digits)} | "
                     f"{summary['fill_rate']['mean']:.1%} | {_diff_text(diff, digits)} | {res.verdict(REACTIVE)} |")
    return lines


def _others(results: list[ScenarioResult], policy: str) -> list[str]:
    return [p for p in results[0].evaluation.policies if p not in (policy, TUNED, REACTIVE)] if results else []


def _digits(res: ScenarioResult) -> int:
    """Decimals for a scenario's costs: none for a network's (the tuned base-stock's >= 100 per day), 2 for a
    small one's."""
    return 0 if abs(res.evaluation.summary()[TUNED]["cost_per_day"]["mean"]) >= 100 else 2


def _z_text(tuning: TuningResult) -> str:
    """A tuning's z per echelon, store / dc, an end of the grid marked *."""
    return " / ".join(f"{tuning.best[e]:g}{'*' if e in tuning.at_grid_edge else ''}" for e in ECHELONS
                      if e in tuning.best)


def _diff_text(diff: dict, digits: int) -> str:
    """A paired difference: mean ± its 95% CI (relative)."""
    return f"{diff['mean']:+,.{digits}f} ± {diff['ci95'] or 0:,.{digits}f} ({diff['relative']:+.1%})"


def _pm(s: dict, digits: int) -> str:
    return f"{s['mean']:,.{digits}f} ± {s['ci95'] or 0:,.{digits}f}"


def plot(path: Path, results: list[ScenarioResult], policy: str, title: str) -> None:
    """Left: the paired cost difference to the tuned base-stock, in % of its cost, with 95% CIs (held-out
    scenarios hatched; the reacting base-stock's as a diamond, where run); right: fill rates, with the paper's 95%
    service."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [res.case.label for res in results]
    y = np.arange(len(results))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.6 * len(results) + 1.8), sharey=True)
    colours = {"win": "tab:green", "tie": "tab:gray", "loss": "tab:red"}
    for yi, res in zip(y, results):
        diff = res.difference(policy)
        base = res.evaluation.summary()[TUNED]["cost_per_day"]["mean"]
        left.barh(yi + 0.1, 100 * diff["mean"] / base, height=0.5, xerr=100 * (diff["ci95"] or 0) / base,
                  color=colours[res.verdict(policy)], hatch="//" if res.case.held_out else None, capsize=3)
        summary = res.evaluation.summary()
        right.scatter(100 * summary[policy]["fill_rate"]["mean"], yi + 0.12, marker="o", color="tab:blue",
                      label=policy if yi == y[0] else None)
        right.scatter(100 * summary[TUNED]["fill_rate"]["mean"], yi - 0.12, marker="s", color="tab:orange",
                      label=TUNED if yi == y[0] else None)
        if REACTIVE in summary:
            reacting = res.difference(REACTIVE)
            left.errorbar(100 * reacting["mean"] / base, yi - 0.28, xerr=100 * (reacting["ci95"] or 0) / base,
                          fmt="D", color="tab:purple", markersize=5, capsize=2, label=REACTIVE if yi == y[0] else None)
            right.scatter(100 * summary[REACTIVE]["fill_rate"]["mean"], yi - 0.28, marker="D", color="tab:purple",
                          s=16, label=REACTIVE if yi == y[0] else None)
    left.axvline(0, color="black", lw=0.8)
    left.set_yticks(y, labels)
    left.set_xlabel("cost per day vs the tuned base-stock, % (paired 95% CI); hatched: held out of training")
    if left.get_legend_handles_labels()[0]:
        left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)
    right.axvline(100 * PAPER_COVID_SERVICE, color="black", ls="--", lw=0.8, label="paper's service under covid")
    right.set_xlabel("fill rate, %")
    right.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@hydra.main(config_path="../conf", config_name="robustness", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Validate, then tune and evaluate scenario by scenario, and report."""
    with config_errors():
        config, policies = read_config(plain(cfg))
    policy = next(iter(policies))
    data = plain(cfg)
    if config.reactive and config.calm_z is None:  # tuned once here, not in every scenario (or worker)
        config = dataclasses.replace(config, calm_z=tune_calm_z(config, starting_stock(policies, config.network)))
        data["reactive"] = {**(data.get("reactive") or {}), "calm_z": config.calm_z}
        log.info("the reacting base-stock's z while calm, tuned with no shocks: %s", config.calm_z)
    log.info("%s on %s: %d scenarios (%d held out of training), held-out seeds %s, tuning seeds %s",
             policy, config.network.name, len(config.cases), sum(c.held_out for c in config.cases),
             config.held_out, list(config.tune_seeds))
    out = run_dir()
    out.mkdir(parents=True, exist_ok=True)
    title = f"{config.network.name}: {policy} against the base-stock tuned per scenario, seeds {config.held_out}"
    command = f"python -m experiments.robustness {' '.join(HydraConfig.get().overrides.task)}"
    done: dict[int, ScenarioResult] = {}

    def finished(index: int, result: ScenarioResult) -> None:
        done[index] = result
        log.info("scenario %d of %d done: %s", len(done), len(config.cases), result.case.label)
        results = [done[i] for i in sorted(done)]  # written as scenarios finish: a stopped run keeps them
        write_csv(out / "robustness.csv", results)
        (out / "robustness.md").write_text(format_report(results, policy, title))

    if config.workers == 1:
        for i, case in enumerate(config.cases):
            log.info("scenario %d of %d: %s", i + 1, len(config.cases), case.label)
            finished(i, run_case(config, policies, case, out, command))
    else:
        failure: BaseException | None = None
        with ProcessPoolExecutor(min(config.workers, len(config.cases)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_case_in_worker, data, i, str(out), command): i
                       for i in range(len(config.cases))}
            for future in as_completed(futures):
                if future.cancelled():  # after another scenario failed
                    continue
                try:
                    finished(futures[future], future.result())
                except Exception as exc:  # keep what finished; start no other scenario
                    log.error("%s failed: %s", config.cases[futures[future]].label, exc)
                    pool.shutdown(wait=False, cancel_futures=True)
                    failure = failure or exc
        if failure is not None:
            raise failure
    results = [done[i] for i in sorted(done)]
    plot(out / "robustness.png", results, policy, title)
    print(format_report(results, policy, title))
    print(f"written to {out}")


if __name__ == "__main__":
    run_checked(main)
