"""The one ONNX model loader: size-checked file, ONNX Runtime session, refusals as ModelError.

The kiosk's feature models (``runner``) and the pathology tile models (``pathology.model``) both
open their files here, so a missing, empty, oversized or corrupt file is refused the same way and
with one exception type that names the file and what to do.

A model file is bounded in bytes, but what its graph computes is not: a node of a few bytes
(ConstantOfShape, Expand) may ask for any amount of memory, once when the session folds
constants and again at each run, and a process filling its host's memory is killed, not told.
So a session opened with ``run_bytes`` folds no constants and allocates from a CPU arena capped
at that many bytes (weights aside): a run that wants more fails with ONNX Runtime's "Available
memory of N is smaller than requested bytes of M". ONNX Runtime keeps one registered CPU arena
a process, which a session takes when it is made; the sessions asking one cap share it, and a
session asking another cap gets a new arena, which later sessions of that cap share.
"""

from __future__ import annotations

import functools
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
    if size == 0:
        raise ModelError(f"{path}: model file is empty (0 bytes); {fix_hint}")
    if size > max_bytes:
        raise ModelError(
            f"{path}: model file is {size} bytes, more than the {max_bytes} a model here may "
            f"be: not this kind of model; {fix_hint}"
        )


@functools.lru_cache(maxsize=1)
def _capped_arena(run_bytes: int) -> None:
    """Register the CPU arena of ``run_bytes`` that sessions made from now on allocate from,
    unless the arena registered last has that cap."""
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                               ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(run_bytes, -1, -1, -1))


def open_session(
    path: Path,
    *,
    max_bytes: int,
    providers: Sequence[str],
    options: Any,
    fix_hint: str,
    data: bytes | None = None,
    run_bytes: int | None = None,
) -> Any:
    """An ONNX Runtime session for ``path``, or for ``data``: its content, read already by the
    caller (at most ``max_bytes``), which ``path`` then only names; ModelError if it cannot be
    one. ``run_bytes``: the most a run of it may allocate on the CPU (``options`` are changed
    to that end), or None for no bound."""
    if data is None:
        check_model_file(path, max_bytes, fix_hint)
    source = str(path) if data is None else data
    kept_from: dict[str, Any] = {}
    if run_bytes is not None:
        _capped_arena(run_bytes)
        options = options or ort.SessionOptions()
        options.add_session_config_entry("session.use_env_allocators", "1")
        kept_from["disabled_optimizers"] = ["ConstantFolding"]  # it allocates outside the arena
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
