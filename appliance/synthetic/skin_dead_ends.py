"""Dead-end furrows of the "wide" preset: furrow pieces that leave a furrow and end inside a hill.

docs/measurement.md's "Definitions": a hill is a region bounded by furrow centre lines, and a
furrow that ends within 13 µm (edge to edge) of another furrow meets it (a gap the camera cannot
show): such a dead end splits its hill in two (``skin_hill_split``); one that ends farther
inside a hill bounds nothing. Either adds centre-line length (and its width and direction to
the furrow width and anisotropy). Each one starts at the bend point in the middle of a furrow,
runs into one of the two hills beside it, no more than one into any hill, as wide and as deep
as the furrow it leaves, and stops either well inside the hill or (the hard case) a few µm
short of the furrow across the hill, edge to edge. It never crosses a furrow, another dead end
or a pore.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from appliance.synthetic.skin_geometry import DEAD_END, FloatArray, IntArray, SkinGeometry
from appliance.synthetic.skin_params import SkinParams

MAX_TURN_RAD = np.radians(40.0)  # from the furrow's normal
SHORT_GAP_UM = (2.0, 12.0)  # the hard case: edge-to-edge gap to the furrow across the hill
FREE_REACH = (0.3, 0.7)  # otherwise: the share of the way across the hill
PORE_CLEARANCE_PX = 2.0
Lookup = tuple[IntArray, IntArray, int]  # furrow pieces by their two vertices (_edge_lookup)


class DeadEnds(NamedTuple):
    """Dead-end furrows: their tips (new vertices), the vertex each starts from, width, depth."""

    tips_px: FloatArray
    starts: IntArray
    widths_px: FloatArray
    depths: FloatArray


def _edge_lookup(geometry: SkinGeometry) -> Lookup:
    """Sorted keys of the furrow pieces by their two vertices, the matching piece indices, and
    the key scale."""
    scale = len(geometry.vertices_px) + 1
    keys = geometry.edges.min(axis=1) * scale + geometry.edges.max(axis=1)
    order = np.argsort(keys)
    return keys[order], order, scale


def _piece(lookup: Lookup, a: int, b: int) -> int:
    """Index of the furrow piece between vertices ``a`` and ``b``."""
    keys, order, scale = lookup
    return int(order[np.searchsorted(keys, min(a, b) * scale + max(a, b))])


def _ray_hit(polygon: FloatArray, skip: set[int], origin: FloatArray,
             direction: FloatArray) -> tuple[float, int]:
    """Distance along the ray to the first polygon side it meets (sides in ``skip`` left out)
    and that side's index; (inf, -1) when none."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    side = b - a
    denominator = direction[0] * side[:, 1] - direction[1] * side[:, 0]
    rel = a - origin
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rel[:, 0] * side[:, 1] - rel[:, 1] * side[:, 0]) / denominator
        u = (rel[:, 0] * direction[1] - rel[:, 1] * direction[0]) / denominator
    hits = np.isfinite(t) & (t > 1e-6) & (u >= 0.0) & (u <= 1.0)
    hits[list(skip)] = False
    if not hits.any():
        return float("inf"), -1
    best = int(np.argmin(np.where(hits, t, np.inf)))
    return float(t[best]), best


def _distance_to_sides(point: FloatArray, polygon: FloatArray) -> FloatArray:
    """Distance from ``point`` to each side of ``polygon``."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    side = b - a
    t = np.clip(np.sum((point - a) * side, axis=1) / np.maximum(np.sum(side**2, axis=1), 1e-12),
                0.0, 1.0)
    return np.asarray(np.hypot(*(a + t[:, None] * side - point).T))


def _inward(polygon: FloatArray, k: int) -> FloatArray:
    """Unit normal at the polygon's vertex ``k`` pointing into the polygon."""
    chord = polygon[(k + 1) % len(polygon)] - polygon[k - 1]
    normal = np.array([-chord[1], chord[0]]) / max(float(np.hypot(*chord)), 1e-12)
    return normal if np.dot(polygon.mean(axis=0) - polygon[k], normal) > 0 else -normal


def _clear_of_pores(start: FloatArray, tip: FloatArray, half_width: float,
                    geometry: SkinGeometry) -> bool:
    """Whether the piece from ``start`` to ``tip`` keeps clear of every pore."""
    if len(geometry.pore_radii_px) == 0:
        return True
    piece = tip - start
    rel = geometry.pore_centres_px - start
    t = np.clip(rel @ piece / max(float(piece @ piece), 1e-12), 0.0, 1.0)
    distance = np.hypot(*(rel - t[:, None] * piece).T)
    return bool(np.all(distance > geometry.pore_radii_px + half_width + PORE_CLEARANCE_PX))


class _Draw(NamedTuple):
    """The random choices for one hill, drawn for every hill (a fixed count of draws)."""

    side: float  # which bend point of the hill (share of its sides)
    turn: float  # -1..1 of MAX_TURN_RAD
    width: float  # times the furrow's width
    short: bool  # the hard case
    gap_um: float
    reach: float


def _draws(
    rng: np.random.Generator, params: SkinParams, count: int
) -> tuple[npt.NDArray[np.bool_], list[_Draw]]:
    """Which hills get a dead end, and the choices for each hill."""
    chosen = rng.random(count) < params.dead_end_share
    side, turn = rng.random(count), rng.uniform(-1.0, 1.0, count)
    width = rng.uniform(0.8, 1.1, count)
    short = rng.random(count) < params.dead_end_short_share
    gap_um, reach = rng.uniform(*SHORT_GAP_UM, count), rng.uniform(*FREE_REACH, count)
    return chosen, [
        _Draw(float(side[i]), float(turn[i]), float(width[i]), bool(short[i]),
              float(gap_um[i]), float(reach[i]))
        for i in range(count)
    ]


