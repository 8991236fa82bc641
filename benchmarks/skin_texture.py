"""Skin texture alone (furrow density, hill density, hill area): accuracy, calibration steps,
repeatability and time; prints one JSON object.

accuracy: median, 90th percentile and median signed relative error against the ground truth
on the project's generator (presets "mixed" and "wide", ``--count`` / ``--wide-count``
frames of ``--seed``) and on the second renderer (``synthetic.skin_voronoi``, evaluation only:
nothing in the measurement is set on it), each frame at its own calibrated scale.
calibration_sweep: the first ``--sweep-frames`` mixed frames read at 7.00 µm/px and every 5 %
more up to 12.57 µm/px; each feature with its scaling divided out (the same pixels: hill
density x scale², furrow density x scale, hill area / scale²) should not move, so the largest
relative change between neighbouring calibrations is the step (target: continuous, no step).
repeatability: moved, turned, relit and re-noised copies of ``--repeat-frames`` mixed frames
(``skin_accuracy``'s variants); median and worst coefficient of variation (target <= 2 %).
texture_thread_cpu_ms: ``measure_texture`` on the prepared mixed frames, one thread (the
whole ``analyze`` is timed by ``skin_speed.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from skin_common import ensure_frames, frame_set_parser, load_average, truth_of, um_per_px_of


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = frame_set_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--wide-count", type=int, default=60)
    parser.add_argument("--second-count", type=int, default=40)
    parser.add_argument("--sweep-frames", type=int, default=10)
    parser.add_argument("--repeat-frames", type=int, default=10)
    parser.add_argument("--variants", type=int, default=6)
    parser.add_argument("--timed-frames", type=int, default=30)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np
from skin_accuracy import SWEEP_UM_PER_PX, TEXTURE_SCALE_POWER, _variant, texture_steps

from appliance.skin.frames import load_frame
from appliance.skin.preprocess import prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin_voronoi import voronoi_frame

KEYS = tuple(TEXTURE_SCALE_POWER)


def _texture(rgb: np.ndarray, um_per_px: float) -> dict[str, float]:
    return {key: float(measure_texture(prepare(rgb, um_per_px)).metrics[key]) for key in KEYS}


def _errors(pairs: list[tuple[dict[str, float], dict[str, float]]]) -> dict[str, Any]:
    """Median / p90 absolute and median signed relative error per feature."""
    summary: dict[str, Any] = {}
    for key in KEYS:
        signed = np.array([m[key] / t[key] - 1.0 for m, t in pairs if t[key] > 0])
        summary[key] = {"median_abs_rel_error": round(float(np.median(np.abs(signed))), 4),
                        "p90_abs_rel_error": round(float(np.percentile(np.abs(signed), 90)), 4),
                        "median_rel_error": round(float(np.median(signed)), 4)}
    return {"frames": len(pairs), "per_feature": summary,
            "targets_met": all(v["median_abs_rel_error"] <= 0.02 for v in summary.values())}


def accuracy(images: list[Path]) -> dict[str, Any]:
    """Texture errors on frames of the project's generator."""
    return _errors([(_texture(load_frame(p), um_per_px_of(p)), truth_of(p)) for p in images])


def second_renderer(count: int, seed: int) -> dict[str, Any]:
    """Texture errors on the evaluation-only renderer."""
    frames = [voronoi_frame(seed, index) for index in range(count)]
    return _errors([(_texture(f.image_rgb, f.um_per_px), f.truth) for f in frames])


def calibration_sweep(images: list[Path]) -> dict[str, Any]:
    """Largest step of each feature (scaling divided out) between calibrations 5 % apart."""
    steps: dict[str, list[float]] = {key: [] for key in KEYS}
    for path in images:
        rgb = load_frame(path)
        readings = [_texture(rgb, um) for um in SWEEP_UM_PER_PX]
        for key, step in texture_steps(readings, SWEEP_UM_PER_PX).items():
            steps[key].append(step)
    return {"frames": len(images), "um_per_px": [round(um, 3) for um in SWEEP_UM_PER_PX],
            "largest_step": {k: round(max(v), 4) for k, v in steps.items()},
            "median_of_largest_steps": {k: round(float(np.median(v)), 4) for k, v in steps.items()}}


def repeatability(images: list[Path], variants: int) -> dict[str, Any]:
    """Coefficient of variation of each feature over moved copies of the same skin."""
    rng = np.random.default_rng(2026)
    cvs: dict[str, list[float]] = {key: [] for key in KEYS}
    for path in images:
        rgb = load_frame(path)
        rows = [_texture(_variant(rgb, rng)[0], 10.0) for _ in range(variants)]
        for key in KEYS:
            values = np.array([row[key] for row in rows])
            cvs[key].append(float(values.std(ddof=1) / values.mean()))
    per_feature = {k: {"median_cv": round(float(np.median(v)), 4), "max_cv": round(max(v), 4)}
                   for k, v in cvs.items()}
    return {"frames": len(images), "variants": variants, "per_feature": per_feature,
            "targets_met": all(v["median_cv"] <= 0.02 for v in per_feature.values())}


def texture_time_ms(images: list[Path]) -> dict[str, float]:
    """Median and p90 thread CPU of ``measure_texture`` per prepared frame (after a warm-up)."""
    prepared = [prepare(load_frame(p), um_per_px_of(p)) for p in images]
    measure_texture(prepared[0])
    times = []
    for item in prepared:
        started = time.thread_time()
        measure_texture(item)
        times.append((time.thread_time() - started) * 1000.0)
    return {"median": round(float(np.median(times)), 2),
            "p90": round(float(np.percentile(times, 90)), 2), "frames": len(times)}


def main() -> None:
    """Run every check and print one JSON object."""
    args = _parser().parse_args()
    cv2.setNumThreads(1)
    mixed = ensure_frames(args.frames, args.count, args.seed)
    wide = ensure_frames(args.frames, args.wide_count, args.seed, preset="wide")
    result = {
        "benchmark": "skin_texture",
        "seed": args.seed,
        "accuracy": {
            "generator_mixed": accuracy(mixed),
            "generator_wide": accuracy(wide),
            "second_renderer": second_renderer(args.second_count, args.seed),
        },
        "calibration_sweep": calibration_sweep(mixed[: args.sweep_frames]),
        "repeatability": repeatability(mixed[: args.repeat_frames], args.variants),
        "texture_thread_cpu_ms": texture_time_ms(mixed[: args.timed_frames]),
        "load_average": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
