"""Does a pit's own furrow width tell a pore from a junction? Prints one JSON object.

Diagnosis only (docs/experiments/README.md "pore-local-width"). A junction of furrows of width
w has an inscribed radius of about w / 2, so a pit could be compared with the width of its own
furrow arms instead of the frame's typical junction gap (``gap_over_junction``). For every pit
the pore search profiles (``profile_all``) on frames of the project's generator, each furrow arm
(``pore_profile.arm_count``'s run of deep rays) is read across, on a line perpendicular to its
deepest ray at ``ACROSS_UM`` beyond the pit's outer rim: its half-depth width (half-way from its
centre line's depth down to the shallowest depth on the line) and that centre depth. Each true
pore is matched with the nearest profiled pit (within the pore's radius or 40 µm), as
benchmarks/skin_pore_diagnosis.py does; the pits matched with no pore, deeper than 1.2 furrow
floors, grey and pore-sized are the "other pits". Reported per feature: the area under the
curve (AUC) of the true pores the rule misses against the other pits, and of all true pores
against them, with quartiles. ``oracle`` features use the generator's own furrow widths (the
segments within 100 µm of the pit): the best a width measurement could do.

Read this on the project's own generator only (seeds 11 and 12 by default).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import cv2
import numpy as np
from skin_common import int_at_least, load_average

from appliance.skin.pore_profile import (
    ARM_LEVEL,
    ARM_REACH_UM,
    FINE_SMOOTH_PX,
    OUTER_RIM,
    RAY_COUNT,
    Profiles,
    _window_min,
    bilinear,
    crossing,
    profile,
)
from appliance.skin.pores import Candidates, choose_pores, measure_candidates, own_diameters_um
from appliance.skin.preprocess import FINE_UM_PER_PX, prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin import synthetic_frame

ACROSS_UM = (40.0, 120.0)  # where each arm is read across, beyond the outer rim
ACROSS_HALF_UM = 200.0  # the line across runs this far either side of the arm's ray
ACROSS_STEP_PX = 0.5
CENTRE_SLACK_PX = 3.0  # the arm's centre line is looked for this near the ray (16 rays: 22.5°)
ORACLE_NEAR_UM = 100.0


def _rims(rays: Profiles, found: Candidates) -> np.ndarray:
    """Each ray's half-depth rim crossing, in ray order (P, rays), as ``shape_of`` reads it."""
    floor, skin = found.shape.floor, found.shape.skin
    radii = np.r_[0.0, rays.radii_px]
    per_ray = np.moveaxis(rays.depth, 2, 1).reshape(-1, len(rays.radii_px))
    with_floor = np.concatenate([np.repeat(floor, RAY_COUNT)[:, None], per_ray], axis=1)
    half = np.repeat((floor + skin) / 2.0, RAY_COUNT)
    return crossing(with_floor, half, radii).reshape(-1, RAY_COUNT)


def _arm_runs(deep: np.ndarray) -> list[list[int]]:
    """The runs of neighbouring deep rays (each an arm) of one pit, ray indices in order."""
    if deep.all() or not deep.any():
        return []
    start = int(np.argmin(deep))
    runs: list[list[int]] = [[]]
    for ray in ((start + step) % RAY_COUNT for step in range(RAY_COUNT)):
        if deep[ray]:
            runs[-1].append(ray)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _across(fine: np.ndarray, point: np.ndarray, angle: float) -> tuple[float, float]:
    """Half-depth width (fine px) and centre depth of a furrow read across it at ``point``."""
    half = ACROSS_HALF_UM / FINE_UM_PER_PX
    offsets = np.arange(-half, half + 1e-9, ACROSS_STEP_PX)
    line = bilinear(fine, point[0] - offsets * np.sin(angle), point[1] + offsets * np.cos(angle))
    middle, slack = len(offsets) // 2, int(CENTRE_SLACK_PX / ACROSS_STEP_PX)
    top = middle - slack + int(np.argmax(line[middle - slack:middle + slack + 1]))
    level = (line[top] + line.min()) / 2.0
    width = 0.0
    for side in (line[top:], line[top::-1]):
        below = np.flatnonzero(side < level)
        if not len(below):
            width += (len(side) - 1) * ACROSS_STEP_PX
            continue
        inner, outer = side[below[0] - 1], side[below[0]]
        width += (below[0] - 1 + (inner - level) / max(inner - outer, 1e-9)) * ACROSS_STEP_PX
    return width, float(line[top])


