"""Small labelled tables and tiny models for the inference tests (no synthetic rendering)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from appliance.inference.contract import ModelContract
from appliance.modelbuild.table import LabelledTable
from appliance.transport.payloads import FEATURE_KEYS

if TYPE_CHECKING:
    from appliance.modelbuild.training import TrainedMlp

LABELS = ("fine", "normal", "coarse")
# Typical magnitudes of each feature, so normalisation inside the graph matters.
SCALES = np.array(
    [90, 75, 150, 0.02, 6, 12, 0.08, 45, 0.3, 50, 60, 10, 15, 30, 20, 0.05], dtype=np.float32
)


def make_table(rows: int = 600, seed: int = 0, noise: float = 0.1) -> LabelledTable:
    """Features at realistic scales; the grade follows hill density over furrow width."""
    rng = np.random.default_rng(seed)
    features = (rng.lognormal(0.0, 0.35, (rows, len(FEATURE_KEYS))) * SCALES).astype(np.float32)
    score = np.log(features[:, 5]) - np.log(features[:, 7]) + rng.normal(0.0, noise, rows)
    low, high = np.quantile(score, [1 / 3, 2 / 3])
    labels = tuple("coarse" if s < low else "normal" if s < high else "fine" for s in score)
    shares = {"train": 0.6, "calibration": 0.1, "validation": 0.1}
    splits = [name for name, share in shares.items() for _ in range(int(rows * share))]
    splits += ["test"] * (rows - len(splits))
    return LabelledTable(
        FEATURE_KEYS, features, labels, tuple(splits), tuple([""] * rows), "test table"
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def drawn_overconfident(
    rows: int, sharpened_by: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), and the probabilities of a model that says softmax(z * k):
    overconfident by a temperature of k."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (rows, 3))
    truth = np.asarray([rng.choice(3, p=p) for p in softmax(logits)], dtype=np.int64)
    return softmax(logits * sharpened_by), truth


def contract(version: str = "1.0.0", **changes: object) -> ModelContract:
    """A valid contract for the test models."""
    base = ModelContract(
        name="skin-texture-grade", version=version, feature_names=FEATURE_KEYS, labels=LABELS,
        trained_on="unit-test table", created_at="2026-11-26T00:00:00Z",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def train_tiny(table: LabelledTable, epochs: int = 40) -> TrainedMlp:
    """A small MLP trained for a few seconds at most."""
    from appliance.modelbuild.training import train_mlp

    return train_mlp(table.rows("train"), LABELS, (32, 32), epochs, seed=0)


def write_float(path: Path, model: TrainedMlp, model_contract: ModelContract) -> Path:
    """The float ONNX file of ``model`` with ``model_contract`` as metadata."""
    from appliance.modelbuild import export

    return export.save(export.build_graph(model, model_contract), path)


def write_int8(path: Path, float_path: Path, table: LabelledTable) -> Path:
    """A QDQ per-channel INT8 version of ``float_path`` calibrated on the calibration split."""
    from appliance.modelbuild import quantize

    scheme = quantize.Scheme("QDQ", per_channel=True)
    return quantize.quantize(float_path, path, table.rows("calibration").features, scheme)


def answering_badly_above(path: Path, version: str, kime_limit: float, answer: str) -> Path:
    """A model that says "fine" with softmax probabilities while kime_score is at most
    ``kime_limit``, and above it answers no probabilities: NaN (``answer="nan"``) or each
    probability doubled (``answer="doubled"``); a zero input and self-test inputs below the
    limit show nothing wrong."""
    import onnx
    from onnx import helper, numpy_helper

    width = len(FEATURE_KEYS)
    pick_kime = np.zeros((width, 1), np.float32)
    pick_kime[FEATURE_KEYS.index("kime_score"), 0] = 1.0
    nodes = [helper.make_node("MatMul", ["features", "pick_kime"], ["kime"]),
             helper.make_node("Sub", ["limit", "kime"], ["room"]),
             helper.make_node("Mul", ["kime", "zero"], ["zeros"]),  # [batch, 1]
             helper.make_node("Add", ["zeros", "bias"], ["logits"])]
    if answer == "nan":  # sqrt of a negative room is NaN, and so is NaN - NaN
        nodes += [helper.make_node("Sqrt", ["room"], ["root"]),
                  helper.make_node("Sub", ["root", "root"], ["nan_or_zero"]),
                  helper.make_node("Add", ["logits", "nan_or_zero"], ["spoilt"]),
                  helper.make_node("Softmax", ["spoilt"], ["probabilities"], axis=1)]
    else:  # 1 below the limit, 2 above it
        nodes += [helper.make_node("Softmax", ["logits"], ["softmax"], axis=1),
                  helper.make_node("Less", ["room", "zero"], ["above"]),
                  helper.make_node("Cast", ["above"], ["above_1"], to=onnx.TensorProto.FLOAT),
                  helper.make_node("Add", ["above_1", "one"], ["factor"]),
                  helper.make_node("Mul", ["softmax", "factor"], ["probabilities"])]
    constants = {"pick_kime": pick_kime, "limit": np.array([kime_limit], np.float32),
                 "zero": np.array([0.0], np.float32), "one": np.array([1.0], np.float32),
                 "bias": np.array([2.0, 0.0, 0.0], np.float32)}
    graph = helper.make_graph(
        nodes, "bad-above-a-kime",
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    helper.set_model_props(proto, {
        "name": "skin-texture-grade", "version": version, "labels": json.dumps(list(LABELS)),
        "feature_names": json.dumps(list(FEATURE_KEYS)), "trained_on": "not trained",
        "created_at": "2026-12-05T00:00:00Z"})
    onnx.save_model(proto, str(path))
    return path
