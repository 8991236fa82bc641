"""Fit the pore tests' thresholds on the project's own generator; prints one JSON object.

The thresholds are those of appliance/skin/pores.py PoreRule.

Every pit of frames of ``appliance.synthetic.skin`` (presets mixed and wide, seeds 11 and 12 by
default) is profiled once. A coordinate search then moves one threshold at a time over a grid,
keeping a move when it lowers the objective: for each preset, the median plus half the 90th
percentile of the relative pore-count error per frame, plus half the median relative error of
the mean pore diameter; plus, for the hand-set scenes of ``synthetic.skin_scenes`` (junctions,
pigment, hairs, dust, dark junctions and dashes without pores; pores of 80-320 µm on
junctions; seeds 100 and up, the tests use 0-2), ``SCENE_WEIGHT`` times the mean number of
pores miscounted per scene. The result is what ``PoreRule``'s defaults should be. A rule's
pores are counted and sized as ``pores.measure_pores`` does (``counted``: the score shifted
by the frame's share of pores, ``pores.frame_shift``; the diameters
``pores.pore_diameters_um``, own edge included), so a fit sees what the kiosk reports.

The second renderer (``synthetic.skin_voronoi``) and the benchmark's seed 1 are never used
here: benchmarks/skin_accuracy.py evaluates on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from multiprocessing import Pool
from typing import Any

import cv2
import numpy as np
from skin_common import int_at_least, load_average

from appliance.skin.pores import (
    RULE,
    Candidates,
    PoreRule,
    choose_pores,
    frame_shift,
    measure_candidates,
    only_pits,
    pore_diameters_um,
    pore_tests,
    profiled_pits,
    reading_score,
)
from appliance.skin.preprocess import prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin import synthetic_frame
from appliance.synthetic.skin_scenes import dash_scene, junction_scene

GRID: dict[str, tuple[float, ...]] = {
    "depth_over_furrow": (1.2, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0),
    "depth_over_junction": (1.0, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5),
    "gap_over_junction": (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4),
    "shallow_over_junction": (0.9, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3),
    "shallow_min_spread": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "shallow_min_gap": (1.0, 1.2, 1.5, 1.8, 2.2),
    "deep_over_junction": (1.3, 1.4, 1.5, 1.6, 1.7, 1.8),
    "deep_over_arms": (1.3, 1.4, 1.5, 1.6, 1.8, 2.0),
    "depth_over_arms": (1.0, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4),
    "depth_over_strand": (0.9, 1.0, 1.05, 1.1, 1.15, 1.2),
    "max_blue_excess": (0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7),
    "min_roundness": (0.2, 0.3, 0.35, 0.4, 0.45, 0.5),
    "max_elongation": (1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 3.0),
    "min_diameter_um": (30.0, 35.0, 40.0, 45.0, 50.0),
    "pit_min_contrast": (1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0),
    "pit_over_arms": (1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8),
    "pit_min_roundness": (0.45, 0.5, 0.55, 0.6, 0.65, 0.7),
    "pit_max_elongation": (1.6, 1.8, 2.0, 2.2, 2.4),
    "oval_min_gap": (1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 99.0),  # 99: no oval pores
    "oval_max_elongation": (2.4, 2.8, 3.2, 3.5, 4.0, 5.0),
    "oval_over_ends": (1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 99.0),  # 99: no closed-rim ovals
    "oval_end_max_elongation": (2.4, 2.6, 2.8, 3.0, 3.2, 3.5),
    "junction_over_strand": (0.9, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3),
    "junction_over_arm_floor": (0.0, 1.1, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5),  # 0: not tested
    "pit_over_arm_floor": (0.0, 1.1, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5),
    "hill_max_arms": (0.0, 0.5, 0.75, 1.0, 1.2, 1.7, 99.0),  # 0: no pit is in a hill
}


SCENE_WEIGHT = 1.0  # objective per pore miscounted per scene, on average
SCENE_SIZES_UM = (80.0, 120.0, 180.0, 250.0, 320.0)


@dataclasses.dataclass(frozen=True)
class _Frame:
    preset: str
    found: Candidates
    true_count: int
    true_mean_diameter_um: float


def _scene(job: tuple[str, int, int]) -> _Frame:
    """One hand-set scene's pits, every one profiled, and its truth."""
    kind, seed, index = job
    extras: dict[str, dict[str, float]] = {
        "junctions": {}, "pigment": {"pigment_spots": 4, "freckles": 3},
        "hairs": {"hairs": 2, "dust_specks": 6, "junction_darkness": 0.2, "junction_size": 0.6}}
    if kind == "dashes":
        scene = dash_scene(seed)
    elif kind == "sizes":
        scene = junction_scene(seed, (SCENE_SIZES_UM[index],) * 4)
    else:
        scene = junction_scene(seed, **extras[kind])
    prepared = prepare(scene.rgb, scene.um_per_px)
    found = measure_candidates(prepared, measure_texture(prepared).furrow_sample,
                               profile_all=True)
    radii = scene.geometry.pore_radii_px
    mean = float(2.0 * radii.mean() * scene.um_per_px) if len(radii) else 0.0
    return _Frame("scene", found, len(radii), mean)


