"""``appliance synth skin|he``: synthetic microscope frames and H&E cohorts with known truth."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.filekind import other_than_a_folder
from appliance.synthetic.arguments import (
    MAX_SEED,
    SEED,
    WORKERS,
    finite_number,
    named_path,
    whole_number,
)
from appliance.synthetic.skin_presets import PRESETS, preset_help
from appliance.texttable import counted

if TYPE_CHECKING:
    from appliance.synthetic.he import SlideSpec
    from appliance.synthetic.skin_pool import SeriesIncomplete

DEFAULT_WORKERS = 2
MAX_FRAMES = 100_000  # about 8 CPU hours and 30 GB of JPEGs
MAX_PATIENTS = 10_000


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``synth skin`` and ``synth he`` to the ``synth`` command group."""
    del root
    _register_he(groups["synth"])
    skin = groups["synth"].add_parser(
        "skin",
        help="synthetic 25x microscope skin frames (1280x960 JPEG) with ground-truth JSON sidecars",
        description="Write COUNT frames NAME.jpg with NAME.json sidecars (truth, params) to DIR.",
    )
    skin.add_argument(
        "--out", required=True, type=named_path, help="output directory (created if missing)"
    )
    skin.add_argument("--count", required=True, type=whole_number(1, MAX_FRAMES),
                      help=f"number of frames (1-{MAX_FRAMES})")
    skin.add_argument("--seed", type=SEED, default=0, help=f"series seed (0-{MAX_SEED}; default 0)")
    skin.add_argument(
        "--preset",
        choices=PRESETS,
        default="mixed",
        help=preset_help(),
    )
    skin.add_argument("--start", type=whole_number(0, MAX_SEED), default=0,
                      help="index of the first frame (0)")
    skin.add_argument("--workers", type=WORKERS, default=DEFAULT_WORKERS,
                      help=f"worker processes (default {DEFAULT_WORKERS})")
    skin.add_argument("--force", action="store_true",
                      help="replace frames of this series already in --out")
    skin.set_defaults(handler=_synth_skin)


def _series_refusal(out: Path, seed: int, indices: range, force: bool) -> str | None:
    """Why the series must not be written without --force: frames (or sidecars) of it already
    in ``out``. Frames of other seeds and indices may be there: a stopped series is finished
    with ``--start`` into the same folder."""
    from appliance.outfile import replacing_refusal  # noqa: PLC0415
    from appliance.synthetic.skin import frame_name  # noqa: PLC0415  (OpenCV loads only here)

    if not out.is_dir():  # nothing there yet (a path too long to hold one is said as such)
        return None
    try:
        there: set[str] | None = set(os.listdir(out))  # one read, not a look-up per frame
    except OSError:  # a folder that may be written and searched, not listed: look each up
        there = None
    names = (f"{frame_name(seed, index)}{suffix}" for index in indices
             for suffix in (".jpg", ".json"))
    files = (out / name for name in names if there is None or name in there)
    refusal = replacing_refusal(files, force)
    return None if refusal is None else (f"{refusal}; frames of another --seed or --start go "
                                         "beside the ones there")


