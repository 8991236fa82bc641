"""Accuracy and repeatability of skin measurement on synthetic frames; prints one JSON object.

accuracy: median and 90th-percentile absolute relative error against the sidecar ground truth
for the five target features over ``--count`` frames of mixed presets (target: median <= 5 %,
p90 <= 15 %). repeatability: for ``--repeat-frames`` frames, ``--variants`` copies each shifted
by up to 40 px, rotated by up to 10 degrees, brightness +-15 % and fresh sensor noise, measured
on the central 944x704 crop; coefficient of variation per feature (target <= 2 %), median and
worst over the frames. A moved crop holds partly different pores, so pore_count also varies
for that reason; pore_count_same_skin_window counts only pores whose centre maps back into a
fixed 720x480 skin window that every crop covers (the repeatability of the measurement
itself), and the target check uses it in place of pore_count. pore_count_truth_in_crop is the
floor that content change sets: the CV of the true number of pores whose centre lies in each
crop (from the frame's synthetic geometry), i.e. what a perfect detector would score on
pore_count; pore_count_over_truth is the CV of measured / true count per crop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from skin_common import (
    TARGET_KEYS,
    ensure_frames,
    error_summary,
    frame_set_parser,
    load_average,
    truth_of,
)

from appliance.skin.analysis import analyze
from appliance.skin.frames import load_frame
from appliance.synthetic.skin import synthetic_geometry

CROP_W, CROP_H = 944, 704
WINDOW_W, WINDOW_H = 720, 480  # a skin window every moved crop still covers


def _features(rgb: np.ndarray, um_per_px: float) -> dict[str, float]:
    return {k: float(v) for k, v in analyze(rgb, um_per_px).features.model_dump().items()}


def accuracy(images: list[Path]) -> dict[str, Any]:
    """Errors of every target feature over the frames, and which targets hold."""
    measured = [_features(load_frame(path), 10.0) for path in images]
    summary = error_summary(measured, [truth_of(path) for path in images])
    met = all(v["median_abs_rel_error"] <= 0.05 and v["p90_abs_rel_error"] <= 0.15
              for v in summary.values())
    return {"frames": len(images), "per_feature": summary, "targets_met": met}


def _variant(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same skin moved, turned, lit differently and with fresh noise; central crop.

    Also returns the affine map from crop pixels back to the original frame's pixels.
    """
    height, width = rgb.shape[:2]
    angle = rng.uniform(-10.0, 10.0)
    shift = rng.uniform(-40.0, 40.0, size=2)
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
    matrix[:, 2] += shift
    moved = cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    lit = moved.astype(np.float32) * rng.uniform(0.85, 1.15)
    noisy = lit + rng.normal(0.0, 2.0, size=lit.shape).astype(np.float32)
    out = np.clip(noisy, 0, 255).astype(np.uint8)
    top, left = (height - CROP_H) // 2, (width - CROP_W) // 2
    back = cv2.invertAffineTransform(matrix)
    back[:, 2] += back[:, :2] @ np.array([left, top], dtype=float)
    return np.ascontiguousarray(out[top:top + CROP_H, left:left + CROP_W]), back


def _pores_in_skin_window(rgb: np.ndarray, back: np.ndarray) -> float:
    """Pores whose centre, mapped back to the original frame, lies in a fixed skin window.

    Moving the camera changes which pores the frame holds; this count follows the same skin.
    """
    analysis = analyze(rgb, 10.0)
    centres = (analysis.pores.centres_half_px + 0.5) * analysis.work_scale - 0.5
    original = centres @ back[:, :2].T + back[:, 2]
    inside = (np.abs(original[:, 0] - 640.0) < WINDOW_W / 2) & (
        np.abs(original[:, 1] - 480.0) < WINDOW_H / 2
    )
    return float(np.count_nonzero(inside))


def _true_pores_in_crop(path: Path, back: np.ndarray) -> float:
    """True pores of the frame's synthetic geometry whose centre lies in the moved crop."""
    sidecar: dict[str, Any] = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    _, geometry = synthetic_geometry(sidecar["seed"], sidecar["index"], sidecar["preset"])
    forward = cv2.invertAffineTransform(back)
    centres = geometry.pore_centres_px @ forward[:, :2].T + forward[:, 2]
    inside = (centres[:, 0] >= 0) & (centres[:, 0] < CROP_W) & (centres[:, 1] >= 0) & (
        centres[:, 1] < CROP_H
    )
    return float(np.count_nonzero(inside))


def repeatability(images: list[Path], variants: int) -> dict[str, Any]:
    """Coefficient of variation of each target feature across moved copies of the same skin."""
    rng = np.random.default_rng(2026)
    keys = (*TARGET_KEYS, "pore_count_same_skin_window", "pore_count_truth_in_crop",
            "pore_count_over_truth")
    cvs: dict[str, list[float]] = {key: [] for key in keys}
    for path in images:
        rgb = load_frame(path)
        rows = []
        for _ in range(variants):
            moved, back = _variant(rgb, rng)
            row = _features(moved, 10.0)
            row["pore_count_same_skin_window"] = _pores_in_skin_window(moved, back)
            row["pore_count_truth_in_crop"] = _true_pores_in_crop(path, back)
            row["pore_count_over_truth"] = row["pore_count"] / max(
                row["pore_count_truth_in_crop"], 1.0)
            rows.append(row)
        for key in keys:
            values = np.array([row[key] for row in rows])
            cvs[key].append(float(values.std(ddof=1) / values.mean()) if values.mean() else 0.0)
    per_feature = {key: {"median_cv": round(float(np.median(v)), 4), "max_cv": round(max(v), 4)}
                   for key, v in cvs.items()}
    references = ("pore_count", "pore_count_truth_in_crop", "pore_count_over_truth")
    met = all(v["median_cv"] <= 0.02 for k, v in per_feature.items() if k not in references)
    return {"frames": len(images), "variants": variants, "per_feature": per_feature,
            "targets_met": met}


def main() -> None:
    """Run both checks and print one JSON object."""
    parser = frame_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeat-frames", type=int, default=10)
    parser.add_argument("--variants", type=int, default=6)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    images = ensure_frames(args.frames, args.count, args.seed)
    result = {
        "benchmark": "skin_accuracy",
        "preset": "mixed",
        "seed": args.seed,
        "accuracy": accuracy(images),
        "repeatability": repeatability(images[: args.repeat_frames], args.variants),
        "load_average": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
