"""How much the pore features already measured can tell, combined by a model instead of an AND
of thresholds; prints one JSON object.

Every pit of frames of ``appliance.synthetic.skin`` (presets mixed and wide, seeds 11 and 12)
and of the hand-set scenes (``synthetic.skin_scenes``) is profiled once
(``measure_candidates(..., profile_all=True)``, colour read) and cached in ``--cache``. Each
true pore is matched with the nearest profiled pit within its radius or 40 µm (as
benchmarks/skin_pore_diagnosis.py matches): that pit is a pore; the other pits within a true
pore's reach are left out of the fit (the overlap rule drops them anyway); every other pit is
not a pore. Each pit is described by dimensionless features (``FEATURES``: the product's,
``pores.pore_features``, then more the pore tests read), on the pits that pass the tests every
pore passes before the model (``gate``: ``pores.fixed_tests``; with ``--gate basic`` only
profiled, 1.2 furrow floors deep, pore-sized and grey).

Models: an L2 logistic regression on every feature and on the product's (numpy, Newton
steps; ``--select``: forward selection of features by log loss), and with ``--ceiling`` a
depth-4 decision tree and gradient-boosted trees (scikit-learn, imported only then: a
throw-away virtual environment, never the product's). Each model's score threshold is chosen
on the fit frames (mixed 0-29, wide 0-129 of each seed; scenes of seeds 100-105) by the
objective of benchmarks/fit_pore_rule.py; the product model's coefficients are printed with it
folded into the intercept (what ``pores.PoreModel`` holds). Every model, the shipped one and
``cached_rule`` (what the shipped decision chose when the cache was made: main's AND of
thresholds for docs/experiments/README.md "pore-model") are then scored as frame figures (pits
passing -> deepest of overlaps -> count and mean own diameter against the truth) on the
fit-seed frames the fit never used (mixed 30-59, wide 130-169) and on the scenes tests/skin
checks (seeds 0-2) and its calibration sweep.

Seed 1 and the second renderer are never read here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from skin_common import int_at_least, load_average

from appliance.skin.pore_profile import Junctions, Shape
from appliance.skin.pores import (
    MODEL,
    PORE_FEATURES,
    RULE,
    Candidates,
    PoreModel,
    _deepest_apart,
    choose_pores,
    fixed_tests,
    measure_candidates,
    own_diameters_um,
    pore_features,
    pore_score,
)
from appliance.skin.preprocess import prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin import synthetic_frame
from appliance.synthetic.skin_scenes import dash_scene, hill_scene, junction_scene, oval_scene

MATCH_UM = 40.0  # a small true pore is matched within this reach (else its radius)
SWEEP_UM_PER_PX = tuple(7.0 * 1.05**k for k in range(13))  # tests/skin's calibration sweep
SCENE_SIZES_UM = (50.0, 60.0, 80.0, 120.0, 180.0, 250.0, 320.0)
COARSE_DARK = {"lattice_cell_area_mm2": 0.2, "furrow_width_um": 55.0, "junction_darkness": 0.3,
               "junction_size": 0.6}
WIDE_FURROWS = {"lattice_cell_area_mm2": 0.3, "furrow_width_um": 90.0}
RAW = ("floor", "skin", "radius_px", "gap_px", "roundness", "arms", "strand", "elongation",
       "arm_count", "ends", "arm_floor")


@dataclass(frozen=True)
class Job:
    """One frame to profile: ``kind`` a preset or a scene, its seed and index."""

    kind: str
    seed: int
    index: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.seed}-{self.index}"


def _image(job: Job) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Pixels, scale, true pore centres (px) and radii (px) of one job."""
    extras: dict[str, dict[str, Any]] = {
        "junctions": {}, "pigment": {"pigment_spots": 4, "freckles": 3},
        "hairs": {"hairs": 2, "dust_specks": 6, "junction_darkness": 0.2, "junction_size": 0.6}}
    kind, seed, index = job.kind, job.seed, job.index
    if kind in ("mixed", "wide"):
        frame = synthetic_frame(seed, index, kind)
        return (frame.image_rgb, frame.um_per_px, frame.geometry.pore_centres_px,
                frame.geometry.pore_radii_px)
    if kind == "sweep":
        rgb = synthetic_frame(3, 2, "normal").image_rgb
        return rgb, SWEEP_UM_PER_PX[index], np.zeros((0, 2)), np.zeros(0)
    if kind == "dashes":
        scene = dash_scene(seed)
    elif kind == "sizes":
        scene = junction_scene(seed, (SCENE_SIZES_UM[index],) * 4)
    elif kind == "one":
        scene = junction_scene(seed, (150.0,))
    elif kind == "hill":
        scene = hill_scene(seed, ((70.0, 100.0)[index],) * 4, **COARSE_DARK)
    elif kind == "hill_wide":
        scene = hill_scene(seed, (100.0,) * 4, **WIDE_FURROWS,
                           **({} if index == 0 else {"shine": 0.5}))
    elif kind == "oval":
        scene = oval_scene(seed, ((100.0, 110.0)[index],) * 4)
    else:
        scene = junction_scene(seed, **extras[kind])
    return (scene.rgb, scene.um_per_px, scene.geometry.pore_centres_px,
            scene.geometry.pore_radii_px)


