"""Pathology slide preparation on one core, and the guard's distances: what feeds the model.

    .venv/bin/python benchmarks/pathology_prepare.py [--rounds 3]

Prints ONE JSON object. The ten synthetic slides of benchmarks/pathology_service.py (biopsies
and surgical specimens, JPEG, 1 µm/px) are prepared as a server's worker does
(``slideworker.prepare_for_model``: decode, tissue mask, tiles, stain normalisation, the guard's
input statistics) for tiles of 224 px (a full-width VGG19) and 64 px (the demo model), 256 µm
each; the figure is tiles per second of one core, best of ``--rounds``. ``guard_ms``: the
guard's Mahalanobis distances of 889 tiles with 536 features (a full-width model's), best of
``--rounds``; the slide finisher computes them once per slide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from skin_common import int_at_least


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int_at_least(1), default=3, help="best of this many")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    """Time preparation per tile size and the guard; print one JSON object."""
    args = _parser().parse_args()
    from pathology_service import make_slides  # beside this script

    from appliance.pathology.model import TileModel
    from appliance.pathology.ood import DistributionGuard
    from appliance.pathology.prepare import TileSettings
    from appliance.pathology.slideworker import prepare_for_model

    reference = TileModel(REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx",
                          provider="cpu").info.stain_reference
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "slides").mkdir()
        slides = make_slides(Path(tmp) / "slides")
        for tile_px in (224, 64):
            settings = TileSettings(tile_px, 256.0, reference=reference)
            best, tiles = float("inf"), 0
            for _ in range(args.rounds):
                started, tiles = time.perf_counter(), 0
                for path in slides:
                    tiles += len(prepare_for_model("bench", 0, str(path), 1.0, settings).tiles)
                best = min(best, time.perf_counter() - started)
            figures[f"prepare_{tile_px}px"] = {"tiles": tiles, "seconds": round(best, 2),
                                               "tiles_per_s_one_core": round(tiles / best, 1)}
    rng = np.random.default_rng(0)
    side = rng.normal(size=(536, 536))
    guard = DistributionGuard(rng.normal(size=(2, 536)), side @ side.T / 536,
                              np.linspace(0.0, 50.0, 21))
    rows = rng.normal(size=(889, 536))
    timings = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        guard.distances(rows)
        timings.append(time.perf_counter() - started)
    figures["guard_ms_889_tiles_536_features"] = round(1000 * min(timings), 1)
    print(json.dumps({"benchmark": "pathology_prepare", **figures,
                      "machine": {"cpus": os.cpu_count(),
                                  "load_average": [round(v, 2) for v in os.getloadavg()]}},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
