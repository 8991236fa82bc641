"""The dynamic batcher, the backends (the GPU path's code on the CPU) and the server metrics."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.config import PathologyConfig
from appliance.pathology import model
from appliance.pathology.backends import OnnxBackend, TorchBackend, open_backend
from appliance.pathology.batcher import FairBatcher, TileChunk
from appliance.pathology.service_metrics import ServiceMetrics

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx"
STOP = threading.Event()


def _tiles(count: int, value: int = 0) -> np.ndarray:
    return np.full((count, 2, 2, 3), value, np.uint8)


def test_a_big_job_cannot_starve_a_small_one() -> None:
    batcher = FairBatcher(max_batch=64, max_wait_s=10.0, max_pending_tiles=10_000)
    batcher.put(TileChunk("big", 0, 0, _tiles(1000, 1), run_id=1))
    batcher.put(TileChunk("small", 0, 0, _tiles(10, 2), run_id=1))
    batch = batcher.next_batch(STOP)
    assert batch is not None
    counts: dict[str, int] = {}
    for part in batch.parts:
        counts[part.job_id] = counts.get(part.job_id, 0) + part.count
    assert counts == {"big": 54, "small": 10}
    assert batch.jobs == {"big", "small"}
    assert batcher.stats.shared_batches == 1
    assert batcher.pending_tiles == 1000 - 54


def test_parts_say_which_slide_tiles_of_which_run_a_batch_holds() -> None:
    batcher = FairBatcher(max_batch=4, max_wait_s=0.0, max_pending_tiles=100)
    batcher.put(TileChunk("a", 3, 0, np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1), run_id=7))
    first, second = batcher.next_batch(STOP), batcher.next_batch(STOP)
    assert first is not None
    assert second is not None
    assert [(p.slide_index, p.first_tile, p.count) for p in first.parts] == [(3, 0, 4)]
    assert [(p.slide_index, p.first_tile, p.count) for p in second.parts] == [(3, 4, 2)]
    assert first.runs == second.runs == {("a", 7)}
    assert second.pixels.ravel().tolist() == [4, 5]


def test_a_lone_small_job_waits_at_most_max_wait() -> None:
    batcher = FairBatcher(max_batch=64, max_wait_s=0.2, max_pending_tiles=100)
    batcher.put(TileChunk("lone", 0, 0, _tiles(5), run_id=1))
    started = time.monotonic()
    batch = batcher.next_batch(STOP, idle_timeout_s=5.0)
    assert batch is not None
    assert len(batch.pixels) == 5
    assert time.monotonic() - started >= 0.15  # held for company, then released
    assert batcher.next_batch(STOP, idle_timeout_s=0.05) is None


def test_dropping_a_job_frees_its_tiles_and_room() -> None:
    batcher = FairBatcher(max_batch=8, max_wait_s=1.0, max_pending_tiles=20)
    batcher.put(TileChunk("keep", 0, 0, _tiles(5), run_id=1))
    batcher.put(TileChunk("cancel", 0, 0, _tiles(30), run_id=1))
    assert not batcher.has_room()  # back-pressure: no more slides are prepared
    assert batcher.drop_job("cancel") == 30
    assert batcher.has_room()
    assert batcher.pending_tiles == 5
    assert batcher.pending_for("cancel") == 0
    assert batcher.stats.dropped_tiles == 30


def _random_tiles(count: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 255, (count, 64, 64, 3), dtype=np.uint8)


def test_torch_backend_runs_the_same_weights_as_onnx_runtime() -> None:
    tiles = _random_tiles(6)
    reference = OnnxBackend(DEMO, "cpu").infer(tiles)
    config = PathologyConfig(precision="fp32", channels_last=True)
    ours = TorchBackend(DEMO, "cpu", config).infer(tiles)
    assert ours.features is not None
    assert reference.features is not None
    assert np.allclose(ours.probability, reference.probability, atol=1e-4)
    assert np.allclose(ours.features, reference.features, atol=1e-3)
    assert ours.cam is not None
    assert np.allclose(ours.cam, reference.cam, atol=1e-3)
    reduced = TorchBackend(DEMO, "cpu", PathologyConfig(precision="bf16")).infer(tiles)
    assert np.allclose(reduced.probability, reference.probability, atol=0.05)


def test_backends_fall_back_in_configured_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # no GPU, as on a kiosk or in CI, also where the tests run on a GPU machine
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(model.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    config = PathologyConfig(backends=["torch-cuda", "onnx-cuda", "onnx-cpu"])
    backend = open_backend(config)  # both CUDA backends refuse, the CPU serves
    assert backend.settings["backend"] == "onnx-cpu"
    int8 = str(DEMO.with_suffix("")) + ".int8.onnx"
    quantized = open_backend(PathologyConfig(backends=["onnx-cpu"], int8_model=int8))
    assert quantized.settings["quantization"] == "int8"
    assert quantized.infer(_random_tiles(2)).probability.shape == (2,)


def test_metrics_give_rates_fill_and_busy_fraction() -> None:
    metrics = ServiceMetrics(max_batch=64)
    metrics.batch_done(32, busy_s=0.05)
    metrics.batch_done(64, busy_s=0.05)
    figures = metrics.snapshot(queue_depth_tiles=7)
    assert figures["batch_fill"] == pytest.approx(0.75)
    assert figures["queue_depth_tiles"] == 7
    assert figures["tiles_per_s"] > 0
    assert 0 < figures["accelerator_busy"] <= 1
    names = {metric.name for metric in metrics.registry.collect()}
    assert {"pathology_tiles", "pathology_accelerator_busy_fraction",
            "pathology_queue_depth_tiles", "pathology_batch_fill"} <= names
