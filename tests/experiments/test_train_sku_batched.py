"""experiments.train with sku_batched=true (agents/envs/vector.py, agents/rl/sku_runner.py): PPO with a remote env
runner and DQN train, checkpoint and evaluate; tests/agents/test_sku_vector_env.py tests the env and the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from twin import SpecError
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
DAYS = 20


@pytest.fixture(scope="module")
def small():
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))


def cost_total(engine) -> float:
    return engine.result().kpis["network"]["cost_total"]


def test_training_with_sku_batched_checkpoints_and_evaluates(small, tmp_path):
    """experiments.train with sku_batched=true and a remote env runner: two iterations (counted in twin steps), a
    checkpoint whose policy decides for the whole network (TrainedPolicy reads the role feature too), validation,
    and a clear refusal to export it."""
    import subprocess
    import sys

    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "+experiment=ppo_network_sku", "network=small", "sku_batched=true",
         "trainer.num_env_runners=1", "stop.minutes=null", "stop.iterations=2", "checkpoint_every=1",
         "validation.seeds=1", "evaluation.seeds=1",
         f"agent.train_batch_size={DAYS}", f"agent.minibatch_size={DAYS}", f"env.episode_days={DAYS}",
         "validation.horizon=40", "evaluation.horizon=40", "evaluation.warmup=7", f"hydra.run.dir={run}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    curve = (run / "learning_curve.csv").read_text().splitlines()
    assert curve[1].startswith(f"1,{DAYS},") and curve[2].startswith(f"2,{2 * DAYS},")  # twin steps, not pairs'
    assert "objective:" in done.stdout
    from agents.rl.export import export_rl_heads
    from agents.rl.policy import TrainedPolicy

    policy = TrainedPolicy.from_checkpoint(run / "checkpoints" / "latest")
    assert policy.setup.sku_batched and list(policy.modules) == ["default_policy"]
    from twin import Engine
    engine = Engine(small, horizon=10, seed=1, initial_on_hand=policy.initial_on_hand)
    policy.attach(engine)
    engine.run(policy)
    assert cost_total(engine) > 0
    with pytest.raises(SpecError, match="trained with sku_batched=true"):
        export_rl_heads(run / "checkpoints" / "latest", tmp_path / "heads")


def test_dqn_trains_on_the_sku_batched_env(tmp_path):
    """DQN (the paper's agent) with one Q-network for every (node, SKU) pair, sampled in batch: two iterations,
    a checkpoint of the single policy, and an evaluation against the baselines."""
    import subprocess
    import sys

    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "agent=dqn", "network=small", "sku_batched=true",
         "stop.iterations=2", "checkpoint_every=2", "evaluation.seeds=1", f"env.episode_days={DAYS}",
         "agent.rollout_fragment_length=8", "agent.learning_starts=50", "evaluation.horizon=40",
         "evaluation.warmup=7", f"hydra.run.dir={run}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (run / "learning_curve.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[1]) for r in rows]
    # twin steps, in fragments of 8; DQN samples at least 1,000 steps of its (9) sub-environments per iteration
    assert steps[1] > steps[0] >= 1000 / 9 and steps[0] % 8 == 0 and steps[1] % 8 == 0
    assert (run / "checkpoints" / "latest" / "learner_group" / "learner" / "rl_module" / "default_policy").is_dir()
    assert "| dqn |" in done.stdout
