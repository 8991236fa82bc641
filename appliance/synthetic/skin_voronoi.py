"""A second skin renderer, drawn by other means: for EVALUATING the measurement only.

Nothing in ``appliance.skin`` may be tuned on these frames: no threshold, no constant, no
choice of method. They exist to show how the measurement does on skin it was not developed
on (``benchmarks/skin_accuracy.py`` reports them apart from the main generator's frames).

Drawn differently from ``synthetic.skin`` in every step:
- tessellation: Voronoi cells of a jittered hexagonal point set, stretched along a random
  direction (hills are the cells, furrows the cell edges, three meeting at each corner),
  instead of a sheared lattice triangulated and merged;
- furrow profile: a Gaussian valley per edge (width at half depth as drawn), stamped edge by
  edge with the deepest value kept, its width and depth varying smoothly over the frame;
- pores: steep-walled funnels, depth 1 / (1 + (rho / r)^6) (half depth at the radius r),
  round or elliptical, on furrow corners or on hills;
- light: Lambertian shading of the height field under one light at 45-70 degrees elevation,
  vignetting (1 - v r^2)^2, a random skin tone, Gaussian sensor noise, JPEG q72-92, scale
  7-13 µm/px.
Ground truth follows the same definitions (docs/measurement.md) from the Voronoi geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Voronoi

from appliance.synthetic.skin import decode_jpeg, encode_jpeg
from appliance.synthetic.skin_truth import area_in_frame_px2, clipped_lengths_px

WIDTH_PX, HEIGHT_PX = 1280, 960


@dataclass(frozen=True)
class VoronoiSkin:
    """One evaluation frame: pixels, its scale and its ground truth."""

    image_rgb: np.ndarray
    um_per_px: float
    truth: dict[str, float]
    pore_centres_px: np.ndarray  # (P, 2) x, y: where each pore is (for matching detections)
    pore_radii_px: np.ndarray  # (P,) equivalent radius sqrt(a * b)


@dataclass(frozen=True)
class _Cells:
    """Voronoi furrow segments (start, end in px) and the hill polygons."""

    starts: np.ndarray
    ends: np.ndarray
    hills: list[np.ndarray]


def _cells(rng: np.random.Generator, um_per_px: float) -> _Cells:
    """Jittered hexagonal seeds, stretched, and their Voronoi diagram."""
    cell_px2 = rng.uniform(0.035, 0.2) * 1e6 / um_per_px**2
    spacing = np.sqrt(2.0 * cell_px2 / np.sqrt(3.0))
    pad = 3.0 * spacing
    rows = np.arange(-pad, HEIGHT_PX + pad, spacing * np.sqrt(3.0) / 2.0)
    points = [(x + (i % 2) * spacing / 2.0, y) for i, y in enumerate(rows)
              for x in np.arange(-pad, WIDTH_PX + pad, spacing)]
    seeds = np.asarray(points) + rng.normal(0.0, 0.22 * spacing, (len(points), 2))
    angle, stretch = rng.uniform(0.0, np.pi), rng.uniform(1.0, 1.5)
    centre = np.array([WIDTH_PX / 2.0, HEIGHT_PX / 2.0])
    axis = np.array([np.cos(angle), np.sin(angle)])
    along = (seeds - centre) @ axis
    seeds = seeds + np.outer(along * (stretch - 1.0), axis)
    diagram = Voronoi(seeds)
    ridges = np.asarray([r for r in diagram.ridge_vertices if -1 not in r])
    hills = [diagram.vertices[diagram.regions[region]] for region in diagram.point_region
             if diagram.regions[region] and -1 not in diagram.regions[region]]
    return _Cells(diagram.vertices[ridges[:, 0]], diagram.vertices[ridges[:, 1]], hills)


def _smooth_field(rng: np.random.Generator, cells: int) -> np.ndarray:
    """A smooth random field over the frame, mean 0, sd ~1, features ~1/cells of the frame."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(coarse, (WIDTH_PX, HEIGHT_PX), interpolation=cv2.INTER_CUBIC)


def _stamp_segment(
    field: np.ndarray, start: np.ndarray, end: np.ndarray, sigma: float, depth: float
) -> None:
    """Keep the deeper of ``field`` and a Gaussian valley along one segment."""
    reach = 3.0 * sigma + 1.0
    x0, y0 = (max(int(np.floor(min(start[i], end[i]) - reach)), 0) for i in (0, 1))
    x1 = min(int(np.ceil(max(start[0], end[0]) + reach)) + 1, WIDTH_PX)
    y1 = min(int(np.ceil(max(start[1], end[1]) + reach)) + 1, HEIGHT_PX)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    along = end - start
    t = np.clip(((xs - start[0]) * along[0] + (ys - start[1]) * along[1])
                / max(float(along @ along), 1e-9), 0.0, 1.0)
    distance2 = (xs - start[0] - t * along[0]) ** 2 + (ys - start[1] - t * along[1]) ** 2
    valley = np.float32(depth) * np.exp(-distance2 / np.float32(2.0 * sigma * sigma))
    np.maximum(field[y0:y1, x0:x1], valley, out=field[y0:y1, x0:x1])


