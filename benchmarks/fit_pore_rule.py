"""Fit the pore tests' thresholds on the project's own generator; prints one JSON object.

The thresholds are those of appliance/skin/pores.py PoreRule.

Every pit of frames of ``appliance.synthetic.skin`` (presets mixed and wide, seeds 11 and 12 by
default) is profiled once. A coordinate search then moves one threshold at a time over a grid,
keeping a move when it lowers the objective: for each preset, the median plus half the 90th
percentile of the relative pore-count error per frame, plus half the median relative error of
the mean pore diameter; plus, for the hand-set scenes of ``synthetic.skin_scenes`` (junctions,
pigment, hairs, dust, dark junctions and dashes without pores; pores of 80-320 µm on
junctions; junction pits as dark as pores (``HARD_SCENES``), with and without a pore on one;
seeds 100 and up, the tests use 0-2), ``SCENE_WEIGHT`` times the mean number of pores
miscounted per scene. The result is what ``PoreRule``'s defaults should be.

With ``--joint ROUNDS`` the score (``PoreModel``) is fitted with the rule: each round refits it
for the rule as benchmarks/fit_pore_score.py does (``fit_score``; the pits within a furrow width
of a drawn junction, the hard negatives, weigh ``--junction-weight``; ``--scene-pits`` adds
the scenes' pits), then searches the rule counting with it; the score is refitted last for the
rule found and printed with its pooled share (``PRIOR_FIT_SHARE``). ``--check-seeds`` measures
the shipped and the fitted pair on held-out series. ``--matched`` takes as each frame's count
error the pores missed plus the pits invented over the pores drawn (``matched_error``), so a
fit cannot make up for pores missed with pits invented. docs/experiments/README.md "porefit"
(2026-12-06) says what it found (no joint fit has been shipped). A rule's
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

from skin_common import int_at_least, load_average

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
    "model_keep": (-4.0, -3.0, -2.5, -2.0, -1.5, -1.0, 0.0),
    "model_admit": (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5),
    "admit_min_line_rest": (0.0, 0.1, 0.15, 0.2, 0.25, 0.3),
    "missed_arms_keep": (-6.0, -5.0, -4.0, -3.0, -2.0, 0.0),
}


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
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
    parser.add_argument("--joint", type=int_at_least(0), default=0,
                        help="rounds of the joint fit: the score refitted for the rule, then "
                        "the rule searched with it (0: the rule alone, with the shipped score)")
    parser.add_argument("--junction-weight", type=float, default=1.0,
                        help="joint fit: weight of each pit within a furrow width of a drawn "
                        "junction in the score's fit (the hard negatives)")
    parser.add_argument("--scene-pits", action="store_true",
                        help="joint fit: the hand-set scenes' pits enter the score's fit too")
    parser.add_argument("--matched", action="store_true",
                        help="the objective counts every pore missed and every pit invented "
                        "(matched_error) instead of the count's error")
    parser.add_argument("--check-seeds", type=int_at_least(0), nargs="*", default=[],
                        help="generator series held out: the shipped and the fitted rule and "
                        "score are only measured on them (as many frames as --mixed, --wide)")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np
from fit_pore_score import LABEL_REACH_UM, LEFT_OUT, NAMES, PORE, fit_logistic, labels

from appliance.skin.pores import (
    MODEL,
    PRIOR_FIT_SHARE,
    PRIOR_SCORE_FLOOR,
    RULE,
    Candidates,
    PoreModel,
    PoreRule,
    choose_pores,
    failed_tests,
    fixed_tests,
    frame_shift,
    measure_candidates,
    only_pits,
    pore_diameters_um,
    pore_readings,
    pore_score,
    pore_tests,
    profiled_pits,
    reading_score,
)
from appliance.skin.preprocess import on_grid, prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin import SyntheticSkin, synthetic_frame
from appliance.synthetic.skin_params import DEFAULT_FURROW_DARKNESS
from appliance.synthetic.skin_scenes import dash_scene, junction_scene

SCENE_WEIGHT = 1.0  # objective per pore miscounted per scene, on average
SCENE_SIZES_UM = (80.0, 120.0, 180.0, 250.0, 320.0)
# Junction pits as dark as pores, with and without a pore on one (the hard negatives of the
# wide preset and the renderers the project did not draw; tests/skin/test_skin_pore_dark_junction
# draws the first): dark, large junction discs (seed 12 wide frame 7's skin); pores and furrows
# both 45 % dark, pit and fold max-combined, plain and with dark junction discs.
_LARGE_DARKNESS = 1.0 - (1.0 - DEFAULT_FURROW_DARKNESS) ** 0.85
_EQUAL = {"pits_max_combined": True, "pore_darkness": 0.45, "furrow_darkness": 0.45}
HARD_SCENES: dict[str, dict[str, Any]] = {
    "dark_large": {"furrow_width_um": 42.0, "lattice_cell_area_mm2": 0.05, "um_per_px": 12.7,
                   "junction_darkness": _LARGE_DARKNESS, "junction_size": 0.8,
                   "junction_relief": 0.85 * (0.35 * 42.0 / 12.7 + 1.0) / _LARGE_DARKNESS},
    "equal": _EQUAL,
    "equal_dark": {**_EQUAL, "junction_darkness": 1.0 - 0.55**0.85, "junction_size": 0.8,
                   "junction_relief": 3.0},
}
HARD_SCENE_PORES_UM = ((), (150.0,), (200.0,))


@dataclasses.dataclass(frozen=True)
class _Frame:
    preset: str
    found: Candidates
    true_count: int
    true_mean_diameter_um: float
    # each pit's label for the score (``fit_pore_score.labels``: PORE, NOT_A_PORE, LEFT_OUT)
    # and whether it lies within a furrow width of a drawn junction (a hard negative)
    label: np.ndarray | None = None
    at_junction: np.ndarray | None = None
    # each pit's nearest drawn pore within its reach (-1: none), for ``matched_error``
    pore_of: np.ndarray | None = None


def _labelled(preset: str, found: Candidates, geometry: Any, um_per_px: float,
              frame_px_per_work_px: float) -> _Frame:
    """A frame's pits with their truth: labels and the junction pits."""
    radii = geometry.pore_radii_px
    mean = float(2.0 * radii.mean() * um_per_px) if len(radii) else 0.0
    pits = on_grid(found.centres_work_px, frame_px_per_work_px)
    reach = np.maximum(radii, LABEL_REACH_UM / um_per_px)
    label = labels(geometry.pore_centres_px, reach, pits)
    pore_of = np.full(len(pits), -1)
    if len(radii) and len(pits):
        gaps = np.hypot(*(geometry.pore_centres_px[:, None, :] - pits[None]).transpose(2, 0, 1))
        within = gaps < reach[:, None]
        pore_of = np.where(within.any(0), np.where(within, gaps, np.inf).argmin(0), -1)
    degree = np.bincount(geometry.edges.ravel(), minlength=len(geometry.vertices_px))
    junctions = geometry.vertices_px[degree >= 3]
    width = float(np.median(geometry.edge_width_px)) if len(geometry.edge_width_px) else 0.0
    near = np.zeros(len(pits), dtype=bool)
    if len(junctions) and len(pits):
        gaps = np.hypot(*(junctions[:, None, :] - pits[None]).transpose(2, 0, 1)).min(0)
        near = gaps < width
    return _Frame(preset, found, len(radii), mean, label, near & (label != PORE), pore_of)


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
    elif kind in HARD_SCENES:
        scene = junction_scene(seed, HARD_SCENE_PORES_UM[index], **HARD_SCENES[kind])
    else:
        scene = junction_scene(seed, **extras[kind])
    prepared = prepare(scene.rgb, scene.um_per_px)
    found = measure_candidates(prepared, measure_texture(prepared).furrow_sample,
                               profile_all=True)
    return _labelled("scene", found, scene.geometry, scene.um_per_px,
                     prepared.frame_px_per_work_px)


