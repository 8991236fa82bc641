"""``appliance synth micrometer``: a stage-micrometer photo at a known µm per pixel, in any
image format ``appliance calibrate`` reads (by the file's suffix)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.skin.scale_range import MAX_UM_PER_PX, MIN_UM_PER_PX
from appliance.synthetic.arguments import SEED, finite_number, named_path, whole_number

MIN_PITCH_MM, MAX_PITCH_MM = 0.001, 10.0  # stage micrometers: 0.01 mm and 0.1 mm are usual
MAX_LINES = 10_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # formats calibrate reads
FORMATS = "/".join(IMAGE_SUFFIXES)
MIN_PITCH_PX = 2.0  # closer lines than this cannot be told apart in the photo (Nyquist)


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``synth micrometer`` to the ``synth`` command group."""
    del root
    micrometer = groups["synth"].add_parser(
        "micrometer", help="a stage-micrometer photo at a known um/px, for `appliance calibrate`"
    )
    micrometer.add_argument(
        "--out", type=named_path, required=True,
        help=f"image file to write, in the format its suffix names: {FORMATS} (.png keeps every "
        "pixel as drawn; JPEG compresses with loss)")
    micrometer.add_argument("--force", action="store_true", help="replace an existing --out file")
    micrometer.add_argument(
        "--um-per-px", default=10.0, type=finite_number(
            MIN_UM_PER_PX, MAX_UM_PER_PX, "um per pixel, as skin.um_per_px", above_low=True),
        help=f"the true scale of the photo, over {MIN_UM_PER_PX:g} and at most "
        f"{MAX_UM_PER_PX:g} (10.0)")
    micrometer.add_argument(
        "--mm", default=0.1, type=finite_number(MIN_PITCH_MM, MAX_PITCH_MM, "mm between lines"),
        help=f"distance between neighbouring lines in mm, {MIN_PITCH_MM:g}-{MAX_PITCH_MM:g} (0.1)")
    micrometer.add_argument("--lines", type=whole_number(2, MAX_LINES), default=125,
                            help=f"graduation lines, 2-{MAX_LINES} (125)")
    micrometer.add_argument("--angle-deg", type=finite_number(-90, 90, "degrees"), default=2.0,
                            help="how far the scale is turned, -90 to 90 (2.0)")
    micrometer.add_argument("--seed", type=SEED, default=0, help="sensor noise seed (0)")
    micrometer.set_defaults(handler=_micrometer)


def _unphotographable(spec: Any) -> str:
    """Why a photo of ``spec`` could not be calibrated from, or "" when it can."""
    if spec.pitch_px < MIN_PITCH_PX:
        return f"closer than {MIN_PITCH_PX:g} px cannot be resolved (take a larger --mm)"
    if spec.pitch_px >= min(spec.size_px):
        return (f"fewer than two lines fit in the {spec.size_px[0]}x{spec.size_px[1]} frame "
                "(take a smaller --mm)")
    return ""


def _not_an_image_file(out: Path) -> str:
    """Why ``out`` cannot take the photo, or "" when it can."""
    if out.is_dir():
        return "a folder"
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image file name"
    return ""


def _micrometer(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415 - keep --help fast

    from appliance.imagefile import write_image  # noqa: PLC0415
    from appliance.outfile import replacing_refusal  # noqa: PLC0415
    from appliance.synthetic.micrometer import MicrometerSpec, micrometer_frame  # noqa: PLC0415

    if problem := _not_an_image_file(args.out):
        print(f"synth micrometer: --out {args.out}: {problem}; name an image file to write, "
              f"{FORMATS} (e.g. micrometer.png)", file=sys.stderr)
        return 2
    if refusal := replacing_refusal([args.out], args.force):
        print(f"synth micrometer: {refusal}", file=sys.stderr)
        return 2
    spec = MicrometerSpec(um_per_px=args.um_per_px, pitch_mm=args.mm, lines=args.lines,
                          angle_deg=args.angle_deg, seed=args.seed)
    problem = _unphotographable(spec)
    if problem:
        print(f"synth micrometer: --mm {args.mm:g} at --um-per-px {args.um_per_px:g} puts the "
              f"lines {spec.pitch_px:.3g} px apart: {problem}", file=sys.stderr)
        return 2
    rgb = micrometer_frame(spec)
    try:
        write_image(args.out, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except OSError as exc:
        print(f"synth micrometer: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {spec.lines} lines {spec.pitch_mm} mm apart at "
          f"{spec.um_per_px} um/px (pitch {spec.pitch_px:.3f} px)")
    return 0
