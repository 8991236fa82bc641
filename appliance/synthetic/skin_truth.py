"""Exact ground truth of synthetic skin, computed from its vector geometry, never from pixels.

Definitions are docs/measurement.md's "Definitions". The frame is the rectangle [0, W] x [0, H]
in pixel units; furrow lengths are centre-line lengths clipped to it; hills are the polygons of
the furrow network bounded by furrow centre lines, each one that a dead end meeting a furrow
(within 13 µm) crosses split in its parts (``skin_hill_split``); pores are discs.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from appliance.synthetic.skin_geometry import FloatArray, SkinGeometry
from appliance.synthetic.skin_hill_split import Meetings, dead_end_meetings
from appliance.transport.payloads import TEXTURE_PORE_KEYS

Polygon = list[tuple[float, float]]
PORE_INTEGRATION_STEPS = 4096


def clipped_lengths_px(
    starts: FloatArray, ends: FloatArray, width: float, height: float
) -> FloatArray:
    """Length of each segment inside [0, width] x [0, height] (Liang-Barsky clipping)."""
    delta = ends - starts
    t_in, t_out = np.zeros(len(starts)), np.ones(len(starts))
    rejected = np.zeros(len(starts), dtype=np.bool_)
    for p, q in (
        (-delta[:, 0], starts[:, 0]),
        (delta[:, 0], width - starts[:, 0]),
        (-delta[:, 1], starts[:, 1]),
        (delta[:, 1], height - starts[:, 1]),
    ):
        parallel = p == 0
        rejected |= parallel & (q < 0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
        t_in = np.where(~parallel & (p < 0), np.maximum(t_in, t), t_in)
        t_out = np.where(~parallel & (p > 0), np.minimum(t_out, t), t_out)
    inside_share = np.where(rejected, 0.0, np.clip(t_out - t_in, 0.0, None))
    return np.asarray(inside_share * np.hypot(delta[:, 0], delta[:, 1]), dtype=np.float64)


def tiling_labels(polygons: list[FloatArray], size_px: int) -> tuple[npt.NDArray[np.int32], float]:
    """Cell labels (1, 2, ...) of polygons rasterised in a square of ``size_px`` at 1/16 px
    precision, and the exact length of their edges inside it (each shared edge once): an exact
    tiling to test a length estimator on."""
    labels = np.zeros((size_px, size_px), np.int32)
    edges: dict[tuple[tuple[float, float], ...], tuple[FloatArray, FloatArray]] = {}
    for index, polygon in enumerate(polygons):
        cv2.fillPoly(labels, [np.round((polygon - 0.5) * 16).astype(np.int32)], index + 1,
                     cv2.LINE_8, 4)
        for a, b in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
            edges[tuple(sorted((tuple(np.round(a, 6)), tuple(np.round(b, 6)))))] = (a, b)
    starts = np.array([a for a, _ in edges.values()])
    ends = np.array([b for _, b in edges.values()])
    return labels, float(clipped_lengths_px(starts, ends, size_px, size_px).sum())


def polygon_area_px2(points: FloatArray) -> float:
    """Unsigned shoelace area of a polygon given as (K, 2) vertices."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def _clip_half_plane(polygon: Polygon, axis: int, bound: float, keep_below: bool) -> Polygon:
    """One Sutherland-Hodgman pass: keep the part of ``polygon`` on one side of a line."""

    def inside(point: tuple[float, float]) -> bool:
        return point[axis] <= bound if keep_below else point[axis] >= bound

    result: Polygon = []
    for k, current in enumerate(polygon):
        previous = polygon[k - 1]
        if inside(current) != inside(previous):
            t = (bound - previous[axis]) / (current[axis] - previous[axis])
            result.append(
                (
                    previous[0] + t * (current[0] - previous[0]),
                    previous[1] + t * (current[1] - previous[1]),
                )
            )
        if inside(current):
            result.append(current)
    return result


