"""The one ONNX model loader: size-checked file, ONNX Runtime session, refusals as ModelError.

The kiosk's feature models (``runner``) and the pathology tile models (``pathology.model``) both
open their files here, so a missing, empty, oversized or corrupt file is refused the same way and
with one exception type that names the file and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from appliance.boundedread import what_is_there
from appliance.inference.contract import ModelError

__all__ = ["ModelError", "open_session"]


def check_model_file(path: Path, max_bytes: int, fix_hint: str) -> None:
    """Refuse a model file that is missing, empty or larger than ``max_bytes``."""
    if (what := what_is_there(path, "model file")) is not None:
        raise ModelError(f"{path}: {what}; {fix_hint}")
    size = path.stat().st_size
    if size == 0 or size > max_bytes:
        raise ModelError(
            f"{path}: model file is {size} bytes; a model here is between 1 and {max_bytes} "
            f"bytes; the file is empty or not this kind of model; {fix_hint}"
        )


def open_session(
    path: Path,
    *,
    max_bytes: int,
    providers: Sequence[str],
    options: Any,
    fix_hint: str,
    data: bytes | None = None,
    disabled_optimizers: Sequence[str] = (),
) -> Any:
    """An ONNX Runtime session for ``path``, or for ``data``: its content, read already by the
    caller (at most ``max_bytes``), which ``path`` then only names; ModelError if it cannot be
    one. ``disabled_optimizers``: ONNX Runtime's graph optimizers (by name) not to run."""
    if data is None:
        check_model_file(path, max_bytes, fix_hint)
    source = str(path) if data is None else data
    kept_from: dict[str, Any] = (
        {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {})
    try:
        return ort.InferenceSession(source, sess_options=options, providers=list(providers),
                                    **kept_from)
    except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
        text = str(exc).strip()
        first_line = text.splitlines()[0][:300] if text else repr(exc)
        raise ModelError(
            f"{path}: not a loadable ONNX model: ONNX Runtime cannot load it ({first_line}); "
            f"the file is corrupt, truncated or not ONNX; {fix_hint}"
        ) from exc
