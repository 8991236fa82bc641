"""The vector geometry of synthetic skin: a furrow network bounding polygonal hills, and pores.

Construction: lattice points on two primary furrow directions (a stretched, sheared lattice whose
aspect ratio sets the anisotropy) are jittered and triangulated (Delaunay). Triangle edges along
the two lattice directions are the primary furrows; the third, diagonal family is the secondary
furrows. A secondary furrow is dropped with probability ``1 - secondary_furrow_keep_prob``,
merging its two triangles into one four-sided hill. Each triangle merges at most once, so every
furrow that is kept separates two different hills: no dangling furrows, no islands. Pores are
discs, many centred on furrow junctions, none overlapping another, all entirely in the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.spatial import Delaunay, cKDTree

from appliance.synthetic.skin_params import SkinParams
from appliance.synthetic.skin_pore_layout import place_pores

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

PRIMARY_A, PRIMARY_B, SECONDARY = 0, 1, 2
DEAD_END = 3  # a furrow that ends inside a hill ("wide" preset, skin_dead_ends)
SECONDARY_WIDTH_FACTOR = 0.75


@dataclass(frozen=True)
class SkinGeometry:
    """Furrow network and pores in frame pixel coordinates (x right, y down; frame [0,W]x[0,H])."""

    width_px: int
    height_px: int
    vertices_px: FloatArray  # (N, 2) furrow junctions and bend points, x and y
    edges: IntArray  # (E, 2) vertex indices of each furrow segment (centre line)
    edge_width_px: FloatArray  # (E,) furrow width across the centre line
    edge_family: IntArray  # (E,) PRIMARY_A, PRIMARY_B or SECONDARY
    faces: tuple[tuple[int, ...], ...]  # hills: vertex indices in order around each polygon
    pore_centres_px: FloatArray  # (P, 2)
    pore_radii_px: FloatArray  # (P,)
    pore_at_junction: BoolArray  # (P,) centre placed on a furrow junction
    # "wide" preset only (None: every furrow equally deep, every pore round)
    edge_depth: FloatArray | None = None  # (E,) depth factor of each furrow
    pore_axis_ratio: FloatArray | None = None  # (P,) minor / major axis; radius is sqrt(a*b)
    pore_angle_rad: FloatArray | None = None  # (P,) direction of the major axis


def lattice_basis_px(params: SkinParams) -> FloatArray:
    """The two lattice vectors (rows) in px: cell area, aspect ratio, angle and direction."""
    cell_area_px2 = params.lattice_cell_area_mm2 * 1e6 / params.um_per_px**2
    angle = np.radians(params.lattice_angle_deg)
    b_len = np.sqrt(cell_area_px2 / (params.lattice_aspect_ratio * np.sin(angle)))
    a_len = params.lattice_aspect_ratio * b_len
    phi = np.radians(params.primary_direction_deg)
    return np.array(
        [
            [a_len * np.cos(phi), a_len * np.sin(phi)],
            [b_len * np.cos(phi + angle), b_len * np.sin(phi + angle)],
        ]
    )


def _in_box(points: FloatArray, low: float, high_x: float, high_y: float) -> BoolArray:
    """Points strictly inside the box [low, high_x] x [low, high_y]."""
    x, y = points[:, 0], points[:, 1]
    return np.asarray((x > low) & (x < high_x) & (y > low) & (y < high_y), dtype=np.bool_)


def _core_margin_px(basis: FloatArray) -> float:
    """How far around the frame the triangulation is kept: two of the longer lattice steps."""
    return 2.0 * float(np.max(np.linalg.norm(basis, axis=1)))


def _core_triangles(
    points: FloatArray, basis: FloatArray, width_px: int, height_px: int
) -> IntArray:
    """Delaunay triangles (counter-clockwise) with every corner within the core margin.

    The outer ring of the triangulation holds long, thin hull triangles; dropping it keeps every
    hill and furrow near the frame a regular one.
    """
    margin = _core_margin_px(basis)
    triangles = _ccw_triangles(points, np.asarray(Delaunay(points).simplices, dtype=np.int64))
    in_core = _in_box(points, -margin, width_px + margin, height_px + margin)
    return triangles[in_core[triangles].all(axis=1)]


def _lattice_points(
    rng: np.random.Generator, basis: FloatArray, width_px: int, height_px: int, jitter: float
) -> FloatArray:
    """Jittered lattice points covering the frame with a margin of a few cells."""
    margin = 1.5 * _core_margin_px(basis)
    low, high_x, high_y = -margin, width_px + margin, height_px + margin
    corners = np.array([[low, low], [high_x, low], [low, high_y], [high_x, high_y]])
    coords = corners @ np.linalg.inv(basis)
    lo, hi = np.floor(coords.min(axis=0)) - 1, np.ceil(coords.max(axis=0)) + 1
    i, j = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    ij = np.stack([i.ravel(), j.ravel()], axis=1) + rng.uniform(0.0, 1.0, size=2)
    points = ij @ basis
    points = points[_in_box(points, low, high_x, high_y)]
    scale = jitter * float(np.min(np.linalg.norm(basis, axis=1)))
    return points + rng.normal(0.0, scale, size=points.shape)


def _ccw_triangles(points: FloatArray, simplices: IntArray) -> IntArray:
    """Triangles with counter-clockwise vertex order (in x-right, y-up orientation)."""
    p = points[simplices]
    cross = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (
        p[:, 2, 0] - p[:, 0, 0]
    )
    flipped = simplices.copy()
    flipped[cross < 0, 1], flipped[cross < 0, 2] = simplices[cross < 0, 2], simplices[cross < 0, 1]
    return flipped


def _triangle_edges(triangles: IntArray) -> tuple[IntArray, IntArray]:
    """Unique edges (E, 2) and the two triangles on either side (E, 2; -1 on the hull)."""
    tri_ids = np.repeat(np.arange(len(triangles)), 3)
    starts = triangles.ravel()
    ends = np.roll(triangles, -1, axis=1).ravel()
    keys = np.minimum(starts, ends) * (triangles.max() + 1) + np.maximum(starts, ends)
    order = np.argsort(keys, kind="stable")
    keys, tri_ids, starts, ends = keys[order], tri_ids[order], starts[order], ends[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    second = first + 1
    paired = (second < len(keys)) & (keys[np.minimum(second, len(keys) - 1)] == keys[first])
    sides = np.stack(
        [tri_ids[first], np.where(paired, tri_ids[np.minimum(second, len(keys) - 1)], -1)], axis=1
    )
    return np.stack([starts[first], ends[first]], axis=1), sides


def _edge_families(points: FloatArray, edges: IntArray, basis: FloatArray) -> IntArray:
    """Classify each edge by its direction in lattice coordinates: a, b or the diagonal."""
    uv = np.rint((points[edges[:, 1]] - points[edges[:, 0]]) @ np.linalg.inv(basis))
    u, v = np.abs(uv[:, 0]), np.abs(uv[:, 1])
    family = np.full(len(edges), SECONDARY, dtype=np.int64)
    family[(u == 1) & (v == 0)] = PRIMARY_A
    family[(u == 0) & (v == 1)] = PRIMARY_B
    return family


def _merge_pairs(
    rng: np.random.Generator, sides: IntArray, family: IntArray, keep_prob: float
) -> BoolArray:
    """Choose secondary furrows to drop; each triangle loses at most one edge (a matching)."""
    dropped = np.zeros(len(sides), dtype=np.bool_)
    merged: set[int] = set()
    candidates = np.flatnonzero((family == SECONDARY) & (sides[:, 1] >= 0))
    for edge in rng.permutation(candidates):
        left, right = int(sides[edge, 0]), int(sides[edge, 1])
        if rng.random() < keep_prob or left in merged or right in merged:
            continue
        dropped[edge] = True
        merged.update((left, right))
    return dropped


def _far_corner(triangles: IntArray, edges: IntArray) -> IntArray:
    """Position (0-2) in each triangle of the corner not on the given edge."""
    off_edge = (triangles != edges[:, :1]) & (triangles != edges[:, 1:])
    return np.asarray(np.argmax(off_edge, axis=1), dtype=np.int64)


def _faces(
    triangles: IntArray, edges: IntArray, sides: IntArray, dropped: BoolArray
) -> tuple[tuple[int, ...], ...]:
    """Hill polygons: kept triangles plus the quadrilaterals of merged triangle pairs."""
    merged = np.zeros(len(triangles), dtype=np.bool_)
    merged[sides[dropped].ravel()] = True
    left, right = triangles[sides[dropped, 0]], triangles[sides[dropped, 1]]
    rows = np.arange(len(left))
    k = _far_corner(left, edges[dropped])
    # The left triangle runs far_left -> after -> before; the right one adds far_right.
    quads = np.stack(
        [
            left[rows, k],
            left[rows, (k + 1) % 3],
            right[rows, _far_corner(right, edges[dropped])],
            left[rows, (k + 2) % 3],
        ],
        axis=1,
    )
    return tuple(map(tuple, triangles[~merged].tolist() + quads.tolist()))


def _edge_widths(rng: np.random.Generator, family: IntArray, params: SkinParams) -> FloatArray:
    """Per-furrow width in px: primary-a widest, secondary narrowest, log-normal scatter."""
    factor = np.where(family == PRIMARY_A, params.primary_width_factor, 1.0)
    factor = np.where(family == SECONDARY, SECONDARY_WIDTH_FACTOR, factor)
    scatter = np.exp(rng.normal(0.0, params.furrow_width_cv, size=len(family)))
    return np.asarray(
        params.furrow_width_um / params.um_per_px * factor * scatter, dtype=np.float64
    )


class _Network(NamedTuple):
    """A furrow network: junctions come first in ``vertices``, furrow bend points after them."""

    vertices: FloatArray
    junction_count: int
    edges: IntArray
    family: IntArray
    widths: FloatArray
    faces: tuple[tuple[int, ...], ...]


def _faces_with_midpoints(
    faces: tuple[tuple[int, ...], ...], edges: IntArray, midpoints: IntArray
) -> tuple[tuple[int, ...], ...]:
    """Hill polygons with each side's midpoint vertex inserted after its first corner."""
    key_scale = int(edges.max()) + 1
    edge_keys = edges.min(axis=1) * key_scale + edges.max(axis=1)
    order = np.argsort(edge_keys)
    result: list[tuple[int, ...]] = []
    for size in sorted({len(face) for face in faces}):
        corners = np.array([face for face in faces if len(face) == size], dtype=np.int64)
        following = np.roll(corners, -1, axis=1)
        keys = np.minimum(corners, following) * key_scale + np.maximum(corners, following)
        mids = midpoints[order[np.searchsorted(edge_keys, keys, sorter=order)]]
        result.extend(
            map(tuple, np.stack([corners, mids], axis=2).reshape(len(corners), -1).tolist())
        )
    return tuple(result)


