"""Write a trained MLP as an ONNX graph with normalisation inside and the contract as metadata.

The graph is written node by node (no torch exporter needed): ``features`` [batch, n] float32
-> Sub(mean) -> Div(std) -> (Gemm -> Relu)* -> Gemm -> Softmax -> ``probabilities``
[batch, labels]. Opset 17, dynamic batch axis. A build then divides the logits by its fitted
temperature in front of the Softmax (``temperature.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from appliance.inference.contract import ModelContract
from appliance.modelbuild.training import TrainedMlp

OPSET = 17
IR_VERSION = 9
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"


def layer_name(index: int) -> str:
    """The node name of the index-th Gemm layer (0 = the first, fed the normalised features)."""
    return f"layer{index}"


def _layer_nodes(model: TrainedMlp) -> tuple[list[Any], list[Any], str]:
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes, initialisers = [], []
    current = "normalised"
    for i, (weight, bias) in enumerate(model.layers):
        initialisers += [
            numpy_helper.from_array(weight.astype(np.float32), f"layer{i}.weight"),
            numpy_helper.from_array(bias.astype(np.float32), f"layer{i}.bias"),
        ]
        out = f"layer{i}.out"
        nodes.append(
            helper.make_node(
                "Gemm", [current, f"layer{i}.weight", f"layer{i}.bias"], [out], transB=1,
                name=layer_name(i),
            )
        )
        current = out
        if i < len(model.layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"layer{i}.relu"], name=f"relu{i}"))
            current = f"layer{i}.relu"
    return nodes, initialisers, current


def build_graph(model: TrainedMlp, contract: ModelContract) -> Any:
    """The float32 ONNX ModelProto of ``model`` with ``contract`` in its metadata."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    layer_nodes, layer_weights, logits = _layer_nodes(model)
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "norm.mean"], ["centred"], name="centre"),
        helper.make_node("Div", ["centred", "norm.std"], ["normalised"], name="scale"),
        *layer_nodes,
        helper.make_node("Softmax", [logits], [OUTPUT_NAME], axis=1, name="softmax"),
    ]
    n_features, n_labels = len(model.feature_names), len(model.labels)
    graph = helper.make_graph(
        nodes,
        contract.name,
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", n_labels])],
        [
            numpy_helper.from_array(model.mean.astype(np.float32), "norm.mean"),
            numpy_helper.from_array(model.std.astype(np.float32), "norm.std"),
            *layer_weights,
        ],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="appliance"
    )
    proto.ir_version = IR_VERSION
    set_metadata(proto, contract)
    onnx.checker.check_model(proto)
    return proto


def set_metadata(proto: Any, contract: ModelContract) -> None:
    """Replace the model's ``metadata_props`` with the contract."""
    del proto.metadata_props[:]
    for key, value in sorted(contract.to_metadata().items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def save(proto: Any, path: Path) -> Path:
    """Write a ModelProto to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    return path


def rewrite_metadata(path: Path, contract: ModelContract) -> None:
    """Load ``path``, set its metadata to ``contract`` and write it back."""
    proto = onnx.load_model(str(path))
    set_metadata(proto, contract)
    onnx.save_model(proto, str(path))
