"""What `python -m experiments.train` and `python -m experiments.sweep` share: the train config, the run directory
(checkpoints, the learning curve, TensorBoard files, validation), joining or starting Ray, and the training loop.

    config = load_train_config(plain(cfg))          # a SpecError naming the key
    checkpoint = train(config, RunDirectory(out))   # resumes from the run's latest checkpoint

See experiments/train.py for what a run directory holds and how validation picks the checkpoint evaluated.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import to_absolute_path

import scenarios
from agents.baselines.catalog import PolicySpec
from agents.rl.algorithms import AgentSpec, Resources, TrainingSetup, agent_from_dict
from agents.rl.warm_start import WarmStart, warm_start
from experiments.comparison import EvalSetting, evaluate
from experiments.policy_entries import named_policy_spec
from experiments.seeds import HELD_OUT_FIRST_SEED, VALIDATION_FIRST_SEED, SeedRange, check_apart
from scenarios.reference import ReferenceCase, case_from_dict, read_case_data
from twin import SpecError
from twin.config import ConfigReader, check_warmup

log = logging.getLogger("experiments.training")
CURVE_FIELDS = ("iteration", "env_steps", "time_s", "episode_return_mean", "episode_return_min",
                "episode_return_max", "episodes")


@dataclass(frozen=True)
class StopRule:
    """When training ends: the first of iterations, minutes of training and sampled env steps reached."""

    iterations: int | None
    minutes: float | None
    env_steps: int | None

    def reached(self, iteration: int, minutes: float, env_steps: int) -> bool:
        return ((self.iterations is not None and iteration >= self.iterations)
                or (self.minutes is not None and minutes >= self.minutes)
                or (self.env_steps is not None and env_steps >= self.env_steps))


@dataclass(frozen=True)
class ValidationRule:
    """Score each checkpoint's greedy policy on validation seeds (never the evaluation's); keep the cheapest.

    All checkpoints run on the same seeds (common random numbers), so their costs
    compare closely even over short horizons. `horizon` is days on a network
    (warm-up included, as evaluation.horizon) and periods on a case.
    """

    seeds: tuple[int, ...]
    horizon: int


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, validated before Ray starts."""

    setup: TrainingSetup
    agent: AgentSpec
    resources: Resources
    seed: int
    stop: StopRule
    checkpoint_every: int
    keep_checkpoints: int
    case: ReferenceCase | None
    evaluation: dict[str, Any]
    baselines: tuple[PolicySpec, ...]
    validation: ValidationRule | None = None
    warm_start: WarmStart | None = None  # behaviour cloning of a rule before the first iteration


# the teacher's episodes of a warm start: seeds DEMONSTRATION_FIRST_SEED + 1000 x seed + episode, apart from
# the validation (900,000...) and held-out (1,000,000...) seeds
DEMONSTRATION_FIRST_SEED = 800_000


