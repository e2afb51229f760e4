"""Tune a baseline policy's safety factors per echelon on the twin, with common random numbers.

    python -m experiments.tune                                   # base_stock on paper_5x20, baseline
    python -m experiments.tune policy=rop scenario=covid_2020 tune.seeds=3

Every candidate z (per echelon: store, dc) is evaluated on the same seeds, so
candidates differ only by policy. Writes tuned_policy.yaml (usable as a
conf/policy file), tuning.csv (every evaluation) and scenario.yaml (the scenario's
shocks as run, a scenario file) into the run directory.
"""

from __future__ import annotations

import csv
import dataclasses
import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from agents.baselines import tune
from agents.baselines.catalog import ECHELONS
from experiments.run_config import load_config, read_tune_options
from experiments.seeds import SeedRange
from experiments.startup import config_errors, plain, run_checked, run_dir, write_scenario
from twin import SpecError

log = logging.getLogger("experiments.tune")


@hydra.main(config_path="../conf", config_name="tune", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Validate, tune, and write the tuned policy."""
    resolved = plain(cfg)
    with config_errors():
        grid, n_seeds, rounds = read_tune_options(resolved.pop("tune", None))
        config = load_config(resolved)
        if config.output.snapshot_days:
            raise SpecError("output.snapshot_days: experiments.tune writes no snapshots; allowed: [] (write them "
                            "with experiments.simulate)")
    echelons = [e for e in ECHELONS if any(n.kind == e for n in config.network.nodes)]
    seeds = list(SeedRange(config.seed, n_seeds).seeds)  # the simulation's own seeds: tuning is not held out
    log.info("tuning %s z over %s on %s / %s, seeds %s", config.policy_spec.name, echelons, config.network.name,
             config.scenario.name, seeds)

    def make_policy(params: dict[str, float]):
        spec = dataclasses.replace(config.policy_spec, z={**config.policy_spec.z, **params})
        return spec.build(config.network, config.horizon, config.seed, config.demand)

    def progress(params: dict[str, float], cost: float) -> None:
        log.info("z %s: cost per day %.2f", params, cost)

    result = tune(make_policy, config.network, grid={e: grid for e in echelons}, horizon=config.horizon,
                  seeds=seeds, shocks=config.scenario.shocks, warmup=config.warmup, max_rounds=rounds,
                  start=config.start, initial_on_hand=config.initial_on_hand, demand=config.demand,
                  progress=progress)
    out = run_dir()
    out.mkdir(parents=True, exist_ok=True)
    command = f"python -m experiments.tune {' '.join(HydraConfig.get().overrides.task)}"
    write_scenario(out, config.scenario, command, config.network.name, config.horizon)
    tuned = dataclasses.replace(config.policy_spec, z={**config.policy_spec.z, **result.best}).to_dict()
    (out / "tuned_policy.yaml").write_text(
        f"# tuned on {config.network.name} / {config.scenario.name}, seeds {seeds}: cost per day "
        f"{result.best_cost:.4f}\n" + OmegaConf.to_yaml(OmegaConf.create(tuned)))
    with (out / "tuning.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*echelons, "cost_per_day"])
        for params, cost in sorted(result.evaluations, key=lambda item: item[1]):
            values = dict(params)
            writer.writerow([values[e] for e in echelons] + [cost])
    print(f"best z {result.best} for {config.policy_spec.name}: cost per day {result.best_cost:,.2f} "
          f"({len(result.evaluations)} candidates x {len(seeds)} seeds); written to {out / 'tuned_policy.yaml'}")
    for echelon, end in result.at_grid_edge.items():
        print(f"note: the best {echelon} z {result.best[echelon]:g} is the {end} of tune.grid; a wider grid may "
              f"find a lower cost")


if __name__ == "__main__":
    run_checked(main)
