"""Running slides through the tile model: per-slide scores, heatmaps, CAMs, results files.

Each slide is independent: a slide that cannot be read, has no tissue, has an implausible µm/px
or upsets the model gets an ``error`` in its result row and the run moves on. A slide whose
tissue is mostly unlike the model's training data gets the label ``unsupported`` and a reason
(appliance/pathology/ood.py); every tile's probability and ``in_distribution`` score go to
``tiles/<slide>.csv``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from appliance.csvcells import csv_safe
from appliance.outfile import replaced_when_complete
from appliance.pathology.aggregate import (
    SlideScore,
    aggregate,
    decisive_tiles,
    slide_label,
    unscored_tiles_problem,
)
from appliance.pathology.heatmap import cam_panel, heatmap_scale, tile_heatmap, write_png
from appliance.pathology.model import ModelError, TileModel
from appliance.pathology.names import one_form
from appliance.pathology.ood import DistributionGuard
from appliance.pathology.outfolder import CAMS, HEATMAPS, RESULTS_CSV, RESULTS_JSON, TILES
from appliance.pathology.prepare import PreparedSlide, TileSettings, prepare_slide, tile_batches
from appliance.pathology.slides import SlideError
from appliance.pathology.tiles import Tile
from appliance.pathology.verdict import UNSUPPORTED, UNSUPPORTED_REASON

log = logging.getLogger(__name__)
NAME_MAX_BYTES = 255  # of a file name (Linux file systems): heatmaps/<slide>.png must fit


@dataclass(frozen=True)
class SlideJob:
    """One slide to score, with what labels.csv says about it."""

    path: Path
    um_per_px: float
    slide: str
    patient: str = ""
    material: str = ""
    refused: str = ""  # why labels.csv's row cannot be used (e.g. a name outside the folder)

    def __post_init__(self) -> None:
        # one slide name however its accents are encoded (appliance/pathology/names.py)
        object.__setattr__(self, "slide", one_form(self.slide))


@dataclass(frozen=True)
class SlideResult:
    """One row of results.csv."""

    slide: str
    patient: str
    material: str
    path: str
    page: int = 0  # the page of the slide file read, from 1 (a multi-page TIFF's); 0: not read
    pages: int = 0  # how many pages the file has
    tile_count: int = 0
    mean_probability: float = float("nan")
    msi_tile_share: float = float("nan")
    score: float = float("nan")
    label: str = ""
    in_distribution_share: float = float("nan")
    reason: str = ""
    error: str = ""


@dataclass(frozen=True)
class RunOptions:
    """How slides are scored and what pictures are drawn."""

    batch_size: int = 64
    threshold: float | None = None
    score: SlideScore = "mean"
    cam_tiles: int = 4
    pictures: bool = True


class DecisiveTiles:
    """The k most decisive tiles seen so far (pixels, CAM, probability) of those whose CAM is
    finite; ``unfinite_cams`` counts the tiles left out for a CAM that is not (a model finite on
    the blank tiles it is checked with as it loads, and not on tissue)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.pixels: list[np.ndarray] = []
        self.cams: list[np.ndarray] = []
        self.probability: list[float] = []
        self.unfinite_cams = 0

    def offer(self, pixels: np.ndarray, cams: np.ndarray | None, probability: np.ndarray) -> None:
        if cams is None or self.k == 0:
            return
        finite = np.flatnonzero(np.isfinite(cams).reshape(len(cams), -1).all(axis=1))
        self.unfinite_cams += len(cams) - len(finite)
        self.pixels += [pixels[i] for i in finite]
        self.cams += [cams[i] for i in finite]
        self.probability += [float(probability[i]) for i in finite]
        keep = decisive_tiles(np.array(self.probability), self.k)
        self.pixels = [self.pixels[i] for i in keep]
        self.cams = [self.cams[i] for i in keep]
        self.probability = [self.probability[i] for i in keep]


