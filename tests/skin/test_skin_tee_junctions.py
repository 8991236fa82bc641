"""Furrow length where furrows meet at T-junctions: drawn networks of known length."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial import Voronoi

from appliance.skin.preprocess import prepare
from appliance.skin.texture import measure_texture

UM_PER_PX = 10.0
HEIGHT, WIDTH = 960, 1280
HILL_SIDE_PX = 30.0  # hills of 0.09 mm²
Segment = tuple[np.ndarray, np.ndarray]


def _bricks() -> list[Segment]:
    """A running bond: straight through furrows, each course of bricks between two of them
    split by short furrows that end on both, offset by half a brick from course to course.
    Every junction is a T."""
    brick_w, brick_h = 1.6 * HILL_SIDE_PX, 0.625 * HILL_SIDE_PX
    segments = []
    for row, y in enumerate(np.arange(brick_h / 2, HEIGHT + brick_h, brick_h)):
        segments.append((np.array([-50.0, y]), np.array([WIDTH + 50.0, y])))
        for x in np.arange((row % 2) * brick_w / 2 - brick_w, WIDTH + brick_w, brick_w):
            segments.append((np.array([x, y]), np.array([x, y + brick_h])))
    return segments


def _honeycomb() -> list[Segment]:
    """Hexagonal hills: every junction joins three furrows at 120 degrees."""
    edge = math.sqrt(2.0 * HILL_SIDE_PX**2 / (3.0 * math.sqrt(3.0)))
    step_x, step_y = edge * math.sqrt(3.0), 1.5 * edge
    centres = [
        (i * step_x + (j % 2) * step_x / 2, j * step_y)
        for j in range(-3, int(HEIGHT / step_y) + 4)
        for i in range(-3, int(WIDTH / step_x) + 4)
    ]
    tiling = Voronoi(np.array(centres))
    return [
        (tiling.vertices[a], tiling.vertices[b])
        for a, b in tiling.ridge_vertices
        if a >= 0
        and b >= 0
        and -60 < tiling.vertices[a][0] < WIDTH + 60
        and -60 < tiling.vertices[a][1] < HEIGHT + 60
    ]


def _length_inside(start: np.ndarray, end: np.ndarray) -> float:
    """The part of a segment inside the frame (Liang-Barsky), px."""
    step = end - start
    low, high = 0.0, 1.0
    for p, q in (
        (-step[0], start[0]),
        (step[0], WIDTH - start[0]),
        (-step[1], start[1]),
        (step[1], HEIGHT - start[1]),
    ):
        if p == 0:
            if q < 0:
                return 0.0
            continue
        if p < 0:
            low = max(low, q / p)
        else:
            high = min(high, q / p)
    return max(0.0, high - low) * float(np.hypot(*step))


def _scene(segments: list[Segment], width_um: float) -> tuple[np.ndarray, float]:
    """RGB skin with V-shaped furrows of ``width_um`` at half depth along ``segments`` (turned
    by 11 degrees about the frame's centre), and their true density (mm/mm²)."""
    centre = np.array([WIDTH / 2.0, HEIGHT / 2.0])
    angle = math.radians(11.0)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    turned = [((a - centre) @ turn.T + centre, (b - centre) @ turn.T + centre) for a, b in segments]
    reach_px = width_um / UM_PER_PX  # a V of this half-depth width ends here
    depth = np.zeros((HEIGHT, WIDTH), np.float32)
    for a, b in turned:
        x0 = max(0, int(min(a[0], b[0]) - reach_px - 2))
        x1 = min(WIDTH, int(max(a[0], b[0]) + reach_px + 3))
        y0 = max(0, int(min(a[1], b[1]) - reach_px - 2))
        y1 = min(HEIGHT, int(max(a[1], b[1]) + reach_px + 3))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        step = b - a
        t = np.clip(((xx - a[0]) * step[0] + (yy - a[1]) * step[1]) / float(step @ step), 0, 1)
        distance = np.hypot(xx - a[0] - t * step[0], yy - a[1] - t * step[1])
        np.maximum(
            depth[y0:y1, x0:x1],
            np.clip(1.0 - distance / reach_px, 0.0, 1.0),
            out=depth[y0:y1, x0:x1],
        )
    grey = 175.0 * (1.0 - 0.35 * cv2.GaussianBlur(depth, (0, 0), 1.0))
    noise = np.random.default_rng(0).normal(0.0, 2.0, grey.shape).astype(np.float32)
    rgb = np.repeat((grey + noise)[..., None], 3, axis=2) * np.array([1.0, 0.85, 0.75])
    length_mm = sum(_length_inside(a, b) for a, b in turned) * UM_PER_PX / 1000.0
    area_mm2 = WIDTH * HEIGHT * UM_PER_PX**2 / 1e6
    return np.clip(rgb, 0, 255).astype(np.uint8), length_mm / area_mm2


@pytest.mark.parametrize("width_um", [30.0, 60.0], ids=["30um", "60um"])
@pytest.mark.parametrize("network", ["t_junctions", "y_junctions"])
def test_furrow_density_of_a_network_is_read_at_its_junctions_whole(
    network: str, width_um: float
) -> None:
    """A short furrow that ends on a through furrow is a centre line up to the through
    furrow's centre line (docs/measurement.md "Definitions"); the grown cells meet inside
    it, so its end is placed where its line meets the through furrow's."""
    segments = _bricks() if network == "t_junctions" else _honeycomb()
    rgb, true_density = _scene(segments, width_um)
    texture = measure_texture(prepare(rgb, UM_PER_PX))
    measured = texture.metrics["furrow_density_mm_per_mm2"]
    assert measured == pytest.approx(true_density, rel=0.015)