def _inside_triangles(points: FloatArray, a: FloatArray, b: FloatArray, c: FloatArray) -> BoolArray:
    """Row by row: is each point strictly inside the triangle (a, b, c), either orientation."""

    def cross(o: FloatArray, u: FloatArray, v: FloatArray) -> FloatArray:
        return (u[:, 0] - o[:, 0]) * (v[:, 1] - o[:, 1]) - (u[:, 1] - o[:, 1]) * (v[:, 0] - o[:, 0])

    d1, d2, d3 = cross(a, b, points), cross(b, c, points), cross(c, a, points)
    return np.asarray(((d1 > 0) & (d2 > 0) & (d3 > 0)) | ((d1 < 0) & (d2 < 0) & (d3 < 0)))


def _safe_bend_offsets(
    offset: FloatArray, starts: FloatArray, ends: FloatArray, side_centroids: FloatArray
) -> FloatArray:
    """Shrink each bend until its midpoint lies in the furrow's share of the hill it bends into.

    That share is the triangle (start, end, centroid of the triangle on that side); the shares
    of different furrows never overlap, so bent furrows never cross. Furrows on the edge of the
    triangulation (one side only, NaN centroid) stay straight.
    """
    middle = (starts + ends) / 2.0
    normal = np.stack([starts[:, 1] - ends[:, 1], ends[:, 0] - starts[:, 0]], axis=1)
    first_side = np.sum((side_centroids[:, 0] - middle) * normal, axis=1) * offset > 0
    centroid = np.where(first_side[:, None], side_centroids[:, 0], side_centroids[:, 1])
    fits = np.zeros(len(offset), dtype=np.bool_)
    for _halving in range(8):
        fits = _inside_triangles(middle + offset[:, None] * normal, starts, ends, centroid)
        if fits.all():
            break
        offset = np.where(fits, offset, offset / 2.0)
    return np.where(fits, offset, 0.0)


