"""Three-arm skin scenes: random Voronoi hills, for diagnosing furrow length (not a skin renderer).

Drawn by other means than both skin renderers (``skin`` and ``skin_voronoi``), for fitting and
diagnosis only (``benchmarks/skin_three_arm_scenes.py``): Voronoi hills over a 1280x960 frame
(Poisson sites, or jittered hexagonal ones), so every junction has three furrows; each furrow has
its own width and depth and a rounded (cosine) profile, every hill a dome (brighter towards its
middle) of its own brightness, with blur, sensor noise and a JPEG pass. Every furrow is a border
between two hills: there are no dead ends. ``rich`` scenes are drawn at 8-12 µm/px with pores
(some on junctions), vignetting and a colour cast.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from scipy.spatial import Voronoi, cKDTree

from appliance.synthetic.skin_truth import clipped_lengths_px

SIZE = (960, 1280)  # rows, columns
UM_PER_PX = 10.0


@dataclass(frozen=True)
class Scene:
    """An RGB frame, its furrows (start, end in frame px), true length (px) and mean hill area."""

    rgb: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    true_px: float
    hill_mm2: float
    sites: np.ndarray
    um_per_px: float


def _sites(spacing_px: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Voronoi sites over the frame and a margin: uniform (``poisson``) at the density of a
    hexagonal grid of ``spacing_px``, or that grid jittered by a quarter spacing."""
    pad = 4.0 * spacing_px
    if kind == "poisson":
        area = (SIZE[1] + 2 * pad) * (SIZE[0] + 2 * pad)
        count = int(area / (spacing_px**2 * np.sqrt(3.0) / 2.0))
        uniform: np.ndarray = rng.uniform(0.0, 1.0, (count, 2)) * np.array(
            [SIZE[1] + 2 * pad, SIZE[0] + 2 * pad]) - pad
        return uniform
    rows = np.arange(-pad, SIZE[0] + pad, spacing_px * np.sqrt(3.0) / 2.0)
    points = np.array([(x + (i % 2) * spacing_px / 2.0, y) for i, y in enumerate(rows)
                       for x in np.arange(-pad, SIZE[1] + pad, spacing_px)])
    return points + rng.normal(0.0, 0.25 * spacing_px, points.shape)


def draw_scene(spacing_um: float, kind: str, seed: int, rich: bool = False) -> Scene:
    """A random three-arm furrow network rendered to RGB (module docstring); ``rich``: at a
    scale of 8-12 µm/px, with pores (some on junctions), vignetting and a colour cast."""
    rng = np.random.default_rng(seed)
    um_per_px = float(rng.uniform(8.0, 12.0)) if rich else UM_PER_PX
    diagram = Voronoi(_sites(spacing_um / um_per_px, kind, rng))
    ridges = np.array(diagram.ridge_vertices)
    ridges = ridges[np.all(ridges >= 0, axis=1)]
    starts, ends = diagram.vertices[ridges[:, 0]], diagram.vertices[ridges[:, 1]]
    inside = clipped_lengths_px(starts, ends, SIZE[1], SIZE[0])
    keep = inside > 0
    starts, ends = starts[keep], ends[keep]
    true_px = float(inside[keep].sum())
    darkness = np.zeros(SIZE, np.float32)
    distance = np.full(SIZE, 1e9, np.float32)  # to the nearest centre line, for the domes
    for start, end in zip(starts, ends, strict=True):
        _furrow(darkness, distance, (start, end), half_width=rng.uniform(20.0, 50.0) / um_per_px,
                depth=rng.uniform(0.12, 0.4))
    if rich:
        _pores(darkness, diagram.vertices, um_per_px, rng)
    cells = len(diagram.points)
    dome = 1.0 + 0.08 * (1.0 - np.exp(-distance / (0.25 * spacing_um / um_per_px)))
    tone = 170.0 + rng.normal(0.0, 4.0, cells)
    site_of = _nearest_site(diagram.points)
    grey = tone[site_of] * dome * (1.0 - darkness)
    grey = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 0.8)
    grey += rng.normal(0.0, 2.0, SIZE).astype(np.float32)
    tint = np.array([1.0, 0.82, 0.72], np.float32)
    if rich:
        ys, xs = np.mgrid[0:SIZE[0], 0:SIZE[1]].astype(np.float32)
        radius2 = ((xs - SIZE[1] / 2) ** 2 + (ys - SIZE[0] / 2) ** 2) / (SIZE[1] / 2) ** 2
        grey *= 1.0 - rng.uniform(0.1, 0.3) * radius2
        tint = tint * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    rgb = np.clip(grey[..., None] * tint, 0, 255)
    # Pillow's JPEG, not skin.encode_jpeg: the figures recorded in docs/experiments/README.md
    # were read on these exact pixels
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(72, 93)))
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    hill_mm2 = SIZE[0] * SIZE[1] * (um_per_px / 1000.0) ** 2 / _cells_in_frame(diagram)
    return Scene(decoded, starts, ends, true_px, hill_mm2, diagram.points, um_per_px)


