"""Export the greedy heads of a checkpoint's RLModules as ONNX models, checked against torch on twin observations.

    exports = export_rl_heads(Path("outputs/train/RUN/checkpoints/latest"), Path("bundle/heads"))

For each policy id of the checkpoint (agents.rl.checkpoint) it writes into `out_dir`

    <pid>.onnx          the greedy head: input "obs" (float32, dynamic batch axis), output "scores" (float32),
                        logits for PPO, Q-values for DQN (agents.deploy.onnx_head describes the format)
    <pid>.samples.npz   obs (float32) and scores (float32, torch's): observations sampled from twin episodes of
                        the checkpoint's own env config, which the serving side replays as a self-check on load

and checks parity before returning: onnxruntime's greedy actions equal torch's on every sample and the scores
differ by at most SCORE_TOLERANCE. Recurrent (LSTM) policies are refused: their state is not exported yet.

The exporter is torch.onnx.export's dynamo path (torch.export, then onnxscript): the TorchScript path
(dynamo=False) cannot translate the `nanmean` of RLlib's dueling DQN head (aten::nanmean has no ONNX
symbolic), while the dynamo path decomposes it and exports every module here with a symbolic batch axis
(torch.export.Dim), 0 rows included.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.q_net_api import QNetAPI

from agents.deploy.onnx_head import INPUT_NAME, OUTPUT_NAME, OnnxHead
from agents.envs.core import SupplyChainSim
from agents.rl.policy import TrainedPolicy
from twin.config import SpecError

SCORE_TOLERANCE = 1e-4  # the largest |torch - onnxruntime| score difference accepted

ObsLayout = Literal["per_sku", "per_node"]
ScoreKind = Literal["logits", "q_values"]


@dataclass(frozen=True)
class HeadExport:
    """One exported policy head: its files (relative to the export directory), shapes and parity figures."""

    policy_id: str
    onnx_file: str
    samples_file: str
    obs_layout: ObsLayout  # per_sku: obs (batch, features); per_node: obs (batch, SKUs, features)
    n_features: int
    n_actions: int
    score_kind: ScoreKind  # logits (PPO) or q_values (DQN)
    samples: int
    max_abs_score_diff: float
    greedy_agreement: float  # the share of samples whose greedy actions agree everywhere (1.0, or refused)


class GreedyHead(torch.nn.Module):
    """A module's greedy scores as a plain tensor -> tensor module (what torch.onnx.export traces)."""

    def __init__(self, module: torch.nn.Module, kind: ScoreKind) -> None:
        super().__init__()
        self.module = module
        self.kind = kind

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch = {Columns.OBS: obs}
        if self.kind == "q_values":  # forward_inference gives only the argmax; the Q-values come from here
            return self.module.compute_q_values(batch)[QF_PREDS]
        return self.module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]


