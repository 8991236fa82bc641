"""Accuracy, calibration continuity and repeatability of skin measurement; prints one JSON object.

accuracy: median and 90th-percentile absolute relative error against the ground truth for the
five target features, each frame measured at its own calibrated scale, on three frame sets:
``generator_mixed`` (the project's generator, ``--count`` frames at 10 µm/px),
``generator_wide`` (its "wide" preset: 7-13 µm/px, dark junctions, pigment, brown and grey
hairs, dust, JPEG q70-95, elliptical pores of 50-320 µm, pores and furrows of per-frame
darkness, on half the frames no darker than the furrow they sit in, dead-end furrows) and
``second_renderer`` (``synthetic.skin_voronoi``,
drawn by other means and never used to set anything in the measurement). Targets: pores median
<= 5 % and p90 <= 15 %, texture median <= 2 %. Beside these all-frames figures (the headline),
``pore_count_where_validated`` gives the pore count's error on the frames whose result does not
name pore_count in ``not_validated`` (skin/validity.py: e.g. a count that hangs on narrow
margins), and the share of frames where it does; ``pore_mean_diameter_where_validated`` the same
for the mean pore diameter (flagged with the count, and on its own when out of the size range).
calibration_sweep: the same ``--sweep-frames`` frames measured at 7.00 µm/px and every 5 %
more up to 12.57 µm/px; the largest change of pore_count between neighbouring calibrations
(relative to the smaller count; target <= 15 %), and for the texture features (furrow density,
hill density, hill area) the largest relative change with their scaling divided out (the same
pixels read at another calibration: furrow density x scale, hill density x scale², hill area /
scale²), which should not move at all (texture_largest_step; docs/measurement.md).
calibration_sweep_wide: the first ``--sweep-frames`` wide frames on the same grid, whatever
their own scale (a frame drawn at 12.6 µm/px is measured down to 0.56 of it: its small pores
fall under the candidate search and the size test, a trend that steps by about 17 % every 5 %
however smooth the count); calibration_sweep_wide_around_own_scale: the same frames each
measured from 0.70 to 1.26 times its own scale, 5 % apart, the miscalibrations the mixed
frames see on the plain grid.
repeatability: for ``--repeat-frames`` frames, ``--variants`` copies each shifted
by up to 40 px, rotated by up to 10 degrees, brightness +-15 % and fresh sensor noise, measured
on the central 944x704 crop; coefficient of variation per feature (target <= 2 %), median and
worst over the frames. A moved crop holds partly different pores, so pore_count also varies
for that reason; pore_count_same_skin_window counts only pores whose centre maps back into a
fixed 720x480 skin window that every crop covers (the repeatability of the measurement
itself). pore_count_truth_in_crop is the
floor that content change sets: the CV of the true number of pores whose centre lies in each
crop (from the frame's synthetic geometry), i.e. what a perfect detector would score on
pore_count; pore_count_over_truth is the CV of measured / true count per crop. The pore diameter
varies for the same reason (a mean over partly different pores): pore_mean_diameter_truth_in_crop
is that floor (the CV of the true pores' mean diameter per crop) and
pore_mean_diameter_same_skin_window the measured mean diameter of the pores in the fixed skin
window, and pore_mean_diameter_over_truth the CV of measured / true mean diameter per crop.
The target (CV <= 2 %) covers the texture features and the pore diameter; the counts
and the diameter's three context readings are reported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from skin_common import (
    TARGET_KEYS,
    ensure_frames,
    error_summary,
    frame_set_parser,
    load_average,
    truth_of,
    um_per_px_of,
)


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = frame_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeat-frames", type=int, default=10)
    parser.add_argument("--variants", type=int, default=6)
    parser.add_argument("--wide-count", type=int, default=60)
    parser.add_argument("--second-count", type=int, default=40)
    parser.add_argument("--sweep-frames", type=int, default=10)
    parser.add_argument("--sweep-offsets", type=int, default=1,
                        help="interleaved grids 5 %% apart (5: a calibration every 1 %%)")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np

from appliance.edge.heap import keep_frame_buffers
from appliance.skin.analysis import SkinAnalysis, analyze
from appliance.skin.frames import load_frame
from appliance.synthetic.skin import synthetic_geometry
from appliance.synthetic.skin_voronoi import voronoi_frame

CROP_W, CROP_H = 944, 704
WINDOW_W, WINDOW_H = 720, 480  # a skin window every moved crop still covers


def _readings(analysis: SkinAnalysis) -> dict[str, float]:
    return {k: float(v) for k, v in analysis.features.as_dict().items()}


def _features(rgb: np.ndarray, um_per_px: float) -> dict[str, float]:
    return _readings(analyze(rgb, um_per_px))


PORE_KEYS = ("pore_count", "pore_mean_diameter_um")
# how each texture feature scales with um_per_px when the same pixels are read at another one
TEXTURE_SCALE_POWER = {"furrow_density_mm_per_mm2": 1, "hill_density_per_mm2": 2,
                       "hill_mean_area_mm2": -2}
SWEEP_UM_PER_PX = tuple(7.0 * 1.05**k for k in range(13))  # 7.00 ... 12.57, 5 % apart
MIXED_UM_PER_PX = 10.0  # the scale the mixed frames are drawn at


def _verdict(frames: int, summary: dict[str, Any]) -> dict[str, Any]:
    """The error summary with the targets: pores median <= 5 %, p90 <= 15 %; texture <= 2 %."""
    pores_ok = all(summary[k]["median_abs_rel_error"] <= 0.05
                   and summary[k]["p90_abs_rel_error"] <= 0.15 for k in PORE_KEYS)
    texture_ok = all(v["median_abs_rel_error"] <= 0.02 for k, v in summary.items()
                     if k not in PORE_KEYS)
    return {"frames": frames, "per_feature": summary, "pores_targets_met": pores_ok,
            "texture_targets_met": texture_ok}


FEW_PORES = 10  # below this many true pores, one pore more or less is >= 10 %


def pore_count_by_truth(measured: list[dict[str, float]],
                        truths: list[dict[str, float]]) -> dict[str, Any]:
    """The pore count's error apart for frames with few and with many true pores.

    On a frame with 2 pores one pore more is a 50 % error, so the relative error of the
    frames with few pores says more about how few they hold than about the method: they are
    reported in pores (and frames without a true pore, which the relative error leaves out,
    by the pores counted on them), the others as relative errors.
    """
    pairs = [(m["pore_count"], t["pore_count"]) for m, t in zip(measured, truths, strict=True)]
    few = np.array([abs(m - t) for m, t in pairs if t < FEW_PORES])
    empty = np.array([m for m, t in pairs if t == 0])
    many = np.array([abs(m - t) / t for m, t in pairs if t >= FEW_PORES])
    result: dict[str, Any] = {"few_pores_below": FEW_PORES, "frames_with_few": len(few),
                              "frames_without_pores": len(empty),
                              "frames_with_many": len(many)}
    if len(few):
        result["few_median_abs_error_pores"] = float(np.median(few))
        result["few_p90_abs_error_pores"] = round(float(np.percentile(few, 90)), 2)
    if len(empty):
        result["median_pores_counted_where_none"] = float(np.median(empty))
    if len(many):
        result["many_median_abs_rel_error"] = round(float(np.median(many)), 4)
        result["many_p90_abs_rel_error"] = round(float(np.percentile(many, 90)), 4)
    return result


def where_validated(measured: list[dict[str, float]], truths: list[dict[str, float]],
                               validated: list[bool], key: str = "pore_count") -> dict[str, Any]:
    """The error of ``key`` (the pore count, or the mean pore diameter) on the frames where it is
    validated (the result does not name it in ``not_validated``; docs/measurement.md "Validated
    range"), and the share of frames where it is not: what the kiosk shows as a number, and how
    often it says "not measured" instead. Frames without a true pore are left out of the errors,
    as in ``error_summary``."""
    result: dict[str, Any] = {"frames_not_validated": validated.count(False),
                              "share_not_validated": round(validated.count(False)
                                                           / max(len(validated), 1), 4)}
    kept = [(m, t) for m, t, ok in zip(measured, truths, validated, strict=True) if ok]
    signed = np.array([(m[key] - t[key]) / t[key] for m, t in kept if t[key] > 0])
    result["frames_validated"] = len(kept)
    if len(signed):
        result["median_abs_rel_error"] = round(float(np.median(np.abs(signed))), 4)
        result["p90_abs_rel_error"] = round(float(np.percentile(np.abs(signed), 90)), 4)
        result["median_signed_rel_error"] = round(float(np.median(signed)), 4)
    return result


def _report(analyses: list[SkinAnalysis], truths: list[dict[str, float]]) -> dict[str, Any]:
    measured = [_readings(analysis) for analysis in analyses]
    validated_figures = {
        f"{key}_where_validated": where_validated(
            measured, truths, [key not in analysis.validity.not_validated
                               for analysis in analyses], key)
        for key in PORE_KEYS}
    return {**_verdict(len(measured), error_summary(measured, truths)),
            "pore_count_by_truth": pore_count_by_truth(measured, truths), **validated_figures}


def accuracy(images: list[Path]) -> dict[str, Any]:
    """Errors of every target feature over the frames, each at its own calibrated scale."""
    analyses = [analyze(load_frame(path), um_per_px_of(path)) for path in images]
    return _report(analyses, [truth_of(path) for path in images])


def second_renderer(count: int, seed: int) -> dict[str, Any]:
    """Errors on frames of the evaluation-only renderer (never used to set the method)."""
    frames = [voronoi_frame(seed, index) for index in range(count)]
    analyses = [analyze(frame.image_rgb, frame.um_per_px) for frame in frames]
    return _report(analyses, [frame.truth for frame in frames])


def texture_steps(readings: list[dict[str, float]], ums: tuple[float, ...]) -> dict[str, float]:
    """Per texture feature, its scaling divided out: the largest relative change between
    neighbouring calibrations."""
    steps = {}
    for key, power in TEXTURE_SCALE_POWER.items():
        values = np.array([r[key] * um**power for r, um in zip(readings, ums, strict=True)])
        steps[key] = float(np.max(np.abs(np.diff(values)) / np.maximum(values[:-1], 1e-12)))
    return steps


def sweep_grids(offsets: int) -> list[tuple[float, ...]]:
    """``offsets`` grids of calibrations 5 % apart over 7-13 µm/px, each started 5 % /
    ``offsets`` above the one before (1: ``SWEEP_UM_PER_PX`` alone; 5: every 1 %)."""
    return [tuple(um * 1.05 ** (k / offsets) for um in SWEEP_UM_PER_PX
                  if um * 1.05 ** (k / offsets) <= SWEEP_UM_PER_PX[-1] * 1.0001)
            for k in range(offsets)]


def around(grid: tuple[float, ...], own_um_per_px: float) -> tuple[float, ...]:
    """``grid`` moved to a frame drawn at ``own_um_per_px``: the same miscalibrations (ratios
    to its own scale) that ``grid`` makes of a mixed frame, drawn at ``MIXED_UM_PER_PX``."""
    return tuple(um * own_um_per_px / MIXED_UM_PER_PX for um in grid)


def count_steps(counts: list[float]) -> tuple[list[float], list[float]]:
    """The pore-count steps between neighbouring calibrations: relative to the smaller count
    where both are at least ``FEW_PORES``, and in pores where one is under it."""
    values = np.asarray(counts, dtype=np.float64)
    smaller = np.minimum(values[:-1], values[1:])
    change = np.abs(np.diff(values))
    relative = (change / np.maximum(smaller, 1.0))[smaller >= FEW_PORES]
    return relative.tolist(), change[smaller < FEW_PORES].tolist()


def calibration_sweep(images: list[Path], offsets: int = 1,
                      around_own: bool = False) -> dict[str, Any]:
    """Largest pore-count and texture steps between calibrations 5 % apart, same frames (on
    ``offsets`` interleaved grids: ``sweep_grids``). A pore-count step is relative (to the
    smaller count) where both counts are at least ``FEW_PORES``, and in pores where one is
    under it (one pore more of 3 is 33 %: ``pore_count_by_truth``). ``around_own``: each
    frame's grid is scaled by its own scale over ``MIXED_UM_PER_PX``, so every frame is
    measured from 0.70 to 1.26 times its own scale, as the mixed frames (drawn at 10 µm/px)
    are on the plain grid."""
    steps: list[float] = []  # per frame, its largest relative step
    few_steps: list[float] = []  # per frame with few pores somewhere, its largest step in pores
    all_steps: list[float] = []
    texture: dict[str, list[float]] = {key: [] for key in TEXTURE_SCALE_POWER}
    grids = sweep_grids(offsets)
    for path in images:
        rgb = load_frame(path)
        relative: list[float] = []  # steps between counts of at least FEW_PORES
        in_pores: list[float] = []  # steps where the smaller count is under FEW_PORES
        for plain in grids:
            grid = around(plain, um_per_px_of(path)) if around_own else plain
            readings = [_features(rgb, um) for um in grid]
            grid_relative, grid_in_pores = count_steps([r["pore_count"] for r in readings])
            relative += grid_relative
            in_pores += grid_in_pores
            for key, step in texture_steps(readings, grid).items():
                texture[key].append(step)
        all_steps += relative
        if relative:
            steps.append(max(relative))
        if in_pores:
            few_steps.append(max(in_pores))
    result: dict[str, Any] = {
        "frames": len(images), "offsets": offsets,
        "um_per_px": "0.700-1.257 x each frame's own scale" if around_own
        else [[round(um, 3) for um in grid] for grid in grids]
        if offsets > 1 else [round(um, 3) for um in SWEEP_UM_PER_PX],
        "frames_with_many": len(steps), "few_pores_below": FEW_PORES}
    if steps:
        result.update({
            "largest_pore_count_step": round(max(steps), 4),
            "median_of_largest_steps": round(float(np.median(steps)), 4),
            "frames_over_target": sum(step > 0.15 for step in steps),
            "steps_over_target_share": round(float(np.mean(np.array(all_steps) > 0.15)), 4),
            "target_met": max(steps) <= 0.15})
    if few_steps:
        result["few_pores_largest_step_pores"] = float(max(few_steps))
    return {**result,
            "texture_largest_step": {k: round(max(v), 4) for k, v in texture.items()},
            "texture_median_of_largest_steps": {k: round(float(np.median(v)), 4)
                                                for k, v in texture.items()}}


def _variant(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same skin moved, turned, lit differently and with fresh noise; central crop.

    Also returns the affine map from crop pixels back to the original frame's pixels.
    """
    height, width = rgb.shape[:2]
    angle = rng.uniform(-10.0, 10.0)
    shift = rng.uniform(-40.0, 40.0, size=2)
    matrix = np.asarray(cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0),
                        dtype=np.float64)  # float64 already; OpenCV's stubs do not say so
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


