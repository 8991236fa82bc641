"""Which pore tests miss or invent pores on frames with known pores; prints one JSON object.

For each frame of a set (``--renderer generator`` with ``--preset``, or ``voronoi``, the
evaluation-only renderer), every true pore is matched with the nearest candidate the pore
search profiled (within the pore's radius or 40 µm). A true pore without one is ``unseen``;
one only among the candidates dropped before profiling is ``too_shallow``;
otherwise each test it fails is tallied (``fails_only``: the tests that alone stand between it
and being counted). Every counted pore with no true pore within its reach is ``false``. On the
project's generator, ``recall_by_place`` is the share of true pores counted by where they lie:
within 20 µm of a furrow junction, within 100 µm, or further (in a hill or along a furrow).
``false_by_place`` says the same of the false pores, and ``false_on_segment`` whether the
furrow segment nearest to each (the generator's centre lines) is deeper or wider than the
frame's typical one (``counted_on_segment``: the same for the counted true pores, placed by
the generator whatever the segment).
Read this to find which test to rethink; set thresholds only on the project's own generator.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from skin_common import int_at_least, load_average, nearest_segment

from appliance.synthetic.skin_presets import PRESETS


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderer", choices=("generator", "voronoi"), default="generator",
                        help="the project's generator, or the evaluation-only second renderer")
    parser.add_argument("--preset", choices=PRESETS, default="wide",
                        help="the generator's preset (ignored by voronoi)")
    parser.add_argument("--count", type=int_at_least(1), default=40, help="frames to diagnose")
    parser.add_argument("--seed", type=int_at_least(0), default=11, help="series of the frames")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np

from appliance.skin.analysis import analyze
from appliance.skin.pores import measure_candidates, pore_tests
from appliance.skin.preprocess import on_grid, prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin import synthetic_frame
from appliance.synthetic.skin_voronoi import voronoi_frame

SIZE_BINS_UM = (50.0, 70.0, 100.0, 140.0, 200.0, 320.0)


@dataclass(frozen=True)
class _Frame:
    rgb: np.ndarray
    um_per_px: float
    centres_px: np.ndarray
    radii_px: np.ndarray
    junctions_px: np.ndarray | None  # (J, 2) furrow meeting points, where the renderer says
    segments_px: np.ndarray | None = None  # (E, 2, 2) furrow centre lines (generator)
    segment_depth: np.ndarray | None = None  # (E,) depth factor over the frame's median
    segment_width: np.ndarray | None = None  # (E,) width over the frame's median


DEEPER_SEGMENT = 1.2  # a segment this much deeper than the frame's median is "deeper"
WIDER_SEGMENT = 1.3  # ... and this much wider "wider"


def _segment_kind(frame: _Frame, centre: np.ndarray) -> str | None:
    """Whether the furrow segment nearest to a point is deeper and / or wider than the frame's
    typical one (None where the renderer does not say)."""
    if frame.segments_px is None or frame.segment_depth is None or frame.segment_width is None:
        return None
    nearest = nearest_segment(frame.segments_px[:, 0], frame.segments_px[:, 1], centre)
    deeper = frame.segment_depth[nearest] > DEEPER_SEGMENT
    wider = frame.segment_width[nearest] > WIDER_SEGMENT
    return {(True, True): "deeper_and_wider", (True, False): "deeper",
            (False, True): "wider", (False, False): "neither"}[(bool(deeper), bool(wider))]


PLACES_UM = (("at_junction", 20.0), ("near_junction", 100.0), ("off_junction", np.inf))


def _place(frame: _Frame, centre: np.ndarray) -> str | None:
    """Where a true pore lies: within 20 µm of a furrow junction, within 100 µm, or further."""
    if frame.junctions_px is None or not len(frame.junctions_px):
        return None
    gap_um = float(np.min(np.hypot(*(frame.junctions_px - centre).T))) * frame.um_per_px
    return next(name for name, limit in PLACES_UM if gap_um < limit)


def _frame(renderer: str, seed: int, index: int, preset: str) -> _Frame:
    if renderer == "voronoi":
        evaluation = voronoi_frame(seed, index)
        return _Frame(evaluation.image_rgb, evaluation.um_per_px, evaluation.pore_centres_px,
                      evaluation.pore_radii_px, None)
    own = synthetic_frame(seed, index, preset)
    geometry = own.geometry
    degree = np.bincount(geometry.edges.ravel(), minlength=len(geometry.vertices_px))
    depth = (geometry.edge_depth if geometry.edge_depth is not None
             else np.ones(len(geometry.edges)))
    return _Frame(own.image_rgb, own.um_per_px, geometry.pore_centres_px,
                  geometry.pore_radii_px, geometry.vertices_px[degree >= 3],
                  geometry.vertices_px[geometry.edges], depth / np.median(depth),
                  geometry.edge_width_px / np.median(geometry.edge_width_px))


def diagnose(frame: _Frame, tally: dict[str, Counter[str]]) -> tuple[int, int]:
    """Add one frame's misses to ``tally``; return (true count, measured count)."""
    prepared = prepare(frame.rgb, frame.um_per_px)
    seen = measure_candidates(prepared, measure_texture(prepared).furrow_sample)
    tests = pore_tests(seen)
    scale = prepared.frame_px_per_work_px
    centres = on_grid(seen.centres_work_px, scale)
    passed = np.logical_and.reduce(list(tests.values())) if len(centres) else np.zeros(0)
    counted = analyze(frame.rgb, frame.um_per_px).pore_centres_frame_px()
    for centre, radius in zip(frame.centres_px, frame.radii_px, strict=True):
        size = 2.0 * radius * frame.um_per_px
        label = next(f"{lo:.0f}-{hi:.0f}" for lo, hi in itertools.pairwise(SIZE_BINS_UM)
                     if size < hi or hi == SIZE_BINS_UM[-1])
        reach = max(radius, 40.0 / frame.um_per_px)
        place = _place(frame, centre)
        hit = bool(len(counted)) and bool(np.min(np.hypot(*(counted - centre).T)) < reach)
        if place is not None:
            tally["true_by_place"][place] += 1
            tally["counted_by_place"][place] += int(hit)
        if hit:
            tally["counted"][label] += 1
            continue
        gaps = np.hypot(*(centres - centre).T) if len(centres) else np.zeros(0)
        if not len(gaps) or gaps.min() >= reach:
            shallow = on_grid(seen.shallow_work_px, scale)
            near = len(shallow) and np.min(np.hypot(*(shallow - centre).T)) < reach
            tally["too_shallow" if near else "unseen"][label] += 1
            continue
        nearest = int(np.argmin(gaps))
        failed = [name for name, ok in tests.items() if not ok[nearest]]
        tally["missed"][label] += 1
        for name in failed:
            tally["fails"][name] += 1
        if len(failed) == 1:
            tally["fails_only"][failed[0]] += 1
        if not failed and passed[nearest]:
            tally["fails"]["merged_with_deeper"] += 1
    # a counted pore is false when no true pore lies within that pore's reach (the same
    # reach a true pore is matched with above: its radius, or 40 µm for a small one)
    reaches = np.maximum(frame.radii_px, 40.0 / frame.um_per_px)
    for c in counted:
        false = not np.any(np.hypot(*(frame.centres_px - c).T) < reaches)
        tally["false"]["pores"] += int(false)
        place, kind = _place(frame, c), _segment_kind(frame, c)
        if false and place is not None:
            tally["false_by_place"][place] += 1
        if kind is not None:
            tally["false_on_segment" if false else "counted_on_segment"][kind] += 1
    return len(frame.radii_px), len(counted)


def main() -> None:
    args = _parser().parse_args()
    cv2.setNumThreads(1)
    keys = ("counted", "missed", "too_shallow", "unseen", "fails", "fails_only", "false",
            "false_by_place", "false_on_segment", "counted_on_segment",
            "true_by_place", "counted_by_place")
    tally: dict[str, Counter[str]] = {key: Counter() for key in keys}
    errors = []
    for index in range(args.count):
        truth, measured = diagnose(_frame(args.renderer, args.seed, index, args.preset), tally)
        if truth:
            errors.append(abs(measured - truth) / truth)
    result: dict[str, Any] = {
        "benchmark": "skin_pore_diagnosis",
        "renderer": args.renderer,
        "preset": args.preset if args.renderer == "generator" else None,
        "seed": args.seed,
        "frames": args.count,
        "pore_count_error": {"median": round(float(np.median(errors)), 4),
                             "p90": round(float(np.percentile(errors, 90)), 4)},
        **{key: dict(sorted(counter.items())) for key, counter in tally.items()},
        "recall_by_place": {place: round(tally["counted_by_place"][place] / total, 3)
                            for place, total in sorted(tally["true_by_place"].items())},
        "load_average": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