def _pores(darkness: np.ndarray, vertices: np.ndarray, um_per_px: float,
           rng: np.random.Generator) -> None:
    """Darken 10-40 round pits 50-200 µm across, half of them on junctions."""
    count = int(rng.integers(10, 41))
    on_junction = vertices[rng.integers(0, len(vertices), count // 2)]
    anywhere = rng.uniform(0.0, 1.0, (count - count // 2, 2)) * np.array([SIZE[1], SIZE[0]])
    for centre in np.concatenate([on_junction, anywhere]):
        radius = rng.uniform(25.0, 100.0) / um_per_px
        low = np.floor(centre - 2 * radius).astype(int)
        x0, y0 = max(low[0], 0), max(low[1], 0)
        x1 = min(int(centre[0] + 2 * radius) + 1, SIZE[1])
        y1 = min(int(centre[1] + 2 * radius) + 1, SIZE[0])
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        pit = rng.uniform(0.3, 0.6) / (1.0 + np.exp(
            (np.hypot(xs - centre[0], ys - centre[1]) - radius) / 0.7))
        np.maximum(darkness[y0:y1, x0:x1], pit, out=darkness[y0:y1, x0:x1])


def _furrow(darkness: np.ndarray, distance: np.ndarray, ends: tuple[np.ndarray, np.ndarray], *,
            half_width: float, depth: float) -> None:
    """Darken one straight furrow (``ends``: start, end) with a cosine profile of
    ``half_width`` px, keeping the darker; ``distance``: to the nearest centre line so far."""
    start, end = ends
    low = np.floor(np.minimum(start, end) - half_width - 1).astype(int)
    high = np.ceil(np.maximum(start, end) + half_width + 2).astype(int)
    x0, y0 = max(low[0], 0), max(low[1], 0)
    x1, y1 = min(high[0], SIZE[1]), min(high[1], SIZE[0])
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    delta = end - start
    t = np.clip(((xs - start[0]) * delta[0] + (ys - start[1]) * delta[1]) / (delta @ delta), 0, 1)
    gap = np.hypot(xs - start[0] - t * delta[0], ys - start[1] - t * delta[1])
    profile = depth * 0.5 * (1.0 + np.cos(np.pi * np.minimum(gap / half_width, 1.0)))
    np.maximum(darkness[y0:y1, x0:x1], profile, out=darkness[y0:y1, x0:x1])
    np.minimum(distance[y0:y1, x0:x1], gap, out=distance[y0:y1, x0:x1])


def _nearest_site(points: np.ndarray) -> np.ndarray:
    """Per frame pixel, the index of the nearest Voronoi site (the hill it belongs to)."""
    ys, xs = np.mgrid[0:SIZE[0], 0:SIZE[1]] + 0.5
    nearest: np.ndarray = cKDTree(points).query(np.stack([xs.ravel(), ys.ravel()], 1))[1]
    return nearest.reshape(SIZE)


def _cells_in_frame(diagram: Voronoi) -> float:
    """Cells whose site lies in the frame (a hill-count estimate: the mean area)."""
    x, y = diagram.points[:, 0], diagram.points[:, 1]
    return float(np.count_nonzero((x >= 0) & (x < SIZE[1]) & (y >= 0) & (y < SIZE[0])))