def load_train_config(data: dict) -> TrainConfig:
    """Validate the whole config (SpecError naming the key) and build the env setup."""
    r = ConfigReader(data, "")
    seed = r.integer("seed", 0, low=0)
    agent = agent_from_dict(r.raw("agent"))
    resources = Resources.from_dict(r.raw("trainer"))
    stop_r = r.child("stop")
    minutes = stop_r.raw("minutes")
    stop = StopRule(iterations=stop_r.integer("iterations", None, low=1) if stop_r.raw("iterations") is not None
                    else None,
                    minutes=stop_r.number("minutes", 0.0, low=0.0) if minutes is not None else None,
                    env_steps=stop_r.integer("env_steps", None, low=1) if stop_r.raw("env_steps") is not None
                    else None)
    stop_r.done()
    if stop == StopRule(None, None, None):
        raise SpecError("stop: no limit set; allowed: at least one of stop.iterations, stop.minutes, stop.env_steps")
    checkpoint_every = r.integer("checkpoint_every", 10, low=1)
    keep = r.integer("keep_checkpoints", 3, low=1)
    ev = r.child("evaluation")
    evaluation = {"held_out": SeedRange.read(ev, count=5, first=HELD_OUT_FIRST_SEED, high=1000),
                  "horizon": ev.integer("horizon", 365, low=2), "warmup": ev.integer("warmup", 28, low=0),
                  "case_horizon": ev.integer("case_horizon", 20000, low=2), "reference": ev.text("reference", "rop")}
    baselines = tuple(named_policy_spec(name, "evaluation.baselines") for name in
                      ev.sequence("baselines", ("base_stock", "rop")))
    ev.done()
    check_warmup(evaluation["warmup"], evaluation["horizon"], warmup_key="evaluation.warmup",
                 horizon_key="evaluation.horizon")
    validation = _validation_rule(r.child("validation"), evaluation)
    case_path = r.raw("case")
    shared = r.flag("shared_policy", False)
    batched = r.flag("sku_batched", False)
    single = r.raw("single_node_env")
    env_data = r.raw("env")
    network_data, scenario_data = r.raw("network"), r.raw("scenario")
    warm_data = r.raw("warm_start")
    r.done()
    # the plain data of the env setup, which each checkpoint stores (agents.rl.checkpoint)
    if case_path is not None and batched:
        raise SpecError("sku_batched: true is for a network's (node, SKU) agents; allowed: false with case=")
    if case_path is not None:
        case_data = read_case_data(to_absolute_path(str(case_path)))
        case = case_from_dict(case_data)
        setup = TrainingSetup.from_plain({"case": case_data, "env": single})
    else:
        case = None
        setup = TrainingSetup.from_plain({"network": network_data, "scenario": scenario_data, "env": env_data,
                                          "shared_policy": shared, "sku_batched": batched},
                                         discrete_only=agent.discrete_only)
    agent.algorithm_config(setup, resources, seed)  # a bad agent/env combination fails here, before Ray starts
    warm = _warm_start(warm_data, setup, agent, seed, evaluation["held_out"], validation)
    if case is None and evaluation["reference"] not in [b.name for b in baselines]:
        raise SpecError(f"evaluation.reference: {evaluation['reference']!r} is not among evaluation.baselines "
                        f"{[b.name for b in baselines]}")
    if validation is not None and case is None:
        check_warmup(evaluation["warmup"], validation.horizon, warmup_key="evaluation.warmup",
                     horizon_key="validation.horizon")
    return TrainConfig(setup=setup, agent=agent, resources=resources, seed=seed, stop=stop,
                       checkpoint_every=checkpoint_every, keep_checkpoints=keep, case=case, evaluation=evaluation,
                       baselines=baselines, validation=validation, warm_start=warm)


def _warm_start(data, setup: TrainingSetup, agent: AgentSpec, seed: int, held_out: SeedRange,
                validation: ValidationRule | None) -> WarmStart | None:
    """The `warm_start` section, checked against the run: PPO with sku_batched, and teacher episodes on seeds apart
    from the validation and held-out ones."""
    enabled = isinstance(data, dict) and data.get("enabled") is True
    if enabled and (agent.name != "ppo" or not setup.sku_batched):
        raise SpecError(f"warm_start.enabled: true with agent={agent.name}, sku_batched="
                        f"{str(setup.sku_batched).lower()} is not allowed; allowed: agent=ppo with sku_batched=true "
                        f"(a policy head to clone, the pairs as one vector env)")
    warm = WarmStart.from_dict(data, setup.env.action.grid)
    if warm is None:
        return None
    demonstrations = SeedRange(DEMONSTRATION_FIRST_SEED + 1000 * seed, warm.episodes)
    others = [("the evaluation's held-out seeds", held_out)]
    if validation is not None:
        others.append(("the validation seeds", SeedRange(validation.seeds[0], len(validation.seeds))))
    for what, other in others:
        if demonstrations.overlaps(other):
            raise SpecError(f"seed: {seed} puts the warm start's teacher episodes on seeds {demonstrations}, which "
                            f"overlap {what} {other}; allowed: a seed whose teacher seeds "
                            f"({DEMONSTRATION_FIRST_SEED:,} + 1,000 x seed + episode) stay apart from them")
    return warm


def _validation_rule(r: ConfigReader, evaluation: dict[str, Any]) -> ValidationRule | None:
    enabled = r.flag("enabled", False)
    seeds = SeedRange.read(r, count=2, first=VALIDATION_FIRST_SEED, high=1000)
    horizon = r.integer("horizon", 365, low=2)
    r.done()
    if not enabled:
        return None
    check_apart(seeds, evaluation["held_out"], "validation.first_seed")
    return ValidationRule(seeds=seeds.seeds, horizon=horizon)