def arm_widths(fine: np.ndarray, centres: np.ndarray, found: Candidates,
               beyond_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pit: the narrowest and the median arm width (fine px) and the deepest arm's centre
    depth, each arm read across ``beyond_um`` beyond the outer rim (nan: no arm, or deep all
    round)."""
    rays = profile(fine, centres)
    rims = _rims(rays, found)
    ordered = np.sort(rims, axis=1)
    median, outer = ordered[:, RAY_COUNT // 2], ordered[:, OUTER_RIM]
    reach = ARM_REACH_UM / found.um_per_fine_px
    shallowest = _window_min(rays, median, reach)
    deep = shallowest >= ARM_LEVEL * found.furrow_floor
    result = np.full((3, len(centres)), np.nan)
    for row, centre in enumerate(centres):
        arms = []
        for run in _arm_runs(deep[row]):
            ray = run[int(np.argmax(shallowest[row, run]))]
            angle = 2.0 * np.pi * ray / RAY_COUNT
            out = min(outer[row], rays.radii_px[-1] - reach) + beyond_um / found.um_per_fine_px
            arms.append(_across(fine, centre + out * np.array([np.cos(angle), np.sin(angle)]),
                                angle))
        if arms:
            widths, depths = np.array(arms).T
            result[:, row] = widths.min(), np.median(widths), depths.max()
    return result[0], result[1], result[2]


def _segment_widths_um(frame: Any, centres_px: np.ndarray) -> np.ndarray:
    """The median true width (µm) of the furrow segments within ``ORACLE_NEAR_UM`` of each pit
    (the nearest segment's where none is that near)."""
    geometry = frame.geometry
    starts, ends = geometry.vertices_px[geometry.edges].transpose(1, 0, 2)
    along = ends - starts
    length2 = np.maximum(np.sum(along * along, axis=1), 1e-9)
    result = np.zeros(len(centres_px))
    for row, centre in enumerate(centres_px):
        share = np.clip(np.sum((centre - starts) * along, axis=1) / length2, 0.0, 1.0)
        gaps_um = np.hypot(*(starts + share[:, None] * along - centre).T) * frame.um_per_px
        near = gaps_um < max(ORACLE_NEAR_UM, gaps_um.min() + 1e-9)
        result[row] = np.median(geometry.edge_width_px[near]) * frame.um_per_px
    return result


def frame_features(seed: int, index: int, preset: str) -> dict[str, np.ndarray]:
    """The features and the labels (1 missed pore, 2 counted pore, 0 other pit, -1 neither)
    of every profiled pit of one frame."""
    frame = synthetic_frame(seed, index, preset)
    prepared = prepare(frame.image_rgb, frame.um_per_px)
    found = measure_candidates(prepared, measure_texture(prepared).furrow_mask, profile_all=True)
    counted = np.zeros(len(found.shape.floor), dtype=bool)
    counted[choose_pores(found)] = True
    fine = cv2.GaussianBlur(prepared.depth_fine, (5, 5), FINE_SMOOTH_PX)
    ratio = prepared.um_per_work_px / prepared.um_per_fine_px
    centres_fine = (found.centres_work_px + 0.5) * ratio - 0.5
    centres_px = (found.centres_work_px + 0.5) * prepared.frame_px_per_work_px - 0.5
    shape, gap = found.shape, found.shape.gap_px
    features = {"gap/junction_gap": gap / found.junction.gap_px,
                "floor/around": shape.floor / found.around,
                "floor/arm_floor": shape.floor / shape.arm_floor}
    for beyond in ACROSS_UM:
        narrowest, median, deepest = arm_widths(fine, centres_fine, found, beyond)
        features[f"gap/(narrowest arm/2) {beyond:.0f}um"] = gap / (narrowest / 2.0)
        features[f"gap/(median arm/2) {beyond:.0f}um"] = gap / (median / 2.0)
        features[f"radius/(median arm/2) {beyond:.0f}um"] = shape.radius_px / (median / 2.0)
        features[f"median arm/junction_gap {beyond:.0f}um"] = median / found.junction.gap_px
        features[f"floor/deepest arm {beyond:.0f}um"] = shape.floor / deepest
    oracle_um = _segment_widths_um(frame, centres_px)
    features["oracle gap/(median true width/2)"] = gap * found.um_per_fine_px / (oracle_um / 2.0)
    features["oracle radius/(median true width/2)"] = (shape.radius_px * found.um_per_fine_px
                                                      / (oracle_um / 2.0))
    features["label"] = _labels(frame, found, centres_px, counted)
    return features


def _labels(frame: Any, found: Candidates, centres_px: np.ndarray,
            counted: np.ndarray) -> np.ndarray:
    """1 / 2: the pit nearest to a true pore the rule misses / counts; 0: a pit near no true
    pore; -1 any other. Only pits deeper than 1.2 furrow floors, grey and pore-sized are
    labelled (the others fail tests no width could change)."""
    truth, radii = frame.geometry.pore_centres_px, frame.geometry.pore_radii_px
    reach = np.maximum(radii, 40.0 / frame.um_per_px)
    gaps = np.hypot(centres_px[:, None, 0] - truth[None, :, 0],
                    centres_px[:, None, 1] - truth[None, :, 1])
    diameters = own_diameters_um(found)
    plausible = (found.shape.floor >= 1.2 * found.furrow_floor) & (found.blue <= 0.5) & (
        diameters >= 40.0) & (diameters <= 400.0)
    label = np.where(plausible & ~(gaps < reach[None, :]).any(axis=1), 0, -1)
    for pore in range(len(radii)):
        nearest = int(np.argmin(gaps[:, pore])) if len(gaps) else -1
        if nearest < 0 or gaps[nearest, pore] >= reach[pore]:
            continue
        hit = counted & (gaps[:, pore] < reach[pore])
        label[nearest] = (2 if hit.any() else 1) if plausible[nearest] else -1
    return label


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of a score, higher for ``positive`` (ties counted half)."""
    positive, negative = positive[np.isfinite(positive)], negative[np.isfinite(negative)]
    if not len(positive) or not len(negative):
        return float("nan")
    ranks = np.argsort(np.argsort(np.r_[positive, negative], kind="stable"), kind="stable") + 1.0
    values = np.r_[positive, negative]
    for value in np.unique(values):  # average rank of ties
        same = values == value
        ranks[same] = ranks[same].mean()
    wins = ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2.0
    return float(wins / (len(positive) * len(negative)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="wide", help="the generator's preset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    parser.add_argument("--first", type=int_at_least(0), default=0)
    parser.add_argument("--count", type=int_at_least(1), default=30, help="frames per seed")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    np.seterr(divide="ignore", invalid="ignore")  # a pit without arms has no width: inf / nan
    frames = [frame_features(seed, index, args.preset) for seed in args.seeds
              for index in range(args.first, args.first + args.count)]
    pooled = {key: np.concatenate([frame[key] for frame in frames]) for key in frames[0]}
    label = pooled.pop("label")
    missed, pores, other = label == 1, label >= 1, label == 0

    def quartiles(values: np.ndarray) -> list[float]:
        return [round(float(q), 2) for q in np.nanpercentile(values, [10, 50, 90])]

    result: dict[str, Any] = {
        "benchmark": "skin_pore_width", "preset": args.preset, "seeds": args.seeds,
        "frames": f"{args.first}-{args.first + args.count - 1}",
        "pits": {"missed_pores": int(missed.sum()), "pores": int(pores.sum()),
                 "other": int(other.sum())},
        "auc": {name: {"missed_vs_other": round(auc(values[missed], values[other]), 3),
                       "pores_vs_other": round(auc(values[pores], values[other]), 3),
                       "q10_50_90_missed": quartiles(values[missed]),
                       "q10_50_90_other": quartiles(values[other])}
                for name, values in pooled.items()},
        "load_average": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
