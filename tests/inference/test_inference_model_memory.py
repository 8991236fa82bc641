"""A feature model's file is small, but a node of a few bytes can ask ONNX Runtime for any
amount of memory: such a model is refused at its warm-up, within the runner's bound, instead
of filling the kiosk's (or the release host's) memory; a wide model's large batch still runs
(appliance/inference/runner.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from inference_helpers import LABELS, contract
from onnx import helper, numpy_helper

from appliance.inference.contract import ModelError
from appliance.inference.runner import MAX_RUN_BYTES, OnnxRunner
from appliance.transport.payloads import FEATURE_KEYS

WIDTH = len(FEATURE_KEYS)


def _feature_model(path: Path, nodes: list[onnx.NodeProto],
                   weights: dict[str, np.ndarray]) -> Path:
    """A model with the runner's contract: features [batch, 16] in, probabilities out."""
    graph = helper.make_graph(
        nodes, "memory",
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT,
                                       ["batch", len(LABELS)])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    helper.set_model_props(proto, contract().to_metadata())
    onnx.save_model(proto, str(path))
    return path


def test_a_small_file_asking_for_more_memory_than_the_bound_is_refused(tmp_path: Path) -> None:
    floats = MAX_RUN_BYTES // 4 + 8_000_000  # 300 MB of ones, summed into every answer
    model = _feature_model(tmp_path / "asks.onnx", [
        helper.make_node("ConstantOfShape", ["size"], ["ones"],
                         value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("ReduceSum", ["ones"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("MatMul", ["features", "weights"], ["logits"]),
        helper.make_node("Add", ["logits", "nothing"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
    ], {"size": np.array([floats], np.int64), "zero": np.zeros(1, np.float32),
        "weights": np.zeros((WIDTH, len(LABELS)), np.float32)})
    assert model.stat().st_size < 2000
    with pytest.raises(ModelError) as refused:
        OnnxRunner(model)  # on main: loaded, its 300 MB folded into a constant
    assert f"{model}: the model fails on a test input" in str(refused.value)


def test_a_wide_model_answers_a_batch_larger_than_one_run_may_hold(tmp_path: Path) -> None:
    hidden = 1024  # 100,000 rows x 1024 floats: 410 MB in one run, over the bound
    rng = np.random.default_rng(3)
    model = _feature_model(tmp_path / "wide.onnx", [
        helper.make_node("MatMul", ["features", "first"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["active"]),
        helper.make_node("MatMul", ["active", "second"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
    ], {"first": rng.normal(0, 0.1, (WIDTH, hidden)).astype(np.float32),
        "second": rng.normal(0, 0.1, (hidden, len(LABELS))).astype(np.float32)})
    runner = OnnxRunner(model)
    rows = 100_000
    assert rows * hidden * 4 > MAX_RUN_BYTES
    features = rng.normal(0, 1, (rows, WIDTH)).astype(np.float32)
    answers = runner.probabilities(features)
    assert answers.shape == (rows, len(LABELS))
    np.testing.assert_allclose(answers[-5:], runner.probabilities(features[-5:]), rtol=1e-5)
    np.testing.assert_allclose(answers.sum(axis=1), 1.0, rtol=1e-5)
