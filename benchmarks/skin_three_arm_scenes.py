"""Where furrow length goes wrong on three-arm skin: own random-Voronoi scenes; one JSON object.

Scenes from ``appliance.synthetic.three_arm`` (not by either skin renderer; fit and diagnosis
only): random Voronoi hills, so every junction has three furrows, with no dead ends.

Per scene, against the true centre-line length inside the frame: the method's furrow length
(``analyze``), its borders alone and its spurs alone; and the exact cells (the Voronoi polygons
sampled at the work pixels' centres) measured by ``borders.border_segments``: the estimator's own
error on cells of that size. Reported per kind and site spacing (mean of the seeds' signed
errors, and the mean hill area in mm²); with ``--rich`` the scenes are drawn at 8-12 µm/px with
pores (some on junctions), vignetting and a colour cast.
"""

from __future__ import annotations

import argparse
import json

from skin_common import int_at_least, load_average


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int_at_least(1), default=3)
    parser.add_argument("--first-seed", type=int_at_least(0), default=100)
    parser.add_argument("--rich", action="store_true",
                        help="scenes at 8-12 µm/px with pores, vignetting and a colour cast")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import numpy as np
from scipy.spatial import cKDTree

from appliance.skin.analysis import analyze
from appliance.skin.borders import CrackMasks, border_segments
from appliance.synthetic.three_arm import SIZE, Scene, draw_scene

SPACINGS_UM = (200.0, 230.0, 260.0, 300.0, 360.0, 450.0)


def _exact_error(scene: Scene, scale: float) -> float:
    """The estimator's own error: the scene's exact cells (nearest site at every work pixel's
    centre) measured by ``border_segments``."""
    height, width = round(SIZE[0] / scale), round(SIZE[1] / scale)
    ys, xs = (np.mgrid[0:height, 0:width] + 0.5) * scale
    labels = cKDTree(scene.sites).query(np.stack([xs.ravel(), ys.ravel()], 1))[1]
    _, labels = np.unique(labels, return_inverse=True)
    segments = border_segments((labels + 1).reshape(height, width).astype(np.int32))
    return segments.total_length_px * scale / scene.true_px - 1.0


def measure(scene: Scene) -> dict[str, float]:
    """Relative errors of the method's furrow length, its borders and its spurs."""
    result = analyze(scene.rgb, scene.um_per_px)
    texture = result.texture
    scale = result.frame_px_per_work_px
    borders = CrackMasks.of(texture.cell_labels).line_mask()
    frame_mm2 = SIZE[0] * SIZE[1] * (scene.um_per_px / 1000.0) ** 2
    total_px = texture.metrics["furrow_density_mm_per_mm2"] * frame_mm2 * 1000.0 / scene.um_per_px
    border_px = texture.segments.total_length_px * scale
    spur_pixels = int(np.count_nonzero(texture.centre_lines & ~borders))
    return {"method": total_px / scene.true_px - 1.0,
            "borders": border_px / scene.true_px - 1.0,
            "spurs": (total_px - border_px) / scene.true_px,
            "spur_pixels": float(spur_pixels),
            "exact_cells": _exact_error(scene, scale)}


def main() -> None:
    """Draw and measure the scenes, print the errors by hill size."""
    args = _parser().parse_args()
    results = {}
    for spacing in SPACINGS_UM:
        for kind in ("poisson", "hexagonal"):
            rows = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                scene = draw_scene(spacing, kind, seed, rich=args.rich)
                rows.append({"hill_mm2": scene.hill_mm2, **measure(scene)})
            results[f"{kind}_{spacing:g}um"] = {
                key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}
    print(json.dumps({"benchmark": "skin_three_arm_scenes", "seeds": args.seeds, "rich": args.rich,
                      "results": results, "load_average": load_average()}))


if __name__ == "__main__":
    main()