# ---------------------------------------------------------------------------
# The run directory: checkpoints, learning curve, resume
# ---------------------------------------------------------------------------

class RunDirectory:
    """Checkpoints and the learning curve of one training run, and what a restart resumes from."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.checkpoints = root / "checkpoints"
        self.curve = root / "learning_curve.csv"
        self.keep = keep

    @property
    def latest(self) -> Path | None:
        link = self.checkpoints / "latest"
        return link.resolve() if link.exists() else None

    @property
    def best(self) -> Path | None:
        """The checkpoint with the lowest validation cost so far (None without validation)."""
        link = self.checkpoints / "best"
        return link.resolve() if link.exists() else None

    def progress(self) -> dict[str, float]:
        """Iteration, env steps and training time at the latest checkpoint (zeros for a fresh run)."""
        latest = self.latest
        if latest is None:
            return {"iteration": 0, "env_steps": 0, "time_s": 0.0}
        return json.loads((latest / "progress.json").read_text())

    def check_same_config(self, fingerprint: dict, defaults: dict | None = None) -> None:
        """A resumed run must train the same agent on the same env; SpecError otherwise. A key the earlier run's
        fingerprint lacks (a setting added since) matches when its value is that setting's `defaults` entry."""
        path = self.root / "train_fingerprint.json"
        if path.exists() and self.latest is not None:
            before = json.loads(path.read_text())
            defaults = defaults or {}
            before = {**{k: v for k, v in defaults.items() if k in fingerprint}, **before}
            changed = sorted(k for k in set(before) | set(fingerprint) if before.get(k) != fingerprint.get(k))
            if changed:
                raise SpecError(f"hydra.run.dir: {str(self.root)!r} holds a run with other settings "
                                f"({', '.join(changed)}); allowed: the same agent, env and seed to resume, "
                                f"or a new run directory")
        self.root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))

    def save(self, algo, setup: TrainingSetup, progress: dict[str, float]) -> Path:
        """Save a checkpoint, point `latest` at it and drop the oldest beyond `keep`."""
        from agents.rl.checkpoint import write_setup

        path = self.checkpoints / f"iter_{int(progress['iteration']):06d}"
        algo.save_to_path(str(path))
        write_setup(path, setup)
        (path / "progress.json").write_text(json.dumps(progress))
        self._point("latest", path)
        best = self.best
        for old in sorted(self.checkpoints.glob("iter_*"))[:-self.keep]:
            if old.resolve() != best:  # the best by validation stays, however old
                shutil.rmtree(old)
        return path

    def upgrade_legacy(self, setup: TrainingSetup) -> None:
        """Write twin_setup.yaml into checkpoints of older versions (a pickled setup only), after checking that
        the pickle is `setup`, so a run started before the format change resumes and evaluates."""
        from agents.rl.checkpoint import is_legacy, upgrade

        for checkpoint in sorted(self.checkpoints.glob("iter_*")):
            if is_legacy(checkpoint):
                log.info("converted %s", upgrade(checkpoint, setup))

    def _point(self, name: str, path: Path) -> None:
        link, tmp = self.checkpoints / name, self.checkpoints / f"{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path.name)
        tmp.replace(link)  # atomic: a crash never leaves the link missing

    def record_validation(self, checkpoint: Path, progress: dict[str, float], cost: float) -> bool:
        """Log a checkpoint's validation cost (validation.csv); point `best` at it if it is the lowest. True if so."""
        (checkpoint / "validation.json").write_text(json.dumps({"cost_per_day": cost}))
        path = self.root / "validation.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["iteration", "env_steps", "time_s", "validation_cost_per_day"])
            writer.writerow([int(progress["iteration"]), int(progress["env_steps"]),
                             round(float(progress["time_s"]), 2), cost])
        best = self.best
        if best is None or cost < json.loads((best / "validation.json").read_text())["cost_per_day"]:
            self._point("best", checkpoint)
            return True
        return False

    def append_curve(self, row: dict[str, float]) -> None:
        new = not self.curve.exists()
        with self.curve.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k) for k in CURVE_FIELDS})

    def truncate_curve(self, iteration: int) -> None:
        """Drop curve rows past the checkpoint being resumed (they were logged after it, then lost)."""
        if not self.curve.exists():
            return
        rows = list(csv.DictReader(self.curve.open()))
        kept = [row for row in rows if int(row["iteration"]) <= iteration]
        with self.curve.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
            writer.writeheader()
            writer.writerows(kept)


