"""OnnxHead (agents/deploy/onnx_head.py) on small hand-built ONNX models, without training: scores, greedy actions
and their confidence, any batch size, and one clear error naming the file for a bad file or a bad shape; the export
of one untrained module (agents/rl/export.py) and its refusal when onnxruntime disagrees with torch. Exports of
trained checkpoints and their parity on twin observations: tests/experiments/test_onnx_export.py."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agents.deploy.onnx_head import OnnxHead
from agents.rl import export
from agents.rl.sku_module import SkuSharedPPOModule
from twin.config import SpecError

WEIGHTS = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]], dtype=np.float32)  # 2 features -> 3 actions


def linear_model(path: Path, row_shape: tuple[int, ...] = (2,), input_name: str = "obs") -> Path:
    """scores = obs @ WEIGHTS, with a free batch axis (and any further axes before the features)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "w"], ["scores"])], "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", *row_shape])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", *row_shape[:-1], 3])],
        [numpy_helper.from_array(WEIGHTS, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_scores_and_greedy_actions_for_logits(tmp_path):
    head = OnnxHead(linear_model(tmp_path / "m.onnx"), kind="logits")
    obs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    scores = head.scores(obs)
    assert scores.dtype == np.float32 and np.array_equal(scores, obs @ WEIGHTS)
    actions, confidence = head.greedy(obs)
    assert actions.dtype == np.int64 and actions.tolist() == [1, 2, 2]
    softmax = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert confidence == pytest.approx(softmax[np.arange(3), actions])


def test_q_value_confidence_is_the_margin_to_the_second_best(tmp_path):
    head = OnnxHead(linear_model(tmp_path / "m.onnx"), kind="q_values")
    actions, confidence = head.greedy(np.array([[1.0, 0.0], [2.0, 1.0]], dtype=np.float32))  # Q [1,2,0], [2,3,3]
    assert actions.tolist() == [1, 1]  # a tie goes to the first best, as torch.argmax
    assert confidence.tolist() == [1.0, 0.0]


def test_any_batch_size_and_a_per_node_layout(tmp_path):
    head = OnnxHead(linear_model(tmp_path / "m.onnx", row_shape=(4, 2)), kind="logits")
    assert head.row_shape == (4, 2)
    actions, confidence = head.greedy(np.zeros((0, 4, 2), dtype=np.float32))
    assert actions.shape == (0, 4) and confidence.shape == (0, 4)
    obs = np.random.default_rng(0).normal(size=(5, 4, 2))  # float64 is converted
    actions, _ = head.greedy(obs)
    assert actions.shape == (5, 4) and np.array_equal(actions, np.argmax(obs @ WEIGHTS, axis=-1))


def test_observations_of_the_wrong_shape_name_the_file_and_the_shape(tmp_path):
    path = linear_model(tmp_path / "m.onnx", row_shape=(4, 2))
    head = OnnxHead(path, kind="logits")
    for obs in (np.zeros((3, 2)), np.zeros((3, 5, 2)), np.zeros(2)):
        with pytest.raises(SpecError, match=rf"{path}: observations of shape .* allowed: \(batch, 4, 2\)"):
            head.scores(obs)


def test_a_corrupt_or_missing_file_is_one_clear_error(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(linear_model(tmp_path / "m.onnx").read_bytes()[:40])
    for path in (corrupt, tmp_path / "missing.onnx"):
        with pytest.raises(SpecError, match=rf"{path}: not a loadable ONNX model"):
            OnnxHead(path, kind="logits")


def test_a_model_with_other_inputs_or_an_unknown_kind_is_refused(tmp_path):
    with pytest.raises(SpecError, match=r"inputs \['x'\].*allowed: one input 'obs'"):
        OnnxHead(linear_model(tmp_path / "x.onnx", input_name="x"), kind="logits")
    with pytest.raises(SpecError, match="kind 'probs' is not allowed; allowed: logits, q_values"):
        OnnxHead(linear_model(tmp_path / "m.onnx"), kind="probs")


def test_an_export_that_disagrees_with_torch_is_refused_with_the_numbers(tmp_path, monkeypatch):
    """A SKU-shared PPO module built without training exports; a disturbed onnxruntime result is refused."""
    module = SkuSharedPPOModule(observation_space=gym.spaces.Box(-100, 100, (3, 4), np.float32),
                                action_space=gym.spaces.MultiDiscrete([5, 5, 5]), model_config={"hidden": [8]})
    module.eval()
    obs = np.random.default_rng(0).normal(size=(50, 3, 4)).astype(np.float32)
    done = export.export_head(module, "store", obs, tmp_path, tmp_path / "checkpoint", "per_node")
    assert (done.obs_layout, done.score_kind, done.n_features, done.n_actions) == ("per_node", "logits", 4, 5)
    assert done.max_abs_score_diff <= export.SCORE_TOLERANCE and done.greedy_agreement == 1.0
    assert OnnxHead(tmp_path / "store.onnx", "logits").greedy(obs)[0].shape == (50, 3)

    monkeypatch.setattr(OnnxHead, "scores", lambda self, o: np.zeros((len(o), 3, 5), dtype=np.float32) + 1.0)
    with pytest.raises(SpecError, match=r"policy 'store': the ONNX model differs from torch on 50 sampled "
                                        r"observations: max \|score difference\| 1\.0\d* \(allowed: 0.0001\), greedy "
                                        r"actions differ on \d+ of them"):
        export.export_head(module, "store", obs, tmp_path, tmp_path / "checkpoint", "per_node")
    assert list(tmp_path.glob("store.*")) == []
