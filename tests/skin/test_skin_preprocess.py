"""The prepared images: depth below the hill level at the work and fine scales, lamp removed."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.skin.preprocess import prepare

HEIGHT, WIDTH = 480, 640
SKIN_LEVEL = 180.0


def _lit_skin(pit_centre_px: tuple[int, int], pit_radius_px: int, pit_depth: float) -> np.ndarray:
    """Featureless skin under a lamp that falls to 80 % at the corners, with one dark round pit
    ``pit_depth`` below the level around it (RGB uint8)."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    corner = (HEIGHT / 2.0) ** 2 + (WIDTH / 2.0) ** 2
    lamp = 1.0 - 0.2 * ((ys - HEIGHT / 2.0) ** 2 + (xs - WIDTH / 2.0) ** 2) / corner
    inside = (xs - pit_centre_px[0]) ** 2 + (ys - pit_centre_px[1]) ** 2 <= pit_radius_px**2
    level = SKIN_LEVEL * lamp * np.where(inside, 1.0 - pit_depth, 1.0)
    return np.repeat(np.rint(level)[:, :, None], 3, axis=2).astype(np.uint8)


@pytest.mark.parametrize("um_per_px", [7.0, 10.0, 13.0])
def test_depth_reads_a_pit_below_the_hill_level_and_not_the_lamp(um_per_px: float) -> None:
    pit_x, pit_y = 500, 120  # off centre, where the lamp has fallen to ~90 %
    rgb = _lit_skin((pit_x, pit_y), 20, 0.3)
    frame_before = rgb.copy()
    prepared = prepare(rgb, um_per_px)
    fine_per_frame_px = um_per_px / prepared.um_per_fine_px
    fine_x, fine_y = round(pit_x * fine_per_frame_px), round(pit_y * fine_per_frame_px)
    assert prepared.depth_fine.shape == (round(HEIGHT * fine_per_frame_px),
                                         round(WIDTH * fine_per_frame_px))
    assert prepared.depth_fine[fine_y, fine_x] == pytest.approx(0.3, abs=0.03)
    work_per_frame_px = 1.0 / prepared.frame_px_per_work_px
    work_x, work_y = round(pit_x * work_per_frame_px), round(pit_y * work_per_frame_px)
    assert prepared.depth_work[work_y, work_x] == pytest.approx(0.3, abs=0.05)
    # the lamp's fall-off is divided out: the skin away from the pit and the frame's edges lies
    # at the hill level
    height, width = prepared.depth_fine.shape
    away = prepared.depth_fine[height // 10 : height // 2, width // 10 : width // 2]
    assert float(away.max()) < 0.03
    assert np.array_equal(rgb, frame_before)  # the caller's frame is left as it was


def test_fine_depth_of_a_10um_frame_is_the_frame_pixel_for_pixel() -> None:
    rgb = _lit_skin((321, 241), 0, 0.4)  # one dark frame pixel: too small for the work image
    prepared = prepare(rgb, 10.0)
    assert prepared.um_per_fine_px == pytest.approx(10.0)
    assert prepared.depth_fine.shape == (HEIGHT, WIDTH)
    assert prepared.depth_fine[241, 321] == pytest.approx(0.4, abs=0.02)
    assert float(prepared.depth_fine[240:243, 320:323].sum()) == pytest.approx(0.4, abs=0.03)
    assert float(prepared.depth_work[120, 160]) == pytest.approx(0.1, abs=0.02)  # a 2x2 average
