"""The measurement's large steps hold few image-sized buffers at once: each result is written
over an image read last (memory traffic is most of their cost on one core). Peaks are read with
tracemalloc, which sees numpy's and OpenCV's arrays alike."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import cv2
import numpy as np

from appliance.skin.pore_profile import blobness


def _peak_bytes(call: Callable[[], object]) -> int:
    """The most memory traced at once while ``call`` runs."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _depth(shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A smooth random depth image (float32), as the work depth is."""
    noise = np.random.default_rng(0).random(shape, dtype=np.float32)
    depth: np.ndarray = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return depth


def test_blobness_holds_at_most_four_work_images() -> None:
    """Two scales of three filters each, their results written over the images they read: four
    work images at once (seven when each filter wrote a new one)."""
    depth = _depth()
    assert _peak_bytes(lambda: blobness(depth)) <= 4.5 * depth.nbytes
