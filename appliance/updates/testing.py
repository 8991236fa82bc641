"""Simulated kiosks for the update tests and the rollout benchmark.

``kiosk_daemon`` is the real edge daemon (gate, sessions, outbox, MQTT link, model updater)
with the fast stand-ins of ``appliance.edge.testing`` for camera and measurement, starting on
the model ``startup_model`` picks. ``ModelEvents`` records, like a back-office subscriber,
every result's classification and every ``.../model/state``. ``linear_model`` writes small
ONNX classifiers without training. ``python -m appliance.updates.testing CONFIG`` runs one
kiosk as a child process (the SIGKILL test).
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from appliance.config import Config
from appliance.edge.daemon import EdgeDaemon, Requests
from appliance.edge.testing import fast_source, fixed_analyzer, run_daemon, wait_until
from appliance.transport import payloads
from appliance.transport.client import LinkSettings
from appliance.transport.subscriber import Subscriber
from appliance.transport.topics import MODEL_STATE_LEAF, fleet_filter
from appliance.updates.wiring import startup_model

LABELS = ("fine", "normal", "coarse")


def kiosk_daemon(config: Config, requests: Requests | None = None) -> EdgeDaemon:
    """The daemon with fake camera and measuring, the real model and updater."""
    return EdgeDaemon(
        config,
        source=fast_source(config),
        analyzer=fixed_analyzer,
        classifier=startup_model(config),
        stall_s=config.edge.camera_stall_s,
        requests=requests,
    )


def linear_model(
    path: Path,
    version: str,
    weights: np.ndarray | None = None,
    bias: Sequence[float] = (2.0, 0.0, 0.0),
    name: str = "skin-texture-grade",
    *,
    feature_names: Sequence[str] = payloads.FEATURE_KEYS,
    loop_trips: int = 0,
    one_answer: bool = False,
    one_row_only: bool = False,
    loop_above_kime: float | None = None,
) -> Path:
    """softmax(features @ weights + bias) as an ONNX model with a valid contract, reading
    ``feature_names`` in that order. ``loop_trips``: each run first counts to that many in a
    Loop node (about 1.4 µs a trip on an Intel Xeon), whose count adds 0 to the logits: the
    same answers, as late as wanted. ``one_answer``: the model answers one row, for the mean
    of the rows it is given (one row: the same answer). ``one_row_only``: the model reshapes its
    input to one row, so a run of more fails in ONNX Runtime. ``loop_above_kime``: the Loop
    counts only in a run where some row's ``kime_score`` is above that (slow on such inputs
    alone: the self-test's may all be below)."""
    import onnx  # noqa: PLC0415 - the train extra; only tests and benchmarks build models
    from onnx import helper, numpy_helper  # noqa: PLC0415

    n_features = len(feature_names)
    w = np.zeros((n_features, len(LABELS)), np.float32) if weights is None else weights
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    initializers = [numpy_helper.from_array(w.astype(np.float32), "w"),
                    numpy_helper.from_array(np.asarray(bias, np.float32), "b")]
    if loop_trips:
        nodes[1:2], more = _counting_loop(loop_trips)
        initializers += more
        if loop_above_kime is not None:
            nodes[:0], more = _trips_above(feature_names.index("kime_score"), loop_above_kime)
            next(i for i in initializers if i.name == "trips").name = "most_trips"
            initializers += more
    if one_answer:
        nodes[:0] = [helper.make_node("ReduceMean", ["features"], ["mean"], axes=[0],
                                      keepdims=1)]
        nodes[1].input[0] = "mean"
    if one_row_only:
        nodes[:0] = [helper.make_node("Reshape", ["features", "one_row"], ["row"])]
        nodes[1].input[0] = "row"
        initializers.append(numpy_helper.from_array(np.array([1, n_features], np.int64),
                                                    "one_row"))
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", 3])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    metadata = {
        "name": name, "version": version, "labels": '["fine", "normal", "coarse"]',
        "feature_names": "[" + ", ".join(f'"{k}"' for k in feature_names) + "]",
        "trained_on": "not trained: a fixed linear test model",
        "created_at": "2026-12-02T00:00:00Z",
    }
    helper.set_model_props(proto, metadata)
    onnx.save_model(proto, str(path))
    return path


