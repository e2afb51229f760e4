"""The greedy head of a trained policy as an ONNX model, run with onnxruntime (no torch, no ray).

`agents.rl.export.export_rl_heads` writes one model per policy id of a checkpoint. Each model has

    input  "obs":    float32 (batch, features)        obs_layout "per_sku": one row per (node, SKU) agent
                     float32 (batch, SKUs, features)  obs_layout "per_node": one row per node (SKU-shared PPO)
    output "scores": float32 (batch, actions) or (batch, SKUs, actions)
                     kind "logits":   PPO's action-distribution inputs (unnormalised log-probabilities)
                     kind "q_values": DQN's Q-values

with a dynamic batch axis (0 rows included); the other axes are fixed by the module's observation space.
The greedy action is the argmax of the scores over the last axis, the first on a tie, as torch.argmax picks.

    head = OnnxHead("store.onnx", kind="logits")
    actions, confidence = head.greedy(obs)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

from twin.config import SpecError

SCORE_KINDS = ("logits", "q_values")
INPUT_NAME = "obs"
OUTPUT_NAME = "scores"


class OnnxHead:
    """One exported policy head: scores (logits or Q-values) and greedy actions for a batch of observations.

    The session runs on the CPU with one thread (the service runs one head per worker process).
    """

    def __init__(self, path: str | Path, kind: str) -> None:
        self.path = Path(path)
        if kind not in SCORE_KINDS:
            raise SpecError(f"{self.path}: kind {kind!r} is not allowed; allowed: {', '.join(SCORE_KINDS)}")
        self.kind = kind
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a missing or corrupt file
            raise SpecError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise SpecError(f"{self.path}: inputs {[i.name for i in inputs]}, outputs {[o.name for o in outputs]}; "
                            f"allowed: one input {INPUT_NAME!r} and an output {OUTPUT_NAME!r} "
                            f"(a model written by agents.rl.export)")
        if inputs[0].type != "tensor(float)":
            raise SpecError(f"{self.path}: input {INPUT_NAME!r} is {inputs[0].type}; allowed: tensor(float)")
        # per-row shape: (features,) or (SKUs, features); a dimension that is not a number is free
        self.row_shape: tuple[int | None, ...] = tuple(d if isinstance(d, int) else None for d in inputs[0].shape[1:])

    def scores(self, obs: np.ndarray) -> np.ndarray:
        """The model's scores (float32, the observation's batch shape plus one axis of actions) for `obs`
        (float32, (batch, *row_shape); any batch size, 0 rows included)."""
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        shape = obs.shape[1:]
        if len(shape) != len(self.row_shape) or any(e is not None and e != s for e, s in zip(self.row_shape, shape)):
            expected = ", ".join("n" if d is None else str(d) for d in self.row_shape)
            raise SpecError(f"{self.path}: observations of shape {obs.shape} do not fit the model's input "
                            f"{INPUT_NAME!r}; allowed: (batch, {expected})")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0]

    def greedy(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The greedy actions (int64, the scores' shape less the action axis) and a confidence for each (float64).

        The confidence is, for logits, the softmax probability of the chosen action (in (0, 1]); for
        Q-values, the margin between the best and the second-best Q-value (>= 0, in the reward's units;
        +inf with a single action).
        """
        return self.choose(self.scores(obs))

    def choose(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The greedy actions and their confidence (as `greedy`) for scores this head gave."""
        scores = np.asarray(scores, dtype=np.float64)
        actions = np.argmax(scores, axis=-1)
        best = np.take_along_axis(scores, actions[..., None], axis=-1)[..., 0]
        if self.kind == "logits":
            confidence = 1.0 / np.exp(scores - best[..., None]).sum(axis=-1)  # softmax at the maximum
        elif scores.shape[-1] < 2:
            confidence = np.full(best.shape, np.inf)
        else:
            confidence = best - np.partition(scores, -2, axis=-1)[..., -2]
        return actions.astype(np.int64), confidence