def _profiled(job: tuple[str, int, int], frame: SyntheticSkin | None = None) -> _Frame:
    """One frame's pits, every one profiled, and its truth (``frame``: the job's generator
    frame where the caller has drawn it already; else it is drawn here)."""
    preset, seed, index = job
    cv2.setNumThreads(1)
    if preset not in ("mixed", "wide"):
        return _scene(job)
    if frame is None:
        frame = synthetic_frame(seed, index, preset)
    prepared = prepare(frame.image_rgb, frame.um_per_px)
    found = measure_candidates(prepared, measure_texture(prepared).furrow_sample,
                               profile_all=True)
    return _labelled(preset, found, frame.geometry, frame.um_per_px,
                     prepared.frame_px_per_work_px)


@dataclasses.dataclass(frozen=True)
class Score:
    """A pore score and the pooled share of pores it was fitted on (``pores.PRIOR_FIT_SHARE``)."""

    model: PoreModel = MODEL
    fit_share: float = PRIOR_FIT_SHARE


SHIPPED = Score()


def counted(found: Candidates, rule: PoreRule, score: Score = SHIPPED) -> np.ndarray:
    """Indices of the pits counted as pores with ``rule`` and ``score``, as
    ``pores.measure_pores`` counts them: of the pits it profiles (``pores.profiled_pits``: the
    others are not there for it, neither to count nor to shift the score), the score shifted by
    the frame's share of pores (``pores.frame_shift``)."""
    keep = profiled_pits(found, rule)
    found = only_pits(found, keep)
    tests = pore_tests(found, rule)
    readings = reading_score(found, score.model)
    shift = frame_shift(found, tests, readings, rule, model=score.model,
                        fit_share=score.fit_share)
    chosen = choose_pores(found, rule, tests, readings, shift=shift, model=score.model)
    result: np.ndarray = np.flatnonzero(keep)[chosen]
    return result


