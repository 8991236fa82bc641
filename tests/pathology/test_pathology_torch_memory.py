"""The torch backend runs a tile model's ONNX graph node by node; it kept every value the graph
made until the run ended, so a model whose values ONNX Runtime's warm-up held one at a time, well
within a run's bound, held them all on the torch backend: sixteen 100 MB products, 1.6 GB a
batch of 16 tiles (appliance/pathology/torch_graph.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared_data import REPO

pytest.importorskip("torch")

SERVING = """
import resource, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from tile_model_helpers import branching
from appliance.config import PathologyConfig
from appliance.pathology.backends import open_backend
model = branching(Path(sys.argv[1]), branches=16, copies=128, guard=True)
backend = open_backend(PathologyConfig(model=str(model), backends=["torch-cpu"],
                                       precision="fp32", channels_last=False))
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scores = backend.infer(np.zeros((16, 64, 64, 3), np.uint8))
print(len(scores.probability), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - loaded)
"""


def test_the_torch_backend_drops_each_value_after_its_last_reader(tmp_path: Path) -> None:
    done = subprocess.run(  # a process of its own: its peak memory is this test's alone
        [sys.executable, "-c", SERVING, str(tmp_path / "branching.onnx"), str(REPO / "tests")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    answered, batch_kib = (int(word) for word in done.stdout.split())
    assert answered == 16
    assert batch_kib < 800 * 1024  # each product 100 MB; on main: 1.6 GB more for the batch