def _side_widths(geometry: SkinGeometry, face: tuple[int, ...], lookup: Lookup) -> FloatArray:
    """The width of the furrow piece along each side of ``face``."""
    pieces = [_piece(lookup, face[i], face[(i + 1) % len(face)]) for i in range(len(face))]
    return np.asarray(geometry.edge_width_px[pieces], dtype=np.float64)


def _like_its_furrow(geometry: SkinGeometry, face: tuple[int, ...], k: int, draw: _Draw,
                     lookup: Lookup) -> tuple[float, float]:
    """Width and depth of a dead end leaving ``face``'s bend point ``k``: those of the two
    furrow halves that meet there (the width scattered)."""
    after = face[(k + 1) % len(face)]
    halves = [_piece(lookup, face[k], face[k - 1]), _piece(lookup, face[k], after)]
    width = float(np.mean(geometry.edge_width_px[halves])) * draw.width
    depth = 1.0 if geometry.edge_depth is None else float(np.mean(geometry.edge_depth[halves]))
    return width, depth


def _direction(polygon: FloatArray, k: int, draw: _Draw) -> FloatArray:
    """The dead end's direction: into the polygon, turned from the normal by the draw."""
    normal, angle = _inward(polygon, k), draw.turn * MAX_TURN_RAD
    return np.array([normal[0] * np.cos(angle) - normal[1] * np.sin(angle),
                     normal[0] * np.sin(angle) + normal[1] * np.cos(angle)])


def _dead_end(geometry: SkinGeometry, face: tuple[int, ...], draw: _Draw, um_per_px: float,
              lookup: Lookup) -> tuple[FloatArray, int, float, float] | None:
    """The tip, start vertex, width and depth of the dead end drawn into ``face``, or None
    where it would not fit (too short, or near a pore)."""
    polygon = geometry.vertices_px[list(face)]
    k = 1 + 2 * int(draw.side * (len(face) // 2))  # the bend points sit at odd positions
    width, depth = _like_its_furrow(geometry, face, k, draw, lookup)
    origin, direction = polygon[k], _direction(polygon, k, draw)
    across, hit_side = _ray_hit(polygon, {k - 1, k}, origin, direction)
    if hit_side < 0:
        return None
    # each side's furrow edge kept ``gap`` away from the dead end's edge and round tip
    clearance = 0.5 * (width + _side_widths(geometry, face, lookup)) + (
        draw.gap_um / um_per_px if draw.short else 0.0)
    others = np.ones(len(face), dtype=np.bool_)
    others[[k - 1, k]] = False  # the sides the dead end leaves from
    length = across * (1.0 if draw.short else draw.reach)
    for _step in range(60):  # back off until the tip keeps its clearance from every other side
        tip = origin + length * direction
        shortfall = float((clearance - _distance_to_sides(tip, polygon))[others].max())
        if shortfall <= 1e-6:
            break
        length -= shortfall + 1e-3
    if length < 2.0 * width or shortfall > 1e-6:
        return None
    if not _clear_of_pores(origin, tip, 0.5 * width, geometry):
        return None
    return tip, face[k], width, depth


def draw_dead_ends(rng: np.random.Generator, params: SkinParams,
                   geometry: SkinGeometry) -> DeadEnds:
    """The dead ends of a frame: a share of the hills near the frame get one each."""
    chosen, draws = _draws(rng, params, len(geometry.faces))
    lookup = _edge_lookup(geometry)
    reach = 0.0, 0.0, float(geometry.width_px), float(geometry.height_px)
    found = []
    for index in np.flatnonzero(chosen):
        face = geometry.faces[index]
        corners = geometry.vertices_px[list(face)]
        low, high = corners.min(axis=0), corners.max(axis=0)
        if high[0] < reach[0] or high[1] < reach[1] or low[0] > reach[2] or low[1] > reach[3]:
            continue
        dead_end = _dead_end(geometry, face, draws[index], params.um_per_px, lookup)
        if dead_end is not None:
            found.append(dead_end)
    return DeadEnds(
        tips_px=np.array([tip for tip, *_ in found], dtype=np.float64).reshape(-1, 2),
        starts=np.array([start for _, start, *_ in found], dtype=np.int64),
        widths_px=np.array([width for *_, width, _ in found], dtype=np.float64),
        depths=np.array([depth for *_, depth in found], dtype=np.float64),
    )


def with_dead_ends(geometry: SkinGeometry, dead_ends: DeadEnds) -> SkinGeometry:
    """``geometry`` with the dead ends added as furrow pieces (new tip vertices; hills as they
    were)."""
    first_tip = len(geometry.vertices_px)
    pieces = np.stack([dead_ends.starts, first_tip + np.arange(len(dead_ends.starts))], axis=1)
    depth = geometry.edge_depth
    return replace(
        geometry,
        vertices_px=np.concatenate([geometry.vertices_px, dead_ends.tips_px]),
        edges=np.concatenate([geometry.edges, pieces]).astype(np.int64),
        edge_width_px=np.concatenate([geometry.edge_width_px, dead_ends.widths_px]),
        edge_family=np.concatenate([geometry.edge_family,
                                    np.full(len(pieces), DEAD_END, dtype=np.int64)]),
        edge_depth=None if depth is None else np.concatenate([depth, dead_ends.depths]),
    )
