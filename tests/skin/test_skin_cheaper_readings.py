"""Readings made with less work than their definitions spell out: each test shows the cheaper
form reads as the plain one does (to the bit, or within a stated share of its range) and that
it does the smaller amount of work."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from appliance.skin import pore_profile
from appliance.skin.neutral_hairs import COARSE, COARSE_SHARE, greyer_cells
from appliance.skin.pore_profile import (
    BLOB_SCALES_PX,
    RING_ARM_FROM_UM,
    RING_ARM_SAMPLES,
    RING_ARM_STEP_UM,
    RING_ARM_TO_UM,
    blobness,
    ring_arm_count,
)


def _counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """Replace ``owner.name`` by itself counting its calls: the first argument of each call."""
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greyer_cells_are_the_area_resize_above_its_share(seed: int) -> None:
    """Counting each cell's greyer pixels gives the cells a rounded area average marks, on
    shapes that leave part-cells at the edges and every share of greyer pixels."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        height, width = (int(n) for n in rng.integers(COARSE, 130, 2))
        greyer = (rng.random((height, width)) < rng.uniform(0.0, 0.6)).astype(np.uint8) * 255
        whole = greyer[: height - height % COARSE, : width - width % COARSE]
        share = cv2.resize(whole, (width // COARSE, height // COARSE),
                           interpolation=cv2.INTER_AREA)
        expected = np.greater(share, COARSE_SHARE * 255).view(np.uint8)
        assert np.array_equal(greyer_cells(greyer), expected)


def _rings_one_by_one(depth: np.ndarray, centres: np.ndarray, outer_px: np.ndarray,
                      level: float) -> np.ndarray:
    """Each pit's angles deep on every ring, each ring sampled on its own (the plain form)."""
    angles = np.arange(RING_ARM_SAMPLES) * (2.0 * np.pi / RING_ARM_SAMPLES)
    deep = np.ones((len(centres), RING_ARM_SAMPLES), dtype=bool)
    for out in np.arange(RING_ARM_FROM_UM, RING_ARM_TO_UM + 0.5 * RING_ARM_STEP_UM,
                         RING_ARM_STEP_UM) / pore_profile.FINE_UM_PER_PX:
        radius = outer_px[:, None] + out
        deep &= pore_profile.bilinear(depth, centres[:, :1] + radius * np.cos(angles),
                                      centres[:, 1:] + radius * np.sin(angles)) >= level
    return deep


def test_the_rings_are_read_in_one_remap_with_the_arms_read_ring_by_ring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All rings of all pits in one cv2.remap (not one a ring); the deep angles as the rings
    read one by one give them, but for samples within the remap's last bit of the level."""
    rng = np.random.default_rng(4)
    depth = cv2.GaussianBlur(rng.random((240, 320), dtype=np.float32), (0, 0), 3.0)
    centres = np.column_stack([rng.uniform(20, 300, 200), rng.uniform(20, 220, 200)])
    outer = rng.uniform(1.0, 6.0, 200)
    level = float(np.median(depth))
    plain = _rings_one_by_one(depth, centres, outer, level)
    runs = np.count_nonzero(plain & ~np.roll(plain, 1, axis=1), axis=1)
    expected = np.where(plain.all(axis=1), pore_profile.RAY_COUNT, runs)
    remaps = _counting(monkeypatch, cv2, "remap")
    counted = ring_arm_count(depth, centres, outer, level)
    assert len(remaps) == 1
    assert np.count_nonzero(counted != expected) <= 2  # of 200 pits, none seen on these


def test_blobness_smooths_the_depth_once_and_reads_as_two_separate_smoothings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The coarse scale's smoothing is the fine one's smoothed further (Gaussians compose):
    the depth is read by one blur, and the pit score is the two separate smoothings' within
    1 % of its range (the kernels' truncation at 4 sigma)."""
    rng = np.random.default_rng(5)
    depth = cv2.GaussianBlur(rng.random((240, 320), dtype=np.float32), (0, 0), 2.0)

    def weaker(sigma: float) -> np.ndarray:
        smooth = cv2.GaussianBlur(depth, (0, 0), sigma)
        dxx = cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=3, scale=0.25)
        dyy = cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=3, scale=0.25)
        dxy = cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3, scale=0.25)
        larger = 0.5 * (dxx + dyy) + np.sqrt((0.5 * (dxx - dyy)) ** 2 + dxy**2)
        result: np.ndarray = -(sigma**2) * larger
        return result

    plain = np.maximum(*(weaker(sigma) for sigma in BLOB_SCALES_PX))
    blurred = _counting(monkeypatch, cv2, "GaussianBlur")
    cheaper = blobness(depth)
    assert sum(source is depth for source in blurred) == 1
    assert len(blurred) == 2
    inner = (slice(12, -12), slice(12, -12))  # the borders' padding differs between the two
    assert np.abs(cheaper - plain)[inner].max() <= 0.01 * float(np.ptp(plain[inner]))
    assert math.isclose(float(np.corrcoef(cheaper[inner].ravel(), plain[inner].ravel())[0, 1]),
                        1.0, abs_tol=1e-3)