def _bend_furrows(
    rng: np.random.Generator, network: _Network, side_centroids: FloatArray, bend_frac: float
) -> _Network:
    """Split every furrow at a sideways-shifted midpoint; the halves vary in width."""
    starts, ends = network.vertices[network.edges[:, 0]], network.vertices[network.edges[:, 1]]
    offset = _safe_bend_offsets(
        rng.normal(0.0, bend_frac, size=len(starts)), starts, ends, side_centroids
    )
    normal = np.stack([starts[:, 1] - ends[:, 1], ends[:, 0] - starts[:, 0]], axis=1)
    midpoints = (starts + ends) / 2.0 + offset[:, None] * normal
    first_mid = len(network.vertices)
    mids = np.arange(first_mid, first_mid + len(starts))
    faces = _faces_with_midpoints(network.faces, network.edges, mids)
    halves = np.concatenate(
        [np.stack([network.edges[:, 0], mids], 1), np.stack([mids, network.edges[:, 1]], 1)]
    )
    scatter = np.exp(rng.normal(0.0, 0.12, size=len(halves)))
    return _Network(
        vertices=np.concatenate([network.vertices, midpoints]),
        junction_count=network.junction_count,
        edges=halves,
        family=np.concatenate([network.family, network.family]),
        widths=np.concatenate([network.widths, network.widths]) * scatter,
        faces=faces,
    )


