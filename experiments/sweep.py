"""Sweep the training config with Ray Tune: trials side by side, optional ASHA early stopping, a ranked table.

    python -m experiments.sweep network=small 'sweep.grid={seed: [0, 1, 2], agent.lr: [0.0001, 0.0003]}'
    python -m experiments.sweep sweep.scheduler=asha sweep.asha.grace_period=10 stop.iterations=200
    python -m experiments.sweep validation.enabled=true sweep.metric=validation_cost_per_day

Every combination of `sweep.grid` (keys of conf/train.yaml in Hydra's override syntax, groups such as `agent`
included) is composed and checked before Ray starts (a bad key or value: one `config error:` line naming the grid
point, exit status 2). Each trial runs the training loop `experiments.train` runs (experiments/training.py: `train`,
the same checkpoints, resume, learning curve and TensorBoard files) in its own directory RUN/trials/TRIAL, and
reports each iteration to Tune (`tune.report`): the learning-curve row, with `validation_cost_per_day` at each
validated checkpoint. The metric is `episode_return_mean` (maximised, every iteration) or `validation_cost_per_day`
(minimised, at each checkpoint). Tune's own loggers add result.json, progress.csv and event files to each trial's
directory, so `tensorboard --logdir RUN` shows every trial. At the end RUN/results.csv and results.md rank the
trials by the best metric each reached. There is no held-out evaluation here (tuning must not see the held-out
seeds): evaluate the winner's checkpoint with experiments.evaluate.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.startup import config_errors, plain, run_checked, run_dir
from experiments.training import RunDirectory, TrainConfig, init_ray, load_train_config, train
from twin import SpecError
from twin.config import ConfigReader

log = logging.getLogger("experiments.sweep")
METRICS = {"episode_return_mean": "max", "validation_cost_per_day": "min"}
SCHEDULERS = ("fifo", "asha")
DEFAULT_GRID = {"seed": [0, 1]}


@dataclass(frozen=True)
class SweepOptions:
    """The `sweep` block, checked."""

    grid: dict[str, tuple[Any, ...]]
    num_samples: int
    max_concurrent_trials: int | None
    cpus_per_trial: int
    num_cpus: int | None
    metric: str
    scheduler: str
    grace_period: int
    reduction_factor: int
    max_t: int | None

    @property
    def mode(self) -> str:
        return METRICS[self.metric]


def read_sweep_options(data: Any) -> SweepOptions:
    r = ConfigReader(data, "sweep")
    grid_data = r.raw("grid")
    grid_data = DEFAULT_GRID if grid_data is None else grid_data
    if not isinstance(grid_data, dict):
        raise SpecError(f"sweep.grid: {grid_data!r} is not allowed; allowed: a mapping of train config keys to "
                        f"lists of values")
    grid = {}
    for key, values in grid_data.items():
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values:
            raise SpecError(f"sweep.grid.{key}: empty; allowed: at least one value")
        if key in ("sweep", "hydra") or str(key).startswith(("sweep.", "hydra.")):
            raise SpecError(f"sweep.grid.{key}: not allowed; allowed: keys of the train config (conf/train.yaml)")
        grid[str(key)] = values
    num_samples = r.integer("num_samples", 1, low=1, high=1000)
    concurrent = r.integer("max_concurrent_trials", 0, low=1) if r.raw("max_concurrent_trials") is not None else None
    cpus = r.integer("cpus_per_trial", 1, low=1, high=256)
    num_cpus = r.integer("num_cpus", 0, low=1, high=4096) if r.raw("num_cpus") is not None else None
    metric = r.text("metric", "episode_return_mean")
    if metric not in METRICS:
        raise SpecError(f"sweep.metric: {metric!r} is not allowed; allowed: {', '.join(METRICS)}")
    scheduler = r.text("scheduler", "fifo")
    if scheduler not in SCHEDULERS:
        raise SpecError(f"sweep.scheduler: {scheduler!r} is not allowed; allowed: {', '.join(SCHEDULERS)}")
    a = r.child("asha")
    grace = a.integer("grace_period", 2, low=1)
    factor = a.integer("reduction_factor", 2, low=2)
    max_t = a.integer("max_t", 0, low=1) if a.raw("max_t") is not None else None
    a.done()
    r.done()
    return SweepOptions(grid=grid, num_samples=num_samples, max_concurrent_trials=concurrent, cpus_per_trial=cpus,
                        num_cpus=num_cpus, metric=metric, scheduler=scheduler, grace_period=grace,
                        reduction_factor=factor, max_t=max_t)


def _override_value(value: Any) -> str:
    """A grid value in Hydra's override syntax (strings as they are: a group option, a number, a path)."""
    return value if isinstance(value, str) else json.dumps(value)


