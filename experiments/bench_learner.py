"""PPO's learner on paper_5x20: update throughput on the CPU and, when CUDA is present, on the GPU.

    python -m experiments.bench --learner-only [--quick]
    python -m experiments.bench --learner-only --learner-overrides "+experiment=ppo_network_sku sku_batched=true"

The config is composed as `experiments.train` composes it (conf/train.yaml and the overrides, by default the
preset of the README's network figures with the SKU-batched sampler), so the learner, its batch and its
minibatches are the ones training uses. One training batch is sampled once; then each learner (a fresh
algorithm per device, the same batch) runs PPO's update on it: the learner connector (GAE, which runs the
value function over the whole batch) and the epochs of minibatch gradient steps. The first update is a warm-up
(CUDA context, kernels); the median of the next `repeat` is reported. Learner throughput = agent steps in the
batch x epochs / seconds per update. The learners: the CPU with one torch thread (what `trainer=local` uses),
the CPU with every core, and the GPU (`trainer=gpu`) when torch sees one. A benchmark, not a test: it prints
figures and never fails.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OVERRIDES = ("+experiment=ppo_network_sku", "sku_batched=true", "scenario=baseline")


def compose(overrides: tuple[str, ...]):
    """The validated TrainConfig of conf/train.yaml with `overrides`, as experiments.train would build it; a bad
    override is a SpecError (a group option conf/ lacks, a key train.yaml lacks, or a bad value, naming it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.startup import CONF_DIR, plain, unknown_choice
    from experiments.training import load_train_config
    from twin.config import SpecError

    if (message := unknown_choice(overrides, CONF_DIR)) is not None:
        raise SpecError(message)
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
            cfg = hydra_compose(config_name="train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise SpecError(f"--learner-overrides: {first.rstrip('.')}; allowed: keys and options of the train config "
                        f"(conf/train.yaml)") from None
    return load_train_config(plain(cfg))


def sample_batch(config):
    """One training batch of episodes, sampled by the driver with a CPU learner's algorithm."""
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    algo = build(config, gpus=0.0, threads=1)
    episodes = synchronous_parallel_sample(worker_set=algo.env_runner_group,
                                           max_env_steps=algo.config.total_train_batch_size,
                                           _uses_new_env_runners=True)
    algo.stop()
    return episodes


def build(config, *, gpus: float, threads: int):
    """The training algorithm with its learner local (in this process, whatever the trainer config says: the one
    `time_updates` times) on `gpus` GPUs (0: the CPU) and `threads` torch threads."""
    from dataclasses import replace

    import torch

    resources = replace(config.resources, num_env_runners=0, num_learners=0, num_gpus_per_learner=gpus,
                        torch_threads=threads)
    torch.set_num_threads(threads)
    return config.agent.algorithm_config(config.setup, resources, config.seed).build_algo()


def time_updates(config, episodes, *, gpus: float, threads: int, repeat: int) -> dict:
    """Median seconds of PPO's learner update on `episodes` (after one warm-up update) and the learner's device."""
    import torch
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    algo = build(config, gpus=gpus, threads=threads)
    learner = algo.learner_group._learner  # the local learner (num_learners=0): the one that trains
    agent_steps = sum(ep.agent_steps() for ep in episodes)
    env_steps = sum(ep.env_steps() for ep in episodes)

    def update() -> float:
        batch = copy.deepcopy(episodes)  # the learner connector appends a step to each episode it reads
        started = time.perf_counter()
        algo.learner_group.update(episodes=batch, timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: env_steps},
                                  num_epochs=algo.config.num_epochs,
                                  minibatch_size=algo.config.minibatch_size,
                                  shuffle_batch_per_epoch=algo.config.shuffle_batch_per_epoch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - started

    warmup = update()
    seconds = statistics.median(update() for _ in range(repeat))
    device = str(learner._device)
    algo.stop()
    trained = agent_steps * algo.config.num_epochs
    return {"device": device, "threads": threads, "agent_steps": agent_steps, "epochs": algo.config.num_epochs,
            "warmup_s": warmup, "update_s": seconds, "agent_steps_per_s": trained / seconds}


def main(quick: bool = False, overrides: tuple[str, ...] = DEFAULT_OVERRIDES, config=None) -> dict:
    """Print the learner section and return its figures (`config`: `compose(overrides)`, when already built)."""
    import ray
    import torch

    cores = os.cpu_count() or 1
    repeat = 2 if quick else 5
    config = config if config is not None else compose(overrides)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(f"\nPPO learner throughput, {config.setup.env.network.name}, overrides {' '.join(overrides)}")
    print(f"torch {torch.__version__}, {cores} CPUs, GPU: {gpu or 'none'}; median of {repeat} updates after a "
          f"warm-up, on one sampled batch")
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        episodes = sample_batch(config)
        learners = [("CPU, 1 torch thread", 0.0, 1)]
        if cores > 1:
            learners.append((f"CPU, {cores} torch threads", 0.0, cores))
        if gpu:
            learners.append((f"GPU ({gpu})", 1.0, 1))
        rows = {}
        for label, gpus, threads in learners:
            rows[label] = time_updates(config, episodes, gpus=gpus, threads=threads, repeat=repeat)
    finally:
        ray.shutdown()
    print(f"{'learner':<40}{'device':>8}{'agent steps':>13}{'epochs':>7}{'warm-up s':>11}{'update s':>10}"
          f"{'agent-steps/s':>15}")
    print("-" * 104)
    for label, r in rows.items():
        print(f"{label:<40}{r['device']:>8}{r['agent_steps']:>13,}{r['epochs']:>7}{r['warmup_s']:>11.2f}"
              f"{r['update_s']:>10.3f}{r['agent_steps_per_s']:>15,.0f}")
    base = rows["CPU, 1 torch thread"]["agent_steps_per_s"]
    print("ratios to the CPU learner with 1 torch thread: " + ", ".join(
        f"{label} {r['agent_steps_per_s'] / base:.2f}x" for label, r in rows.items() if label != "CPU, 1 torch thread"))
    return rows


if __name__ == "__main__":
    main()
