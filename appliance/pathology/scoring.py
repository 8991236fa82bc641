"""The shared body of ``pathology run`` and ``pathology submit``: load, score, write, summarise."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict

from appliance.config.pathology import DEFAULT_MAX_TILE_BYTES
from appliance.logsafe import escape_controls
from appliance.pathology.model import ModelError, TileModel
from appliance.pathology.names import differ_only_in_form
from appliance.pathology.outfolder import RESULTS_CSV, ResultsFolder, ResultsFolderError
from appliance.pathology.prepare import TileSettings
from appliance.pathology.run import (
    RunOptions,
    SlideJob,
    SlideResult,
    SlideRunner,
    run_jobs,
    write_results,
)


def score_jobs(args: argparse.Namespace, jobs: list[SlideJob]) -> int:
    """Score jobs; exit 0 when all slides scored, 1 when some failed, 2 on a bad model/options."""
    if not jobs:
        print(f"pathology {args.pathology_command}: no slides found (JPEG, PNG or TIFF files)",
              file=sys.stderr)
        return 2
    if clash := name_clash(jobs):
        print(escape_controls(f"pathology {args.pathology_command}: {clash}"), file=sys.stderr)
        return 2
    try:
        folder = ResultsFolder(args.out, args.force)
    except ResultsFolderError as exc:
        print(escape_controls(f"pathology {args.pathology_command}: {exc}"), file=sys.stderr)
        return 2
    with folder:
        return _score_into(args, jobs, folder)


def _score_into(args: argparse.Namespace, jobs: list[SlideJob], folder: ResultsFolder) -> int:
    """Score jobs into the folder's stage, then publish them in --out."""
    try:
        model = TileModel(args.model, provider=args.provider)
    except ModelError as exc:
        print(f"pathology {args.pathology_command}: model error: {exc}", file=sys.stderr)
        return 2
    settings = _settings(args, model)
    runner = SlideRunner(model, settings, folder.stage, _options(args))
    started, results = time.monotonic(), list[SlideResult]()
    try:
        run_jobs(runner, jobs, results=results)
        write_results(folder.stage, results, _summary(args, model, runner, started))
    except OSError as exc:  # the results folder, not a slide: a full disk, no permission
        print(f"pathology {args.pathology_command}: cannot write to {args.out}: {exc}; stopped, "
              "results.csv not written", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM: exit 130 or 143 all the same
        print(escape_controls(_stopped(args, len(results), len(jobs))), file=sys.stderr)
        raise
    try:
        folder.publish()
    except OSError as exc:
        print(f"pathology {args.pathology_command}: cannot move the results into {args.out} "
              f"({exc}); it holds no "
              "results.csv now: run again with --force", file=sys.stderr)
        return 1
    _print_summary(results, args.out / RESULTS_CSV)
    return 1 if any(result.error for result in results) else 0


def _stopped(args: argparse.Namespace, scored: int, total: int) -> str:
    """What a run stopped midway kept: none of its results, which are moved into --out only
    once every slide is scored (outfolder.py), so what --out held before is as it was."""
    return (f"pathology {args.pathology_command}: stopped after {scored} of {total} slides "
            f"scored; none of their results are in {args.out} (a run puts them there only "
            "when every slide is scored; what it held before is as it was): the same command "
            "again scores them all")


def _summary(
    args: argparse.Namespace, model: TileModel, runner: SlideRunner, started: float
) -> dict[str, object]:
    """run.json's account of the model and settings the run used."""
    info = model.info
    return {
        "model": str(args.model), "model_name": info.name, "model_version": info.version,
        "providers": model.session.get_providers(), "threshold": runner.threshold,
        "score": args.score, "settings": {**asdict(runner.settings), "reference": None},
        "seconds": round(time.monotonic() - started, 2),
        "ood_guard": None if info.guard is None else {
            "tile_min_score": info.guard.tile_min_score,
            "slide_min_share": info.guard.slide_min_share},
    }


def name_clash(jobs: list[SlideJob]) -> str | None:
    """Why two jobs would write the same rows and files (a slide's name names its heatmap,
    CAMs and tile table), or score one file twice under two names (``S1`` and ``S1.jpg`` in
    labels.csv, or a link beside its target: one image counted as two slides, of two
    patients perhaps), or None when every slide and every file is its own."""
    seen: dict[str, SlideJob] = {}
    files: dict[str, SlideJob] = {}
    for job in jobs:
        if job.refused:  # never read, nothing written for it
            continue
        first = seen.setdefault(job.slide, job)
        if first is not job and first.path == job.path:
            return f"{job.path} is listed twice (slide {job.slide!r}); list each slide once"
        if first is not job and os.path.realpath(first.path) == os.path.realpath(job.path):
            return (f"{first.path} and {job.path} (one file) are listed twice as slide "
                    f"{job.slide!r}; list each slide once")
        if first is not job and differ_only_in_form(first.path.name, job.path.name):
            return (f"{first.path} and {job.path} are two files whose names differ only in "
                    f"how their accents are encoded ({first.path.name!a} and "
                    f"{job.path.name!a}: Unicode NFC and NFD, as macOS writes names), so both "
                    f"would be slide {job.slide!r}; keep one, or rename the other")
        if first is not job:
            return (f"{first.path} and {job.path} would both be slide {job.slide!r} (one "
                    f"heatmaps/{job.slide}.png, one tiles/{job.slide}.csv); rename one, or "
                    "score them apart")
        same = files.setdefault(os.path.realpath(job.path), job)
        if same is not job:
            what = job.path if same.path == job.path else f"{same.path} and {job.path} (one file)"
            return (f"{what} is listed twice, as slides {same.slide!r} and {job.slide!r}; list "
                    "each slide once")
    return None


def _settings(args: argparse.Namespace, model: TileModel) -> TileSettings:
    """Tile settings from the model's metadata, with the command line's overrides."""
    return TileSettings(
        tile_px=model.info.tile_px,
        tile_um=args.tile_um or model.info.tile_um,
        min_tissue_fraction=args.min_tissue,
        normalize=not args.no_normalize,
        tumour_only=args.tumour_only,
        reference=model.info.stain_reference,
        max_tile_bytes=args.max_tile_bytes or DEFAULT_MAX_TILE_BYTES,
    )


def _options(args: argparse.Namespace) -> RunOptions:
    """Scoring and picture options from the command line."""
    return RunOptions(
        batch_size=max(1, args.batch_size), threshold=args.threshold, score=args.score,
        cam_tiles=max(0, args.cam_tiles), pictures=not args.no_pictures,
    )


def _print_summary(results: list[SlideResult], path: object) -> None:
    """One line per slide, then the counts; names from files escaped (a terminal's codes)."""
    for result in results:
        print(escape_controls(_summary_line(result)))
    failed = sum(1 for result in results if result.error)
    unsupported = sum(1 for result in results if result.reason)
    print(escape_controls(f"{len(results) - failed} of {len(results)} slides scored "
                          f"({unsupported} unsupported); results in {path}"))


def _summary_line(result: SlideResult) -> str:
    if result.error:
        return f"{result.slide}: ERROR {result.error}"
    if result.reason:
        return (f"{result.slide}: {result.label} ({result.reason}: "
                f"{result.in_distribution_share:.0%} of {result.tile_count} tiles in "
                f"distribution{_page(result)})")
    return (f"{result.slide}: {result.label} score {result.score:.3f} "
            f"(mean p {result.mean_probability:.3f}, MSI tiles "
            f"{result.msi_tile_share:.0%}, {result.tile_count} tiles{_page(result)})")


def _page(result: SlideResult) -> str:
    """Which page of a file of several was read as the slide (results.csv's page, pages)."""
    return f", page {result.page} of {result.pages}" if result.pages > 1 else ""