def build_network(
    rng: np.random.Generator, params: SkinParams, width_px: int, height_px: int
) -> _Network:
    """Junctions, kept furrows (bent), their families and widths, and the hill polygons."""
    basis = lattice_basis_px(params)
    points = _lattice_points(rng, basis, width_px, height_px, params.lattice_jitter_frac)
    triangles = _core_triangles(points, basis, width_px, height_px)
    edges, sides = _triangle_edges(triangles)
    family = _edge_families(points, edges, basis)
    dropped = _merge_pairs(rng, sides, family, params.secondary_furrow_keep_prob)
    kept = ~dropped
    straight = _Network(
        vertices=points,
        junction_count=len(points),
        edges=edges[kept],
        family=family[kept],
        widths=_edge_widths(rng, family[kept], params),
        faces=_faces(triangles, edges, sides, dropped),
    )
    centroids = points[triangles].mean(axis=1)
    side_centroids = np.where((sides >= 0)[..., None], centroids[sides], np.nan)[kept]
    return _bend_furrows(rng, straight, side_centroids, params.furrow_bend_frac)


def build_geometry(
    rng: np.random.Generator, params: SkinParams, width_px: int, height_px: int
) -> SkinGeometry:
    """The whole vector geometry of one synthetic frame."""
    network = build_network(rng, params, width_px, height_px)
    junctions = network.vertices[: network.junction_count]
    in_frame = junctions[_in_box(junctions, 0.0, width_px, height_px)]
    centres, radii, at_junction, ratios = place_pores(rng, params, in_frame, width_px, height_px)
    wide = params.pore_aspect_max > 1.0 or params.furrow_depth_spread > 0.0
    near = _neighbours(network, params) if wide else None
    return SkinGeometry(
        width_px=width_px,
        height_px=height_px,
        vertices_px=network.vertices,
        edges=network.edges,
        edge_width_px=_widths_in_space(network, near) if near is not None else network.widths,
        edge_family=network.family,
        faces=network.faces,
        pore_centres_px=centres,
        pore_radii_px=radii,
        pore_at_junction=at_junction,
        edge_depth=_depth_in_space(rng.normal(0.0, params.furrow_depth_spread,
                                              len(network.edges)), near)
        if near is not None else None,
        pore_axis_ratio=ratios if wide else None,
        pore_angle_rad=rng.uniform(0.0, np.pi, len(ratios)) if wide else None,
    )


DEPTH_CELLS = 1.5  # furrow depth and width vary over about this many lattice cells (Gaussian sd)