@dataclass(frozen=True)
class _Furrows:
    """Per segment: width (px) and depth (share of light lost at the valley floor)."""

    width_px: np.ndarray
    depth: np.ndarray


def _furrows(rng: np.random.Generator, cells: _Cells, um_per_px: float) -> _Furrows:
    """Widths and depths varying smoothly over the frame (shallow and deep in one frame)."""
    mid = (cells.starts + cells.ends) / 2.0
    col = np.clip(mid[:, 0], 0, WIDTH_PX - 1).astype(int)
    row = np.clip(mid[:, 1], 0, HEIGHT_PX - 1).astype(int)
    width_field, depth_field = _smooth_field(rng, 4), _smooth_field(rng, 3)
    base_um = rng.uniform(25.0, 70.0)
    width = base_um / um_per_px * np.exp(0.2 * width_field[row, col]
                                         + rng.normal(0.0, 0.12, len(mid)))
    depth = np.clip(rng.uniform(0.22, 0.4) * np.exp(0.25 * depth_field[row, col]), 0.08, 0.6)
    return _Furrows(width, depth)


def _furrow_image(cells: _Cells, furrows: _Furrows) -> np.ndarray:
    """The valleys of every segment, the deepest kept where they meet."""
    field = np.zeros((HEIGHT_PX, WIDTH_PX), dtype=np.float32)
    sigma = furrows.width_px / (2.0 * np.sqrt(2.0 * np.log(2.0)))  # half depth at width / 2
    for start, end, s, d in zip(cells.starts, cells.ends, sigma, furrows.depth, strict=True):
        _stamp_segment(field, start, end, float(s), float(d))
    return field


@dataclass(frozen=True)
class _Pores:
    centres: np.ndarray
    radii: np.ndarray  # equivalent radius sqrt(a * b), px
    ratios: np.ndarray  # minor / major
    angles: np.ndarray


def _place_pores(rng: np.random.Generator, cells: _Cells, um_per_px: float) -> _Pores:
    """0-60 pores of 50-320 µm, half on furrow corners, none overlapping, all in the frame."""
    count = int(rng.integers(0, 61))
    corners = np.unique(np.round(np.vstack([cells.starts, cells.ends]), 3), axis=0)
    corners = corners[rng.permutation(len(corners))]
    centres: list[np.ndarray] = []
    radii: list[float] = []
    ratios: list[float] = []
    for k in range(count * 4):
        if len(centres) == count:
            break
        radius = np.exp(rng.uniform(np.log(25.0), np.log(160.0))) / um_per_px
        ratio = rng.uniform(0.65, 1.0)
        reach = radius / np.sqrt(ratio) + 2.0
        centre = corners[k] if k % 2 == 0 and k < len(corners) else rng.uniform(
            (0, 0), (WIDTH_PX, HEIGHT_PX))
        inside = reach <= centre[0] <= WIDTH_PX - reach and reach <= centre[1] <= HEIGHT_PX - reach
        clear = all(np.hypot(*(centre - c)) > reach + r / np.sqrt(q) + 2.0
                    for c, r, q in zip(centres, radii, ratios, strict=True))
        if inside and clear:
            centres.append(np.asarray(centre, dtype=float))
            radii.append(float(radius))
            ratios.append(float(ratio))
    return _Pores(np.asarray(centres).reshape(-1, 2), np.asarray(radii), np.asarray(ratios),
                  rng.uniform(0.0, np.pi, len(radii)))


def _pore_image(pores: _Pores) -> np.ndarray:
    """Steep funnels: depth 1 / (1 + (rho / r)^6), half depth on the (elliptical) rim."""
    field = np.zeros((HEIGHT_PX, WIDTH_PX), dtype=np.float32)
    for centre, radius, ratio, angle in zip(
        pores.centres, pores.radii, pores.ratios, pores.angles, strict=True
    ):
        reach = int(np.ceil(radius / np.sqrt(ratio) * 2.5 + 2))
        x0, y0 = max(int(centre[0]) - reach, 0), max(int(centre[1]) - reach, 0)
        x1 = min(int(centre[0]) + reach + 1, WIDTH_PX)
        y1 = min(int(centre[1]) + reach + 1, HEIGHT_PX)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        dx, dy = xs - centre[0], ys - centre[1]
        u = (dx * np.cos(angle) + dy * np.sin(angle)) * np.sqrt(ratio)
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / np.sqrt(ratio)
        funnel = 1.0 / (1.0 + ((u * u + v * v) / np.float32(radius * radius)) ** 3)
        np.maximum(field[y0:y1, x0:x1], funnel, out=field[y0:y1, x0:x1])
    return field


