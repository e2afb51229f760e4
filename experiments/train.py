"""Train an RL agent on the twin with RLlib (PPO or DQN), checkpoint, log learning curves, evaluate.

    python -m experiments.train agent=ppo network=paper_5x20 scenario=baseline seed=0
    python -m experiments.train agent=dqn case=tests/reference_cases/case_base_stock_SS_example_4_4_L4.json
    python -m experiments.train -m agent=ppo,dqn seed=0,1,2

The run directory (Hydra's, `hydra.run.dir=DIR`) holds checkpoints/iter_NNNNNN
(the last `keep_checkpoints`, `checkpoints/latest` pointing at the newest),
learning_curve.csv and .png, TensorBoard event files in tensorboard/ (`tensorboard --logdir RUN`: the
curve's fields per iteration, the validation cost per validation) and evaluation.md/.csv/.png. Started again
with the same run directory, training resumes from the latest checkpoint.

The main returns the objective, so `-m hydra/sweeper=optuna` can tune any key: the best checkpoint's validation
cost per day with validation on, else the held-out evaluation's cost per day (per period on a case).
`python -m experiments.sweep` runs trials concurrently with Ray Tune instead (ASHA early stopping).

With `validation.enabled=true` every checkpoint's greedy policy is scored on
validation seeds (apart from the held-out evaluation seeds; the same seeds for
every checkpoint), `checkpoints/best` points at the cheapest and is the one
evaluated at the end (validation.csv; the lower panel of learning_curve.png).
Validation runs count as training time for `stop.minutes`.

With `case=PATH.json` (a single-stage reference case) the single-node Gymnasium
env is trained, and the learned policy's cost per period is compared with the
case's optimal cost, both analytically and paired with the optimal policy on the
same held-out seeds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from agents.baselines.catalog import optimal_policy
from experiments.comparison import evaluate, format_report, plot_comparison
from experiments.startup import config_errors, plain, run_checked, run_dir
from experiments.training import (
    RunDirectory,
    TrainConfig,
    best_validation_cost,
    eval_setting,
    load_train_config,
    train,
)

log = logging.getLogger("experiments.train")


def evaluate_case(config: TrainConfig, checkpoint: Path, out: Path) -> dict[str, float]:
    """Learned policy vs the case's optimum on held-out seeds: analytic gap and paired gap to the optimal policy."""
    from agents.rl.policy import TrainedPolicy

    case, ev = config.case, config.evaluation
    network = case.network()
    learned = TrainedPolicy.from_checkpoint(checkpoint, name=config.agent.name)
    optimal = optimal_policy(case, network)
    seeds = ev["held_out"].seeds
    setting = eval_setting(config, learned.initial_on_hand, seeds, ev["case_horizon"])
    evaluation = evaluate({config.agent.name: learned, "optimal_policy": optimal}, setting)
    evaluation.write_csv(out / "evaluation.csv")
    summary = evaluation.summary()[config.agent.name]["cost_per_day"]
    paired = evaluation.paired("optimal_policy")[config.agent.name]["cost_per_day"]
    figures = {"learned_cost": summary["mean"], "learned_ci95": summary["ci95"], "optimal_cost": case.optimal_cost,
               "gap": summary["mean"] / case.optimal_cost - 1.0,
               "paired_gap": paired["relative"], "paired_gap_ci95": (paired["ci95"] or 0.0) / (
                   float(evaluation.values["optimal_policy"]["cost_per_day"].mean()))}
    (out / "evaluation.json").write_text(json.dumps(figures, indent=1))
    ci = figures["learned_ci95"] or 0.0
    print(f"{case.case_id}: learned {config.agent.name} policy costs {figures['learned_cost']:.4f} ± {ci:.4f} per "
          f"period over {len(seeds)} held-out seeds x {ev['case_horizon']} periods; optimal {case.optimal_cost:.4f}; "
          f"gap {figures['gap']:+.2%} (paired with the optimal policy on the same seeds: "
          f"{figures['paired_gap']:+.2%} ± {figures['paired_gap_ci95']:.2%})")
    return figures


def evaluate_network(config: TrainConfig, checkpoint: Path, out: Path) -> float:
    """Learned policy vs the baselines on held-out seeds (common random numbers); report and plot. Returns the
    learned policy's mean cost per day."""
    from agents.rl.policy import TrainedPolicy

    env, ev = config.setup.env, config.evaluation
    learned = TrainedPolicy.from_checkpoint(checkpoint, name=config.agent.name)
    seeds = ev["held_out"].seeds
    policies = {config.agent.name: learned}
    for spec in config.baselines:
        policies[spec.name] = spec.build(env.network, ev["horizon"], config.seed)
    setting = eval_setting(config, learned.initial_on_hand, seeds, ev["horizon"])
    evaluation = evaluate(policies, setting, progress=lambda name, seed: log.info("evaluated %s on seed %d",
                                                                                    name, seed))
    evaluation.write_csv(out / "evaluation.csv")
    report = format_report(evaluation, ev["reference"])
    (out / "evaluation.md").write_text(report + "\n")
    plot_comparison(evaluation, ev["reference"], out / "evaluation.png",
                    f"{env.network.name} / {env.scenario}: {len(seeds)} held-out seeds")
    print(report)
    return float(evaluation.summary()[config.agent.name]["cost_per_day"]["mean"])


def objective(config: TrainConfig, run: RunDirectory, evaluated: float) -> tuple[float, str]:
    """What a sweep minimises, and where it comes from: the best checkpoint's validation cost per day with
    validation on (validation seeds: tuning never sees the held-out ones), else `evaluated`, the held-out
    evaluation's cost per day (per period on a case)."""
    if config.validation is not None:
        cost = best_validation_cost(run)
        if cost is not None:
            return cost, f"validation cost per day of checkpoints/best ({run.best.name})"
    unit = "period" if config.case is not None else "day"
    return float(evaluated), f"held-out evaluation cost per {unit} (validation.enabled=false)"


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Validate, train (or resume), evaluate; return the objective (`objective`: Hydra's sweepers, Optuna's
    included, minimise it)."""
    with config_errors():
        config = load_train_config(plain(cfg))
    out = run_dir()
    run = RunDirectory(out, config.keep_checkpoints)
    with config_errors():  # a run directory that holds another run's checkpoints
        checkpoint = train(config, run)
    if config.case is not None:
        evaluated = evaluate_case(config, checkpoint, out)["learned_cost"]
    else:
        evaluated = evaluate_network(config, checkpoint, out)
    value, source = objective(config, run, evaluated)
    print(f"objective: {value:.6f} ({source})")
    if config.case is None and config.setup.env.worlds is not None:
        print(f"robustness on every scenario and those held out of training: python -m experiments.robustness "
              f"under_test=checkpoint:{checkpoint}")
    print(f"run directory: {out}")
    return value


if __name__ == "__main__":
    run_checked(main)
