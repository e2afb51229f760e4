"""Exporting trained policy heads as ONNX (agents/rl/export.py) on tiny checkpoints of experiments.train: PPO with
one agent per (node, SKU), PPO with the SKU-shared module (one agent per node) and DQN each export with parity on
10,000 twin observations, decide as TrainedPolicy does, and a recurrent checkpoint is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.deploy.onnx_head import OnnxHead
from agents.rl.export import SCORE_TOLERANCE, HeadExport, export_rl_heads
from agents.rl.policy import TrainedPolicy
from twin.config import SpecError

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "reference_cases" / "case_base_stock_SS_example_4_4_L4.json"
TINY = ["agent.hidden=[8]", "stop.iterations=1", "checkpoint_every=1", "evaluation.seeds=1"]
TINY_PPO = ["agent.train_batch_size=200", "agent.minibatch_size=100", "agent.num_epochs=1"]
QUICK_NETWORK = ["network=small", "env.episode_days=30", "evaluation.horizon=10", "evaluation.warmup=0",
                 "trainer.num_envs_per_env_runner=1"]
RUNS = {  # name -> experiments.train arguments, expected (layout, score kind)
    "ppo_node_sku": (["agent=ppo", "env.granularity=node_sku", *QUICK_NETWORK, *TINY_PPO], ("per_sku", "logits")),
    "ppo_node": (["agent=ppo", "env.granularity=node", *QUICK_NETWORK, *TINY_PPO], ("per_node", "logits")),
    "dqn_node_sku": (["agent=dqn", "env.granularity=node_sku", *QUICK_NETWORK, "agent.learning_starts=64"],
                     ("per_sku", "q_values")),
}


def train(run_dir: Path, *args: str) -> Path:
    """A one-iteration run of experiments.train; returns its checkpoint."""
    done = subprocess.run([sys.executable, "-m", "experiments.train", *args, *TINY, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir / "checkpoints" / "latest"


@pytest.fixture(scope="module", params=sorted(RUNS))
def exported(request, tmp_path_factory) -> tuple[str, Path, Path, list[HeadExport]]:
    """(run name, checkpoint, export directory, exports) for each kind of run."""
    name = request.param
    checkpoint = train(tmp_path_factory.mktemp(name), *RUNS[name][0])
    out_dir = tmp_path_factory.mktemp(f"{name}_heads")
    return name, checkpoint, out_dir, export_rl_heads(checkpoint, out_dir, samples=10_000, seed=0)


@pytest.mark.slow
def test_every_head_exports_with_parity_on_10000_samples(exported):
    name, checkpoint, out_dir, exports = exported
    layout, kind = RUNS[name][1]
    assert [e.policy_id for e in exports] == ["dc", "store"]
    for e in exports:
        assert (e.onnx_file, e.samples_file) == (f"{e.policy_id}.onnx", f"{e.policy_id}.samples.npz")
        assert (e.obs_layout, e.score_kind, e.samples, e.n_features, e.n_actions) == (layout, kind, 10_000, 26, 41)
        assert e.max_abs_score_diff <= SCORE_TOLERANCE and e.greedy_agreement == 1.0
        assert sorted(p.name for p in out_dir.glob(f"{e.policy_id}.*")) == [e.onnx_file, e.samples_file]
        samples = np.load(out_dir / e.samples_file)
        obs, scores = samples["obs"], samples["scores"]
        row = (3, 26) if layout == "per_node" else (26,)  # the small network has 3 SKUs
        assert obs.dtype == scores.dtype == np.float32
        assert obs.shape == (10_000, *row) and scores.shape == (10_000, *row[:-1], 41)
        assert len(np.unique(obs, axis=0)) > 1000  # real, varied twin observations
        head = OnnxHead(out_dir / e.onnx_file, kind)
        assert np.abs(head.scores(obs) - scores).max() <= SCORE_TOLERANCE
        assert np.array_equal(head.greedy(obs)[0], np.argmax(scores, axis=-1))
        assert head.scores(obs[:0]).shape == (0, *row[:-1], 41)
        if layout == "per_node":  # the SKU-shared head reads any number of SKUs, each on its own
            wide = obs[:140].reshape(-1, 26)[:420].reshape(60, 7, 26)
            together, alone = head.scores(wide), head.scores(wide.reshape(-1, 1, 26)).reshape(60, 7, 41)
            assert np.abs(together - alone).max() <= 1e-5


@pytest.mark.slow
def test_the_onnx_heads_decide_as_the_trained_policy(exported):
    _, checkpoint, out_dir, exports = exported
    policy = TrainedPolicy.from_checkpoint(checkpoint)
    for e in exports:
        obs = np.load(out_dir / e.samples_file)["obs"]
        with torch.no_grad():
            expected = policy._greedy(e.policy_id, torch.from_numpy(obs))
        assert np.array_equal(OnnxHead(out_dir / e.onnx_file, e.score_kind).greedy(obs)[0], expected)


@pytest.mark.slow
def test_a_recurrent_policy_is_refused(tmp_path):
    checkpoint = train(tmp_path / "run", "agent=ppo_lstm", f"case={CASE}", *TINY_PPO, "agent.max_seq_len=5",
                       "evaluation.case_horizon=50")
    with pytest.raises(SpecError, match=r"policy 'default_policy' is recurrent \(an LSTM\); recurrent policies "
                                        r"cannot be exported yet"):
        export_rl_heads(checkpoint, tmp_path / "heads")
    assert not (tmp_path / "heads").exists()