def _in_skin_window(analysis: SkinAnalysis, back: np.ndarray) -> np.ndarray:
    """Which counted pores have their centre, mapped back to the original frame, in a fixed skin
    window.

    Moving the camera changes which pores the frame holds; this selection follows the same skin.
    """
    centres = analysis.pore_centres_frame_px()
    original = centres @ back[:, :2].T + back[:, 2]
    inside: np.ndarray = (np.abs(original[:, 0] - 640.0) < WINDOW_W / 2) & (
        np.abs(original[:, 1] - 480.0) < WINDOW_H / 2
    )
    return inside


def _true_pores_in_crop(path: Path, back: np.ndarray) -> tuple[float, float]:
    """Number and mean diameter (px of the original frame) of the true pores of the frame's
    synthetic geometry whose centre lies in the moved crop."""
    sidecar: dict[str, Any] = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    _, geometry = synthetic_geometry(sidecar["seed"], sidecar["index"], sidecar["preset"])
    forward = cv2.invertAffineTransform(back)
    centres = geometry.pore_centres_px @ forward[:, :2].T + forward[:, 2]
    inside = (centres[:, 0] >= 0) & (centres[:, 0] < CROP_W) & (centres[:, 1] >= 0) & (
        centres[:, 1] < CROP_H
    )
    diameters = 2.0 * geometry.pore_radii_px[inside]
    return float(np.count_nonzero(inside)), float(diameters.mean()) if len(diameters) else 0.0


