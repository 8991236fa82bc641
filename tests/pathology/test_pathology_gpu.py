"""The GPU path on a CUDA device: ``torch-cuda`` scores real H&E tiles as ONNX Runtime does.

Every test here needs a CUDA device and skips, saying so, where PyTorch sees none (CI, kiosks).
On a GPU machine: ``pytest -m gpu tests/pathology``. The CPU twin of these checks (the same
interpreter of the ONNX graph on the CPU) is in test_pathology_batcher.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from appliance.config import PathologyConfig
from appliance.pathology.backends import ModelOutputs, OnnxBackend, TorchBackend, open_backend
from tests.gpu import SKIP_WITHOUT_CUDA
from tests.shared_data import SHARED_DATA

pytestmark = [pytest.mark.gpu, SKIP_WITHOUT_CUDA]
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx"
REAL_TILES = SHARED_DATA / "he-tiles-crc-val-7k"


@pytest.fixture(scope="module")
def real_tiles() -> np.ndarray:
    """Every real H&E tile of the shared sample (all nine tissue classes), at the model's size."""
    paths = sorted(REAL_TILES.glob("*/*.png"))
    assert len(paths) >= 9, f"no real H&E tiles under {REAL_TILES}"
    px = OnnxBackend(DEMO, "cpu").info.tile_px
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((px, px), Image.BILINEAR))
                     for p in paths])


@pytest.fixture(scope="module")
def reference(real_tiles: np.ndarray) -> ModelOutputs:
    """ONNX Runtime on the CPU in float32: what every backend must reproduce."""
    return OnnxBackend(DEMO, "cpu").infer(real_tiles)


@pytest.mark.parametrize(("precision", "probability_atol", "feature_rtol"),
                         [("fp32", 1e-3, 1e-3), ("fp16", 0.02, 0.02), ("bf16", 0.05, 0.06)])
def test_torch_cuda_scores_real_tiles_as_onnx_runtime_does(
    real_tiles: np.ndarray, reference: ModelOutputs, precision: str,
    probability_atol: float, feature_rtol: float,
) -> None:
    ours = TorchBackend(DEMO, "cuda", PathologyConfig(precision=precision)).infer(real_tiles)
    assert ours.probability.dtype == np.float32
    assert np.abs(ours.probability - reference.probability).max() <= probability_atol
    assert ours.features is not None
    assert reference.features is not None
    scale = np.abs(reference.features).max()
    assert np.abs(ours.features - reference.features).max() <= feature_rtol * scale
    assert ours.cam is not None
    assert reference.cam is not None
    assert ours.cam.shape == reference.cam.shape
    cam_scale = np.abs(reference.cam).max()
    assert np.abs(ours.cam - reference.cam).max() <= max(feature_rtol, 0.01) * 4 * cam_scale


def test_compiled_torch_cuda_gives_the_eager_outputs(real_tiles: np.ndarray) -> None:
    eager = TorchBackend(DEMO, "cuda", PathologyConfig(precision="fp16")).infer(real_tiles)
    compiled = TorchBackend(DEMO, "cuda", PathologyConfig(precision="fp16", compile=True))
    assert compiled.settings["compile"] is True
    again = compiled.infer(real_tiles)
    assert np.abs(again.probability - eager.probability).max() <= 0.01
    odd = compiled.infer(real_tiles[:5])  # another batch size: recompiled or dynamic, same scores
    assert np.abs(odd.probability - eager.probability[:5]).max() <= 0.01


def test_torch_cuda_is_chosen_first_and_names_its_device(real_tiles: np.ndarray) -> None:
    backend = open_backend(PathologyConfig(backends=["torch-cuda", "onnx-cpu"]))
    assert backend.settings["backend"] == "torch-cuda"
    assert backend.settings["dtype"] == "float16"
    assert backend.settings["channels_last"] is True
    assert backend.settings["device_name"] not in ("", "cpu")
    # a full batch of the server's default size, uploaded as uint8 and brought back as float32
    batch = np.resize(real_tiles, (PathologyConfig().max_batch, *real_tiles.shape[1:]))
    outputs = backend.infer(batch)
    assert outputs.probability.shape == (len(batch),)
    assert np.isfinite(outputs.probability).all()
    assert outputs.features is not None
    assert np.isfinite(outputs.features).all()
