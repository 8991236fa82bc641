"""ONNX Runtime session for a feature-vector model: load once, check the contract, warm up, run.

The kiosk PC is small and also runs capture and measurement, so a session uses one intra-op and
one inter-op thread. Only onnxruntime and numpy are needed at run time.

What a model's graph computes is bounded as the loader bounds it (appliance/inference/loader.py):
the feature models' sessions fold no constants and allocate from one CPU arena of MAX_RUN_BYTES
(weights aside), so a kiosk does not fill its memory for a hostile model; a run that wants more
fails, and a model whose warm-up does is refused as any model failing its test input. Runs take
at most MAX_ROWS_PER_RUN rows at a time, so a legitimate model's batch of any size fits.

Nor is how long a run takes bounded by the file: a Loop node of a few bytes may run for hours.
A runner given ``run_deadline_s`` (the kiosk verifying an update, a release) stops a run at that
deadline (ONNX Runtime's terminate flag, which it reads between nodes and between a Loop's
iterations) and refuses one that ends past it (a single slow node, which the flag cannot stop),
with ModelTooSlowError.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from appliance.inference.contract import (
    ModelContract,
    ModelError,
    check_features,
    check_io_shape,
    parse_contract,
)
from appliance.inference.loader import open_session

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 50 * 1024 * 1024
# a feature model's run holds a few MB of activations for MAX_ROWS_PER_RUN rows
MAX_RUN_BYTES = 256 * 1024 * 1024
MAX_ROWS_PER_RUN = 4096
PROBABILITY_TOLERANCE = 1e-3
# The longest one run (up to MAX_ROWS_PER_RUN rows) may take on the kiosk: the shipped grader
# answers 256 rows in 0.3 ms (Intel Xeon, 2 vCPU, load 4), a kiosk measures a frame in about
# 1.2 s; a model that verified and then took 10 s a measurement (or for ever) was installed
RUN_DEADLINE_S = 2.0
FloatMatrix = npt.NDArray[np.float32]


def session_options() -> Any:
    """ORT options for the kiosk: one intra-op thread, one inter-op thread, sequential."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # a refused model is reported by us, not as ORT warnings
    return options


CONFIGURED_MODEL_HINT = ("check model.path in the config, or rebuild with `appliance models "
                         "build-skin`")
NAMED_MODEL_HINT = "check the file named, or rebuild it with `appliance models build-skin`"


def _open_session(path: Path, fix_hint: str, data: bytes | None) -> Any:
    return open_session(
        path,
        max_bytes=MAX_MODEL_BYTES,
        providers=["CPUExecutionProvider"],
        options=session_options(),
        fix_hint=fix_hint,
        data=data,
        run_bytes=MAX_RUN_BYTES,
    )


def not_probabilities(row: np.ndarray) -> str | None:
    """Why one answer of the model is no probability distribution (a value that is not a
    finite number, one outside 0-1, or a sum other than 1), or None when it is one."""
    if not np.all(np.isfinite(row)):
        return f"hold values that are not finite numbers ({_shown(row)})"
    if np.any(row < -PROBABILITY_TOLERANCE) or np.any(row > 1.0 + PROBABILITY_TOLERANCE):
        return f"lie outside 0-1 ({_shown(row)})"
    total = float(row.sum())
    if abs(total - 1.0) > PROBABILITY_TOLERANCE:
        return f"sum to {total:.4f}, not 1"
    return None


class ModelTooSlowError(ModelError):
    """A run of the model did not end within its runner's ``run_deadline_s``."""


def _shown(row: np.ndarray) -> str:
    return ", ".join(f"{float(value):.4g}" for value in row[:8]) + (", ..." if len(row) > 8 else "")