def area_in_frame_px2(points: FloatArray, width: float, height: float) -> float:
    """Area of the part of a polygon inside [0, width] x [0, height]."""
    polygon: Polygon = [(float(x), float(y)) for x, y in points]
    for axis, bound, keep_below in (
        (0, 0.0, False),
        (0, width, True),
        (1, 0.0, False),
        (1, height, True),
    ):
        polygon = _clip_half_plane(polygon, axis, bound, keep_below)
        if len(polygon) < 3:
            return 0.0
    return polygon_area_px2(np.asarray(polygon))


def _padded_faces(faces: tuple[tuple[int, ...], ...]) -> npt.NDArray[np.int64]:
    """Faces as one (F, K) array, shorter polygons padded by repeating their last vertex."""
    size = max(len(face) for face in faces)
    return np.array([face + (face[-1],) * (size - len(face)) for face in faces], dtype=np.int64)


def _padded_to(corners: FloatArray, size: int) -> FloatArray:
    """(F, K, 2) polygons padded to (F, ``size``, 2) by repeating their last vertex."""
    extra = np.repeat(corners[:, -1:], size - corners.shape[1], axis=1)
    return np.concatenate([corners, extra], axis=1)


def _hill_corners(geometry: SkinGeometry, meetings: Meetings) -> FloatArray:
    """The hills by docs/measurement.md's definition as (F, K, 2) padded polygons in frame px:
    the faces of the furrow network, each one that dead ends meeting a furrow split replaced by
    its parts (``skin_hill_split``)."""
    parts = meetings.parts
    kept = tuple(face for index, face in enumerate(geometry.faces) if index not in parts)
    corners = geometry.vertices_px[_padded_faces(kept)] if kept else np.zeros((0, 1, 2))
    if not parts:
        return corners
    pieces = [part for index in sorted(parts) for part in parts[index]]
    size = max(corners.shape[1], *(len(part) for part in pieces))
    padded_pieces = np.array([_padded_to(part[None], size)[0] for part in pieces])
    return np.concatenate([_padded_to(corners, size), padded_pieces])


def _polygon_counts(
    corners: FloatArray, width: float, height: float
) -> tuple[int, int, FloatArray]:
    """Of the (F, K, 2) polygons: how many lie entirely inside the frame, how many the frame
    edge cuts, and the areas of the inside ones."""
    low, high = corners.min(axis=1), corners.max(axis=1)
    inside = (low[:, 0] >= 0) & (low[:, 1] >= 0) & (high[:, 0] <= width) & (high[:, 1] <= height)
    touching = (
        ~inside & (high[:, 0] > 0) & (high[:, 1] > 0) & (low[:, 0] < width) & (low[:, 1] < height)
    )
    x, y = corners[..., 0], corners[..., 1]
    corner_inside = ((x > 0) & (x < width) & (y > 0) & (y < height)).any(axis=1)
    # A hill with a corner strictly inside is cut; the rest (a frame corner inside) are clipped.
    cut_count = int((touching & corner_inside).sum()) + sum(
        area_in_frame_px2(corners[face], width, height) > 0.0
        for face in np.flatnonzero(touching & ~corner_inside)
    )
    x, y = corners[inside, :, 0], corners[inside, :, 1]
    areas = np.abs(np.sum(x * np.roll(y, -1, axis=1) - y * np.roll(x, -1, axis=1), axis=1)) / 2.0
    return int(inside.sum()), int(cut_count), np.asarray(areas, dtype=np.float64)


def _hill_counts(geometry: SkinGeometry, meetings: Meetings) -> tuple[int, int, FloatArray]:
    """Hills entirely inside, hills cut by the frame edge, and the areas of the inside ones."""
    width, height = float(geometry.width_px), float(geometry.height_px)
    return _polygon_counts(_hill_corners(geometry, meetings), width, height)