def _profiled(job: tuple[str, int, int]) -> _Frame:
    """One frame's pits, every one profiled, and its truth."""
    preset, seed, index = job
    cv2.setNumThreads(1)
    if preset not in ("mixed", "wide"):
        return _scene(job)
    frame = synthetic_frame(seed, index, preset)
    prepared = prepare(frame.image_rgb, frame.um_per_px)
    found = measure_candidates(prepared, measure_texture(prepared).furrow_sample,
                               profile_all=True)
    radii = frame.geometry.pore_radii_px
    mean = float(2.0 * radii.mean() * frame.um_per_px) if len(radii) else 0.0
    return _Frame(preset, found, len(radii), mean)


def counted(found: Candidates, rule: PoreRule) -> np.ndarray:
    """Indices of the pits counted as pores with ``rule``, as ``pores.measure_pores`` counts
    them: of the pits it profiles (``pores.profiled_pits``: the others are not there for it,
    neither to count nor to shift the score), the score shifted by the frame's share of pores
    (``pores.frame_shift``)."""
    keep = profiled_pits(found, rule)
    found = only_pits(found, keep)
    tests = pore_tests(found, rule)
    readings = reading_score(found)
    chosen = choose_pores(found, rule, tests, readings,
                          shift=frame_shift(found, tests, readings, rule))
    result: np.ndarray = np.flatnonzero(keep)[chosen]
    return result


def errors(frames: list[_Frame], rule: PoreRule) -> dict[str, np.ndarray]:
    """Per preset, (count error, diameter error) of every frame that has pores."""
    out: dict[str, list[tuple[float, float]]] = {}
    for frame in frames:
        if frame.true_count == 0 or frame.preset == "scene":
            continue
        chosen = counted(frame.found, rule)
        count_error = abs(len(chosen) - frame.true_count) / frame.true_count
        measured = pore_diameters_um(frame.found, chosen)
        diameter_error = (abs(float(measured.mean()) - frame.true_mean_diameter_um)
                          / frame.true_mean_diameter_um) if len(chosen) else 1.0
        out.setdefault(frame.preset, []).append((count_error, diameter_error))
    return {preset: np.asarray(rows) for preset, rows in out.items()}


def scene_miscount(frames: list[_Frame], rule: PoreRule) -> float:
    """Mean number of pores miscounted per hand-set scene."""
    misses = [abs(len(counted(f.found, rule)) - f.true_count) for f in frames
              if f.preset == "scene"]
    return float(np.mean(misses)) if misses else 0.0


