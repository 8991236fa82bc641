"""Readings made with less work than their definitions spell out: each test shows the cheaper
form reads as the plain one does (to the bit, or within a stated share of its range) and that
it does the smaller amount of work."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.skin.neutral_hairs import COARSE, COARSE_SHARE, greyer_cells


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