def plot_curve(curve: Path, out: Path, title: str, validation: Path | None = None) -> None:
    """Episode return (mean, min-max band) against sampled env steps; below it the validation cost, if any."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in csv.DictReader(curve.open()) if _number(r["episode_return_mean"]) is not None]
    checks = list(csv.DictReader(validation.open())) if validation is not None and validation.exists() else []
    if not rows and not checks:
        return
    fig, axes = plt.subplots(2 if checks else 1, 1, figsize=(7, 6.5 if checks else 4), sharex=True, squeeze=False)
    ax = axes[0, 0]
    if rows:
        x = np.array([float(r["env_steps"]) for r in rows])
        lo = np.array([float(r["episode_return_min"]) for r in rows])
        hi = np.array([float(r["episode_return_max"]) for r in rows])
        ax.fill_between(x, lo, hi, alpha=0.2, label="min-max of recent episodes")
        ax.plot(x, [float(r["episode_return_mean"]) for r in rows], label="mean episode return")
        ax.legend(fontsize=8)
    ax.set_ylabel("episode return (minus scaled cost)")
    ax.set_title(title, fontsize=10)
    if checks:
        low = axes[1, 0]
        steps = [float(r["env_steps"]) for r in checks]
        cost = [float(r["validation_cost_per_day"]) for r in checks]
        low.plot(steps, cost, marker="o", ms=3, label="greedy policy, validation seeds")
        best = int(np.argmin(cost))
        low.scatter([steps[best]], [cost[best]], color="C3", zorder=3, label="best (evaluated)")
        low.set_ylabel("validation cost per day")
        low.legend(fontsize=8)
    axes[-1, 0].set_xlabel("env steps sampled")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _number(value) -> float | None:
    """A finite float, or None (RLlib reports NaN for an iteration in which no episode ended)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def curve_row(result: dict, iteration: int, env_steps: int, time_s: float) -> dict[str, float]:
    runners = result.get("env_runners", {})
    return {"iteration": iteration, "env_steps": env_steps, "time_s": round(time_s, 2),
            "episode_return_mean": _number(runners.get("episode_return_mean")),
            "episode_return_min": _number(runners.get("episode_return_min")),
            "episode_return_max": _number(runners.get("episode_return_max")),
            "episodes": runners.get("num_episodes_lifetime")}


class TensorBoardLog:
    """TensorBoard event files in RUN/tensorboard (`tensorboard --logdir RUN`), written with tensorboardX (which
    ray[rllib] installs): each iteration's learning-curve fields as `train/FIELD` and each validation's cost as
    `validation/cost_per_day`, against the training iteration. A resumed run purges what an earlier writer logged
    past the checkpoint it resumes (as `RunDirectory.truncate_curve` does for the CSV)."""

    TAGS = tuple(f"train/{name}" for name in CURVE_FIELDS if name != "iteration") + ("validation/cost_per_day",)

    def __init__(self, directory: Path, resumed_at: int = 0) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(directory), purge_step=resumed_at + 1 if resumed_at else None,
                                    flush_secs=30)

    def iteration(self, row: dict[str, float]) -> None:
        for name in CURVE_FIELDS[1:]:
            if row.get(name) is not None:
                self.writer.add_scalar(f"train/{name}", float(row[name]), int(row["iteration"]))

    def validation(self, iteration: int, cost: float | None) -> None:
        if cost is not None:
            self.writer.add_scalar("validation/cost_per_day", cost, iteration)

    def close(self) -> None:
        self.writer.close()

    @staticmethod
    def read(directory: Path) -> dict[str, list[tuple[int, float]]]:
        """The scalars of the event files in `directory` (and below: Tune's trial folders), tag -> [(step, value)]
        in file order: the TFRecord framing (length, its CRC, an Event, its CRC) read with tensorboardX's protobuf
        classes, so neither tensorboard nor tensorflow is needed."""
        import struct

        from tensorboardX.proto import event_pb2

        scalars: dict[str, list[tuple[int, float]]] = {}
        for path in sorted(Path(directory).rglob("events.out.tfevents.*")):
            data, at = path.read_bytes(), 0
            while at + 12 <= len(data):
                (length,) = struct.unpack("<Q", data[at:at + 8])
                event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
                at += 12 + length + 4
                for value in event.summary.value:
                    scalars.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
        return scalars


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------