def disc_area_in_frame_px2(
    cx: float, cy: float, radius: float, width: float, height: float
) -> float:
    """Area of a disc inside the frame: exact when whole, midpoint integration when cut."""
    if radius <= cx <= width - radius and radius <= cy <= height - radius:
        return math.pi * radius**2
    x = (
        cx
        - radius
        + (np.arange(PORE_INTEGRATION_STEPS) + 0.5) * (2 * radius / PORE_INTEGRATION_STEPS)
    )
    x = x[(x >= 0) & (x <= width)]
    half_chord = np.sqrt(np.clip(radius**2 - (x - cx) ** 2, 0.0, None))
    chord = np.clip(
        np.minimum(cy + half_chord, height) - np.maximum(cy - half_chord, 0.0), 0.0, None
    )
    return float(chord.sum() * 2 * radius / PORE_INTEGRATION_STEPS)


def _furrow_truth(
    geometry: SkinGeometry, meetings: Meetings, um_per_px: float, frame_mm2: float
) -> dict[str, float]:
    """Furrow density, length-weighted mean width and anisotropy of the in-frame centre lines:
    the network's, and the bridges by which dead ends meet a furrow (``skin_hill_split``)."""
    starts = np.concatenate([geometry.vertices_px[geometry.edges[:, 0]], meetings.bridges[:, 0]])
    ends = np.concatenate([geometry.vertices_px[geometry.edges[:, 1]], meetings.bridges[:, 1]])
    widths = np.concatenate([geometry.edge_width_px, meetings.bridge_width_px])
    lengths = clipped_lengths_px(starts, ends, geometry.width_px, geometry.height_px)
    total = float(lengths.sum())
    theta = np.arctan2(ends[:, 1] - starts[:, 1], ends[:, 0] - starts[:, 0])
    orientation = complex(np.sum(lengths * np.exp(2j * theta)))
    return {
        "furrow_density_mm_per_mm2": total * um_per_px / 1000.0 / frame_mm2,
        "furrow_mean_width_um": float(np.dot(lengths, widths)) / total * um_per_px
        if total > 0
        else 0.0,
        "furrow_anisotropy": abs(orientation) / total if total > 0 else 0.0,
    }


def _hill_truth(geometry: SkinGeometry, meetings: Meetings, um_per_px: float,
                frame_mm2: float) -> dict[str, float]:
    """Hill density (inside + half of the cut ones) and mean area of the inside hills."""
    inside_count, cut_count, inside_areas = _hill_counts(geometry, meetings)
    mean_area_px2 = float(np.mean(inside_areas)) if len(inside_areas) else 0.0
    return {
        "hill_density_per_mm2": (inside_count + 0.5 * cut_count) / frame_mm2,
        "hill_mean_area_mm2": mean_area_px2 * um_per_px**2 / 1e6,
    }


def _pore_truth(geometry: SkinGeometry, um_per_px: float, frame_mm2: float) -> dict[str, float]:
    """Count, density, mean equivalent diameter and area ratio of pores."""
    width, height = float(geometry.width_px), float(geometry.height_px)
    centres, radii = geometry.pore_centres_px, geometry.pore_radii_px
    counted = (
        (centres[:, 0] >= 0)
        & (centres[:, 0] < width)
        & (centres[:, 1] >= 0)
        & (centres[:, 1] < height)
    )
    area_px2 = sum(
        disc_area_in_frame_px2(float(x), float(y), float(r), width, height)
        for (x, y), r in zip(centres, radii, strict=True)
    )
    count = int(counted.sum())
    return {
        "pore_count": float(count),
        "pore_density_per_cm2": count / (frame_mm2 / 100.0),
        "pore_mean_diameter_um": float(np.mean(2.0 * radii[counted])) * um_per_px if count else 0.0,
        "pore_area_ratio": area_px2 / (width * height),
    }


def ground_truth(geometry: SkinGeometry, um_per_px: float) -> dict[str, float]:
    """The nine texture and pore features of docs/measurement.md, exact for this geometry."""
    frame_mm2 = geometry.width_px * geometry.height_px * um_per_px**2 / 1e6
    meetings = dead_end_meetings(geometry, um_per_px)
    truth = {
        **_pore_truth(geometry, um_per_px, frame_mm2),
        **_furrow_truth(geometry, meetings, um_per_px, frame_mm2),
        **_hill_truth(geometry, meetings, um_per_px, frame_mm2),
    }
    return {key: truth[key] for key in TEXTURE_PORE_KEYS}