def grid_points(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combination)) for combination in itertools.product(*(grid[k] for k in keys))]


def point_key(point: dict[str, Any]) -> str:
    """The one name of a grid point (Tune hands a trial its values; this finds the trial's composed config)."""
    return json.dumps(point, sort_keys=True, default=str)


def compose_point(point: dict[str, Any], command_line: list[str]) -> tuple[dict, TrainConfig]:
    """The train config of one grid point, composed by Hydra as `python -m experiments.train` would, and checked
    (a SpecError naming the point); with the case path made absolute, since a trial runs in its own directory."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    where = "sweep.grid " + ", ".join(f"{k}={_override_value(v)}" for k, v in point.items())
    try:
        cfg = compose(config_name="sweep", overrides=[*command_line,
                                                      *(f"{k}={_override_value(v)}" for k, v in point.items())])
    except (HydraException, OmegaConfBaseException) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        message = lines[0].rstrip(".")
        if any("is not in struct" in line for line in lines):
            message += " (no such key)"
        raise SpecError(f"{where}: {message}; allowed: keys and options of the train config (conf/train.yaml)") \
            from None
    data = plain(cfg)
    data.pop("sweep", None)
    if data.get("case") is not None:
        data["case"] = str(Path(hydra.utils.to_absolute_path(str(data["case"]))))
    try:
        config = load_train_config(data)
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None
    return data, config


def check_metric(options: SweepOptions, config: TrainConfig) -> int | None:
    """The metric needs validation when it is the validation cost; ASHA needs a horizon in iterations.
    Returns ASHA's max_t (None for fifo)."""
    if options.metric == "validation_cost_per_day" and config.validation is None:
        raise SpecError("sweep.metric: 'validation_cost_per_day' needs validation; allowed: validation.enabled=true, "
                        "or sweep.metric=episode_return_mean")
    if options.scheduler != "asha":
        return None
    max_t = options.max_t or config.stop.iterations
    if max_t is None:
        raise SpecError("sweep.asha.max_t: null and stop.iterations is null; allowed: a number of iterations in one "
                        "of them (ASHA's rungs are counted in training iterations)")
    if options.grace_period > max_t:
        raise SpecError(f"sweep.asha.grace_period: {options.grace_period} is more than allowed; allowed: "
                        f"1..{max_t} (max_t)")
    return max_t


def trial_resources(config: TrainConfig, cpus_per_trial: int):
    """A placement group: the trial's own CPUs (+ its learner's GPU), one bundle per env runner and learner."""
    from ray import tune

    first = {"CPU": cpus_per_trial}
    resources = config.resources
    if resources.num_learners == 0 and resources.gpus_per_learner > 0:
        first["GPU"] = resources.gpus_per_learner
    extra = [{"CPU": 1} for _ in range(resources.num_env_runners + resources.num_learners)]
    return tune.PlacementGroupFactory([first, *extra])


def run_trial(params: dict[str, Any], points: dict[str, dict], metric: str) -> None:
    """One Tune trial: the training loop of experiments.train in the trial's directory, each iteration reported."""
    from ray import tune

    data = points[point_key(dict(params))]
    config = load_train_config(data)
    run = RunDirectory(Path(tune.get_context().get_trial_dir()), config.keep_checkpoints)

    def report(row: dict[str, float]) -> None:
        if metric in row:
            tune.report({k: (math.nan if v is None else float(v)) for k, v in row.items()})

    train(config, run, report=report)


