"""Temperature scaling: the model's logits divided by one number T before its softmax, so that
its probabilities say how often it is right (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017, section 4.2).

T > 1 softens overconfident probabilities, T < 1 sharpens timid ones; the ranking of the labels,
and so every grade, stays as it was. T is fitted on the build's ``calibration`` split (never on
validation or test rows) by minimising the negative log-likelihood of the true labels.

T lives in the graph itself, as a ``Div`` node in front of the ``Softmax``: every reader of the
model's output (the kiosk's grade and near-tie, the stored probabilities, a release's self-test,
``models evaluate``) sees the calibrated probabilities, and so does a kiosk whose software
predates this module; the contract's calibration figures record T and what it did. A model
without that node is a model with T = 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from scipy.optimize import minimize_scalar

from appliance.modelbuild.export import OUTPUT_NAME
from appliance.modelbuild.reliability import FLOOR, negative_log_likelihood

TEMPERATURE_INITIALISER = "softmax.temperature"
TEMPERATURE_NODE = "temperature"
# the bounds of the search: a calibration split that every answer gets right (few rows, an easy
# table) drives the NLL's minimum towards T = 0, certainty everywhere, which no model earns
LEAST_TEMPERATURE, MOST_TEMPERATURE = 0.25, 4.0

Probabilities = npt.NDArray[np.floating[Any]]


def tempered(probabilities: Probabilities, temperature: float) -> npt.NDArray[np.float64]:
    """The probabilities of the same logits divided by ``temperature``: softmax(log(p) / T),
    since a softmax's log is its logits up to a constant per row."""
    logits = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), FLOOR)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def fit_temperature(probabilities: Probabilities, truth: npt.NDArray[np.int64]) -> float:
    """The T, within LEAST/MOST_TEMPERATURE, that minimises the NLL of ``truth`` under the
    tempered ``probabilities`` (the untempered model's, on calibration rows)."""
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(tempered(probabilities, np.exp(log_t)), truth),
        bounds=(np.log(LEAST_TEMPERATURE), np.log(MOST_TEMPERATURE)), method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.float32(np.exp(result.x)))  # the value the graph holds


def at_bound(value: float) -> bool:
    """Whether a fitted T lies at a bound of the search (within 0.1 %): the rows drove it
    there, and it says little."""
    return bool(min(abs(np.log(value / LEAST_TEMPERATURE)),
                    abs(np.log(value / MOST_TEMPERATURE))) < 1e-3)


def _output_softmax(proto: Any) -> Any:
    nodes = [n for n in proto.graph.node if n.op_type == "Softmax" and OUTPUT_NAME in n.output]
    if len(nodes) != 1:
        raise ValueError(f"the graph has {len(nodes)} Softmax nodes giving {OUTPUT_NAME!r}; "
                         "temperature scaling needs exactly one")
    return nodes[0]


def graph_temperature(proto: Any) -> float:
    """The T a model's graph divides its logits by (1.0 for a graph without one)."""
    for initialiser in proto.graph.initializer:
        if initialiser.name == TEMPERATURE_INITIALISER:
            return float(onnx.numpy_helper.to_array(initialiser))
    return 1.0


def set_temperature(path: Path, temperature: float) -> None:
    """Divide the logits of the model at ``path`` by ``temperature`` before its softmax (the
    model must have none yet); the file is rewritten in place."""
    proto = onnx.load_model(str(path))
    if any(i.name == TEMPERATURE_INITIALISER for i in proto.graph.initializer):
        raise ValueError(f"{path}: the model divides by a temperature already")
    softmax = _output_softmax(proto)
    logits, scaled = softmax.input[0], f"{softmax.input[0]}.tempered"
    proto.graph.initializer.append(onnx.numpy_helper.from_array(
        np.asarray(temperature, dtype=np.float32), TEMPERATURE_INITIALISER))
    divide = onnx.helper.make_node("Div", [logits, TEMPERATURE_INITIALISER], [scaled],
                                   name=TEMPERATURE_NODE)
    softmax.input[0] = scaled
    nodes = list(proto.graph.node)
    nodes.insert(nodes.index(softmax), divide)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path))