def _profile(job_and_cache: tuple[Job, Path]) -> str:
    """Profile one job's pits (cached as an .npz of raw profile values, truth and labels)."""
    job, cache = job_and_cache
    path = cache / f"{job.name}.npz"
    if path.exists():
        return str(path)
    cv2.setNumThreads(1)
    rgb, um_per_px, centres_px, radii_px = _image(job)
    prepared = prepare(rgb, um_per_px)
    found = measure_candidates(prepared, prepared_furrows(prepared), profile_all=True)
    scale = prepared.frame_px_per_work_px
    pits_px = (found.centres_work_px + 0.5) * scale - 0.5
    label, matched = _labels(pits_px, centres_px, radii_px, um_per_px)
    main_chosen = np.zeros(len(label), dtype=bool)
    main_chosen[choose_pores(found, RULE)] = True
    arrays = {name: np.asarray(getattr(found.shape, name), dtype=float) for name in RAW}
    np.savez(path, **arrays, around=found.around, spread=found.spread, nearby=found.nearby,
             blue=found.blue, centres_work=found.centres_work_px, pits_px=pits_px,
             diameter_um=own_diameters_um(found), label=label,
             matched=matched, main_chosen=main_chosen, true_centres_px=centres_px,
             true_diameters_um=2.0 * radii_px * um_per_px,
             scalars=np.array([found.furrow_floor, found.contrast, found.junction.floor,
                               found.junction.gap_px, found.um_per_fine_px,
                               found.um_per_work_px, scale]))
    return str(path)


def prepared_furrows(prepared: Any) -> np.ndarray:
    """The furrow mask the analysis hands the pore search."""
    mask: np.ndarray = measure_texture(prepared).furrow_mask
    return mask


