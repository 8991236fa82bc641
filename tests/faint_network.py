"""A honeycomb of faint fine furrows on plain skin, its truth known (tests/skin/
test_skin_faint_network.py, test_skin_unread_furrows.py)."""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import Voronoi

UM_PER_PX = 10.0
HEIGHT, WIDTH = 960, 1280
HILL_SIDE_UM = 200.0  # hexagonal hills of 0.04 mm², as blind4's faint frames draw them
FURROW_UM = 30.0  # half-depth width of the V furrows
# a regular hexagon of area side²: edge sqrt(2 / (3 sqrt 3)) side; three edges a hill
EDGE_UM = HILL_SIDE_UM * math.sqrt(2.0 / (3.0 * math.sqrt(3.0)))
TRUE_HILLS_PER_MM2 = 1e6 / HILL_SIDE_UM**2
TRUE_FURROW_MM_PER_MM2 = 3.0 * EDGE_UM / HILL_SIDE_UM**2 * 1000.0


def honeycomb_depth() -> np.ndarray:
    """Depth 0..1 of V furrows along a honeycomb's edges, turned by 11 degrees."""
    side_px, edge_px = HILL_SIDE_UM / UM_PER_PX, EDGE_UM / UM_PER_PX
    step_x, step_y = edge_px * math.sqrt(3.0), 1.5 * edge_px
    centres = [(i * step_x + (j % 2) * step_x / 2, j * step_y)
               for j in range(-3, int(HEIGHT / step_y) + 4)
               for i in range(-3, int(WIDTH / step_x) + 4)]
    tiling = Voronoi(np.array(centres))
    angle = math.radians(11.0)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.array([WIDTH / 2.0, HEIGHT / 2.0])
    reach = FURROW_UM / UM_PER_PX
    depth = np.zeros((HEIGHT, WIDTH), np.float32)
    for first, second in tiling.ridge_vertices:
        if first < 0 or second < 0:
            continue
        a = (tiling.vertices[first] - centre) @ turn.T + centre
        b = (tiling.vertices[second] - centre) @ turn.T + centre
        low, high = np.minimum(a, b) - reach - 2, np.maximum(a, b) + reach + 3
        x0, x1 = max(0, int(low[0])), min(WIDTH, int(high[0]))
        y0, y1 = max(0, int(low[1])), min(HEIGHT, int(high[1]))
        if x0 >= x1 or y0 >= y1 or np.hypot(*(b - a)) > 2 * side_px:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        step = b - a
        t = np.clip(((xx - a[0]) * step[0] + (yy - a[1]) * step[1]) / float(step @ step), 0, 1)
        distance = np.hypot(xx - a[0] - t * step[0], yy - a[1] - t * step[1])
        np.maximum(depth[y0:y1, x0:x1], np.clip(1.0 - distance / reach, 0.0, 1.0),
                   out=depth[y0:y1, x0:x1])
    return depth


@lru_cache(maxsize=4)
def honeycomb_frame(darkness: float) -> np.ndarray:
    """The honeycomb on plain skin, its furrow floors ``darkness`` below the hill level."""
    grey = 175.0 * (1.0 - darkness * cv2.GaussianBlur(honeycomb_depth(), (0, 0), 1.0))
    noise = np.random.default_rng(0).normal(0.0, 2.0, grey.shape).astype(np.float32)
    rgb = np.repeat((grey + noise)[..., None], 3, axis=2) * np.array([1.0, 0.85, 0.75])
    return np.clip(rgb, 0, 255).astype(np.uint8)


