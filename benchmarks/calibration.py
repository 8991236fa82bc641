"""Calibration (issue 16): accuracy of `appliance calibrate` on synthetic stage micrometers over
scales, angles, scale heights, blur and noise, and how many skin frames it refuses. Prints ONE
JSON object.

Usage: .venv/bin/python benchmarks/calibration.py [--skin-frames N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections import Counter
from typing import Any


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skin-frames", type=int, default=20)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2

from appliance.skin.calibration import CalibrationError, calibrate_from_micrometer
from appliance.synthetic.micrometer import MicrometerSpec, micrometer_frame
from appliance.synthetic.skin import synthetic_frame

SCALES_UM_PER_PX = (7.0, 8.5, 10.0, 11.5, 13.0)
ANGLES_DEG = (-8.0, 0.0, 5.0)
HEIGHTS_PX = (60.0, 100.0, 400.0)
BLUR_NOISE = ((0.8, 3.0), (1.5, 6.0))
TARGETS = {"max_error_percent": 1.0, "skin_refused_share": 1.0}


def _gray(rgb: Any) -> Any:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def micrometer_errors() -> dict[str, Any]:
    """Relative error (%) and the printed 95 % uncertainty (%) over the grid of photos."""
    errors, uncertainties, refused = [], [], []
    grid = itertools.product(SCALES_UM_PER_PX, ANGLES_DEG, HEIGHTS_PX, BLUR_NOISE)
    for seed, (scale, angle, height, (blur, noise)) in enumerate(grid):
        spec = MicrometerSpec(um_per_px=scale, lines=125, line_height_px=height,
                              angle_deg=angle, blur_sigma_px=blur, noise_sd=noise, seed=seed)
        try:
            result = calibrate_from_micrometer(_gray(micrometer_frame(spec)), spec.pitch_mm)
        except CalibrationError as exc:
            refused.append(f"{spec}: {exc}")
            continue
        errors.append(abs(result.um_per_px / scale - 1.0) * 100.0)
        uncertainties.append(2 * result.um_per_px_sd / result.um_per_px * 100.0)
    covered = sum(e <= u for e, u in zip(errors, uncertainties, strict=True))
    return {
        "photos": len(errors) + len(refused), "refused": refused,
        "error_within_printed_95_share": round(covered / max(len(errors), 1), 3),
        "median_error_percent": round(statistics.median(errors), 4),
        "max_error_percent": round(max(errors), 4),
        "median_uncertainty95_percent": round(statistics.median(uncertainties), 4),
    }


def _reason(message: str) -> str:
    """The test a refusal names."""
    for words in ("missing", "spacing varies", "not evenly spaced", "faint",
                  "graduation lines", "no line grating"):
        if words in message:
            return words
    return message


def skin_refusals(count: int) -> dict[str, Any]:
    """How many synthetic skin frames are refused, and the reasons (first words)."""
    reasons: Counter[str] = Counter()
    accepted = 0
    for index in range(count):
        rgb = synthetic_frame(index, index, "mixed").image_rgb
        try:
            calibrate_from_micrometer(_gray(rgb), 0.1)
            accepted += 1
        except CalibrationError as exc:
            reasons[_reason(str(exc))] += 1
    return {"frames": count, "accepted": accepted, "reasons": dict(reasons)}


def main() -> None:
    """Measure and print the figures and whether each target is met."""
    args = _parser().parse_args()
    micrometers = micrometer_errors()
    skin = skin_refusals(args.skin_frames)
    refused_share = 1.0 - skin["accepted"] / skin["frames"]
    print(json.dumps({
        "micrometers": micrometers, "skin": skin, "targets": TARGETS,
        "met": {"max_error_percent": micrometers["max_error_percent"]
                <= TARGETS["max_error_percent"] and not micrometers["refused"],
                "skin_refused_share": refused_share >= TARGETS["skin_refused_share"]},
    }))


if __name__ == "__main__":
    main()
