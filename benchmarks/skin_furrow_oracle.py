"""Where the furrow-density error comes from: the length estimator or the hill cells; prints
one JSON object.

For each frame of the project's generator (``--count`` frames per preset, mixed and wide, of
``--seed``; fit on seeds 11 and 12, never on the second renderer) the true hill polygons are
rasterised at the work scale (the *oracle* cells) and measured by ``borders.border_segments``
like the method's own cells. oracle / truth - 1 is the length estimator's own error on exact
cell borders; measured / truth - 1 adds what the hill cells get wrong (missed faint furrows,
split hills, teeth). Both are reported as median signed errors by true hill density (1/mm²).
*Regrown* cells separate the partition from the detection: the oracle cells shrunk by 1 (2)
px on every side (a furrow 3 (5) px wide) and given back by ``hills.grow_cells``, as the method
grows its seeds; regrown / truth - 1 is what the growth partition and the estimator do to
exact hills (the cells' labels are the oracle's, so no hill is missed or split).
*Detected* cells separate the detection from the partition the other way: the oracle cells
with each true hill relabelled to the method's cell that covers most of it, so two hills the
method merged (or a hill it missed, which goes to the neighbour that took it) are one cell,
with exact borders otherwise; detected / truth - 1 is what the missed hills and furrows alone
cost.
*With spurs* is the method's furrow length: its cells' borders plus the dead-end furrows
(``spurs``), the visible centre line that is no border.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from skin_common import frame_set_parser, load_average


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    return frame_set_parser(__doc__.split("\n\n")[0])


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np

from appliance.skin.borders import border_segments
from appliance.skin.hills import grow_cells, hair_mask
from appliance.skin.preprocess import prepare
from appliance.skin.spurs import dead_end_furrows
from appliance.skin.texture import hill_cells, tophat_response
from appliance.synthetic.skin import synthetic_frame

BINS = ((0.0, 8.0), (8.0, 14.0), (14.0, 20.0), (20.0, 1000.0))


def oracle_labels(frame: Any, shape: tuple[int, int], scale: float) -> np.ndarray:
    """The true hill polygons filled at the work scale, one label each."""
    labels = np.zeros(shape, np.int32)
    vertices = frame.geometry.vertices_px * scale
    for index, face in enumerate(frame.geometry.faces):
        corners = np.round((vertices[list(face)] - 0.5) * 16).astype(np.int32)
        cv2.fillPoly(labels, [corners], index + 1, cv2.LINE_8, 4)
    return labels


def regrown(oracle: np.ndarray, shrink_px: int, response: np.ndarray) -> np.ndarray:
    """The oracle cells without the pixels within ``shrink_px`` of another cell, regrown over
    the frame's valley response as the method grows its seeds."""
    kernel = np.ones((2 * shrink_px + 1, 2 * shrink_px + 1), np.uint8)
    labels = oracle.astype(np.uint16)
    inner = cv2.erode(labels, kernel) == cv2.dilate(labels, kernel)
    return grow_cells(np.where(inner, labels, 0).astype(np.uint16), response)


def _detected(oracle: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The oracle cells relabelled to the method's cell that covers most of each true hill."""
    hills, cell_count = int(oracle.max()) + 1, int(cells.max()) + 1
    overlap = np.bincount(oracle.ravel().astype(np.int64) * cell_count + cells.ravel(),
                          minlength=hills * cell_count).reshape(hills, cell_count)
    covering = overlap.argmax(axis=1)
    covering[0] = 0
    return np.take(covering.astype(cells.dtype), oracle)


def _frame_errors(seed: int, index: int, preset: str) -> tuple[float, ...]:
    """True hill density, and measured, oracle, regrown (1, 2 px), detected and measured with
    spurs furrow length over the true length, - 1."""
    frame = synthetic_frame(seed, index, preset)
    prepared = prepare(frame.image_rgb, frame.um_per_px)
    um = prepared.um_per_work_px
    response = tophat_response(prepared.flat_work)
    hair = hair_mask(prepared.rgb_work)
    cells, masks = hill_cells(response, um, hair)
    measured = border_segments(cells, masks=masks).total_length_px
    spurs = dead_end_furrows(response, masks.line_mask(), hair).length_px
    truth = frame.truth
    true_px = truth["furrow_density_mm_per_mm2"] * prepared.frame_area_mm2 * 1000.0 / um
    oracle = oracle_labels(frame, cells.shape, frame.um_per_px / um)
    return (truth["hill_density_per_mm2"],
            measured / true_px - 1.0,
            border_segments(oracle).total_length_px / true_px - 1.0,
            *(border_segments(regrown(oracle, px, response)).total_length_px / true_px - 1.0
              for px in (1, 2)),
            border_segments(_detected(oracle, cells)).total_length_px / true_px - 1.0,
            (measured + spurs) / true_px - 1.0)


def main() -> None:
    """Measure every frame, print the errors by hill density."""
    args = _parser().parse_args()
    cv2.setNumThreads(1)
    rows = np.array([_frame_errors(args.seed, index, preset)
                     for preset in ("mixed", "wide") for index in range(args.count)])
    by_density = {}
    for low, high in BINS:
        inside = (rows[:, 0] >= low) & (rows[:, 0] < high)
        if np.any(inside):
            by_density[f"{low:g}-{high:g}"] = {
                "frames": int(np.count_nonzero(inside)),
                "measured_median_rel_error": round(float(np.median(rows[inside, 1])), 4),
                "oracle_median_rel_error": round(float(np.median(rows[inside, 2])), 4),
                "regrown_1px_median_rel_error": round(float(np.median(rows[inside, 3])), 4),
                "regrown_2px_median_rel_error": round(float(np.median(rows[inside, 4])), 4),
                "detected_median_rel_error": round(float(np.median(rows[inside, 5])), 4),
                "with_spurs_median_rel_error": round(float(np.median(rows[inside, 6])), 4)}
    print(json.dumps({"benchmark": "skin_furrow_oracle", "seed": args.seed, "frames": len(rows),
                      "measured_median_rel_error": round(float(np.median(rows[:, 1])), 4),
                      "oracle_median_rel_error": round(float(np.median(rows[:, 2])), 4),
                      "regrown_1px_median_rel_error": round(float(np.median(rows[:, 3])), 4),
                      "regrown_2px_median_rel_error": round(float(np.median(rows[:, 4])), 4),
                      "detected_median_rel_error": round(float(np.median(rows[:, 5])), 4),
                      "with_spurs_median_rel_error": round(float(np.median(rows[:, 6])), 4),
                      "by_true_hill_density": by_density, "load_average": load_average()}))


if __name__ == "__main__":
    main()
