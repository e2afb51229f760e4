"""experiments.sweep: the train config swept with Ray Tune, trials side by side (local Ray, 2 CPUs), a ranked table.

Tiny networks and batches, as in test_train.py: these check the pipeline (trials, reports, ASHA, TensorBoard
files, the table), not the policies.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# test_export_rl.py's TINY, one CPU per trial on a local Ray of 2
TINY = ["agent=ppo", "env.granularity=node_sku", "network=small", "env.episode_days=30", "evaluation.seeds=1",
        "evaluation.horizon=30", "evaluation.warmup=5", "trainer.num_envs_per_env_runner=1",
        "agent.train_batch_size=200", "agent.minibatch_size=100", "agent.num_epochs=1", "agent.hidden=[8]",
        "stop.iterations=2", "checkpoint_every=1", "sweep.num_cpus=2", "sweep.cpus_per_trial=1",
        "sweep.max_concurrent_trials=2"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def results(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "results.csv").open()))


@pytest.mark.slow
def test_a_two_trial_sweep_runs_concurrently_logs_to_tensorboard_and_ranks_the_trials(tmp_path):
    from experiments.training import TensorBoardLog

    done = run(*TINY, "sweep.grid={seed: [0, 1]}", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = results(tmp_path)
    assert [int(r["rank"]) for r in rows] == [1, 2] and sorted(r["seed"] for r in rows) == ["0", "1"]
    returns = [float(r["episode_return_mean"]) for r in rows]
    assert returns == sorted(returns, reverse=True)  # maximised
    assert all(r["status"] == "done" and r["iterations"] == "2" for r in rows)
    table = (tmp_path / "results.md").read_text()
    assert "| rank | seed | episode_return_mean |" in table and table.count("| done |") == 2
    assert done.stdout.count("iteration 2, 400 env steps") == 2  # progress: one line per trial and iteration
    for row in rows:
        trial = Path(row["directory"])
        assert trial.parent == tmp_path / "trials"
        curve = list(csv.DictReader((trial / "learning_curve.csv").open()))
        assert [int(r["iteration"]) for r in curve] == [1, 2]
        ours = TensorBoardLog.read(trial / "tensorboard")
        assert set(ours) == set(TensorBoardLog.TAGS) - {"validation/cost_per_day"}
        assert max(v for _, v in ours["train/episode_return_mean"]) == pytest.approx(
            float(row["episode_return_mean"]), rel=1e-6)
        assert list(trial.glob("events.out.tfevents.*"))  # Tune's own TensorBoard logger
        assert (trial / "checkpoints" / "latest").exists()


@pytest.mark.slow
def test_asha_on_the_validation_cost_ranks_trials_by_their_best_checkpoint(tmp_path):
    done = run(*TINY, "sweep.grid={seed: [0, 1]}", "stop.iterations=3", "validation.enabled=true",
               "validation.seeds=1", "validation.horizon=30", "sweep.metric=validation_cost_per_day",
               "sweep.scheduler=asha", "sweep.asha.grace_period=1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = results(tmp_path)
    costs = [float(r["validation_cost_per_day"]) for r in rows]
    assert len(rows) == 2 and costs == sorted(costs)  # minimised
    for row in rows:
        assert row["status"] in ("done", "stopped early (ASHA)")
        checks = list(csv.DictReader((Path(row["directory"]) / "validation.csv").open()))
        assert len(checks) == int(row["iterations"])
        assert float(row["validation_cost_per_day"]) == pytest.approx(
            min(float(c["validation_cost_per_day"]) for c in checks), rel=1e-9)


@pytest.mark.parametrize("args, message", [
    (["sweep.grid={agent.lrr: [0.001]}"], "sweep.grid agent.lrr=0.001: Could not override 'agent.lrr'"),
    (["sweep.grid={agent.lr: [0.001, -1]}"], "sweep.grid agent.lr=-1: agent.lr: -1 is out of range"),
    (["sweep.grid={agent: [ppo, alphazero]}"], "sweep.grid agent=alphazero: In 'train': Could not find "
     "'agent/alphazero'"),
    (["sweep.grid={seed: []}"], "sweep.grid.seed: empty"),
    (["sweep.scheduler=hyperband"], "sweep.scheduler: 'hyperband' is not allowed; allowed: fifo, asha"),
    (["sweep.metric=validation_cost_per_day"], "sweep.metric: 'validation_cost_per_day' needs validation"),
    (["sweep.scheduler=asha", "stop.iterations=null", "stop.minutes=1"], "sweep.asha.max_t: null and "
     "stop.iterations is null"),
    (["+sweep.grace_period=3"], "sweep: unknown key 'grace_period'"),
])
def test_a_bad_sweep_gives_one_clear_error_before_ray_starts(args, message, tmp_path):
    done = run(*args, f"hydra.run.dir={tmp_path}", timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "trials").exists()
