"""Self-test vectors: recorded at release from the model itself, replayed on the kiosk.

The release records, for a few representative feature vectors, the label and probabilities the
model gives. Before a kiosk installs a model it runs the same vectors through its own ONNX
Runtime and refuses the model when a label differs or a probability moves by more than the
manifest's tolerance: a model that is not what was released, or a runtime that computes it
differently, never serves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from appliance.inference.runner import ModelTooSlowError, OnnxRunner
from appliance.updates.manifest import ModelManifest, SelfTestVector

MAX_VECTORS = 256


class SelfTestError(ValueError):
    """The model does not reproduce its release's self-test; the text names the first miss."""


def record_self_test(runner: OnnxRunner, inputs: Sequence[Sequence[float]]) -> list[SelfTestVector]:
    """The model's own answers for ``inputs`` (rows in its feature order)."""
    if not 1 <= len(inputs) <= MAX_VECTORS:
        raise SelfTestError(f"{len(inputs)} self-test inputs; give between 1 and {MAX_VECTORS}")
    matrix = np.asarray(inputs, dtype=np.float32)
    probabilities = _answers(runner, matrix)
    labels = runner.contract.labels
    return [
        SelfTestVector(
            features=[float(v) for v in row],
            label=labels[int(np.argmax(p))],
            probabilities=[round(float(v), 6) for v in p],
        )
        for row, p in zip(matrix, probabilities, strict=True)
    ]


def check_self_test(runner: OnnxRunner, manifest: ModelManifest) -> None:
    """Replay the manifest's vectors; SelfTestError on the first label or probability miss."""
    contract = runner.contract
    if contract.name != manifest.name or contract.version != manifest.version:
        raise SelfTestError(
            f"the file is model {contract.name} {contract.version} but the signed release "
            f"says {manifest.name} {manifest.version}"
        )
    widths = {len(v.features) for v in manifest.self_test}
    if widths != {len(contract.feature_names)}:
        raise SelfTestError(
            f"self-test vectors have {sorted(widths)} features; the model reads "
            f"{len(contract.feature_names)}"
        )
    matrix = np.asarray([v.features for v in manifest.self_test], dtype=np.float32)
    answers = _answers(runner, matrix)
    for index, (vector, got) in enumerate(zip(manifest.self_test, answers, strict=True)):
        _check_one(index, vector, got, contract.labels, manifest.tolerance)


def _answers(runner: OnnxRunner, matrix: np.ndarray) -> np.ndarray:
    """The model's probabilities for ``matrix``, one row of them for each of its rows;
    SelfTestError otherwise. The warm-up sees one row only, so a model answering one row
    whatever it is given (a mean over the batch), or failing on more than one (a fixed reshape),
    passed it, and the replay's ``zip`` raised a ValueError, or ONNX Runtime its own error, that
    nothing caught: the kiosk said nothing and tried the release again at every check."""
    try:
        answers = runner.probabilities(matrix)
    except ModelTooSlowError:
        raise
    except Exception as exc:  # ORT raises its own pybind classes (Fail, RuntimeException, ...)
        text = str(exc).strip().splitlines()
        raise SelfTestError(f"the model fails on its {len(matrix)} self-test rows: "
                            f"{text[0][:300] if text else repr(exc)}") from exc
    wanted = (len(matrix), len(runner.contract.labels))
    if answers.shape != wanted:
        raise SelfTestError(
            f"the model answers shape {list(answers.shape)} for {len(matrix)} self-test rows; "
            f"a release answers {list(wanted)} (one probability per label for each row)")
    return answers


def _check_one(
    index: int,
    vector: SelfTestVector,
    got: np.ndarray,
    labels: Sequence[str],
    tolerance: float,
) -> None:
    label = labels[int(np.argmax(got))]
    if label != vector.label:
        raise SelfTestError(
            f"self-test vector {index}: the model says {label!r}, the release expects "
            f"{vector.label!r}"
        )
    expected = np.asarray(vector.probabilities, dtype=np.float64)
    if expected.shape != got.shape:
        raise SelfTestError(
            f"self-test vector {index}: {got.shape[0]} probabilities, the release expects "
            f"{expected.shape[0]}"
        )
    worst = float(np.max(np.abs(expected - got)))
    if not worst <= tolerance:
        raise SelfTestError(
            f"self-test vector {index}: a probability differs by {worst:.4f} from the "
            f"release (tolerance {tolerance})"
        )