def matched_error(frame: _Frame, chosen: np.ndarray) -> float:
    """(drawn pores no counted pit lies within reach of + counted pits within reach of none)
    / drawn pores: unlike the count's error, a pit invented does not make up for a pore
    missed (a fit on the count fills an undercount with junction pits)."""
    if frame.pore_of is None:
        raise ValueError("matched_error needs a frame profiled with its truth (_labelled)")
    near = frame.pore_of[chosen]
    found = len(np.unique(near[near >= 0]))
    invented = int(np.count_nonzero(near < 0))
    return (frame.true_count - found + invented) / frame.true_count


def errors(frames: list[_Frame], rule: PoreRule, score: Score = SHIPPED, *,
           matched: bool = False) -> dict[str, np.ndarray]:
    """Per preset, (count error, diameter error) of every frame that has pores; with
    ``matched`` the count's error is ``matched_error``."""
    out: dict[str, list[tuple[float, float]]] = {}
    for frame in frames:
        if frame.true_count == 0 or frame.preset == "scene":
            continue
        chosen = counted(frame.found, rule, score)
        count_error = matched_error(frame, chosen) if matched else (
            abs(len(chosen) - frame.true_count) / frame.true_count)
        measured = pore_diameters_um(frame.found, chosen)
        diameter_error = (abs(float(measured.mean()) - frame.true_mean_diameter_um)
                          / frame.true_mean_diameter_um) if len(chosen) else 1.0
        out.setdefault(frame.preset, []).append((count_error, diameter_error))
    return {preset: np.asarray(rows) for preset, rows in out.items()}


def scene_miscount(frames: list[_Frame], rule: PoreRule, score: Score = SHIPPED) -> float:
    """Mean number of pores miscounted per hand-set scene."""
    misses = [abs(len(counted(f.found, rule, score)) - f.true_count) for f in frames
              if f.preset == "scene"]
    return float(np.mean(misses)) if misses else 0.0


def objective(frames: list[_Frame], rule: PoreRule, score: Score = SHIPPED, *,
              matched: bool = False) -> float:
    """Sum over presets: median + p90 / 2 of the count error (``matched``: of
    ``matched_error``), + median diameter error / 2; plus ``SCENE_WEIGHT`` times the scenes'
    mean miscount."""
    return float(sum(np.median(e[:, 0]) + np.percentile(e[:, 0], 90) / 2.0
                     + np.median(e[:, 1]) / 2.0
                     for e in errors(frames, rule, score, matched=matched).values())
                 + SCENE_WEIGHT * scene_miscount(frames, rule, score))


def summary(frames: list[_Frame], rule: PoreRule, score: Score = SHIPPED, *,
            matched: bool = False) -> dict[str, Any]:
    return {preset: {"pore_count": {"median": round(float(np.median(e[:, 0])), 4),
                                    "p90": round(float(np.percentile(e[:, 0], 90)), 4)},
                     "pore_mean_diameter_um": {"median": round(float(np.median(e[:, 1])), 4),
                                               "p90": round(float(np.percentile(e[:, 1], 90)), 4)}}
            for preset, e in errors(frames, rule, score, matched=matched).items()}


def search(frames: list[_Frame], start: PoreRule, sweeps: int,
           only: tuple[str, ...] = (), score: Score = SHIPPED, *,
           matched: bool = False) -> PoreRule:
    """Coordinate search over ``GRID`` (the thresholds named in ``only``, if any) from
    ``start``, counting with ``score``, on ``objective`` (``matched``: of ``matched_error``)."""
    rule, best = start, objective(frames, start, score, matched=matched)
    grid = {name: values for name, values in GRID.items() if not only or name in only}
    for _ in range(sweeps):
        moved = False
        for name, values in grid.items():
            for value in values:
                candidate = dataclasses.replace(rule, **{name: value})
                value_reached = objective(frames, candidate, score, matched=matched)
                if value_reached < best - 1e-9:
                    rule, best, moved = candidate, value_reached, True
        if not moved:
            break
    return rule


