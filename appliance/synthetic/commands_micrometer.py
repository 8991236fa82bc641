"""``appliance synth micrometer``: a stage-micrometer photo at a known µm per pixel (PNG)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any


def _finite(text: str) -> float:
    """argparse type: a finite number (float() also reads 'inf', 'nan' and '1e999')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive(text: str) -> float:
    """argparse type: a finite number more than 0."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``synth micrometer`` to the ``synth`` command group."""
    del root
    micrometer = groups["synth"].add_parser(
        "micrometer", help="a stage-micrometer photo at a known um/px, for `appliance calibrate`"
    )
    micrometer.add_argument("--out", type=Path, required=True, help="PNG file to write")
    micrometer.add_argument("--um-per-px", type=_positive, default=10.0,
                            help="the true scale of the photo (10.0)")
    micrometer.add_argument("--mm", type=_positive, default=0.1,
                            help="distance between neighbouring lines in mm (0.1)")
    micrometer.add_argument("--lines", type=int, default=125, help="graduation lines (125)")
    micrometer.add_argument("--angle-deg", type=_finite, default=2.0,
                            help="how far the scale is turned (2.0)")
    micrometer.add_argument("--seed", type=int, default=0, help="sensor noise seed (0)")
    micrometer.set_defaults(handler=_micrometer)


def _micrometer(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415 - keep --help fast

    from appliance.synthetic.micrometer import MicrometerSpec, micrometer_frame  # noqa: PLC0415

    spec = MicrometerSpec(um_per_px=args.um_per_px, pitch_mm=args.mm, lines=max(2, args.lines),
                          angle_deg=args.angle_deg, seed=args.seed)
    rgb = micrometer_frame(spec)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        print(f"synth micrometer: could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {spec.lines} lines {spec.pitch_mm} mm apart at "
          f"{spec.um_per_px} um/px (pitch {spec.pitch_px:.3f} px)")
    return 0