def _labels(pits_px: np.ndarray, centres_px: np.ndarray, radii_px: np.ndarray,
            um_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pit: 1 the nearest pit to a true pore within its reach, -1 another pit within a
    true pore's reach (left out of the fit), 0 not a pore; and the index of the true pore a
    labelled pit is matched with (-1: none)."""
    label = np.zeros(len(pits_px), dtype=int)
    matched = np.full(len(pits_px), -1)
    if not len(pits_px):
        return label, matched
    for number, (centre, radius) in enumerate(zip(centres_px, radii_px, strict=True)):
        reach = max(radius, MATCH_UM / um_per_px)
        gaps = np.hypot(*(pits_px - centre).T)
        near = gaps < reach
        label[near & (label == 0)] = -1
        if near.any():
            nearest = int(np.argmin(gaps))
            label[nearest], matched[nearest] = 1, number
    return label, matched


EXTRA_FEATURES = ("floor_over_furrow", "floor_over_junction", "radius_over_junction",
                  "roundness", "floor_over_strand", "many_arms", "contrast_over_furrow",
                  "skin_over_furrow", "spread", "nearby_over_furrow", "diameter_100um")
FEATURES = PORE_FEATURES + EXTRA_FEATURES  # the product's (pores.pore_features) first


def _log_ratio(top: np.ndarray, bottom: np.ndarray | float) -> np.ndarray:
    """log(top / bottom), each at least 0.01 deep, within +-3."""
    ratio: np.ndarray = np.clip(np.log(np.maximum(top, 0.01) / np.maximum(bottom, 0.01)),
                                -3.0, 3.0)
    return ratio


def candidates_of(raw: dict[str, np.ndarray]) -> Candidates:
    """The profiled pits of one cached frame, as the pore tests see them."""
    furrow, contrast, junction_floor, junction_gap, um_fine, um_work = raw["scalars"][:6]
    shape = Shape(*(raw[name] for name in RAW))
    return Candidates(raw["centres_work"], shape, raw["around"], raw["spread"], raw["nearby"],
                      Junctions(float(junction_floor), float(junction_gap)), raw["blue"],
                      float(furrow), float(contrast), float(um_fine), float(um_work),
                      np.zeros((0, 2)))


def features(raw: dict[str, np.ndarray]) -> np.ndarray:
    """The (N, len(FEATURES)) dimensionless features of one frame's pits: the product's, and
    more the pore tests measure."""
    furrow, _, junction_floor, junction_gap = raw["scalars"][:4]
    floor = raw["floor"]
    columns = dict(pore_features(candidates_of(raw)))
    columns.update({
        "floor_over_furrow": _log_ratio(floor, furrow),
        "floor_over_junction": _log_ratio(floor, junction_floor),
        "radius_over_junction": _log_ratio(raw["radius_px"], junction_gap),
        "roundness": raw["roundness"],
        "floor_over_strand": _log_ratio(floor, raw["strand"]),
        "many_arms": (raw["arm_count"] > 2).astype(float),
        "contrast_over_furrow": np.clip((floor - raw["skin"]) / furrow, -2.0, 6.0),
        "skin_over_furrow": np.clip(raw["skin"] / furrow, -2.0, 4.0),
        "spread": np.clip(raw["spread"], -1.0, 1.5),
        "nearby_over_furrow": np.clip(np.nan_to_num(raw["nearby"] / furrow, posinf=3.0),
                                      -1.0, 3.0),
        "diameter_100um": raw["diameter_um"] / 100.0,
    })
    return np.stack([columns[name] for name in FEATURES], axis=1)


def gate(raw: dict[str, np.ndarray], basic: bool = False) -> np.ndarray:
    """The tests every pore passes before the model weighs it (``pores.fixed_tests``); with
    ``basic`` only profiled, deeper than the furrows, pore-sized and grey (for the ceiling:
    every other test's information left to the model)."""
    tests = fixed_tests(candidates_of(raw))
    names = ("deep_enough", "pore_sized", "grey") if basic else tuple(tests)
    result: np.ndarray = np.logical_and.reduce([tests[name] for name in names])
    return result


@dataclass
class Frame:
    """One profiled frame: raw values, features, gate, labels and truth."""

    job: Job
    raw: dict[str, np.ndarray]
    x: np.ndarray
    gated: np.ndarray
    label: np.ndarray

    @property
    def true_count(self) -> int:
        return len(self.raw["true_diameters_um"])

    @property
    def true_mean_um(self) -> float:
        sizes = self.raw["true_diameters_um"]
        return float(sizes.mean()) if len(sizes) else 0.0


def load(path: str, job: Job, basic: bool = False) -> Frame:
    with np.load(path) as data:
        raw = {key: data[key] for key in data.files}
    return Frame(job, raw, features(raw), gate(raw, basic), raw["label"])


def chosen_by(frame: Frame, passed: np.ndarray) -> np.ndarray:
    """Indices counted as pores when ``passed`` pits pass: deepest of overlaps."""
    index = np.flatnonzero(passed)
    radius_work_px = frame.raw["diameter_um"][index] / 2.0 / frame.raw["scalars"][5]
    kept: np.ndarray = index[_deepest_apart(frame.raw["centres_work"][index],
                                            frame.raw["floor"][index], radius_work_px)]
    return kept


# ---- models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logistic:
    """An L2 logistic regression on standardised features (``columns`` of ``FEATURES``)."""

    columns: tuple[int, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # intercept first

    def score(self, x: np.ndarray) -> np.ndarray:
        z = (x[:, self.columns] - self.mean) / self.scale
        result: np.ndarray = self.weights[0] + z @ self.weights[1:]
        return result

    def named(self) -> dict[str, float]:
        """Coefficients on the raw features (intercept as ``intercept``)."""
        raw_weights = self.weights[1:] / self.scale
        out = {"intercept": float(self.weights[0] - np.sum(raw_weights * self.mean))}
        out.update({FEATURES[c]: float(w) for c, w in zip(self.columns, raw_weights, strict=True)})
        return {key: round(value, 4) for key, value in out.items()}


def fit_logistic(x: np.ndarray, y: np.ndarray, columns: tuple[int, ...],
                 l2: float = 1.0, weight: np.ndarray | None = None) -> Logistic:
    """Newton's method on the L2-penalised (weighted) log loss (the intercept unpenalised)."""
    weight = np.ones(len(y)) if weight is None else weight
    chosen = x[:, columns]
    mean, scale = chosen.mean(axis=0), np.maximum(chosen.std(axis=0), 1e-9)
    z = np.c_[np.ones(len(chosen)), (chosen - mean) / scale]
    weights = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ weights)))
        gradient = z.T @ (weight * (p - y)) + penalty * weights
        hessian = (z * (weight * p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return Logistic(columns, mean, scale, weights)


def training_set(frames: list[Frame]) -> tuple[np.ndarray, np.ndarray]:
    """Gated, labelled pits (ambiguous ones left out) of every frame."""
    xs, ys = [], []
    for frame in frames:
        keep = frame.gated & (frame.label >= 0)
        xs.append(frame.x[keep])
        ys.append(frame.label[keep])
    return np.concatenate(xs), np.concatenate(ys).astype(float)


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positives = y > 0.5
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---- frame figures ------------------------------------------------------------------------


def frame_errors(frames: list[Frame], passed: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per preset: (count error, signed count error, diameter error) of frames with pores."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    for frame, ok in zip(frames, passed, strict=True):
        if frame.job.kind not in ("mixed", "wide") or frame.true_count == 0:
            continue
        chosen = chosen_by(frame, ok & frame.gated)
        signed = (len(chosen) - frame.true_count) / frame.true_count
        diameter = (abs(float(frame.raw["diameter_um"][chosen].mean()) - frame.true_mean_um)
                    / frame.true_mean_um) if len(chosen) else 1.0
        out.setdefault(frame.job.kind, []).append((abs(signed), signed, diameter))
    return {preset: np.asarray(rows) for preset, rows in out.items()}


def objective(frames: list[Frame], passed: list[np.ndarray]) -> float:
    """benchmarks/fit_pore_rule.py's objective: per preset median + p90 / 2 of the count error
    + median diameter error / 2; plus the scenes' mean miscount."""
    total = sum(float(np.median(e[:, 0]) + np.percentile(e[:, 0], 90) / 2.0
                      + np.median(e[:, 2]) / 2.0)
                for e in frame_errors(frames, passed).values())
    scenes = [abs(len(chosen_by(f, ok & f.gated)) - f.true_count)
              for f, ok in zip(frames, passed, strict=True) if f.job.kind not in ("mixed", "wide")]
    return total + (float(np.mean(scenes)) if scenes else 0.0)


def figures(frames: list[Frame], passed: list[np.ndarray]) -> dict[str, Any]:
    """Median / p90 % of the count and diameter errors and the signed count median, per
    preset."""
    return {preset: {"count_median": round(100 * float(np.median(e[:, 0])), 1),
                     "count_p90": round(100 * float(np.percentile(e[:, 0], 90)), 1),
                     "count_signed_median": round(100 * float(np.median(e[:, 1])), 1),
                     "diameter_median": round(100 * float(np.median(e[:, 2])), 1),
                     "diameter_p90": round(100 * float(np.percentile(e[:, 2], 90)), 1),
                     "frames": len(e)}
            for preset, e in sorted(frame_errors(frames, passed).items())}


def scene_checks(frames: list[Frame], passed: list[np.ndarray]) -> dict[str, Any]:
    """What tests/skin asks of the scenes, with these pits passing: pores counted per kind
    (and found within 4 px of a true one), the size sweep's found count and size ratio, the
    calibration sweep's largest step."""
    out: dict[str, Any] = {}
    sweep = []
    for frame, ok in zip(frames, passed, strict=True):
        kind = frame.job.kind
        if kind in ("mixed", "wide"):
            continue
        chosen = chosen_by(frame, ok & frame.gated)
        if kind == "sweep":
            sweep.append(len(chosen))
            continue
        several = kind in ("sizes", "hill", "hill_wide", "oval")
        key = f"{kind}-{frame.job.index}" if several else kind
        entry = out.setdefault(key, {"counted": 0, "found": 0, "true": 0, "ratios": []})
        pits, truth = frame.raw["pits_px"][chosen], frame.raw["true_centres_px"]
        entry["counted"] += len(chosen)
        entry["true"] += len(truth)
        entry["found"] += sum(int(bool(len(pits)) and np.min(np.hypot(*(pits - c).T)) < 4.0)
                              for c in truth)
        if len(chosen) and len(truth):
            entry["ratios"].append(float(frame.raw["diameter_um"][chosen].mean())
                                   / frame.true_mean_um)
    for entry in out.values():
        ratios = entry.pop("ratios")
        entry["size_ratio"] = round(float(np.mean(ratios)), 3) if ratios else None
    if sweep:
        counts = np.asarray(sweep, dtype=float)
        steps = np.abs(np.diff(counts)) / np.maximum(np.minimum(counts[:-1], counts[1:]), 1.0)
        out["sweep"] = {"counts": [int(c) for c in counts],
                        "largest_step": round(float(steps.max()), 3)}
    return out


def best_threshold(fit: list[Frame], scores: list[np.ndarray]) -> tuple[float, float]:
    """The score threshold (logit) with the smallest objective on the fit frames."""
    best = (np.inf, 0.0)
    for threshold in np.arange(-4.0, 4.01, 0.25):
        value = objective(fit, [s >= threshold for s in scores])
        best = min(best, (value, float(threshold)))
    return best[1], best[0]


def log_loss(model: Logistic, x: np.ndarray, y: np.ndarray) -> float:
    """Mean log loss of a logistic model."""
    z = model.score(x)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def forward_selection(fit: list[Frame], x: np.ndarray, y: np.ndarray,
                      most: int) -> list[tuple[tuple[int, ...], float, float]]:
    """Add features one at a time, each the one whose logistic model has the smallest log loss
    on the fit pits; returns every step's columns, log loss and fit objective (threshold
    chosen)."""
    steps: list[tuple[tuple[int, ...], float, float]] = []
    chosen: tuple[int, ...] = ()
    for _ in range(most):
        loss, column = min((log_loss(fit_logistic(x, y, (*chosen, c)), x, y), c)
                           for c in range(len(FEATURES)) if c not in chosen)
        chosen = (*chosen, column)
        model = fit_logistic(x, y, chosen)
        _, value = best_threshold(fit, [model.score(f.x) for f in fit])
        steps.append((chosen, loss, value))
    return steps


def jobs_of(seeds: list[int]) -> tuple[list[Job], list[Job], list[Job]]:
    """Fit jobs (frames and scenes), unused fit-seed frames, and the tests' scenes."""
    fit = [Job(p, s, i) for s in seeds for p, n in (("mixed", 30), ("wide", 130))
           for i in range(n)]
    fit += [Job(k, s, 0) for k in ("junctions", "pigment", "hairs", "dashes")
            for s in range(100, 106)]
    fit += [Job("sizes", s, i) for i in (2, 3, 4, 5, 6) for s in range(100, 106)]
    unused = [Job(p, s, i) for s in seeds for p, lo, hi in (("mixed", 30, 60), ("wide", 130, 170))
              for i in range(lo, hi)]
    tests = [Job(k, s, 0) for k in ("junctions", "one", "pigment", "hairs", "dashes")
             for s in range(3)]
    tests += [Job("sizes", s, i) for i in range(len(SCENE_SIZES_UM)) for s in range(3)]
    tests += [Job(k, s, i) for k in ("hill", "hill_wide", "oval") for i in (0, 1)
              for s in range(3)]
    tests += [Job("sweep", 0, i) for i in range(len(SWEEP_UM_PER_PX))]
    return fit, unused, tests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/poreml-cache"),
                        help="folder of the profiled frames (re-used when present)")
    parser.add_argument("--workers", type=int_at_least(1), default=2)
    parser.add_argument("--select", type=int_at_least(0), default=6,
                        help="features the small logistic model picks (forward selection)")
    parser.add_argument("--ceiling", action="store_true",
                        help="also fit a depth-4 tree and gradient-boosted trees (scikit-learn)")
    parser.add_argument("--gate", choices=("fixed", "basic"), default="fixed",
                        help="pits the models weigh: those passing pores.fixed_tests, or only "
                        "profiled, deep, pore-sized and grey ones (the ceiling of the features)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    fit_jobs, unused_jobs, test_jobs = jobs_of([11, 12])
    every = fit_jobs + unused_jobs + test_jobs
    with Pool(args.workers) as pool:
        paths = pool.map(_profile, [(job, args.cache) for job in every], chunksize=4)
    frames = [load(path, job, args.gate == "basic")
              for path, job in zip(paths, every, strict=True)]
    fit = frames[:len(fit_jobs)]
    unused = frames[len(fit_jobs):len(fit_jobs) + len(unused_jobs)]
    tests = frames[len(fit_jobs) + len(unused_jobs):]
    print(json.dumps(evaluate(fit, unused, tests, args.select, args.ceiling)))


def _judge(name: str, decide: Any, fit: list[Frame], unused: list[Frame],
           tests: list[Frame]) -> dict[str, Any]:
    """Frame figures of one decision (``decide(frame) -> passed``) on every set."""
    return {"model": name,
            "fit_objective": round(objective(fit, [decide(f) for f in fit]), 4),
            "fit": figures(fit, [decide(f) for f in fit]),
            "unused": figures(unused, [decide(f) for f in unused]),
            "unused_objective_frames_only": round(objective(
                unused, [decide(f) for f in unused]), 4),
            "scenes": scene_checks(tests, [decide(f) for f in tests])}


def evaluate(fit: list[Frame], unused: list[Frame], tests: list[Frame], select: int,
             ceiling: bool) -> dict[str, Any]:
    x, y = training_set(fit)
    xu, yu = training_set(unused)
    results: list[dict[str, Any]] = [
        _judge("cached_rule", lambda f: f.raw["main_chosen"].astype(bool), fit, unused, tests),
        _judge("shipped_model", lambda f: pore_score(candidates_of(f.raw), MODEL) >= 0.0,
               fit, unused, tests)]
    product = tuple(range(len(PORE_FEATURES)))
    models: list[tuple[str, Logistic]] = [
        ("logistic_all", fit_logistic(x, y, tuple(range(len(FEATURES))))),
        ("logistic_product_features", fit_logistic(x, y, product))]
    selection = forward_selection(fit, x, y, select) if select else []
    for name, model in models:
        threshold, _ = best_threshold(fit, [model.score(f.x) for f in fit])
        entry = _judge(name, lambda f, m=model, t=threshold: m.score(f.x) >= t,
                       fit, unused, tests)
        coefficients = model.named()
        coefficients["intercept"] = round(coefficients["intercept"] - threshold, 4)
        entry.update(threshold=threshold, coefficients_threshold_folded=coefficients,
                     auc_fit=round(auc(model.score(x), y), 4),
                     auc_unused=round(auc(model.score(xu), yu), 4))
        results.append(entry)
    if ceiling:
        results += _ceiling(fit, unused, tests, x=x, y=y, xu=xu, yu=yu)
    shipped = PoreModel()
    return {"benchmark": "fit_pore_model", "features": list(FEATURES),
            "shipped_model": {name: getattr(shipped, name) for name in ("intercept",
                                                                          *PORE_FEATURES)},
            "fit_pits": len(y), "fit_pores": int(y.sum()),
            "gate_recall_fit": _gate_recall(fit),
            "selection": [{"features": [FEATURES[c] for c in cols], "log_loss": round(loss, 5),
                           "fit_objective": round(v, 4)} for cols, loss, v in selection],
            "models": results, "load_average": load_average()}


def _gate_recall(frames: list[Frame]) -> float:
    """Share of true pores with a matched pit that passes the gate."""
    matched = sum(int(np.sum(f.label == 1)) for f in frames)
    kept = sum(int(np.sum((f.label == 1) & f.gated)) for f in frames)
    return round(kept / max(matched, 1), 4)


def _ceiling(fit: list[Frame], unused: list[Frame], tests: list[Frame], *, x: np.ndarray,
             y: np.ndarray, xu: np.ndarray, yu: np.ndarray) -> list[dict[str, Any]]:
    """A depth-4 tree and gradient-boosted trees: how far today's features go."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier, export_text

    out = []
    tree = DecisionTreeClassifier(max_depth=4, min_samples_leaf=20, random_state=0).fit(x, y)
    boosted = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                             l2_regularization=1.0, random_state=0).fit(x, y)
    for name, model in (("tree_depth4", tree), ("boosted", boosted)):
        def logit(f: Frame, m: Any = model) -> np.ndarray:
            p = np.clip(m.predict_proba(f.x)[:, 1], 1e-6, 1 - 1e-6) if len(f.x) else np.zeros(0)
            return np.log(p / (1 - p))
        scores = [logit(f) for f in fit]
        threshold, _ = best_threshold(fit, scores)
        entry = _judge(name, lambda f, t=threshold, g=logit: g(f) >= t, fit, unused, tests)
        entry.update(threshold=threshold, auc_fit=round(auc(logit_rows(model, x), y), 4),
                     auc_unused=round(auc(logit_rows(model, xu), yu), 4))
        if name == "tree_depth4":
            entry["rules"] = export_text(model, feature_names=list(FEATURES))
        out.append(entry)
    return out


def logit_rows(model: Any, x: np.ndarray) -> np.ndarray:
    result: np.ndarray = model.predict_proba(x)[:, 1]
    return result


if __name__ == "__main__":
    main()
