"""``appliance pathology run|submit|evaluate|serve|job``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from appliance.filekind import other_than_a_folder
from appliance.logsafe import escape_controls
from appliance.pathology.outfolder import (
    earlier_run_refusal,
    inputs_inside_replaced,
    skipped_when_finding_slides,
)
from appliance.pathology.resolution import um_per_px_option
from appliance.shipped import PATHOLOGY_MODEL, shipped_path
from appliance.synthetic.arguments import finite_number, given, named_path, whole_number

DEFAULT_MODEL = shipped_path(PATHOLOGY_MODEL)
MAX_TILE_UM = 10_000  # 10 mm: a tile larger than any biopsy
MIN_TILE_UM = 10.0  # about one nucleus: a smaller tile shows no tissue pattern to score


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add the pathology commands."""
    del groups
    pathology = root.add_parser("pathology", help="H&E slides: MSI scores, heatmaps, metrics")
    sub = pathology.add_subparsers(dest="pathology_command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="score a folder of slides (labels.csv optional)")
    run.add_argument("folder", type=named_path, help="folder of slides, with labels.csv or not")
    _add_run_options(run)
    run.set_defaults(handler=_run)
    submit = sub.add_parser("submit", help="score the given slide files")
    submit.add_argument("slides", type=named_path, nargs="+", help="slide image files")
    _add_run_options(submit)
    submit.set_defaults(handler=_submit)
    evaluate = sub.add_parser("evaluate", help="metrics of one or more runs against labels")
    evaluate.add_argument("--labels", type=named_path, required=True, help="labels.csv")
    evaluate.add_argument("--results", type=named_path, nargs="+", required=True,
                          help="results folder(s) of `pathology run`; several = repeated runs")
    evaluate.add_argument("--splits", type=named_path, help="patient,split CSV (from training)")
    evaluate.add_argument("--split", type=given("a split of --splits, or leave --split out "
                                                "for test"),
                          help="which split of --splits to evaluate (test)")
    evaluate.add_argument("--bootstrap", type=whole_number(10, 100_000), default=1000,
                          help="bootstrap resamples, 10-100000 (1000)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of tables")
    evaluate.set_defaults(handler=_evaluate)
    from appliance.pathology.jobs_cli import register as register_jobs  # noqa: PLC0415 - keeps this module's imports light

    register_jobs(sub)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=named_path, required=True, help="results folder")
    parser.add_argument("--force", action="store_true",
                        help="replace an earlier run in --out (its results, heatmaps, CAMs and "
                        "tile tables)")
    parser.add_argument("--model", type=named_path, default=DEFAULT_MODEL,
                        help=f"tile model (default: the shipped {DEFAULT_MODEL.name})")
    parser.add_argument("--um-per-px", type=um_per_px_option,
                        help="slide resolution in µm per pixel (0.1-4) when labels lack it")
    parser.add_argument("--tile-um", type=finite_number(MIN_TILE_UM, MAX_TILE_UM, "µm"),
                        help=f"tile size in µm, {MIN_TILE_UM:g} to {MAX_TILE_UM} "
                        "(model's default)")
    parser.add_argument("--max-tile-bytes", type=whole_number(1_048_576, 10**12),
                        help="most bytes one slide's tiles may take (tiles x tile_px^2 x 3), "
                        "a slide needing more refused before any tile is read, as the "
                        "server's pathology.max_tile_bytes (default: its default, 3 GB)")
    parser.add_argument("--min-tissue", type=finite_number(0, 1, "a share"), default=0.5,
                        help="tissue share of a tile, 0-1 (0.5)")
    parser.add_argument("--threshold", type=finite_number(0, 1, "a slide score"),
                        help="slide threshold, 0-1 (default: the model's, picked for --score "
                        "mean)")
    parser.add_argument("--score", choices=["mean", "share"], default="mean",
                        help="slide score: mean tile probability or share of MSI tiles")
    parser.add_argument("--tumour-only", action="store_true", help="score nuclei-rich tiles only")
    parser.add_argument("--no-normalize", action="store_true", help="skip Macenko normalisation")
    parser.add_argument("--batch-size", type=whole_number(1, 4096), default=64,
                        help="tiles per model call, 1-4096 (64)")
    parser.add_argument("--cam-tiles", type=whole_number(0, 1000), default=4,
                        help="CAMs drawn per slide, 0-1000 (4)")
    parser.add_argument("--provider", choices=["auto", "cpu", "cuda"], default="auto",
                        help="ONNX Runtime device: auto = CUDA when present, else CPU (auto)")
    parser.add_argument("--no-pictures", action="store_true", help="skip heatmaps and CAMs")