def _prepare_out_dir(out: Path) -> str | None:
    """Create ``out`` and check it is writable; return a problem description or None."""
    if kind := other_than_a_folder(out):  # mkdir would say "File exists"
        return (f"cannot write to --out {str(out)!r}: {kind}, not a folder; name a folder for "
                "the output (created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".appliance-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"cannot write to --out {str(out)!r}: {reason}; choose a writable directory"
    return None


def _synth_skin(args: argparse.Namespace) -> int:
    """Handler of ``appliance synth skin``."""
    from appliance.synthetic.skin_pool import (  # noqa: PLC0415  (OpenCV loads only here)
        SeriesIncomplete,
        write_series,
    )

    indices = range(args.start, args.start + args.count)
    problem = (_series_refusal(args.out, args.seed, indices, args.force)
               or _prepare_out_dir(args.out))
    if problem is not None:
        print(f"synth skin: {problem}", file=sys.stderr)
        return 2
    try:
        written = write_series(args.out, args.seed, indices, args.preset, args.workers)
    except SeriesIncomplete as stop:
        print(f"synth skin: writing to {str(args.out)!r} failed: {stop.reason}"
              f"; {_what_is_left(stop, indices)}", file=sys.stderr)
        return 1
    except OSError as exc:  # removing a frame written after the failed one
        print(
            f"synth skin: writing to {str(args.out)!r} failed: {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {counted(written, 'frame')} (seed {args.seed}, preset {args.preset}) to "
          f"{args.out}")
    return 0


def _what_is_left(stop: SeriesIncomplete, indices: range) -> str:
    """Which frames the stopped series left, and how to finish it."""
    kept = (f"frames {stop.kept[0]}-{stop.kept[-1]} are written whole" if len(stop.kept) > 1
            else f"frame {stop.kept[0]} is written whole" if stop.kept else "no frame is written")
    removed = (f" ({stop.removed} written after frame {stop.failed} removed, so the series has "
               "no gap)" if stop.removed else "")
    first_missing = indices.start + len(stop.kept)
    return (f"{kept}{removed}; finish with --start {first_missing} "
            f"--count {indices.stop - first_missing}")


def _register_he(synth_group: Any) -> None:
    """``synth he``: a synthetic H&E cohort."""
    synth = synth_group.add_parser("he", help="a synthetic H&E cohort with known MSI labels")
    synth.add_argument("--out", type=named_path, required=True,
                       help="folder for slides + labels.csv")
    synth.add_argument("--patients", type=whole_number(1, MAX_PATIENTS), default=20,
                       help=f"number of patients, 1-{MAX_PATIENTS} (20)")
    synth.add_argument("--seed", type=SEED, default=0, help="random seed (0)")
    synth.add_argument("--msi-fraction", type=finite_number(0, 1, "a share of the patients"),
                       default=0.35, metavar="0..1", help="share of MSI patients, 0 to 1 (0.35)")
    synth.add_argument("--workers", type=WORKERS, default=1, help="processes painting slides (1)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.add_argument("--force", action="store_true",
                       help="replace labels.csv and slides of the same names already in --out")
    synth.set_defaults(handler=_synth_he)


def _synth_he(args: argparse.Namespace) -> int:
    """Handler of ``appliance synth he``."""
    from appliance.synthetic.he import cohort_specs, write_cohort  # noqa: PLC0415 - heavy deps load on use
    from appliance.synthetic.pool_stop import WorkerDied  # noqa: PLC0415

    specs = cohort_specs(args.patients, args.seed, args.msi_fraction)
    problem = (_cohort_refusal(args.out, [spec.slide for spec in specs], args.force)
               or _prepare_out_dir(args.out))
    if problem is not None:
        print(f"synth he: {problem}", file=sys.stderr)
        return 2
    try:
        labels = write_cohort(args.out, specs, workers=args.workers, progress=not args.quiet)
    except OSError as exc:
        print(f"synth he: writing to {str(args.out)!r} failed: {exc}",
              file=sys.stderr)
        return 1
    except WorkerDied as died:
        print(f"synth he: {died} {_cohort_left(args.out, specs)}",
              file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM: exit 130 or 143 all the same
        print(f"synth he: stopped {_cohort_left(args.out, specs)}", file=sys.stderr)
        raise
    print(f"{counted(len(specs), 'slide')} of {counted(args.patients, 'patient')} in {args.out}; "
          f"labels in {labels}")
    return 0


def _cohort_left(out: Path, specs: list[SlideSpec]) -> str:
    """What a cohort that ended midway left in ``out`` (slides, but no labels.csv yet) and how
    to paint it whole."""
    painted = sum((out / f"{spec.slide}.jpg").is_file() for spec in specs)
    again = "with --force" if painted else "again"  # its slides would be refused
    return (f"with {painted} of {len(specs)} slides painted in {out} and no labels.csv, which "
            f"a pathology run needs; the same command {again} paints the whole cohort")


def _cohort_refusal(out: Path, slides: list[str], force: bool) -> str | None:
    """Why the cohort must not be painted without --force: its labels.csv or slides of its
    names (P0000-S, ..., whatever the seed) already in ``out``, another cohort's or a stopped
    one's."""
    from appliance.outfile import replacing_refusal  # noqa: PLC0415
    from appliance.synthetic.he import LABELS_FILE  # noqa: PLC0415

    if not out.is_dir():  # nothing there yet (a path too long to hold one is said as such)
        return None
    files = [out / LABELS_FILE, *(out / f"{slide}.jpg" for slide in slides)]
    return replacing_refusal(files, force)