def _shade(rng: np.random.Generator, height: np.ndarray) -> np.ndarray:
    """Lambertian shading under one light (flat skin = 1)."""
    elevation, azimuth = np.radians(rng.uniform(45.0, 70.0)), rng.uniform(0.0, 2.0 * np.pi)
    gy, gx = np.gradient(cv2.GaussianBlur(height, (0, 0), 1.0))
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                      np.sin(elevation)], dtype=np.float32)
    dot = (-gx * light[0] - gy * light[1] + light[2]) / np.sqrt(gx * gx + gy * gy + 1.0)
    return np.asarray(np.clip(dot / light[2], 0.2, 1.6), dtype=np.float32)


def _light(rng: np.random.Generator, furrow: np.ndarray, pore: np.ndarray) -> np.ndarray:
    """Relative luminance: darkness of valleys and pits, shading and vignetting."""
    pore_darkness = rng.uniform(0.55, 0.85)
    height = -(2.5 * furrow + 3.5 * pore).astype(np.float32)
    ys, xs = np.mgrid[0:HEIGHT_PX, 0:WIDTH_PX].astype(np.float32)
    r2 = ((xs - WIDTH_PX / 2) ** 2 + (ys - HEIGHT_PX / 2) ** 2) / (WIDTH_PX / 2) ** 2
    vignette = (1.0 - rng.uniform(0.1, 0.35) * r2) ** 2
    dark = (1.0 - furrow) * (1.0 - pore_darkness * pore)
    return np.asarray(dark * _shade(rng, height) * vignette, dtype=np.float32)


def _to_rgb(rng: np.random.Generator, luminance: np.ndarray) -> np.ndarray:
    """Skin tone, defocus and sensor noise, as 8-bit RGB."""
    tone = np.array([0.9, 0.7, 0.58]) * rng.uniform(0.75, 1.05) * rng.uniform(0.93, 1.07, 3)
    rgb = np.asarray(luminance[..., None] * tone.astype(np.float32), dtype=np.float32)
    rgb = np.asarray(cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.6, 1.2)), dtype=np.float32)
    noise = rng.normal(0.0, rng.uniform(0.006, 0.015), rgb.shape).astype(np.float32)
    rgb = rgb + noise * np.sqrt(np.maximum(rgb, np.float32(0.02)))
    return np.asarray(np.clip(rgb * 255.0, 0, 255), dtype=np.uint8)


def _truth(cells: _Cells, furrows: _Furrows, pores: _Pores, um_per_px: float) -> dict[str, float]:
    """The docs/measurement.md features of the drawn geometry."""
    area_mm2 = WIDTH_PX * HEIGHT_PX * um_per_px**2 / 1e6
    lengths = clipped_lengths_px(cells.starts, cells.ends, WIDTH_PX, HEIGHT_PX)
    inside_areas, cut = [], 0
    for polygon in cells.hills:
        if area_in_frame_px2(polygon, WIDTH_PX, HEIGHT_PX) <= 0:
            continue
        whole = (polygon[:, 0].min() >= 0 and polygon[:, 1].min() >= 0
                 and polygon[:, 0].max() <= WIDTH_PX and polygon[:, 1].max() <= HEIGHT_PX)
        if whole:
            inside_areas.append(area_in_frame_px2(polygon, WIDTH_PX, HEIGHT_PX))
        else:
            cut += 1
    count = len(pores.radii)
    return {
        "pore_count": float(count),
        "pore_mean_diameter_um": float(2.0 * pores.radii.mean() * um_per_px) if count else 0.0,
        "furrow_density_mm_per_mm2": float(lengths.sum()) * um_per_px / 1000.0 / area_mm2,
        "furrow_mean_width_um": float(lengths @ furrows.width_px / lengths.sum()) * um_per_px,
        "hill_density_per_mm2": (len(inside_areas) + 0.5 * cut) / area_mm2,
        "hill_mean_area_mm2": float(np.mean(inside_areas)) * um_per_px**2 / 1e6,
    }


def voronoi_frame(seed: int, index: int) -> VoronoiSkin:
    """Evaluation frame ``index`` of series ``seed`` (deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0x5E1F]))
    um_per_px = float(rng.uniform(7.0, 13.0))
    cells = _cells(rng, um_per_px)
    furrows = _furrows(rng, cells, um_per_px)
    pores = _place_pores(rng, cells, um_per_px)
    luminance = _light(rng, _furrow_image(cells, furrows), _pore_image(pores))
    jpeg = encode_jpeg(_to_rgb(rng, luminance), int(rng.integers(72, 93)))
    return VoronoiSkin(decode_jpeg(jpeg), um_per_px, _truth(cells, furrows, pores, um_per_px),
                       pores.centres, pores.radii)