def export_rl_heads(checkpoint: Path, out_dir: Path, *, samples: int = 10_000, seed: int = 0) -> list[HeadExport]:
    """Export every policy head of `checkpoint` into `out_dir` and check it against torch on `samples` twin
    observations per policy id (episodes from `seed`); SpecError when a head cannot be exported or disagrees."""
    if samples < 1:
        raise SpecError(f"samples: {samples} is not allowed; allowed: at least 1")
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    policy = TrainedPolicy.from_checkpoint(checkpoint)
    if policy.setup.sku_batched:
        raise SpecError(f"checkpoint {str(checkpoint)!r}: trained with sku_batched=true, whose policy also reads each "
                        f"pair's role as a feature, which bundles do not carry yet; allowed: a checkpoint trained "
                        f"with sku_batched=false")
    for pid, module in policy.modules.items():
        if module.is_stateful():
            raise SpecError(f"checkpoint {str(checkpoint)!r}: policy {pid!r} is recurrent (an LSTM); recurrent "
                            f"policies cannot be exported yet; allowed: a feed-forward policy (agent=ppo or dqn)")
    observations = sample_observations(policy, samples, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [export_head(policy.modules[pid], pid, observations[pid], out_dir, checkpoint,
                        "per_sku" if policy.by_sku else "per_node") for pid in policy.setup.policy_ids]


def sample_observations(policy: TrainedPolicy, samples: int, seed: int) -> dict[str, np.ndarray]:
    """`samples` observation rows per policy id, as the policy's modules see them, from twin episodes of its env
    config with uniformly random actions (episode seeds drawn from `seed`)."""
    sim = SupplyChainSim(policy.setup.env)
    rng = np.random.default_rng(seed)
    n_actions = policy.setup.env.action.n
    rows: dict[str, list[np.ndarray]] = {pid: [] for pid in policy.rows}
    counts = dict.fromkeys(policy.rows, 0)
    empty = [pid for pid, r in policy.rows.items() if len(r) == 0]
    if empty:
        raise SpecError(f"policy {empty[0]!r} answers for no agent of the checkpoint's env, so it has no "
                        f"observations to check its export on")
    obs = sim.reset(seed)  # (controlled nodes, SKUs, features)
    while min(counts.values()) < samples:
        flat = obs.reshape(-1, obs.shape[-1]) if policy.by_sku else obs
        for pid, r in policy.rows.items():
            if counts[pid] < samples:
                rows[pid].append(flat[r])
                counts[pid] += len(r)
        obs, _, done = sim.step(rng.integers(0, n_actions, size=obs.shape[:2]))
        if done:
            obs = sim.reset()
    return {pid: np.ascontiguousarray(np.concatenate(parts)[:samples], dtype=np.float32)
            for pid, parts in rows.items()}


def export_head(module: torch.nn.Module, pid: str, obs: np.ndarray, out_dir: Path, checkpoint: Path,
                layout: ObsLayout) -> HeadExport:
    """Export one module's greedy head to `<out_dir>/<pid>.onnx`, save its samples, check parity on them."""
    kind: ScoreKind = "q_values" if isinstance(module, QNetAPI) else "logits"
    head = GreedyHead(module, kind).eval()
    try:
        with torch.no_grad():
            expected = head(torch.from_numpy(obs)).numpy().astype(np.float32)
    except KeyError as exc:
        raise SpecError(f"checkpoint {str(checkpoint)!r}: policy {pid!r}: its module ({type(module).__name__}) "
                        f"gives no {exc} output; allowed: a PPO module with action-distribution inputs or a DQN "
                        f"module with Q-values") from exc
    onnx_file, samples_file = f"{pid}.onnx", f"{pid}.samples.npz"
    # two rows (and SKUs): torch.export specialises a dimension of size 0 or 1 to a constant
    example = torch.zeros((2, *obs.shape[1:]), dtype=torch.float32)
    dynamic = {0: torch.export.Dim("batch")}
    if layout == "per_node":  # the SKU-shared module reads any number of SKUs: so does its head
        example = torch.zeros((2, max(2, obs.shape[1]), obs.shape[2]), dtype=torch.float32)
        dynamic[1] = torch.export.Dim("skus")
    with warnings.catch_warnings(), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        torch.onnx.export(head, (example,), str(out_dir / onnx_file), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_shapes=(dynamic,),
                          dynamo=True, external_data=False, verbose=False)
    np.savez(out_dir / samples_file, obs=obs, scores=expected)
    onnx = OnnxHead(out_dir / onnx_file, kind)
    scores, (actions, _) = onnx.scores(obs), onnx.greedy(obs)
    diff = float(np.abs(scores.astype(np.float64) - expected).max())
    agree = (actions == np.argmax(expected, axis=-1)).reshape(len(obs), -1).all(axis=1)
    if diff > SCORE_TOLERANCE or not agree.all():
        for name in (onnx_file, samples_file):  # nothing half-checked is left for a bundle to pick up
            (out_dir / name).unlink()
        raise SpecError(f"checkpoint {str(checkpoint)!r}: policy {pid!r}: the ONNX model differs from torch on "
                        f"{len(obs)} sampled observations: max |score difference| {diff:.3g} (allowed: "
                        f"{SCORE_TOLERANCE:g}), greedy actions differ on {int((~agree).sum())} of them (allowed: 0)")
    return HeadExport(policy_id=pid, onnx_file=onnx_file, samples_file=samples_file, obs_layout=layout,
                      n_features=int(obs.shape[-1]), n_actions=int(expected.shape[-1]), score_kind=kind,
                      samples=len(obs), max_abs_score_diff=diff, greedy_agreement=float(agree.mean()))


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise a logger's level to ERROR inside a `with` block (the exporter logs skipped optional libraries)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