def objective(frames: list[_Frame], rule: PoreRule) -> float:
    """Sum over presets: median + p90 / 2 of the count error, + median diameter error / 2;
    plus ``SCENE_WEIGHT`` times the scenes' mean miscount."""
    return float(sum(np.median(e[:, 0]) + np.percentile(e[:, 0], 90) / 2.0
                     + np.median(e[:, 1]) / 2.0 for e in errors(frames, rule).values())
                 + SCENE_WEIGHT * scene_miscount(frames, rule))


def summary(frames: list[_Frame], rule: PoreRule) -> dict[str, Any]:
    return {preset: {"pore_count": {"median": round(float(np.median(e[:, 0])), 4),
                                    "p90": round(float(np.percentile(e[:, 0], 90)), 4)},
                     "pore_mean_diameter_um": {"median": round(float(np.median(e[:, 1])), 4),
                                               "p90": round(float(np.percentile(e[:, 1], 90)), 4)}}
            for preset, e in errors(frames, rule).items()}


def search(frames: list[_Frame], start: PoreRule, sweeps: int,
           only: tuple[str, ...] = ()) -> PoreRule:
    """Coordinate search over ``GRID`` (the thresholds named in ``only``, if any) from
    ``start``."""
    rule, best = start, objective(frames, start)
    grid = {name: values for name, values in GRID.items() if not only or name in only}
    for _ in range(sweeps):
        moved = False
        for name, values in grid.items():
            for value in values:
                candidate = dataclasses.replace(rule, **{name: value})
                score = objective(frames, candidate)
                if score < best - 1e-9:
                    rule, best, moved = candidate, score, True
        if not moved:
            break
    return rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[11, 12],
                        help="generator series to fit on")
    parser.add_argument("--mixed", type=int_at_least(0), default=30, help="mixed frames per seed")
    parser.add_argument("--wide", type=int_at_least(0), default=130, help="wide frames per seed")
    parser.add_argument("--scenes", type=int_at_least(0), default=6,
                        help="seeds of each hand-set scene")
    parser.add_argument("--sweeps", type=int_at_least(0), default=3,
                        help="most passes of the coordinate search over every threshold "
                        "(0: only score the shipped rule)")
    parser.add_argument("--workers", type=int_at_least(1), default=2,
                        help="processes profiling the frames")
    parser.add_argument("--only", choices=sorted(GRID), nargs="+", default=[],
                        help="fit only these thresholds (the others keep their shipped values)")
    args = parser.parse_args()
    if args.mixed + args.wide + args.scenes == 0:
        parser.error("--mixed, --wide and --scenes are all 0: no frames to fit on")
    jobs = [(preset, seed, index) for seed in args.seeds
            for preset, count in (("mixed", args.mixed), ("wide", args.wide))
            for index in range(count)]
    jobs += [(kind, seed, 0) for kind in ("junctions", "pigment", "hairs", "dashes")
             for seed in range(100, 100 + args.scenes)]
    jobs += [("sizes", seed, index) for index in range(len(SCENE_SIZES_UM))
             for seed in range(100, 100 + args.scenes)]
    with Pool(args.workers) as pool:
        frames = pool.map(_profiled, jobs, chunksize=4)
    fitted = search(frames, RULE, args.sweeps, tuple(args.only))
    result = {
        "benchmark": "fit_pore_rule",
        "seeds": args.seeds,
        "only": args.only,
        "frames": len(frames),
        "shipped_rule": dataclasses.asdict(RULE),
        "shipped_objective": round(objective(frames, RULE), 4),
        "fitted_rule": dataclasses.asdict(fitted),
        "fitted_objective": round(objective(frames, fitted), 4),
        "fitted_errors": summary(frames, fitted),
        "fitted_scene_miscount": round(scene_miscount(frames, fitted), 4),
        "shipped_scene_miscount": round(scene_miscount(frames, RULE), 4),
        "load_average": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
