"""The torch backend runs a tile model's ONNX graph node by node, after the model has passed
ONNX Runtime's warm-up within a run's bound (appliance/pathology/model.py). It kept every value
the graph made until the run ended, so a model whose values ONNX Runtime held one at a time
held them all on the torch backend: sixteen 100 MB products, 1.6 GB a batch of 16 tiles
(appliance/pathology/torch_graph.py); and on the CPU it ran whole batches, larger than the
warm-up's run (appliance/pathology/backends.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared_data import REPO

pytest.importorskip("torch")

SERVING = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from tile_model_helpers import branching
from appliance.config import PathologyConfig
from appliance.pathology.backends import open_backend
branches, copies, tiles = (int(arg) for arg in sys.argv[3:])
model = branching(Path(sys.argv[1]), branches=branches, copies=copies, guard=True)
backend = open_backend(PathologyConfig(model=str(model), backends=["torch-cpu"],
                                       precision="fp32", channels_last=False))
def peak_kib():  # this process's own (ru_maxrss would hold its parent's, the test's)
    return int([line.split()[1] for line in open("/proc/self/status")
                if line.startswith("VmHWM:")][0])
loaded = peak_kib()
scores = backend.infer(np.zeros((tiles, 64, 64, 3), np.uint8))
print(len(scores.probability), peak_kib() - loaded)
"""


def serving(model: Path, branches: int, copies: int, tiles: int) -> tuple[int, int]:
    """How many tiles the torch-cpu backend serving ``branching(model, branches, copies)``
    answered in a batch of ``tiles``, and how much its peak memory grew with that batch (KiB),
    in a process of its own (its peak memory is this test's alone)."""
    done = subprocess.run(
        [sys.executable, "-c", SERVING, str(model), str(REPO / "tests"), str(branches),
         str(copies), str(tiles)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    answered, batch_kib = (int(word) for word in done.stdout.split())
    return answered, batch_kib


def test_the_torch_backend_drops_each_value_after_its_last_reader(tmp_path: Path) -> None:
    answered, batch_kib = serving(tmp_path / "branching.onnx", 16, 128, 16)
    assert answered == 16
    assert batch_kib < 800 * 1024  # each product 100 MB; on main: 1.6 GB more for the batch


def test_the_torch_backend_on_the_cpu_runs_a_batch_as_the_warm_up_did(tmp_path: Path) -> None:
    """The warm-up bounds a run of 16 tiles; torch-cpu ran a whole batch (pathology.max_batch,
    up to 4,096 tiles) in one run, so a model within the bound at 16 asked 4 times as much at
    the default 64, 256 times at 4,096."""
    answered, batch_kib = serving(tmp_path / "product.onnx", 1, 768, 64)
    assert answered == 64
    assert batch_kib < 1200 * 1024  # the product: 604 MB for 16 tiles; on main 2.4 GB for 64
