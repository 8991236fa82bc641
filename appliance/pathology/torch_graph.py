"""Run an exported tile model's ONNX graph with PyTorch: the same trained weights, on CUDA.

The ONNX file is the one artefact a model ships as; this module turns its initializers into
torch buffers and executes its nodes in order with torch operators, so the PyTorch backend needs
no separate checkpoint and cannot drift from the ONNX model. It covers the operators the VGG19
exports of models/pathology/export.py use (plus the guard's added outputs); any other operator
is a GraphError and the server falls back to the next backend. Each value is dropped after the
last node that reads it, so a run holds what ONNX Runtime's holds (appliance/pathology/model.py
bounds that, in its warm-up), not every value the graph makes. Needs torch (optional import).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional


class GraphError(ValueError):
    """An ONNX graph this interpreter cannot run; the message names the operator."""


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, a: dict[str, Any]) -> Any:
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        raise GraphError(f"Conv with asymmetric pads {pads}")
    return functional.conv2d(x, w, b, stride=a.get("strides", [1, 1]), padding=pads[:2],
                             dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))


def _gemm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, a: dict[str, Any]) -> Any:
    left = x.t() if a.get("transA", 0) else x
    right = w.t() if a.get("transB", 0) else w
    out = a.get("alpha", 1.0) * (left @ right)
    return out if b is None else out + a.get("beta", 1.0) * b


def _reduce_mean(inputs: list[Any], a: dict[str, Any]) -> Any:
    axes = a.get("axes") or [int(v) for v in inputs[1].tolist()]
    return inputs[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))


OPS: dict[str, Callable[[list[Any], dict[str, Any]], Any]] = {
    "Conv": lambda i, a: _conv(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "Relu": lambda i, a: torch.relu(i[0]),
    "MaxPool": lambda i, a: functional.max_pool2d(i[0], a["kernel_shape"], a.get("strides")),
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=(2, 3), keepdim=True),
    "Flatten": lambda i, a: torch.flatten(i[0], a.get("axis", 1)),
    "Concat": lambda i, a: torch.cat(i, dim=a["axis"]),
    "Sub": lambda i, a: i[0] - i[1],
    "Div": lambda i, a: i[0] / i[1],
    "Add": lambda i, a: i[0] + i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "ReduceMean": _reduce_mean,
    "Gemm": lambda i, a: _gemm(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "Softmax": lambda i, a: torch.softmax(i[0].float(), dim=a.get("axis", -1)).to(i[0].dtype),
    "Einsum": lambda i, a: torch.einsum(a["equation"].decode(), *i),
    "Identity": lambda i, a: i[0],
    "Dropout": lambda i, a: i[0],
}


class OnnxGraphModule(nn.Module):
    """The graph of one ONNX file as a torch module: ``forward(tiles)`` -> named outputs."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        proto = onnx.load(str(path))
        unknown = sorted({n.op_type for n in proto.graph.node} - set(OPS))
        if unknown:
            raise GraphError(f"{path}: operators {unknown} are not supported by the torch "
                             "backend; use onnx-cpu or onnx-cuda")
        self._names: dict[str, str] = {}
        for index, tensor in enumerate(proto.graph.initializer):
            buffer = f"w{index}"
            self.register_buffer(buffer, torch.from_numpy(numpy_helper.to_array(tensor).copy()))
            self._names[tensor.name] = buffer
        self._nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n))
                       for n in proto.graph.node]
        self.input_name = proto.graph.input[0].name
        self.output_names = [output.name for output in proto.graph.output]
        self._done_after = _last_readers(self._nodes, set(self.output_names))

    def forward(self, tiles: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run every node; tiles is N x 3 x H x W (0-255, the graph scales them)."""
        values: dict[str, Any] = {self.input_name: tiles}
        for (op_type, inputs, outputs, attrs), done in zip(self._nodes, self._done_after,
                                                           strict=True):
            args = [self._value(name, values) for name in inputs if name]
            values[outputs[0]] = OPS[op_type](args, attrs)
            for name in done:
                values.pop(name, None)
        return {name: values[name] for name in self.output_names}

    def _value(self, name: str, values: dict[str, Any]) -> Any:
        if name in values:
            return values[name]
        return getattr(self, self._names[name])


def _last_readers(nodes: list[tuple[str, list[str], list[str], dict[str, Any]]],
                  kept: set[str]) -> list[list[str]]:
    """For each node, the values no later node reads (the graph's outputs, ``kept``, aside)."""
    last: dict[str, int] = {}
    for index, (_, inputs, _, _) in enumerate(nodes):
        last.update((name, index) for name in inputs if name)
    done: list[list[str]] = [[] for _ in nodes]
    for name, index in last.items():
        if name not in kept:
            done[index].append(name)
    return done