class _Neighbours(NamedTuple):
    """The pairs of furrow pieces whose midpoints lie within 3 sd (``DEPTH_CELLS`` lattice
    cells) of each other, each pair once (P pairs, as cKDTree.query_pairs gives them), as the
    additions ``_in_space`` makes: each pair adds to its first piece the second's value, then
    (after all first pieces) to its second piece the first's, with the pair's Gaussian weight."""

    at: IntArray  # (2P,) the piece each addition adds to
    by: IntArray  # (2P,) the piece whose value it adds: the other of its pair
    weight: FloatArray  # (2P,) its pair's weight
    weight_sums: FloatArray  # (E,) per piece, 1 (its own value) plus the weights added to it


def _neighbours(network: _Network, params: SkinParams) -> _Neighbours:
    """The pieces' neighbours for ``_in_space`` (one set for the widths and the depths)."""
    mid = 0.5 * (network.vertices[network.edges[:, 0]] + network.vertices[network.edges[:, 1]])
    sd_px = DEPTH_CELLS * np.sqrt(params.lattice_cell_area_mm2) * 1000.0 / params.um_per_px
    pairs = cKDTree(mid).query_pairs(3.0 * sd_px, output_type="ndarray")
    x, y = np.ascontiguousarray(mid[:, 0]), np.ascontiguousarray(mid[:, 1])
    first, second = pairs[:, 0], pairs[:, 1]
    dx, dy = x[first] - x[second], y[first] - y[second]
    weight = np.exp(-(dx * dx + dy * dy) / (2.0 * sd_px**2))
    at, both = np.concatenate((first, second)), np.concatenate((weight, weight))
    return _Neighbours(at, np.concatenate((second, first)), both,
                       added_in_order(np.ones(len(mid)), at, both))


def _depth_in_space(drawn: FloatArray, near: _Neighbours) -> FloatArray:
    """Each furrow piece's depth factor from its own log-normal draw (``drawn``: the log
    factors), smoothed in space (``_in_space``). Deep and shallow regions of furrows, not single
    pieces: a piece drawn alone deeper than the pieces it meets (a short straight piece or a
    bend) is a small closed dark dash, which reads as a pore (docs/experiments/README.md
    "wideover")."""
    return np.asarray(np.exp(_in_space(drawn, near)))


def _widths_in_space(network: _Network, near: _Neighbours) -> FloatArray:
    """The pieces' widths with their log-normal scatter (``_edge_widths``) smoothed in space
    (``_in_space``), each family's mean kept: a short piece drawn alone wider (so also deeper:
    the renderer carves a furrow by its width) than the pieces it meets is a closed dark blob."""
    logs = np.log(network.widths)
    family_mean = np.zeros_like(logs)
    for family in np.unique(network.family):
        family_mean[network.family == family] = np.mean(logs[network.family == family])
    return np.asarray(np.exp(family_mean + _in_space(logs - family_mean, near)))


def _in_space(drawn: FloatArray, near: _Neighbours) -> FloatArray:
    """Per furrow piece, the Gaussian-weighted mean (sd ``DEPTH_CELLS`` lattice cells) of the
    values ``drawn`` around its midpoint, centred and rescaled to the drawn spread: the same
    draws (the generator's stream is untouched), neighbouring pieces alike."""
    if len(drawn) < 2 or not np.std(drawn) > 0.0:
        return drawn
    smooth = added_in_order(drawn, near.at, near.weight * drawn[near.by]) / near.weight_sums
    spread = np.std(smooth)
    result: FloatArray = ((smooth - np.mean(smooth)) * (np.std(drawn) / spread)
                          if spread > 0 else smooth)
    return result


def added_in_order(start: FloatArray, at: IntArray, values: FloatArray) -> FloatArray:
    """``start`` with each of ``values`` added at its index ``at``, one after the other in their
    order: ``np.add.at``'s sums to the bit (the frames of a seed stay the same files), by
    ``np.bincount``, which adds in that order too, from 0.0, so the start goes in first (0.0 + x
    is x for every x but -0.0: such a start is left to ``np.add.at``)."""
    if np.any(np.signbit(start) & (start == 0.0)):
        total = start.copy()
        np.add.at(total, at, values)
        return total
    count = len(start)
    summed = np.bincount(np.concatenate((np.arange(count), at)),
                         np.concatenate((start, values)), minlength=count)
    return np.asarray(summed, dtype=np.float64)  # float64 already: its stubs say int
