"""Where furrow length is won and lost, edge by edge, on cells with known edges; one JSON object.

For each frame of the project's generator (``--count`` frames per preset, mixed and wide, of
``--seed``; fit on seeds 11 and 12, never on the second renderer) the true hill polygons are
rasterised at the work scale (the *oracle* cells of ``skin_furrow_oracle``) and also shrunk by
1 px and regrown over the frame's valley response (*regrown*). Their labels are the polygons',
so every pair of cells that ``borders.border_segments`` reports is either a true edge (the two
polygons share a side) or a corner contact (they share only a vertex: growth resolved a
many-arm junction into three-arm ones joined by a short border). Reported as % of the true
length, mean per frame and by true hill density (1/mm²): the true edges that are kept (measured
minus true), the true edges dropped (read as lying inside one junction), the corner contacts
kept, and the true edges that have no border at all. The four add up to the total error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from skin_common import frame_set_parser, load_average


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    return frame_set_parser(__doc__.splitlines()[0])


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np
from skin_furrow_oracle import BINS, oracle_labels, regrown

from appliance.skin.borders import border_segments
from appliance.skin.preprocess import prepare
from appliance.skin.texture import tophat_response
from appliance.synthetic.skin import synthetic_frame
from appliance.synthetic.skin_truth import clipped_lengths_px

PARTS = ("edges_kept", "edges_dropped", "corner_contacts_kept", "edges_without_border")


def _true_edges(frame: Any, shape: tuple[int, int], scale: float) -> dict[tuple[int, int], float]:
    """Per pair of cell labels whose polygons share sides: their shared length (work px)."""
    vertices = frame.geometry.vertices_px * scale
    faces: dict[tuple[int, int], list[int]] = {}
    for index, face in enumerate(frame.geometry.faces):
        for a, b in zip(face, face[1:] + face[:1], strict=True):
            faces.setdefault((min(a, b), max(a, b)), []).append(index + 1)
    edges: dict[tuple[int, int], float] = {}
    for (a, b), cells in faces.items():
        if len(cells) == 2:
            inside = float(clipped_lengths_px(vertices[[a]], vertices[[b]], shape[1], shape[0])[0])
            if inside > 0.0:
                pair = (min(cells), max(cells))
                edges[pair] = edges.get(pair, 0.0) + inside
    return edges


def _accounting(labels: np.ndarray, edges: dict[tuple[int, int], float]) -> list[float]:
    """The four parts (module docstring) in % of the true length."""
    segments = border_segments(labels)
    measured = {(int(a), int(b)): float(v)
                for (a, b), v in zip(segments.cell_pairs, segments.lengths_px, strict=True)}
    true = sum(edges.values())
    shared = [pair for pair in measured if pair in edges]
    return [100.0 * sum(measured[p] - edges[p] for p in shared if measured[p] > 0.0) / true,
            -100.0 * sum(edges[p] for p in shared if measured[p] == 0.0) / true,
            100.0 * sum(v for p, v in measured.items() if p not in edges) / true,
            -100.0 * sum(v for p, v in edges.items() if p not in measured) / true]


def _frame(seed: int, index: int, preset: str) -> tuple[float, list[float], list[float]]:
    """True hill density, and the parts for the oracle and the regrown cells."""
    frame = synthetic_frame(seed, index, preset)
    prepared = prepare(frame.image_rgb, frame.um_per_px)
    response = tophat_response(prepared.flat_work)
    shape = response.shape[:2]
    scale = frame.um_per_px / prepared.um_per_work_px
    oracle = oracle_labels(frame, shape, scale)
    edges = _true_edges(frame, shape, scale)
    return (frame.truth["hill_density_per_mm2"], _accounting(oracle, edges),
            _accounting(regrown(oracle, 1, response), edges))


def main() -> None:
    """Account every frame, print the mean parts by hill density."""
    args = _parser().parse_args()
    cv2.setNumThreads(1)
    rows = [_frame(args.seed, index, preset)
            for preset in ("mixed", "wide") for index in range(args.count)]
    density = np.array([row[0] for row in rows])
    result: dict[str, Any] = {}
    for name, column in (("oracle", 1), ("regrown_1px", 2)):
        parts = np.array([row[column] for row in rows])
        by_density = {}
        for low, high in BINS:
            inside = (density >= low) & (density < high)
            if np.any(inside):
                by_density[f"{low:g}-{high:g}"] = {
                    "frames": int(np.count_nonzero(inside)),
                    **{part: round(float(parts[inside, k].mean()), 2)
                       for k, part in enumerate(PARTS)}}
        result[name] = {**{part: round(float(parts[:, k].mean()), 2)
                           for k, part in enumerate(PARTS)}, "by_true_hill_density": by_density}
    print(json.dumps({"benchmark": "skin_edge_accounting", "seed": args.seed,
                      "frames": len(rows), "percent_of_true_length": result,
                      "load_average": load_average()}))


if __name__ == "__main__":
    main()