class _Progress:
    """A Tune callback printing one line per reported iteration (Tune's own status tables are off)."""

    def __new__(cls, metric: str):
        from ray.tune import Callback

        class Progress(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                print(f"{trial.trial_id} {_describe(trial.config)}: iteration {int(result['iteration'])}, "
                      f"{int(result['env_steps'])} env steps, {result['time_s']:.0f} s, {metric} "
                      f"{result[metric]:.4f}", flush=True)

            def on_trial_complete(self, iteration, trials, trial, **info):
                print(f"{trial.trial_id} {_describe(trial.config)}: done", flush=True)

            def on_trial_error(self, iteration, trials, trial, **info):
                print(f"{trial.trial_id} {_describe(trial.config)}: failed (see {trial.path}/error.txt)", flush=True)

        return Progress()


def _describe(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_override_value(v)}" for k, v in params.items())


def rank(results, options: SweepOptions, grid_keys: list[str], stop_iterations: int | None) -> list[dict]:
    """One row per trial, best first: its grid values, the best metric and where, how far it ran, its directory."""
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        row: dict[str, Any] = {k: _override_value(result.config.get(k)) for k in grid_keys}
        best = None
        if frame is not None and options.metric in frame and frame[options.metric].notna().any():
            column = frame[options.metric]
            index = column.idxmax() if options.mode == "max" else column.idxmin()
            best = frame.loc[index]
        last = frame.iloc[-1] if frame is not None and len(frame) else None
        iterations = int(last["iteration"]) if last is not None else 0
        if result.error is not None:
            status = "error"
        elif options.scheduler == "asha" and stop_iterations is not None and iterations < stop_iterations:
            status = "stopped early (ASHA)"
        else:
            status = "done"
        row.update({options.metric: None if best is None else float(best[options.metric]),
                    "best_iteration": None if best is None else int(best["iteration"]),
                    "iterations": iterations, "env_steps": int(last["env_steps"]) if last is not None else 0,
                    "time_s": round(float(last["time_s"]), 1) if last is not None else 0.0, "status": status,
                    "directory": str(result.path)})
        rows.append(row)
    sign = -1.0 if options.mode == "max" else 1.0
    rows.sort(key=lambda r: (r[options.metric] is None, sign * (r[options.metric] or 0.0)))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def write_results(rows: list[dict], out: Path, columns: list[str]) -> str:
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: row.get(c) for c in columns} for row in rows)

    def cell(value) -> str:
        if value is None:
            return "n/a"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    shown = [c for c in columns if c != "directory"] + ["trial"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        lines.append("| " + " | ".join([cell(row.get(c)) for c in shown[:-1]] + [Path(row["directory"]).name])
                     + " |")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    return table


@hydra.main(config_path="../conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Check every grid point, run the trials with Ray Tune, rank them."""
    resolved = plain(cfg)
    command_line = list(HydraConfig.get().overrides.task)
    with config_errors():
        options = read_sweep_options(resolved.get("sweep"))
        points = [compose_point(point, command_line) for point in grid_points(options.grid)]
        configs = [config for _, config in points]
        max_ts = {check_metric(options, config) for config in configs}
    out = run_dir().resolve()
    out.mkdir(parents=True, exist_ok=True)
    first = configs[0]
    trials = len(points) * options.num_samples
    log.info("sweeping %d grid point(s) x %d sample(s) = %d trial(s) of %s on %s; metric %s (%s), scheduler %s",
             len(points), options.num_samples, trials, first.agent.name, first.setup.env.network.name,
             options.metric, options.mode, options.scheduler)

    import ray
    from ray import tune

    if first.resources.ray_address:
        with config_errors():  # a cluster that cannot be joined
            init_ray(first.resources)
    else:
        ray.init(num_cpus=options.num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    scheduler = None
    if options.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="iteration", max_t=max(t for t in max_ts if t is not None),
                                  grace_period=options.grace_period, reduction_factor=options.reduction_factor)
    table_of_points = {point_key(point): data for point, (data, _) in zip(grid_points(options.grid), points)}
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, points=table_of_points, metric=options.metric),
        trial_resources(max(configs, key=lambda c: c.resources.num_env_runners + c.resources.num_learners),
                        options.cpus_per_trial))
    param_space = {k: tune.grid_search(list(v)) for k, v in options.grid.items()}
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(metric=options.metric, mode=options.mode, num_samples=options.num_samples,
                                    max_concurrent_trials=options.max_concurrent_trials, scheduler=scheduler),
        run_config=tune.RunConfig(name="trials", storage_path=str(out), verbose=0,
                                  callbacks=[_Progress(options.metric)]))
    results = tuner.fit()
    stop_iterations = first.stop.iterations
    rows = rank(results, options, list(options.grid), stop_iterations)
    columns = ["rank", *options.grid, options.metric, "best_iteration", "iterations", "env_steps", "time_s", "status",
               "directory"]
    table = write_results(rows, out, columns)
    ray.shutdown()
    print(table)
    failed = [r for r in rows if r["status"] == "error"]
    if failed:
        log.warning("%d of %d trial(s) failed; see error.txt in their directories", len(failed), len(rows))
    print(f"{len(rows)} trial(s); results in {out / 'results.md'}; tensorboard --logdir {out}")


if __name__ == "__main__":
    run_checked(main)
