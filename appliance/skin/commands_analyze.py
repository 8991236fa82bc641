"""``appliance analyze IMG...`` and ``appliance calibrate IMAGE --mm N``.

Heavy imports (OpenCV, NumPy, the model runtime) happen inside the handlers so that
``appliance --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add the ``analyze`` and ``calibrate`` commands."""
    analyze = root.add_parser(
        "analyze", help="measure skin images offline (texture, pores, colour, quality)"
    )
    analyze.add_argument("images", nargs="+", metavar="IMG", help="image files (JPEG/PNG)")
    analyze.add_argument("--json", action="store_true", help="one JSON object per image per line")
    analyze.add_argument("--overlay", metavar="DIR", help="write an overlay image per input here")
    analyze.add_argument(
        "--white", metavar="IMG",
        help="photo of a white reference tile: corrects colour for the lamp before CIELAB",
    )
    analyze.add_argument(
        "--config", metavar="F", help="config file for skin.um_per_px and model.path "
        "(default: ./config.yaml when it exists, else built-in defaults with the shipped model)"
    )
    analyze.set_defaults(handler=_analyze)
    calibrate = root.add_parser(
        "calibrate", help="measure um_per_px from a photo of a stage micrometer"
    )
    calibrate.add_argument("image", metavar="IMAGE", help="photo of the micrometer scale")
    calibrate.add_argument(
        "--mm", type=float, required=True, metavar="N",
        help="distance between neighbouring graduation lines in mm (e.g. 0.1)",
    )
    calibrate.set_defaults(handler=_calibrate)


def _analyze(args: argparse.Namespace) -> int:
    from appliance.config import ConfigError  # noqa: PLC0415 - keep --help fast
    from appliance.edge.heap import keep_frame_buffers  # noqa: PLC0415
    from appliance.inference.contract import ModelError  # noqa: PLC0415
    from appliance.skin.analyze_run import AnalyzeRun  # noqa: PLC0415

    keep_frame_buffers()  # many frames in one process: reuse the frame-sized buffers

    try:
        run = AnalyzeRun.from_config(args.config, args.overlay, args.white)
    except (ConfigError, ModelError, OSError, ValueError) as exc:
        print(f"analyze: {exc}", file=sys.stderr)
        return 2
    failures = 0
    if not args.json:
        print(run.table_header())
    for image in args.images:
        record = run.measure(Path(image))
        if "error" in record or "rejected" in record:
            failures += 1
            print(f"analyze: {record.get('error') or image + ': ' + record['rejected']}",
                  file=sys.stderr)
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" not in record:
            print(run.table_row(record), flush=True)
    return 1 if failures else 0


def _calibrate(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415 - keep --help fast

    from appliance.skin.calibration import (  # noqa: PLC0415
        CalibrationError,
        calibrate_from_micrometer,
    )
    from appliance.skin.frames import FrameError, load_frame  # noqa: PLC0415

    try:
        rgb = load_frame(args.image, expected_shape=None)
        result = calibrate_from_micrometer(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), args.mm)
    except (FrameError, CalibrationError) as exc:
        print(f"calibrate: {args.image}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.image}: {result.um_per_px:.3f} ± {2 * result.um_per_px_sd:.2g} um/px (95 %; "
        f"line pitch {result.pitch_px:.3f} px over {result.line_count} lines, scale at "
        f"{result.angle_deg:.1f} deg, contrast {result.contrast:.0%}, spacing scatter "
        f"{result.spacing_scatter:.1%})"
    )
    print(f"put this in config.yaml:\nskin:\n  um_per_px: {result.um_per_px:.3f}")
    return 0
