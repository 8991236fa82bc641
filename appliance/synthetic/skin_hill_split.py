"""Hills that a dead-end furrow splits: the hill definition's rule for gaps the camera cannot show.

docs/measurement.md "Definitions": a furrow that ends within ``MEET_GAP_UM`` (edge to edge) of
another furrow meets it and bounds hills as a through furrow does. 13 µm is the coarsest
validated pixel: a narrower gap is under a pixel at some calibration, the frame shows the two
furrows joined, and a physical threshold keeps the truth the same at every calibration.

1. Each dead end's edge-to-edge gap: the distance from its tip to the nearest other furrow's
   centre line, less half of each one's width (its tip is round), over every furrow piece but
   those joined at its start (the furrow it leaves, and a dead end leaving the same point).
2. A dead end whose gap is at most ``MEET_GAP_UM`` meets: its centre line goes on from the tip
   to the nearest point of a centre line around it in its hill (a side other than the furrow it
   leaves, or another dead end in that hill). This bridge is the shortest way there, so it
   crosses no other centre line; it is furrow centre line as the dead end is (its length,
   width and direction count in the furrow features, ``skin_truth``).
3. The hill's sides, its dead ends and their bridges form a plane graph; its bounded faces,
   dangling pieces pruned, are the hill's parts: exact polygons (no raster), whose areas add up
   to the hill's. A dead end that meets another dead end splits the hill along both.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from appliance.synthetic.skin_geometry import DEAD_END, FloatArray, IntArray, SkinGeometry

MEET_GAP_UM = 13.0
ON_END = 1e-9  # a bridge landing this close (share of a segment) to an end lands on the end


class _Nearest(NamedTuple):
    """The nearest point of a set of segments: its distance, segment and share along it."""

    distance: float
    segment: int
    share: float


def _nearest(point: FloatArray, starts: FloatArray, ends: FloatArray) -> _Nearest:
    """The point of the segments ``starts[i]``-``ends[i]`` nearest to ``point``."""
    along = ends - starts
    share = np.clip(np.sum((point - starts) * along, axis=1)
                    / np.maximum(np.sum(along**2, axis=1), 1e-18), 0.0, 1.0)
    distance = np.hypot(*(starts + share[:, None] * along - point).T)
    best = int(np.argmin(distance))
    return _Nearest(float(distance[best]), best, float(share[best]))


def dead_end_gaps_um(geometry: SkinGeometry, um_per_px: float,
                     reach_um: float = MEET_GAP_UM) -> FloatArray:
    """Edge-to-edge gap (µm) from each dead end's tip (``edge_family == DEAD_END``, in order) to
    the nearest furrow not joined at its start; inf where none lies within ``reach_um``."""
    dead = np.flatnonzero(geometry.edge_family == DEAD_END)
    if len(dead) == 0:
        return np.zeros(0)
    starts = geometry.vertices_px[geometry.edges[:, 0]]
    ends = geometry.vertices_px[geometry.edges[:, 1]]
    half_width = 0.5 * geometry.edge_width_px
    reach_px = (reach_um / um_per_px + 2.0 * float(half_width.max())
                + 0.5 * float(np.hypot(*(ends - starts).T).max()))
    tips = ends[dead]
    near = cKDTree(0.5 * (starts + ends)).query_ball_point(tips, reach_px)
    gaps = np.full(len(dead), np.inf)
    for row, (piece, found) in enumerate(zip(dead, near, strict=True)):
        start = geometry.edges[piece, 0]
        others = np.array([p for p in found if start not in geometry.edges[p]], dtype=np.int64)
        if len(others) == 0:
            continue
        along = ends[others] - starts[others]
        share = np.clip(np.sum((tips[row] - starts[others]) * along, axis=1)
                        / np.maximum(np.sum(along**2, axis=1), 1e-18), 0.0, 1.0)
        distance = np.hypot(*(starts[others] + share[:, None] * along - tips[row]).T)
        gaps[row] = float((distance - half_width[others]).min() - half_width[piece])
    return np.asarray(gaps * um_per_px, dtype=np.float64)


def _inside(point: FloatArray, polygon: FloatArray) -> bool:
    """Whether ``point`` lies inside ``polygon`` (even-odd rule)."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    crosses = (a[:, 1] > point[1]) != (b[:, 1] > point[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        x = a[:, 0] + (point[1] - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return bool(np.count_nonzero(crosses & (x > point[0])) % 2)