def init_ray(resources: Resources) -> None:
    """Join the cluster at `ray_address`, or start Ray here with a CPU per env runner plus the driver."""
    import os

    import ray

    from experiments.ray_cluster import join_cluster

    if ray.is_initialized():
        return
    if resources.ray_address:
        join_cluster(resources.ray_address)  # a SpecError naming trainer.ray_address if it cannot be joined
    else:
        cpus = max(os.cpu_count() or 1, resources.num_env_runners + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)


Report = Callable[[dict[str, float]], None]


def train(config: TrainConfig, run: RunDirectory, report: Report | None = None) -> Path:
    """Train until the stop rule, resuming from the run's latest checkpoint; returns the final checkpoint (with
    validation on, the best by validation). `report` (experiments.sweep passes Ray Tune's) gets each iteration's
    learning-curve row, with `validation_cost_per_day` added in an iteration that saved and validated."""
    env = config.setup.env
    fingerprint = {f"env.{f.name}": repr(getattr(env, f.name)) for f in fields(env) if f.name != "network"}
    fingerprint.update({"agent": repr(config.agent), "network": env.network.name, "seed": config.seed,
                        "case": getattr(config.case, "case_id", None), "shared_policy": config.setup.shared_policy,
                        "sku_batched": config.setup.sku_batched, "warm_start": repr(config.warm_start)})
    # settings added after a run started resume it at their defaults
    defaults = {f"env.{f.name}": repr(f.default) for f in fields(env) if f.default is not MISSING}
    run.check_same_config(fingerprint, {**defaults, "sku_batched": False, "warm_start": repr(None)})
    init_ray(config.resources)
    import torch
    torch.set_num_threads(config.resources.torch_threads)  # the driver samples (0 env runners) and learns
    algo = config.agent.algorithm_config(config.setup, config.resources, config.seed).build_algo()
    devices = {r.get() for r in algo.learner_group.foreach_learner(lambda learner: str(learner._device))}
    log.info("learner(s) on %s", ", ".join(sorted(devices)))
    progress = run.progress()
    if run.latest is not None:
        log.info("resuming from %s (iteration %d)", run.latest, progress["iteration"])
        run.upgrade_legacy(config.setup)
        algo.restore_from_path(str(run.latest))
        run.truncate_curve(int(progress["iteration"]))
    iteration, env_steps, spent = int(progress["iteration"]), int(progress["env_steps"]), float(progress["time_s"])
    checkpoint = run.latest
    saved_at = iteration
    board = TensorBoardLog(run.root / "tensorboard", resumed_at=iteration)
    try:
        if run.latest is None and config.warm_start is not None:  # a new run: clone the teacher, checkpoint 0
            started = time.perf_counter()
            stats = warm_start(algo, config.setup, config.warm_start,
                               DEMONSTRATION_FIRST_SEED + 1000 * config.seed, config.agent.gamma)
            (run.root / "warm_start.json").write_text(json.dumps(stats, indent=1) + "\n")
            log.info("warm start: the greedy policy takes the teacher's action on %.1f%% of its pair-steps",
                     100 * stats["agreement"])
            spent += time.perf_counter() - started  # the warm start counts against stop.minutes
            started = time.perf_counter()
            checkpoint, cost = save_and_validate(config, run, algo, 0, 0, spent)
            spent += time.perf_counter() - started
            board.validation(0, cost)
        while not config.stop.reached(iteration, spent / 60.0, env_steps):
            started = time.perf_counter()
            result = algo.train()
            spent += time.perf_counter() - started
            iteration += 1
            # twin steps: with sku_batched RLlib counts a step of each (node, SKU) sub-environment
            # RLlib keeps the count under env_runners (the top level has it only when the driver samples)
            sampled = result.get("env_runners", {}).get("num_env_steps_sampled_lifetime",
                                                        result.get("num_env_steps_sampled_lifetime"))
            env_steps = env_steps if sampled is None else int(sampled) // config.setup.steps_per_env_step
            row = curve_row(result, iteration, env_steps, spent)
            run.append_curve(row)
            board.iteration(row)
            log.info("iteration %d: %d env steps, %.0f s, episode return %s", iteration, env_steps, spent,
                     _fmt(row["episode_return_mean"]))
            # the last iteration saves (and validates) here too, so `report` sees its validation cost
            if iteration % config.checkpoint_every == 0 or config.stop.reached(iteration, spent / 60.0, env_steps):
                started = time.perf_counter()
                checkpoint, cost = save_and_validate(config, run, algo, iteration, env_steps, spent)
                saved_at = iteration
                spent += time.perf_counter() - started  # validation runs count against stop.minutes
                board.validation(iteration, cost)
                if cost is not None:
                    row = {**row, "validation_cost_per_day": cost}
            if report is not None:
                report(row)
        if checkpoint is None or saved_at != iteration:
            checkpoint, cost = save_and_validate(config, run, algo, iteration, env_steps, spent)
            board.validation(iteration, cost)
    finally:
        board.close()
    algo.stop()
    plot_curve(run.curve, run.root / "learning_curve.png",
               f"{config.agent.name} on {config.setup.env.network.name} / {config.setup.env.scenario}",
               run.root / "validation.csv")
    log.info("trained %d iterations, %d env steps, %.0f s; checkpoint %s", iteration, env_steps, spent, checkpoint)
    if config.validation is not None and run.best is not None:
        log.info("the best checkpoint by validation: %s (cost %.4f per day on validation seeds %s)",
                 run.best.name, best_validation_cost(run), list(config.validation.seeds))
        return run.best
    return checkpoint


