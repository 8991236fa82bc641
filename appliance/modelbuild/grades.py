"""A labelled table of texture grades made from synthetic skin, for training the kiosk model.

Each row is one synthetic frame (``synthetic_frame(seed, index, "mixed")``, ages 20-80, so
``appliance synth skin --seed S`` reproduces the images). The grade an expert would give is
derived from the generator's ground truth: the grade score is the mean of the standardised
log hill density and the standardised negative log furrow width (finer skin: more hills,
narrower furrows); the score's tertiles split coarse / normal / fine. Expert disagreement is
modelled as Gaussian noise on the score before it is cut (``label_noise`` times the score's
standard deviation), so labels near a grade boundary are sometimes the neighbouring grade.

Features are either what the kiosk measures (``measured``: ``appliance.skin.analysis.analyze``
on the frame) or, where analysis is not available, ``truth``: the ground truth of the nine
texture/pore keys with measurement noise, colour keys measured on the frame
(``appliance.skin.colour``), and ``kime_score`` of the noisy truth (``analysis.kime_score``).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from appliance.modelbuild.table import LabelledTable, assign_splits
from appliance.modelbuild.table_splits import MIN_TABLE_ROWS
from appliance.transport.payloads import FEATURE_KEYS

if TYPE_CHECKING:
    from appliance.synthetic.skin import SyntheticSkin

FrameRow = tuple[dict[str, float], dict[str, float]]  # a frame's features and ground truth
PRESET = "mixed"
RELATIVE_NOISE = 0.05  # measured vs true texture metric: ~5 % (repeatability alone is ~2 %)
ANISOTROPY_NOISE = 0.03


@dataclass(frozen=True)
class TableSpec:
    """Which synthetic frames, which features and how noisy the expert is."""

    rows: int = 1500
    seed: int = 0
    features: str = "measured"  # "measured" or "truth"
    label_noise: float = 0.25


def _noisy_truth(truth: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """Ground truth as a measurement would see it: relative noise, counts stay whole."""
    def scaled(key: str) -> float:
        return float(truth[key] * math.exp(rng.normal(0.0, RELATIVE_NOISE)))

    noisy = {key: scaled(key) for key in truth}
    count = max(0, round(noisy["pore_count"]))
    frame_cm2 = truth["pore_count"] / truth["pore_density_per_cm2"] if truth["pore_count"] else 0
    noisy["pore_count"] = float(count)
    noisy["pore_density_per_cm2"] = count / frame_cm2 if frame_cm2 else 0.0
    noisy["pore_area_ratio"] = min(noisy["pore_area_ratio"], 1.0)
    anisotropy = truth["furrow_anisotropy"] + rng.normal(0.0, ANISOTROPY_NOISE)
    noisy["furrow_anisotropy"] = float(min(max(anisotropy, 0.0), 1.0))
    return noisy


def _truth_features(frame: SyntheticSkin, rng: np.random.Generator) -> dict[str, float]:
    from appliance.skin.analysis import kime_score  # noqa: PLC0415  (skin area, heavy)
    from appliance.skin.colour import colour_features  # noqa: PLC0415

    noisy = _noisy_truth(dict(frame.truth), rng)
    noisy["kime_score"] = kime_score(
        noisy["hill_density_per_mm2"], noisy["furrow_mean_width_um"]
    )
    noisy.update(colour_features(frame.image_rgb))
    return noisy


def _measured_features(frame: SyntheticSkin) -> dict[str, float]:
    from appliance.skin.analysis import analyze  # noqa: PLC0415  (skin area, heavy)

    analysis = analyze(frame.image_rgb, frame.um_per_px)
    return {key: float(value) for key, value in analysis.features.as_dict().items()}


def frame_row(spec: TableSpec, index: int) -> FrameRow:
    """(features, ground truth) of synthetic frame ``index`` of the spec."""
    from appliance.synthetic.skin import synthetic_frame  # noqa: PLC0415  (renders images)

    frame = synthetic_frame(spec.seed, index, PRESET)
    if spec.features == "measured":
        return _measured_features(frame), dict(frame.truth)
    noise_rng = np.random.default_rng([spec.seed, index, 7])
    return _truth_features(frame, noise_rng), dict(frame.truth)


def draw_rows(spec: TableSpec, take: Callable[[FrameRow], object], workers: int = 1) -> None:
    """Hand every frame's (features, ground truth) to ``take`` in index order, as each is
    drawn, on ``workers`` processes; the first row that fails ends the drawing with its error
    (pool_stop.WorkerDied, which names the worker, when one was killed)."""
    if workers <= 1:
        for index in range(spec.rows):
            take(frame_row(spec, index))
        return
    from appliance.synthetic.pool_stop import (  # noqa: PLC0415 (cv2)
        raise_first_failure,
        run_in_order,
    )

    # the rows being drawn when it stops are not waited for: a stopped table is not written
    jobs = ((spec, index) for index in range(spec.rows))
    raise_first_failure(run_in_order(frame_row, jobs, workers, keep_started=False,
                                     delivered=take))


def grade_scores(truths: list[dict[str, float]]) -> np.ndarray:
    """Fineness score per frame: mean of z(log hill density) and z(-log furrow width)."""
    hills = np.log([t["hill_density_per_mm2"] for t in truths])
    widths = -np.log([t["furrow_mean_width_um"] for t in truths])
    return np.asarray(0.5 * (_z(hills) + _z(widths)), dtype=np.float64)


def _z(values: np.ndarray) -> np.ndarray:
    return np.asarray((values - values.mean()) / max(float(values.std()), 1e-12))


def grade_labels(scores: np.ndarray, label_noise: float, seed: int) -> tuple[str, ...]:
    """coarse / normal / fine by the score's tertiles, after the expert's noise."""
    low, high = np.quantile(scores, [1 / 3, 2 / 3])
    rng = np.random.default_rng([seed, 4242])
    noisy = scores + rng.normal(0.0, label_noise * float(scores.std()), len(scores))
    return tuple("coarse" if s < low else "normal" if s < high else "fine" for s in noisy)


def code_version() -> str:
    """The git commit the generator and analysis code came from (+ if appliance/skin is dirty)."""
    folder = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder,
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "../skin"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+uncommitted appliance/skin changes" if dirty.stdout else "")


def describe(spec: TableSpec) -> str:
    """The table's provenance, as the model's ``trained_on`` repeats it."""
    source = (
        "features measured by appliance.skin.analysis.analyze on each frame"
        if spec.features == "measured"
        else f"features = generator ground truth with {RELATIVE_NOISE:.0%} measurement noise, "
        "colour measured on the frame, kime_score = analysis.kime_score of the noisy truth"
    )
    return (
        f"SYNTHETIC skin, not people: {spec.rows} frames of synthetic_frame(seed={spec.seed}, "
        f"preset={PRESET!r}, code {code_version()}); {source}; grade fine/normal/coarse = "
        f"tertiles of mean(z(log hill density), z(-log furrow width)) from ground truth, "
        f"expert noise {spec.label_noise} sd of the score"
    )


def build_skin_table(
    spec: TableSpec, progress: bool = False, workers: int = 1, drawn: list[FrameRow] | None = None
) -> LabelledTable:
    """Make the labelled table (renders every frame: about a second per row per worker);
    ``drawn``, when given, collects the rows as they are drawn (how far a stopped build got)."""
    if spec.features not in ("measured", "truth") or spec.rows < MIN_TABLE_ROWS:
        raise ValueError(f"need features measured|truth and >= {MIN_TABLE_ROWS} rows (two of "
                         f"each grade), got features {spec.features!r}, {spec.rows} rows")
    description = describe(spec)  # before rendering: the code that makes the rows
    rows: list[FrameRow] = [] if drawn is None else drawn
    if progress:
        from tqdm import tqdm  # noqa: PLC0415  (progress only)

        with tqdm(total=spec.rows, desc="synthetic frames", unit="frame") as bar:

            def take(row: FrameRow) -> None:
                rows.append(row)
                bar.update()

            draw_rows(spec, take, workers)
    else:
        draw_rows(spec, rows.append, workers)
    features, truths = zip(*rows, strict=True)
    matrix = np.asarray([[f[key] for key in FEATURE_KEYS] for f in features], dtype=np.float32)
    return LabelledTable(
        feature_names=FEATURE_KEYS,
        features=matrix,
        labels=grade_labels(grade_scores(list(truths)), spec.label_noise, spec.seed),
        splits=assign_splits(spec.rows, spec.seed),
        sources=tuple(f"synthetic:{spec.seed}:{i}:{PRESET}" for i in range(spec.rows)),
        description=description,
    )