def _hill_of_each(geometry: SkinGeometry, pieces: IntArray) -> list[int]:
    """The hill (face index) each dead-end piece runs into: one of the hills at its start that
    holds its tip; -1 where none does (a dead end outside every hill bounds nothing)."""
    wanted = {int(geometry.edges[piece, 0]) for piece in pieces}
    at_vertex: dict[int, list[int]] = defaultdict(list)
    for index, face in enumerate(geometry.faces):
        for vertex in wanted.intersection(face):
            at_vertex[vertex].append(index)
    hills = []
    for piece in pieces:
        start, tip = geometry.edges[piece]
        holding = [face for face in at_vertex[int(start)] if _inside(
            geometry.vertices_px[tip], geometry.vertices_px[list(geometry.faces[face])])]
        hills.append(holding[0] if holding else -1)
    return hills


class _Graph:
    """A plane graph of points and straight edges: a hill's sides, dead ends and bridges."""

    def __init__(self, points: FloatArray) -> None:
        self.points = [np.asarray(point, dtype=np.float64) for point in points]
        self.segments: list[tuple[int, int]] = []
        self.on_segment: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self.bridges: list[tuple[int, int]] = []
        self.bridge_pieces: list[int] = []  # the dead end (geometry edge) each bridge continues

    def add_point(self, point: FloatArray) -> int:
        """A new node at ``point``; its id."""
        self.points.append(np.asarray(point, dtype=np.float64))
        return len(self.points) - 1

    def land(self, segment: int, share: float) -> int:
        """The node where a bridge lands at ``share`` along ``segment`` (an end, or a new
        node that splits it)."""
        a, b = self.segments[segment]
        if share <= ON_END:
            return a
        if share >= 1.0 - ON_END:
            return b
        node = self.add_point(self.points[a] + share * (self.points[b] - self.points[a]))
        self.on_segment[segment].append((share, node))
        return node

    def edges(self) -> set[tuple[int, int]]:
        """Every edge once (segments cut at the nodes landed on them, then the bridges)."""
        result: set[tuple[int, int]] = set()
        for index, (a, b) in enumerate(self.segments):
            chain = [a, *(node for _, node in sorted(self.on_segment[index])), b]
            result.update((min(u, v), max(u, v)) for u, v in pairwise(chain))
        result.update((min(u, v), max(u, v)) for u, v in self.bridges if u != v)
        return result


def _pruned_neighbours(edges: set[tuple[int, int]]) -> dict[int, set[int]]:
    """Each node's neighbours, dangling edges (a free dead end, a dead end's tip beyond a
    bridge landing on it) removed until every node has two or more."""
    neighbours: dict[int, set[int]] = defaultdict(set)
    for u, v in edges:
        neighbours[u].add(v)
        neighbours[v].add(u)
    loose = [node for node, around in neighbours.items() if len(around) < 2]
    while loose:
        node = loose.pop()
        for other in neighbours.pop(node, set()):
            neighbours[other].discard(node)
            if len(neighbours[other]) < 2:
                loose.append(other)
    return neighbours


def _cycles(graph: _Graph, neighbours: dict[int, set[int]]) -> list[FloatArray]:
    """The bounded faces of the plane graph as polygons: each walk that turns to the next edge
    clockwise at every node, and so has positive signed area (the outer one: negative)."""
    ordered = {node: sorted(around, key=lambda other: float(np.arctan2(
        *(graph.points[other] - graph.points[node])[::-1]))) for node, around in neighbours.items()}
    seen: set[tuple[int, int]] = set()
    faces = []
    for node, around in ordered.items():
        for first in around:
            walk, (u, v) = [], (node, first)
            while (u, v) not in seen:
                seen.add((u, v))
                walk.append(u)
                turn = ordered[v]
                u, v = v, turn[(turn.index(u) - 1) % len(turn)]
            if not walk:
                continue
            polygon = np.array([graph.points[k] for k in walk])
            x, y = polygon[:, 0], polygon[:, 1]
            if float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) > 0.0:
                faces.append(polygon)
    return faces


