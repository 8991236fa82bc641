"""``appliance analyze IMG...`` and ``appliance calibrate IMAGE --mm N``.

Heavy imports (OpenCV, NumPy, the model runtime) happen inside the handlers so that
``appliance --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.numbertext import decimal_number
from appliance.skin.scale_range import (
    MAX_UM_PER_PX,
    MIN_UM_PER_PX,
    SCALE_UM_PER_PX,
    scale_outside_validated,
)
from appliance.stdout import StdoutError, emit, print_out, refused_line, silence_stdout
from appliance.synthetic.arguments import named

if TYPE_CHECKING:
    from appliance.skin.analyze_run import AnalyzeRun


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add the ``analyze`` and ``calibrate`` commands."""
    analyze = root.add_parser(
        "analyze", help="measure skin images offline (texture, pores, colour, quality)"
    )
    analyze.add_argument("images", nargs="+", type=named, metavar="IMG",
                         help="image files, 1280x960 px as shown (JPEG, PNG, TIFF, WebP, BMP)")
    analyze.add_argument("--json", action="store_true", help="one JSON object per image per line")
    analyze.add_argument("--overlay", metavar="DIR", help="write an overlay image per input here")
    analyze.add_argument(
        "--white", type=named, metavar="IMG",
        help="photo of a white reference tile: corrects colour for the lamp before CIELAB",
    )
    analyze.add_argument(
        "--config", metavar="F", help="config file for skin.um_per_px and model.path "
        "(default: ./config.yaml when it exists, else built-in defaults with the shipped model)"
    )
    analyze.add_argument(
        "--um-per-px", type=_um_per_px, metavar="X",
        help=f"measure at this scale (micrometres per pixel, over {MIN_UM_PER_PX:g} and at most "
        f"{MAX_UM_PER_PX:g}) instead of the config's skin.um_per_px, for this run only",
    )
    analyze.set_defaults(handler=_analyze)
    calibrate = root.add_parser(
        "calibrate", help="measure um_per_px from a photo of a stage micrometer"
    )
    calibrate.add_argument("image", type=named, metavar="IMAGE",
                           help="photo of the micrometer scale")
    calibrate.add_argument(
        "--mm", type=_line_spacing_mm, required=True, metavar="N",
        help="distance between neighbouring graduation lines in mm (e.g. 0.1)",
    )
    calibrate.set_defaults(handler=_calibrate)


def _um_per_px(text: str) -> float:
    """``--um-per-px``: a finite number in the range skin.um_per_px accepts."""
    try:
        value = decimal_number(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and MIN_UM_PER_PX < value <= MAX_UM_PER_PX):
        raise argparse.ArgumentTypeError(
            f"must be a finite number (ASCII digits) of micrometres per pixel over "
            f"{MIN_UM_PER_PX:g} and at most {MAX_UM_PER_PX:g} (as skin.um_per_px), got {text!r}"
        )
    return value


