"""How long ``borders.border_segments`` reads exact tilings, by cell size; prints one JSON object.

Exact cells (no furrow, no growth): Voronoi tilings of a jittered hexagonal point set (the
kind of network whose junctions have three arms), rasterised at 16x sub-pixel precision, and
their true edge length inside the square. Reported per cell spacing (px at the work scale,
20 µm/px: a 0.04 mm² hill is about 10 px across), for junction cluster radii of 1 px and the
method's 2.5 px: the mean signed error of the total length, and the share of chains dropped
as "wholly inside one junction" (on exact cells every chain is a real edge). These networks
are drawn here, not by either skin renderer; they show what the estimator does on its own.
"""

from __future__ import annotations

import argparse
import json

from skin_common import int_at_least, load_average


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int_at_least(1), default=4)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import numpy as np

from appliance.skin.borders import border_segments
from appliance.synthetic.tilings import hexagonal_voronoi

SPACINGS_PX = (9.0, 11.0, 14.0, 20.0, 30.0)
RADII_PX = (1.0, 2.5)


def main() -> None:
    """Measure the tilings at each spacing and radius, print the errors."""
    args = _parser().parse_args()
    results = {}
    for spacing in SPACINGS_PX:
        for radius in RADII_PX:
            errors, dropped = [], []
            for seed in range(args.seeds):
                labels, true_px = hexagonal_voronoi(spacing, seed)
                segments = border_segments(labels, radius)
                errors.append(segments.total_length_px / true_px - 1.0)
                dropped.append(float(np.mean(segments.lengths_px == 0.0)))
            results[f"spacing_{spacing:g}px_radius_{radius:g}px"] = {
                "mean_rel_error": round(float(np.mean(errors)), 4),
                "chains_dropped_share": round(float(np.mean(dropped)), 4)}
    print(json.dumps({"benchmark": "skin_border_networks", "seeds": args.seeds,
                      "results": results, "load_average": load_average()}))


if __name__ == "__main__":
    main()