class SlideRunner:
    """Scores slides with one model and writes their pictures under out_dir."""

    def __init__(
        self, model: TileModel, settings: TileSettings, out_dir: Path, options: RunOptions
    ) -> None:
        self.model = model
        self.settings = settings
        self.out_dir = out_dir
        self.options = options
        self.threshold = model.info.threshold if options.threshold is None else options.threshold

    def run(self, job: SlideJob) -> SlideResult:
        """Score one slide; any slide-level problem becomes the result's error."""
        base = SlideResult(job.slide, job.patient, job.material, str(job.path))
        if job.refused:
            return SlideResult(**{**asdict(base), "error": job.refused})
        if (name_bytes := len(os.fsencode(f"{job.slide}.png"))) > NAME_MAX_BYTES:
            return SlideResult(**{**asdict(base), "error": (
                f"slide name of {name_bytes - 4} bytes: too long for its pictures and tile "
                f"table (at most {NAME_MAX_BYTES - 4}); rename it")})
        try:
            prepared = prepare_slide(job.path, job.um_per_px, self.settings)
        except SlideError as exc:
            return SlideResult(**{**asdict(base), "error": str(exc)})
        base = replace(base, page=prepared.slide.page, pages=prepared.slide.pages)
        try:
            return self._score(prepared, base)
        except (SlideError, ModelError, ValueError) as exc:
            return SlideResult(**{**asdict(base), "error": str(exc)})
        finally:
            prepared.close()

    def _score(self, prepared: PreparedSlide, base: SlideResult) -> SlideResult:
        scored: list[Tile] = []
        probabilities, in_distribution = [], []
        decisive = DecisiveTiles(self.options.cam_tiles)
        for tiles, pixels in tile_batches(prepared, self.settings, self.options.batch_size):
            result = self.model.predict(pixels)
            scored += tiles
            probabilities.append(result.probability)
            in_distribution.append(_scores_or_nan(result.in_distribution, len(tiles)))
            decisive.offer(pixels, result.cam, result.probability)
        if not scored:
            raise SlideError(f"{base.path}: no tile passed the tumour filter; nothing to score")
        probability = np.concatenate(probabilities)
        if problem := unscored_tiles_problem(probability):
            raise SlideError(f"{base.path}: {problem}")
        typical = np.concatenate(in_distribution)
        tiles_csv = self.out_dir / TILES / f"{base.slide}.csv"
        write_tile_scores(tiles_csv, scored, probability, typical)
        slide = slide_result(base, probability, typical, guard=self.model.info.guard,
                             method=self.options.score, threshold=self.threshold,
                             labels=self.model.info.labels)
        if self.options.pictures:
            titles = picture_titles(slide, self.options.score, self.threshold)
            unlike = unlike_tiles(typical, self.model.info.guard)
            self._draw(prepared, scored, probability, decisive, name=base.slide,
                       titles=titles, unlike=unlike)
        return slide

    def _draw(
        self, prepared: PreparedSlide, tiles: list[Tile], probability: np.ndarray,
        decisive: DecisiveTiles, *, name: str, titles: tuple[str, str],
        unlike: np.ndarray | None,
    ) -> None:
        slide = prepared.slide
        factor = math.ceil(1 / heatmap_scale(slide.size_px))
        thumb = slide.thumbnail(slide.um_per_px * factor)
        scale = thumb.shape[1] / slide.size_px[0]
        write_png(inside(self.out_dir, HEATMAPS, f"{name}.png"),
                  tile_heatmap(thumb, scale, tiles, probability, titles[0], unlike=unlike,
                               note=unfinite_cams_note(decisive)))
        if decisive.pixels:
            panel = cam_panel(np.stack(decisive.pixels), np.stack(decisive.cams),
                              np.array(decisive.probability), titles[1])
            write_png(inside(self.out_dir, CAMS, f"{name}.png"), panel)


def picture_titles(result: SlideResult, method: str, threshold: float) -> tuple[str, str]:
    """The heatmap's and the CAM panel's titles. An unsupported slide's heatmap names why and
    no score, as its summary line does: a score there reads as the answer the label withholds."""
    if result.reason:
        return (f"{result.slide}: {result.label}, {result.in_distribution_share:.0%} of "
                f"{result.tile_count} tiles like the model's training data",
                f"{result.slide}: {result.label}; decisive tiles, for audit only")
    return (f"{result.slide}: {result.label}, score {result.score:.2f} ({method}; threshold "
            f"{threshold:.2f}), {result.tile_count} tiles",
            f"{result.slide}: the most decisive tiles")