def _hill_graph(geometry: SkinGeometry, face: tuple[int, ...], pieces: list[int],
                meets: list[bool]) -> _Graph:
    """The plane graph of one hill: its sides, its dead ends, and a bridge from the tip of each
    one that meets to the nearest centre line around it (not the furrow it leaves)."""
    graph = _Graph(geometry.vertices_px[list(face)])
    count = len(face)
    graph.segments = [(k, (k + 1) % count) for k in range(count)]
    position = {vertex: k for k, vertex in enumerate(face)}
    tips = [graph.add_point(geometry.vertices_px[geometry.edges[p, 1]]) for p in pieces]
    first_dead = len(graph.segments)
    graph.segments += [(position[int(geometry.edges[p, 0])], tip)
                       for p, tip in zip(pieces, tips, strict=True)]
    for row, (piece, tip) in enumerate(zip(pieces, tips, strict=True)):
        if not meets[row]:
            continue
        k = position[int(geometry.edges[piece, 0])]
        targets = [s for s in range(count) if s not in ((k - 1) % count, k)]
        targets += [first_dead + other for other in range(len(pieces)) if other != row]
        segment_ends = np.array([[graph.points[a], graph.points[b]]
                                 for a, b in (graph.segments[s] for s in targets)])
        nearest = _nearest(graph.points[tip], segment_ends[:, 0], segment_ends[:, 1])
        graph.bridges.append((tip, graph.land(targets[nearest.segment], nearest.share)))
        graph.bridge_pieces.append(piece)
    return graph


class Meetings(NamedTuple):
    """What the dead ends that meet a furrow change: the hills they split (face index, each
    with its parts as polygons in frame px; hills no dead end splits left out), and the
    bridges, each a centre line from a meeting dead end's tip to where it meets, as wide as
    that dead end."""

    parts: dict[int, list[FloatArray]]
    bridges: FloatArray  # (N, 2, 2) start (the tip) and end, frame px
    bridge_width_px: FloatArray  # (N,)


def dead_end_meetings(geometry: SkinGeometry, um_per_px: float) -> Meetings:
    """The hills that dead ends meeting a furrow split, and their bridges."""
    parts: dict[int, list[FloatArray]] = {}
    bridges: list[FloatArray] = []
    widths: list[float] = []
    pieces = np.flatnonzero(geometry.edge_family == DEAD_END)
    if len(pieces) == 0:
        return Meetings(parts, np.zeros((0, 2, 2)), np.zeros(0))
    meets = dead_end_gaps_um(geometry, um_per_px) <= MEET_GAP_UM
    in_hill: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for piece, hill, meeting in zip(pieces, _hill_of_each(geometry, pieces), meets, strict=True):
        if hill >= 0:
            in_hill[hill].append((int(piece), bool(meeting)))
    for hill, dead_ends in in_hill.items():
        if not any(meeting for _, meeting in dead_ends):
            continue
        graph = _hill_graph(geometry, geometry.faces[hill], [p for p, _ in dead_ends],
                            [m for _, m in dead_ends])
        parts[hill] = _cycles(graph, _pruned_neighbours(graph.edges()))
        for (tip, landing), dead_end in zip(graph.bridges, graph.bridge_pieces, strict=True):
            bridges.append(np.array([graph.points[tip], graph.points[landing]]))
            widths.append(float(geometry.edge_width_px[dead_end]))
    return Meetings(parts, np.array(bridges).reshape(-1, 2, 2), np.array(widths))


def split_hills(geometry: SkinGeometry, um_per_px: float) -> dict[int, list[FloatArray]]:
    """The hills that dead ends meeting a furrow split (face index), each with its parts as
    polygons in frame px; hills no dead end splits are left out."""
    return dead_end_meetings(geometry, um_per_px).parts
