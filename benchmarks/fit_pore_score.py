"""Fit the pore score's coefficients on the project's own generator; prints one JSON object.

The coefficients are those of appliance/skin/pores.py PoreModel.

Every pit of frames of ``appliance.synthetic.skin`` that ``measure_candidates`` profiles (as
``analyze`` does; by default seed 11, wide 0-129 and mixed 0-59) is labelled against the
frame's truth: the nearest profiled pit to each true pore, within the pore's radius or 40 µm
of its centre, is a pore; the other pits within that reach of a true pore are left out;
every other pit is not a pore. Of those, the pits that pass ``pore_verdict``'s fixed tests
(grey, pore-sized, ``depth_over_furrow`` deep, not a dash, and with 3 or more arms closed
and deeper than the strand) are kept. Their readings are ``pores.pore_readings`` (the very
columns ``reading_score`` weighs) and ``pores.failed_tests``. An L2 logistic regression
(lambda ``LAMBDA`` on the standardised readings, the intercept not penalised) is fitted by
Newton steps and turned back into a coefficient per unit of each reading and an intercept,
printed beside the shipped ``MODEL``'s.

The fit sees no frame's prior shift (``pores.prior_shift``): it fits the posterior pooled over
its frames, which the shift corrects per frame. It prints that pooled share as the shift reads
it (``prior_fit_share``: the mean posterior, by the shipped ``MODEL``, of every pit that passes
the fixed tests and scores at least ``PRIOR_SCORE_FLOOR``, left-out pits included, as
``measure_pores`` sees them) beside the shipped ``PRIOR_FIT_SHARE``.

The second renderer (``synthetic.skin_voronoi``) and the benchmark's seed 1 are never used
here: benchmarks/skin_accuracy.py evaluates on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from multiprocessing import Pool

from skin_common import int_at_least, load_average


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int_at_least(0), default=11,
                        help="generator series to fit on")
    parser.add_argument("--wide", type=int_at_least(0), nargs=2, default=[0, 129],
                        metavar=("FIRST", "LAST"), help="wide frames to fit on (both ends in)")
    parser.add_argument("--mixed", type=int_at_least(0), nargs=2, default=[0, 59],
                        metavar=("FIRST", "LAST"), help="mixed frames to fit on (both ends in)")
    parser.add_argument("--workers", type=int_at_least(1), default=2,
                        help="processes profiling the frames")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np

from appliance.skin.pores import (
    MODEL,
    PRIOR_FIT_SHARE,
    PRIOR_SCORE_FLOOR,
    PoreModel,
    failed_tests,
    fixed_tests,
    measure_candidates,
    pore_readings,
    pore_score,
    pore_tests,
)
from appliance.skin.preprocess import on_grid, prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin import synthetic_frame

LAMBDA = 1.0  # L2 penalty on the standardised coefficients
NEWTON_STEPS = 30
LABEL_REACH_UM = 40.0  # a true pore's reach: its radius, or this, whichever is larger
NAMES = tuple(field.name for field in dataclasses.fields(PoreModel) if field.name != "intercept")

PORE, NOT_A_PORE, LEFT_OUT = 1, 0, 2


def labels(true_centres_px: np.ndarray, reach_px: np.ndarray, pits_px: np.ndarray) -> np.ndarray:
    """Each pit's label (frame pixels): ``PORE`` for the nearest pit to each true pore within
    its reach, ``LEFT_OUT`` for the other pits within a true pore's reach, else
    ``NOT_A_PORE``."""
    label = np.full(len(pits_px), NOT_A_PORE)
    if not len(pits_px) or not len(true_centres_px):
        return label
    gaps = np.hypot(*(true_centres_px[:, None, :] - pits_px[None]).transpose(2, 0, 1))
    within = gaps < reach_px[:, None]
    label[within.any(0)] = LEFT_OUT
    for pore in np.flatnonzero(within.any(1)):
        label[gaps[pore].argmin()] = PORE
    return label


def _frame_pits(job: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """One frame's kept pits: readings (pits x ``NAMES``), labels, all profiled pits, and the
    shipped scores of the pits that pass the fixed tests (left-out ones too)."""
    preset, seed, index = job
    cv2.setNumThreads(1)
    frame = synthetic_frame(seed, index, preset)
    prepared = prepare(frame.image_rgb, frame.um_per_px)
    found = measure_candidates(prepared, measure_texture(prepared).furrow_sample)
    count = len(found.shape.floor)
    tests = pore_tests(found)
    readings = pore_readings(found)
    readings["failed_tests"] = failed_tests(tests, count)
    columns = np.stack([readings[name] for name in NAMES], 1) if count else np.zeros(
        (0, len(NAMES)))
    geometry = frame.geometry
    reach = np.maximum(geometry.pore_radii_px, LABEL_REACH_UM / frame.um_per_px)
    label = labels(geometry.pore_centres_px, reach,
                   on_grid(found.centres_work_px, prepared.frame_px_per_work_px))
    fixed = fixed_tests(found, tests)
    kept = fixed & (label != LEFT_OUT)
    return columns[kept], label[kept] == PORE, count, pore_score(found, tests)[fixed]


def fit_logistic(readings: np.ndarray, is_pore: np.ndarray, penalty: float = LAMBDA,
                 steps: int = NEWTON_STEPS,
                 sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(intercept, coefficient per unit of each column) of an L2 logistic regression fitted
    by Newton steps on the standardised columns (the intercept not penalised); each row
    weighs ``sample_weight`` (1 each when not given)."""
    mean, spread = readings.mean(0), readings.std(0) + 1e-9
    design = np.c_[np.ones(len(readings)), (readings - mean) / spread]
    weights = np.zeros(design.shape[1])
    ridge = penalty * np.r_[0.0, np.ones(design.shape[1] - 1)]
    target = is_pore.astype(np.float64)
    rows = np.ones(len(readings)) if sample_weight is None else sample_weight
    for _ in range(steps):
        chance = 1.0 / (1.0 + np.exp(-design @ weights))
        gradient = design.T @ (rows * (chance - target)) + ridge * weights
        hessian = (design * (rows * chance * (1.0 - chance))[:, None]).T @ design + np.diag(
            ridge)
        weights -= np.linalg.solve(hessian, gradient)
    coefficients = weights[1:] / spread
    return float(weights[0] - mean @ coefficients), coefficients


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    jobs = [(preset, args.seed, index) for preset, (first, last) in
            (("wide", args.wide), ("mixed", args.mixed)) for index in range(first, last + 1)]
    if not jobs:
        parser.error("--wide and --mixed are both empty (FIRST > LAST): no frames to fit on")
    start = time.monotonic()
    with Pool(args.workers) as pool:
        frames = pool.map(_frame_pits, jobs, chunksize=2)
    readings = np.concatenate([frame[0] for frame in frames])
    is_pore = np.concatenate([frame[1] for frame in frames])
    if is_pore.all() or not is_pore.any():
        parser.error(f"the {len(jobs)} frames give {len(is_pore)} pits of one label only: "
                     "no score can be fitted")
    intercept, coefficients = fit_logistic(readings, is_pore)
    scores = np.concatenate([frame[3] for frame in frames])
    plausible = scores[scores >= PRIOR_SCORE_FLOOR]
    fitted = {"intercept": round(intercept, 4),
              **{name: round(float(value), 4)
                 for name, value in zip(NAMES, coefficients, strict=True)}}
    result = {
        "benchmark": "fit_pore_score",
        "seed": args.seed,
        "wide": args.wide,
        "mixed": args.mixed,
        "frames": len(jobs),
        "profiled_pits": sum(frame[2] for frame in frames),
        "pits": len(is_pore),
        "pores": int(is_pore.sum()),
        "penalty": LAMBDA,
        "fitted_model": fitted,
        "shipped_model": dataclasses.asdict(MODEL),
        "prior_fit_share": round(float(np.mean(1.0 / (1.0 + np.exp(-plausible)))), 4)
        if len(plausible) else None,
        "shipped_prior_fit_share": PRIOR_FIT_SHARE,
        "wall_s": round(time.monotonic() - start, 1),
        "load_average": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