def unfinite_cams_note(decisive: DecisiveTiles) -> str:
    """The line under a slide's heatmap where the model answered CAMs that are not finite."""
    if not decisive.unfinite_cams:
        return ""
    return f"{decisive.unfinite_cams} tiles' CAMs not finite (NaN or infinite): not drawn"


def unlike_tiles(in_distribution: np.ndarray, guard: DistributionGuard | None) -> np.ndarray | None:
    """Per tile, whether it is unlike the model's training data (None without a guard)."""
    return None if guard is None else ~guard.in_distribution(in_distribution)


def inside(out_dir: Path, *parts: str) -> Path:
    """out_dir/parts, refused (SlideError) when the parts would lead outside out_dir."""
    target = out_dir.joinpath(*parts)
    if not target.resolve().is_relative_to(out_dir.resolve()):
        raise SlideError(f"{target}: outside --out {out_dir}; refused")
    return target


def _scores_or_nan(scores: np.ndarray | None, count: int) -> np.ndarray:
    return np.full(count, np.nan, np.float32) if scores is None else scores


def slide_result(
    base: SlideResult, probability: np.ndarray, in_distribution: np.ndarray, *,
    guard: DistributionGuard | None, method: SlideScore, threshold: float,
    labels: tuple[str, str],
) -> SlideResult:
    """The slide's scores and label; ``unsupported`` when its tissue is mostly unfamiliar."""
    scores = aggregate(probability)
    value = scores.score(method)
    label, reason, share = slide_label(value, threshold, labels), "", float("nan")
    if guard is not None:
        share = guard.in_distribution_share(in_distribution)
        if not guard.supported(share):
            label, reason = UNSUPPORTED, UNSUPPORTED_REASON
    return SlideResult(
        **{**asdict(base), "tile_count": scores.tile_count,
           "mean_probability": scores.mean_probability, "msi_tile_share": scores.msi_tile_share,
           "score": value, "label": label, "in_distribution_share": share, "reason": reason}
    )


def write_tile_scores(
    path: Path, tiles: list[Tile], probability: np.ndarray, in_distribution: np.ndarray
) -> None:
    """One row per tile: grid position, box, MSI probability and in_distribution score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_when_complete(path) as temp, temp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "col", "x_px", "y_px", "size_px", "probability",
                         "in_distribution"])
        for tile, p, typical in zip(tiles, probability, in_distribution, strict=True):
            writer.writerow([tile.row, tile.col, tile.x_px, tile.y_px, tile.size_px,
                             f"{p:.5f}", f"{typical:.5f}"])


def run_jobs(runner: SlideRunner, jobs: list[SlideJob], progress: bool = True, *,
             results: list[SlideResult] | None = None) -> list[SlideResult]:
    """Score every job in order, with a progress bar on stderr; errors are logged, not raised.
    Each result is appended to ``results`` (returned) as its slide is scored, so a caller
    stopped midway (Ctrl-C) can say how far it got."""
    results = [] if results is None else results
    for job in tqdm(jobs, unit="slide", disable=not progress or None):
        result = runner.run(job)
        if result.error:
            log.error("slide %s failed: %s", job.slide, result.error)
        results.append(result)
    return results


def write_results(
    out_dir: Path, results: Iterable[SlideResult], summary: dict[str, object]
) -> Path:
    """results.csv (one row per slide) and run.json (model, settings, counts); returns the CSV.
    Each is whole or as it was (appliance/outfile.py): a full disk leaves no cut table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(result) for result in results]
    path = out_dir / RESULTS_CSV
    with replaced_when_complete(path) as temp, temp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SlideResult.__dataclass_fields__))
        writer.writeheader()  # names from files and labels: formulas defused (csvcells.py)
        writer.writerows({key: csv_safe(value) for key, value in row.items()} for row in rows)
    failed = sum(1 for row in rows if row["error"])
    unsupported = sum(1 for row in rows if row["label"] == UNSUPPORTED)
    summary = {**summary, "slides": len(rows), "failed": failed, "unsupported": unsupported}
    with replaced_when_complete(out_dir / RESULTS_JSON) as temp:
        temp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path