def _line_spacing_mm(text: str) -> float:
    """``--mm``: a finite positive number."""
    try:
        value = decimal_number(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite positive number in ASCII digits (the line spacing in mm, e.g. "
            f"0.1), got {text!r}"
        )
    return value


def _analyze(args: argparse.Namespace) -> int:
    from appliance.config import ConfigError  # noqa: PLC0415 - keep --help fast
    from appliance.edge.heap import keep_frame_buffers  # noqa: PLC0415
    from appliance.inference.contract import ModelError  # noqa: PLC0415
    from appliance.skin.analyze_run import (  # noqa: PLC0415
        TABLE_LEGEND,
        AnalyzeRun,
        overlay_names,
    )

    keep_frame_buffers()  # many frames in one process: reuse the frame-sized buffers

    images, drawn = _frames_and_overlays([Path(image) for image in args.images])
    if drawn:
        print(f"analyze: left out {_overlays_named(drawn)}: overlays `analyze --overlay` "
              "draws (NAME.overlay.jpg), not frames", file=sys.stderr)
        if not images:
            return 1
    try:  # overlay names first: a clash is refused before anything is written
        overlays = overlay_names(images) if args.overlay else {}
        run = AnalyzeRun.from_config(args.config, args.overlay, args.white, args.um_per_px)
    except (ConfigError, ModelError, OSError, ValueError) as exc:
        print(f"analyze: {exc}", file=sys.stderr)
        return 2
    run.overlay_names = overlays
    if args.um_per_px is None and (note := run.sidecar_note(images)):
        print(f"analyze: {note}", file=sys.stderr)
    if note := _scale_not_validated(run):
        print(f"analyze: {note}", file=sys.stderr)
    measured: list[Path] = []
    try:
        failures, legend = _measure_each(args, run, images, measured)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM: exit 130 or 143 all the same
        print(_stopped(args, len(measured), len(images)), file=sys.stderr)
        raise
    except StdoutError as exc:  # `> out.json` on a full disk
        silence_stdout()  # what stays buffered would fail again
        print(f"{refused_line('analyze', exc)}; stopped after printing the results of "
              f"{len(measured)} of {len(images)} images", file=sys.stderr)
        return 1
    if legend:
        return print_out("analyze", TABLE_LEGEND) or (1 if failures else 0)
    return 1 if failures else 0


def _scale_not_validated(run: AnalyzeRun) -> str | None:
    """One line when the whole run is measured at a scale outside the validated range: every
    texture and pore feature is then "n/m" in the table, and this says why once."""
    um_per_px = run.config.skin.um_per_px
    if not scale_outside_validated(um_per_px):
        return None
    low, high = SCALE_UM_PER_PX
    return (f"measuring at {um_per_px:g} um/px ({run.um_per_px_from}), outside the {low:g}-"
            f"{high:g} um/px the measurement was validated on (docs/measurement.md): the "
            "texture and pore features are not measured (n/m; --json lists them under "
            "not_validated) and no grade is given")


def _frames_and_overlays(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """The inputs to measure, and those named as the overlays ``--overlay`` writes: a second
    `analyze frames/*.jpg --overlay frames` met its first run's overlays among its inputs and
    refused each as a frame of the wrong size, exit 1."""
    from appliance.skin.analyze_run import OVERLAY_SUFFIX  # noqa: PLC0415 - keep --help fast

    drawn = [image for image in inputs if image.name.lower().endswith(OVERLAY_SUFFIX)]
    return [image for image in inputs if image not in drawn], drawn


def _overlays_named(drawn: list[Path]) -> str:
    """The left-out overlays as said: the first few by name, then how many more."""
    from appliance.skin.frames import shown_name  # noqa: PLC0415 - keep --help fast

    named = ", ".join(shown_name(image) for image in drawn[:3])
    more = f" and {len(drawn) - 3} more" if len(drawn) > 3 else ""
    return f"{named}{more}"


def _measure_each(
    args: argparse.Namespace, run: AnalyzeRun, images: list[Path], measured: list[Path]
) -> tuple[int, bool]:
    """Measure and print each image in turn, appending it to ``measured`` once printed; the
    failures, and whether the table needs its legend. The table's header comes with its first
    row: where every input failed there is no table, only the reasons."""
    from appliance.skin.analyze_run import NAME_COLUMN_WIDTH, table_names  # noqa: PLC0415
    from appliance.skin.frames import shown_name  # noqa: PLC0415 - keep --help fast

    names = table_names(images)
    name_width = max([NAME_COLUMN_WIDTH, *map(len, names.values())])
    failures, legend, rows = 0, False, 0
    for image in images:
        record = run.measure(image)
        if problem := _problem(record, shown_name(image)):
            failures += 1
            print(f"analyze: {problem}", file=sys.stderr)
        if args.json:
            emit(json.dumps(record))
        elif "error" not in record:
            if not rows:
                emit(run.table_header(name_width))
            rows += 1
            emit(run.table_row(record, names[record["image"]], name_width))
            legend = legend or ("rejected" not in record and run.needs_legend(record))
        measured.append(image)
    return failures, legend


def _stopped(args: argparse.Namespace, measured: int, total: int) -> str:
    """How far a run stopped midway got: what it printed (and drew) and what it did not."""
    from appliance.skin.frames import shown_name  # noqa: PLC0415 - keep --help fast

    overlays = f", their overlays in {shown_name(args.overlay)}" if args.overlay else ""
    return (f"analyze: stopped after {measured} of {total} images, whose results are "
            f"printed{overlays}; {total - measured} not measured")


def _problem(record: dict[str, Any], shown: str) -> str | None:
    """What went wrong with one input (a bad file, a rejected frame, an overlay not written
    beside a measurement that stands), None when nothing did."""
    if "rejected" in record:
        return f"{shown}: {record['rejected']}"
    return record.get("error") or record.get("overlay_error")


def _calibrate(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415 - keep --help fast

    from appliance.skin.calibration import (  # noqa: PLC0415
        CalibrationError,
        calibrate_from_micrometer,
    )
    from appliance.skin.frames import FrameError, load_frame, shown_name  # noqa: PLC0415

    name = shown_name(args.image)
    try:
        gray = cv2.cvtColor(load_frame(args.image, expected_shape=None), cv2.COLOR_RGB2GRAY)
        result = calibrate_from_micrometer(gray, args.mm)
    except FrameError as exc:  # names the file already
        print(f"calibrate: {exc}", file=sys.stderr)
        return 1
    except CalibrationError as exc:
        print(f"calibrate: {name}: {exc}", file=sys.stderr)
        return 1
    if refusal := _unusable_scale(result.um_per_px, args.mm):
        print(f"calibrate: {name}: {refusal}", file=sys.stderr)
        return 1
    emit(
        f"{name}: {result.um_per_px:.3f} ± {2 * result.um_per_px_sd:.2g} um/px (95 %; "
        f"line pitch {result.pitch_px:.3f} px over {result.line_count} lines, scale at "
        f"{result.angle_deg:.1f} deg, contrast {result.contrast:.0%}, spacing scatter "
        f"{result.spacing_scatter:.1%})"
    )
    if warning := _unvalidated_scale(result.um_per_px):
        print(f"calibrate: warning: {warning}", file=sys.stderr)
    emit(f"put this in config.yaml:\nskin:\n  um_per_px: {result.um_per_px:.3f}")
    return 0


def _unusable_scale(um_per_px: float, pitch_mm: float) -> str | None:
    """Why the printed scale could not go into config.yaml (None when it can)."""
    printed = round(um_per_px, 3)
    if MIN_UM_PER_PX < printed <= MAX_UM_PER_PX:
        return None
    return (
        f"{um_per_px:.4g} um/px is outside what skin.um_per_px accepts (over "
        f"{MIN_UM_PER_PX:g}, at most {MAX_UM_PER_PX:g}); check --mm {pitch_mm:g}: it is the "
        "distance between neighbouring graduation lines in mm (often 0.1 or 0.01)"
    )


def _unvalidated_scale(um_per_px: float) -> str | None:
    """A warning when the scale lies outside the range the measurement was validated on."""
    low, high = SCALE_UM_PER_PX
    if low <= um_per_px <= high:
        return None
    return (
        f"{um_per_px:.3f} um/px is outside {low:g}-{high:g} um/px, the range the skin "
        "measurement was validated on (docs/measurement.md): results at this scale are marked "
        "outside it; check --mm and the lens"
    )
