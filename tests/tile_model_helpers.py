"""Small pathology tile models for tests, written as an operator's models folder could hold
them: a working one (the tile's mean colour, scored by a 2-class softmax, with the shipped
model's metadata and, when asked, its out-of-distribution guard) and the same with hostile
nodes added to its graph (appliance/pathology/model.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from appliance.pathology.ood import METADATA_KEY
from appliance.shipped import PATHOLOGY_MODEL, shipped_path

TILE_PX = 64  # as the shipped model's
ONES = numpy_helper.from_array(np.ones(1, np.float32))


@functools.cache
def _shipped() -> ort.InferenceSession:
    return ort.InferenceSession(str(shipped_path(PATHOLOGY_MODEL)),
                                providers=["CPUExecutionProvider"])


def shipped_metadata(guard: bool) -> dict[str, str]:
    """The shipped model's metadata (labels, tile size, stain reference, ...), its guard or not."""
    metadata = dict(_shipped().get_modelmeta().custom_metadata_map)
    if not guard:
        metadata.pop(METADATA_KEY)
    return metadata


def feature_width() -> int:
    """How many pooled features the shipped model's guard reads (its output ``features``)."""
    return int({o.name: o.shape for o in _shipped().get_outputs()}["features"][1])


def tile_model(path: Path, *, extra: list[onnx.NodeProto] | None = None,
               weights: dict[str, np.ndarray] | None = None, guard: bool = False,
               batch: str | int = "batch", side: str | int = TILE_PX,
               probabilities: str = "probabilities", one_row: bool = False,
               features: int | None = None, cam: int | None = None,
               metadata: dict[str, str] | None = None) -> Path:
    """A tile model: ``tiles`` [batch, 3, side, side] -> ``probabilities`` [batch, 2] (and
    ``features`` with the guard). ``extra`` nodes may read ``tiles`` and must make ``extra``,
    a value added to the logits (a scalar, say, times zero): what they ask is asked at every
    run. ``probabilities`` names the softmax's output; ``one_row``: the graph answers one row of
    probabilities for the whole batch; ``features``: how many it answers (the guard's else);
    ``cam``: the side of the (blank) class activation maps it answers, none without."""
    rng = np.random.default_rng(5)
    found = shipped_metadata(guard) | (metadata or {})
    nodes = [helper.make_node("GlobalAveragePool", ["tiles"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["colour"]),
             helper.make_node("Gemm", ["colour", "to_logits"], ["plain_logits"])]
    initial = {"to_logits": rng.normal(0, 0.01, (3, 2)).astype(np.float32)} | (weights or {})
    if extra:
        nodes += [*extra, helper.make_node("Add", ["plain_logits", "extra"], ["logits"])]
    else:
        nodes.append(helper.make_node("Identity", ["plain_logits"], ["logits"]))
    if one_row:
        nodes += [helper.make_node("ReduceMean", ["logits"], ["batch_logits"], axes=[0]),
                  helper.make_node("Softmax", ["batch_logits"], [probabilities], axis=1)]
    else:
        nodes.append(helper.make_node("Softmax", ["logits"], [probabilities], axis=1))
    outputs = [helper.make_tensor_value_info(probabilities, TensorProto.FLOAT, [batch, 2])]
    if guard:
        width = features or feature_width()
        initial["to_features"] = rng.normal(0, 1, (3, width)).astype(np.float32)
        nodes.append(helper.make_node("Gemm", ["colour", "to_features"], ["features"]))
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                                     [batch, width]))
    if cam:
        initial["cam_side"] = np.array([cam, cam], np.int64)
        nodes += [helper.make_node("Shape", ["tiles"], ["tile_count"], end=1),
                  helper.make_node("Concat", ["tile_count", "cam_side"], ["cam_shape"], axis=0),
                  helper.make_node("ConstantOfShape", ["cam_shape"], ["cam"], value=ONES)]
        outputs.append(helper.make_tensor_value_info("cam", TensorProto.FLOAT, [batch, cam, cam]))
    graph = helper.make_graph(
        nodes, "tiles", [helper.make_tensor_value_info("tiles", TensorProto.FLOAT,
                                                       [batch, 3, side, side])],
        outputs, [numpy_helper.from_array(value, name) for name, value in initial.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    helper.set_model_props(proto, found)
    onnx.save_model(proto, str(path))
    return path


def asking_at_each_run(path: Path, floats_per_tile: int, guard: bool = False) -> Path:
    """A tile model whose graph makes ``floats_per_tile`` ones for each tile it is given (its
    shape read from the input, so nothing is folded while loading) and adds their sum times 0."""
    return tile_model(path, guard=guard, extra=[
        helper.make_node("Shape", ["tiles"], ["tiles_shape"], end=1),
        helper.make_node("Mul", ["tiles_shape", "per_tile"], ["size"]),
        helper.make_node("ConstantOfShape", ["size"], ["ones"], value=ONES),
        helper.make_node("ReduceSum", ["ones"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["extra"]),
    ], weights={"per_tile": np.array([floats_per_tile], np.int64),
                "zero": np.zeros(1, np.float32)})


def asking_while_loading(path: Path, floats: int, guard: bool = False) -> Path:
    """A tile model whose graph adds two constants of ``floats`` ones and twos, made from
    initializers only, which an optimizing loader folds (computes, into a third) while it
    loads the model, and adds their sum times 0."""
    return tile_model(path, extra=[
        helper.make_node("ConstantOfShape", ["size"], ["ones"], value=ONES),
        helper.make_node("ConstantOfShape", ["size"], ["twos"], value=numpy_helper.from_array(
            np.full(1, 2, np.float32))),
        helper.make_node("Add", ["ones", "twos"], ["threes"]),
        helper.make_node("ReduceSum", ["threes"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["extra"]),
    ], weights={"size": np.array([floats], np.int64), "zero": np.zeros(1, np.float32)},
        guard=guard)


def branching(path: Path, branches: int, copies: int, guard: bool = False) -> Path:
    """A tile model of operators the torch backend runs (appliance/pathology/torch_graph.py)
    whose graph makes ``branches`` products of the tiles with ``copies`` weights (each
    ``copies`` times the tiles' size, by broadcasting), each read by one mean, and adds the
    means times 0: a runtime dropping a value after its last reader holds one product at a
    time, one keeping every value holds them all."""
    extra, means = [], []
    for index in range(branches):
        means.append(f"mean{index}")
        extra += [helper.make_node("Mul", ["tiles", "copies"], [f"product{index}"]),
                  helper.make_node("ReduceMean", [f"product{index}"], [means[-1]],
                                   axes=[0, 1, 2, 3, 4], keepdims=0)]
    total = means[0]
    for index, mean in enumerate(means[1:]):
        extra.append(helper.make_node("Add", [total, mean], [f"sum{index}"]))
        total = f"sum{index}"
    extra.append(helper.make_node("Mul", [total, "zero"], ["extra"]))
    weights = {"copies": np.ones((copies, 1, 1, 1, 1), np.float32),
               "zero": np.zeros(1, np.float32)}
    return tile_model(path, extra=extra, weights=weights, guard=guard)