def _run(args: argparse.Namespace) -> int:
    from appliance.pathology.labels import LabelsError, jobs_from_folder  # noqa: PLC0415 - heavy deps load on use

    if not args.folder.is_dir():
        print(f"pathology run: {args.folder} is not a folder of slides", file=sys.stderr)
        return 2
    if refused := _out_refusal(args):
        print(refused, file=sys.stderr)
        return 2
    try:
        # a run's pictures are no slides, also where --out lies in (or is) the slide folder
        pictures = skipped_when_finding_slides(args.out)
        jobs = jobs_from_folder(args.folder, args.um_per_px, pictures)
    except LabelsError as exc:
        print(f"pathology run: {exc}", file=sys.stderr)
        return 2
    return _score_jobs(args, jobs)


def _submit(args: argparse.Namespace) -> int:
    from appliance.pathology.run import SlideJob  # noqa: PLC0415 - heavy deps load on use

    um = args.um_per_px if args.um_per_px is not None else float("nan")
    return _score_jobs(args, [SlideJob(path, um, path.stem) for path in args.slides])


def _score_jobs(args: argparse.Namespace, jobs: list[Any]) -> int:
    from appliance.pathology.scoring import score_jobs  # noqa: PLC0415 - heavy deps load on use

    if refused := _out_refusal(args):  # before the model loads and slides score
        print(refused, file=sys.stderr)
        return 2
    return score_jobs(args, jobs)


def _out_refusal(args: argparse.Namespace) -> str | None:
    """Why --out cannot hold the results: a file, or a link to nothing (or a link loop, on
    which a run's results folder could neither be resolved nor made), slides inside a folder
    of it that a run replaces (with or without --force), or an earlier run without --force."""
    out, command = args.out, f"pathology {args.pathology_command}"
    if kind := other_than_a_folder(out):  # a file, a pipe, a link to nothing or a loop
        return f"{command}: --out {out} is {kind}, not a folder; name the folder for results"
    inputs, what = ([args.folder], "the slides folder") if args.pathology_command == "run" \
        else (args.slides, "the slide")
    refusal = inputs_inside_replaced(out, inputs, what) or earlier_run_refusal(out, args.force)
    return None if refusal is None else escape_controls(f"{command}: {refusal}")


def _evaluate(args: argparse.Namespace) -> int:
    from appliance.pathology.report import evaluate_command  # noqa: PLC0415 - heavy deps load on use

    if args.split is not None and args.splits is None:
        print("pathology evaluate: --split names a split of --splits, which is not given",
              file=sys.stderr)
        return 2
    if twice := _one_folder_twice(args.results):
        print(escape_controls(f"pathology evaluate: --results {twice[0]} and {twice[1]} are one "
                              "folder: give each run once (several folders are repeated runs, "
                              "and their spread is how much the runs disagree)"),
              file=sys.stderr)
        return 2
    args.split = args.split or "test"
    return evaluate_command(args)


def _one_folder_twice(folders: list[Path]) -> tuple[Path, Path] | None:
    """Two of the results folders that are one (a trailing slash, a link), or None."""
    seen: dict[str, Path] = {}
    for folder in folders:
        first = seen.setdefault(os.path.realpath(folder), folder)
        if first is not folder:
            return first, folder
    return None