def repeatability(images: list[Path], variants: int) -> dict[str, Any]:
    """Coefficient of variation of each target feature across moved copies of the same skin."""
    rng = np.random.default_rng(2026)
    keys = (*TARGET_KEYS, "pore_count_same_skin_window", "pore_count_truth_in_crop",
            "pore_count_over_truth", "pore_mean_diameter_same_skin_window",
            "pore_mean_diameter_truth_in_crop", "pore_mean_diameter_over_truth")
    cvs: dict[str, list[float]] = {key: [] for key in keys}
    for path in images:
        rgb = load_frame(path)
        rows = []
        for _ in range(variants):
            moved, back = _variant(rgb, rng)
            analysis = analyze(moved, 10.0)
            row = _readings(analysis)
            window = _in_skin_window(analysis, back)
            row["pore_count_same_skin_window"] = float(np.count_nonzero(window))
            row["pore_mean_diameter_same_skin_window"] = (
                float(analysis.pores.diameters_um[window].mean()) if window.any() else 0.0)
            truth_count, truth_diameter = _true_pores_in_crop(path, back)
            row["pore_count_truth_in_crop"] = truth_count
            row["pore_mean_diameter_truth_in_crop"] = truth_diameter
            row["pore_count_over_truth"] = row["pore_count"] / max(truth_count, 1.0)
            row["pore_mean_diameter_over_truth"] = (
                row["pore_mean_diameter_um"] / truth_diameter if truth_diameter else 0.0)
            rows.append(row)
        for key in keys:
            values = np.array([row[key] for row in rows])
            cvs[key].append(float(values.std(ddof=1) / values.mean()) if values.mean() else 0.0)
    per_feature = {key: {"median_cv": round(float(np.median(v)), 4), "max_cv": round(max(v), 4)}
                   for key, v in cvs.items()}
    # the target (issue 11): CV <= 2 % for the texture features and the pore diameter; the
    # pore counts and the diameter's context readings are reported beside it
    context = ("pore_count", "pore_count_same_skin_window", "pore_count_truth_in_crop",
              "pore_count_over_truth", "pore_mean_diameter_same_skin_window",
              "pore_mean_diameter_truth_in_crop", "pore_mean_diameter_over_truth")
    met = all(v["median_cv"] <= 0.02 for k, v in per_feature.items() if k not in context)
    return {"frames": len(images), "variants": variants, "per_feature": per_feature,
            "targets_met": met}


def main() -> None:
    """Run both checks and print one JSON object."""
    args = _parser().parse_args()
    cv2.setNumThreads(1)
    keep_frame_buffers()
    images = ensure_frames(args.frames, args.count, args.seed)
    wide = ensure_frames(args.frames, args.wide_count, args.seed, preset="wide")
    sets = {"generator_mixed": accuracy(images), "generator_wide": accuracy(wide)}
    if args.second_count > 0:  # --second-count 0: the fit seeds, without the second renderer
        sets["second_renderer"] = second_renderer(args.second_count, args.seed)
    result = {
        "benchmark": "skin_accuracy",
        "seed": args.seed,
        "accuracy": sets,
        "calibration_sweep": calibration_sweep(images[: args.sweep_frames], args.sweep_offsets),
        "calibration_sweep_wide": calibration_sweep(wide[: args.sweep_frames],
                                                    args.sweep_offsets),
        "calibration_sweep_wide_around_own_scale": calibration_sweep(
            wide[: args.sweep_frames], args.sweep_offsets, around_own=True),
        "repeatability": repeatability(images[: args.repeat_frames], args.variants),
        "load_average": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