def fit_score(frames: list[_Frame], rule: PoreRule, junction_weight: float,
              scene_pits: bool = False) -> Score:
    """The score refitted for ``rule`` as benchmarks/fit_pore_score.py fits it (the pits of the
    generator's frames that ``rule`` profiles and that pass its fixed tests, the pits left out
    near a true pore dropped), each pit within a furrow width of a drawn junction weighing
    ``junction_weight``; with ``scene_pits`` the hand-set scenes' pits too (dashes, dark junction
    discs, pigment: hard negatives the frames hold few of); with the pooled share of pores it
    reads (``PRIOR_FIT_SHARE``, of the frames' pits only)."""
    columns, is_pore, weights, plausible = [], [], [], []
    for frame in frames:
        if (frame.preset == "scene" and not scene_pits) or frame.label is None or (
                frame.at_junction is None):
            continue
        keep = profiled_pits(frame.found, rule)
        found = only_pits(frame.found, keep)
        count = len(found.shape.floor)
        tests = pore_tests(found, rule)
        readings = pore_readings(found)
        readings["failed_tests"] = failed_tests(tests, count)
        fixed = fixed_tests(found, tests, rule)
        kept = fixed & (frame.label[keep] != LEFT_OUT)
        columns.append(np.stack([readings[name] for name in NAMES], 1)[kept] if count
                       else np.zeros((0, len(NAMES))))
        is_pore.append(frame.label[keep][kept] == PORE)
        weights.append(np.where(frame.at_junction[keep][kept], junction_weight, 1.0))
        if frame.preset != "scene":
            plausible.append((found, tests, fixed))
    intercept, coefficients = fit_logistic(np.concatenate(columns), np.concatenate(is_pore),
                                           sample_weight=np.concatenate(weights))
    model = PoreModel(intercept=round(intercept, 4), **{
        name: round(float(value), 4) for name, value in zip(NAMES, coefficients, strict=True)})
    scores = np.concatenate([pore_score(found, tests, model)[fixed]
                             for found, tests, fixed in plausible])
    scores = scores[scores >= PRIOR_SCORE_FLOOR]
    return Score(model, round(float(np.mean(1.0 / (1.0 + np.exp(-scores)))), 4))


def joint(frames: list[_Frame], rounds: int, sweeps: int, only: tuple[str, ...],
          junction_weight: float, *, scene_pits: bool = False,
          matched: bool = False) -> tuple[PoreRule, Score]:
    """The rule and the score fitted together: ``rounds`` times the score refitted for the rule
    (``fit_score``), then the rule searched with that score; the score refitted last for the
    rule found (what benchmarks/fit_pore_score.py reproduces on the shipped rule)."""
    rule = RULE
    for _ in range(rounds):
        rule = search(frames, rule, sweeps, only,
                      fit_score(frames, rule, junction_weight, scene_pits), matched=matched)
    return rule, fit_score(frames, rule, junction_weight, scene_pits)


def main() -> None:
    parser = _parser()
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
    jobs += [(kind, seed, index) for kind in HARD_SCENES
             for index in range(len(HARD_SCENE_PORES_UM)) for seed in range(100, 100 + args.scenes)]
    checks = [(preset, seed, index) for seed in args.check_seeds
              for preset, count in (("mixed", args.mixed), ("wide", args.wide))
              for index in range(count)]
    with Pool(args.workers) as pool:
        frames = pool.map(_profiled, jobs, chunksize=4)
        held_out = pool.map(_profiled, checks, chunksize=4)
    score = SHIPPED
    if args.joint:
        fitted, score = joint(frames, args.joint, args.sweeps, tuple(args.only),
                              args.junction_weight, scene_pits=args.scene_pits,
                              matched=args.matched)
    else:
        fitted = search(frames, RULE, args.sweeps, tuple(args.only), matched=args.matched)
    result = {
        "benchmark": "fit_pore_rule",
        "seeds": args.seeds,
        "only": args.only,
        "frames": len(frames),
        "shipped_rule": dataclasses.asdict(RULE),
        "objective_count_error": "matched" if args.matched else "count",
        "shipped_objective": round(objective(frames, RULE, matched=args.matched), 4),
        "fitted_rule": dataclasses.asdict(fitted),
        "fitted_objective": round(objective(frames, fitted, score, matched=args.matched), 4),
        "fitted_errors": summary(frames, fitted, score, matched=args.matched),
        "fitted_scene_miscount": round(scene_miscount(frames, fitted, score), 4),
        "shipped_scene_miscount": round(scene_miscount(frames, RULE), 4),
        "load_average": load_average(),
    }
    if args.joint:
        result["fitted_model"] = dataclasses.asdict(score.model)
        result["fitted_prior_fit_share"] = score.fit_share
    if held_out:
        result["held_out"] = {
            "seeds": args.check_seeds,
            "shipped_objective": round(objective(held_out, RULE, matched=args.matched), 4),
            "shipped_errors": summary(held_out, RULE, matched=args.matched),
            "fitted_objective": round(objective(held_out, fitted, score, matched=args.matched),
                                      4),
            "fitted_errors": summary(held_out, fitted, score, matched=args.matched)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