class OnnxRunner:
    """One loaded, checked and warmed-up model; ``probabilities(matrix)`` runs it."""

    def __init__(
        self, path: str | Path, fix_hint: str = CONFIGURED_MODEL_HINT, *, data: bytes | None = None,
        run_deadline_s: float | None = None,
    ) -> None:
        """``fix_hint``: what a refusal tells the user to do (the config's ``model.path`` by
        default; ``NAMED_MODEL_HINT`` where a command was given the file). ``data``: the file's
        content, read already (a release hashes and ships the very bytes it self-tests).
        ``run_deadline_s``: the longest a run may take, the warm-up's included (None: no
        bound; the attribute may be changed later)."""
        self.path = Path(path)
        self.run_deadline_s = run_deadline_s
        self._session = _open_session(self.path, fix_hint, data)
        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.contract: ModelContract = parse_contract(self.path, metadata)
        check_features(self.path, self.contract)
        self._check_io()
        self._warm_up()

    def _check_io(self) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ModelError(
                f"{self.path}: the model has {len(inputs)} inputs {names}; we feed exactly one "
                f"[batch, {len(self.contract.feature_names)}] float32 tensor"
            )
        if inputs[0].type != "tensor(float)":
            raise ModelError(
                f"{self.path}: model input {inputs[0].name!r} is {inputs[0].type}; "
                f"we feed tensor(float) (float32)"
            )
        wanted = [o for o in outputs if o.name == "probabilities"] or outputs[:1]
        self._input_name: str = inputs[0].name
        self._output_name: str = wanted[0].name
        check_io_shape(self.path, self.contract, inputs[0].shape, wanted[0].shape)

    def _warm_up(self) -> None:
        """Run once so the first kiosk measurement does not pay for lazy initialisation."""
        zeros = np.zeros((1, len(self.contract.feature_names)), dtype=np.float32)
        try:
            probabilities = self.probabilities(zeros)
        except ModelTooSlowError:
            raise
        except Exception as exc:
            raise ModelError(f"{self.path}: the model fails on a test input: {exc}") from exc
        if probabilities.shape != (1, len(self.contract.labels)):
            raise ModelError(
                f"{self.path}: the model answers shape {list(probabilities.shape)}; "
                f"we need [1, {len(self.contract.labels)}] (one probability per label)"
            )
        problem = not_probabilities(probabilities[0])
        if problem is not None:
            raise ModelError(
                f"{self.path}: the model's outputs {problem}; we need softmax probabilities "
                f"as the model output"
            )

    def probabilities(self, features: FloatMatrix) -> FloatMatrix:
        """Class probabilities, [batch, labels], for a [batch, features] float32 matrix (run
        MAX_ROWS_PER_RUN rows at a time)."""
        if len(features) <= MAX_ROWS_PER_RUN:
            return self._run(features)
        return np.concatenate([self._run(features[start:start + MAX_ROWS_PER_RUN])
                               for start in range(0, len(features), MAX_ROWS_PER_RUN)])

    def _run(self, features: FloatMatrix) -> FloatMatrix:
        deadline_s = self.run_deadline_s
        if deadline_s is None:
            outputs = self._session.run([self._output_name], {self._input_name: features})
        else:
            outputs = self._run_within(features, deadline_s)
        return np.asarray(outputs[0], dtype=np.float32)

    def _run_within(self, features: FloatMatrix, deadline_s: float) -> list[Any]:
        """One run, stopped at ``deadline_s``; ModelTooSlowError when it was, or ended later."""
        options = ort.RunOptions()
        options.log_severity_level = 4  # the stop is reported by us, not as an ORT error line
        timer = threading.Timer(deadline_s, setattr, (options, "terminate", True))
        timer.daemon = True
        started = time.monotonic()
        timer.start()
        try:
            outputs: list[Any] = self._session.run(
                [self._output_name], {self._input_name: features}, options)
        except Exception as exc:
            if options.terminate:
                raise self._too_slow(len(features), deadline_s) from exc
            raise
        finally:
            timer.cancel()
        if time.monotonic() - started > deadline_s:
            raise self._too_slow(len(features), deadline_s)
        return outputs

    def _too_slow(self, rows: int, deadline_s: float) -> ModelTooSlowError:
        return ModelTooSlowError(
            f"{self.path}: a run of {rows} row(s) did not end within {deadline_s:g} s "
            f"(stopped there); a feature model answers in milliseconds, so this one would hold "
            f"every measurement up")