def _trips_above(kime: int, threshold: float) -> tuple[list[Any], list[Any]]:
    """The nodes computing ``trips = most_trips if max(kime_score) > threshold else 0``, and
    their constants (``_counting_loop``'s count then reads ``trips``)."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    nodes = [
        helper.make_node("Gather", ["features", "kime_index"], ["kimes"], axis=1),
        helper.make_node("ReduceMax", ["kimes"], ["top"], keepdims=0),
        helper.make_node("Greater", ["top", "kime_threshold"], ["slow"]),
        helper.make_node("Cast", ["slow"], ["slow_count"], to=TensorProto.INT64),
        helper.make_node("Mul", ["slow_count", "most_trips"], ["trips"]),
    ]
    constants = [numpy_helper.from_array(np.array(kime, np.int64), "kime_index"),
                 numpy_helper.from_array(np.array(threshold, np.float32), "kime_threshold")]
    return nodes, constants


def _counting_loop(trips: int) -> tuple[list[Any], list[Any]]:
    """The nodes computing ``logits = scores + b + 0 * (a count to trips)``, and their
    constants."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    body = helper.make_graph(
        [helper.make_node("Identity", ["go_in"], ["go_out"]),
         helper.make_node("Add", ["count_in", "one"], ["count_out"])],
        "count",
        [helper.make_tensor_value_info("trip", TensorProto.INT64, []),
         helper.make_tensor_value_info("go_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("count_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("go_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("count_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    nodes = [
        helper.make_node("Loop", ["trips", "go", "zero"], ["count"], body=body),
        helper.make_node("Mul", ["count", "zero"], ["nothing"]),
        helper.make_node("Add", ["scores", "b"], ["biased"]),
        helper.make_node("Add", ["biased", "nothing"], ["logits"]),
    ]
    constants = [numpy_helper.from_array(np.array(trips, np.int64), "trips"),
                 numpy_helper.from_array(np.array(True), "go"),
                 numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    return nodes, constants


class ModelEvents:
    """Records results (classification version per measurement) and model states by device."""

    def __init__(self, host: str, port: int, prefix: str, client_id: str) -> None:
        self.versions: dict[str, dict[str, str | None]] = defaultdict(dict)
        self.deliveries = 0
        self.states: dict[str, list[payloads.ModelState]] = defaultdict(list)
        self._lock = threading.Lock()
        filters = [(fleet_filter(prefix, "result"), 1), (fleet_filter(prefix, MODEL_STATE_LEAF), 1)]
        # the one client factory, subscribing only once connected (transport/subscriber.py)
        self._link = Subscriber(LinkSettings(host, port, client_id), filters, self._on_message,
                                reconnect=False)
        self._link.start()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        raw = bytes(message.payload)
        if not raw:
            return
        with self._lock:
            if message.topic.endswith("/" + MODEL_STATE_LEAF):
                state = payloads.parse_payload(raw, payloads.ModelState)
                self.states[state.device_id].append(state)
                return
            result = payloads.parse_payload(raw, payloads.Result)
            version = result.classification.version if result.classification else None
            self.versions[result.device_id].setdefault(result.measurement_id, version)
            self.deliveries += 1

    def close(self) -> None:
        """Disconnect."""
        self._link.close()

    def last_state(self, device_id: str) -> payloads.ModelState | None:
        """The newest state a device reported."""
        with self._lock:
            states = self.states.get(device_id)
            return states[-1] if states else None

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Poll ``predicate()`` every 50 ms until it holds; False on timeout."""
        return wait_until(predicate, timeout_s, poll_s=0.05)


def main(argv: list[str]) -> int:
    """Run one simulated kiosk from a config file until stopped."""
    return run_daemon(argv[0], kiosk_daemon)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
