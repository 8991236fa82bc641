"""What ``config check`` asks of a pathology server's model files: that they open as the server
opens them, so a corrupt, oversized or ill-shaped model is refused by the check and not at the
server's start.

Each file is opened as a tile model (appliance/pathology/model.py, TileModel: the file's size
cap, ONNX Runtime's session with its capped run arena, the metadata, the input's shape, the
out-of-distribution guard, a test run on blank tiles and the shape of what it answers), on the
CPU, in a child process with a deadline: a graph may take long to load or run, or end the
process that runs it, and the check then names the file and what happened instead of hanging
or ending itself. Every backend reads ``pathology.model`` (the torch ones take its metadata
from it so, appliance/pathology/backends.py); ``onnx-cpu`` runs ``pathology.int8_model`` where
one is set.

    python -m appliance.pathology.modelcheck MODEL THREADS   (exit 2: refused, said on stdout)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from appliance.config import PathologyConfig

# the shipped demo model opens in about 2.5 s on 2 vCPUs; a full-width VGG19's test run of
# 16 blank 224 px tiles is about 300 GFLOP, within this on a small CPU (not measured here)
MODEL_CHECK_TIMEOUT_S = 120.0
MAX_SAID_BYTES = 4096  # of the child's refusal, or of its stderr when it ended otherwise
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the child imports this same package


def refused_models(settings: PathologyConfig) -> list[str]:
    """Why the server could not open its model files, each named by its key (empty when it
    could)."""
    named = [("model", settings.model)]
    if settings.int8_model is not None and "onnx-cpu" in settings.backends:
        named.append(("int8_model", settings.int8_model))
    refused = []
    for key, path in named:
        problem = _refusal(path, settings.cpu_threads)
        if problem is not None:
            refused.append(f"pathology.{key}: {problem}")
    return refused


def _refusal(path: str, threads: int) -> str | None:
    """Why the model at ``path`` does not open as a tile model in a child process, or None."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_ROOT), *filter(None, [environment.get("PYTHONPATH")])])
    with tempfile.TemporaryFile() as errors:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "appliance.pathology.modelcheck", path, str(threads)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                env=environment, timeout=MODEL_CHECK_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return (f"{path}: not opened within {MODEL_CHECK_TIMEOUT_S:g} s (loading it and a "
                    "test run on blank tiles): the server's start would take as long or hang")
        if done.returncode == 0:
            return None
        said = done.stdout[-MAX_SAID_BYTES:].decode(errors="replace").strip()
        if done.returncode == 2 and said:
            return said
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - MAX_SAID_BYTES))
        tail = " ".join(errors.read().decode(errors="replace").split()[-60:])
    return f"{path}: the process opening it {_ending(done.returncode)}: {tail or 'said nothing'}"


def _ending(code: int) -> str:
    """How a child process ended, in words."""
    if code >= 0:
        return f"ended with exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name} (out of memory, or a crash)"


def main(argv: list[str]) -> int:
    """Open ``argv[0]`` as the server opens a tile model; 2 and the reason on stdout if not."""
    from appliance.pathology.backends import CONFIG_HINT  # noqa: PLC0415 - onnxruntime, numpy
    from appliance.pathology.model import ModelError, TileModel  # noqa: PLC0415 - as above

    try:
        TileModel(Path(argv[0]), provider="cpu", threads=int(argv[1]), fix_hint=CONFIG_HINT)
    except ModelError as exc:
        print(exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