def best_validation_cost(run: RunDirectory) -> float | None:
    """The validation cost per day of `checkpoints/best` (None: nothing validated)."""
    best = run.best
    return None if best is None else float(json.loads((best / "validation.json").read_text())["cost_per_day"])


def save_and_validate(config: TrainConfig, run: RunDirectory, algo, iteration: int, env_steps: int,
                      spent: float) -> tuple[Path, float | None]:
    """Save a checkpoint and, with validation on, score it on the validation seeds: (checkpoint, its cost or None)."""
    progress = {"iteration": iteration, "env_steps": env_steps, "time_s": spent}
    checkpoint = run.save(algo, config.setup, progress)
    if config.validation is None:
        return checkpoint, None
    cost = validation_cost(config, checkpoint)
    best = run.record_validation(checkpoint, progress, cost)
    log.info("validation: %s costs %.4f per day%s", checkpoint.name, cost, " (best so far)" if best else "")
    return checkpoint, cost


def eval_setting(config: TrainConfig, initial_on_hand: np.ndarray, seeds: tuple[int, ...],
                 horizon: int) -> EvalSetting:
    """The runs a policy is scored on: a case for `horizon` periods after a warm-up, or the network's scenario
    for `horizon` days of which evaluation.warmup are not counted."""
    if config.case is not None:
        warmup = min(500, horizon // 10)
        return EvalSetting(config.case.network(), (), horizon + warmup, warmup, seeds, initial_on_hand)
    env = config.setup.env
    shocks = scenarios.build(env.scenario, env.network, horizon, **dict(env.scenario_params)).shocks
    return EvalSetting(env.network, shocks, horizon, config.evaluation["warmup"], seeds, initial_on_hand)


def validation_cost(config: TrainConfig, checkpoint: Path) -> float:
    """Mean cost per day (or period) of the checkpoint's greedy policy on the validation seeds, weighed by
    env.cost_weights as the rewards are (the twin's own cost when all weights are 1)."""
    from agents.rl.policy import TrainedPolicy

    rule = config.validation
    policy = TrainedPolicy.from_checkpoint(checkpoint, name=config.agent.name)
    result = evaluate({config.agent.name: policy}, eval_setting(config, policy.initial_on_hand, rule.seeds,
                                                                rule.horizon))
    values = {metric: float(v.mean()) for metric, v in result.values[config.agent.name].items()}
    parts = {"holding": values["holding_per_day"], "backorder": values["stockout_penalty_per_day"],
             "lost_sale": 0.0, "ordering": values["ordering_per_day"]}
    parts["in_transit"] = values["cost_per_day"] - sum(parts.values())  # the one kind the KPIs do not list
    return float(config.setup.env.cost_weights.apply(parts))


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


