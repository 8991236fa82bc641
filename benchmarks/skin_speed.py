"""Speed of skin measurement on one core, against a plain scikit-image method; one JSON object.

analyze_thread_cpu_ms: CPU time of the measuring thread per 1280x960 frame in
``appliance.skin.analysis.analyze`` (``time.thread_time``), OpenCV on one thread and the process
pinned to one CPU: the one-core cost, which the targets use (median <= 33 ms, one camera frame
at 30 fps). analyze_ms: the wall time of the same calls; on a shared, loaded machine it includes
time spent waiting for the core, so read it with ``load_average`` (at start and end).
analyze_stages_thread_cpu_ms: median thread CPU of each step of ``analyze`` (preparation,
texture, pores, colour), timed step by step in a second pass over the same frames: where the
time goes.
quality_gate_thread_cpu_ms / quality_gate_ms: ``QualityGate.assess`` (scores and verdict) per
frame (target: median thread CPU <= 3 ms); quality_gate_with_motion_thread_cpu_ms: one gate fed
the frames as a stream, each with the previous one (as the edge pipeline does). baseline: a
straightforward scikit-image implementation (Frangi furrows, Otsu, skeleton length, labelled
hills, blob_log pores) timed in the same process on the first ``--baseline-frames`` frames;
speed_ratio compares median thread CPU (speed_ratio_wall: wall); both methods' median absolute
relative errors on those frames are printed (target: >= 80x faster, at least as accurate).
peak_rss_mb: maximum resident memory of ``appliance analyze --json`` over ``--count`` frames
(target < 300 MB).
malloc: how glibc's malloc ran (``--malloc``): by default as the kiosk's systemd unit runs the
daemon (deploy/appliance-edge.service: transparent huge pages for its heap, which changes no
number, only the time); ``--malloc plain`` for glibc's default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skin_common import (
    TARGET_KEYS,
    ensure_frames,
    error_summary,
    frame_set_parser,
    load_average,
    truth_of,
)


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = frame_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--timed-frames", type=int, default=30)
    parser.add_argument("--baseline-frames", type=int, default=4)
    parser.add_argument(
        "--malloc", choices=("hugetlb", "plain"), default="hugetlb",
        help="hugetlb (default): run as deploy/appliance-edge.service runs the daemon, glibc's "
             "malloc asking for transparent huge pages (GLIBC_TUNABLES, read at process start: "
             "the script starts itself again with it); plain: glibc's default")
    return parser


HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"  # as deploy/appliance-edge.service sets it


def malloc_environment(choice: str, environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to start this script again in for the ``--malloc`` choice, or None
    when this process already runs so (a tunable is read only when a process starts)."""
    tunables = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    wanted = [t for t in tunables if not t.startswith("glibc.malloc.hugetlb=")]
    if choice == "hugetlb":
        wanted.append(HUGETLB_TUNABLE)
    if sorted(wanted) == sorted(tunables):
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(wanted)}


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _chosen = _parser().parse_args().malloc
    if (_again := malloc_environment(_chosen, dict(os.environ))) is not None:
        os.execve(sys.executable, [sys.executable, *sys.argv], _again)

import cv2
import numpy as np

from appliance.capture.quality import QualityGate
from appliance.edge.heap import keep_frame_buffers
from appliance.skin.analysis import analyze
from appliance.skin.colour import colour_features
from appliance.skin.frames import load_frame
from appliance.skin.pore_profile import FINE_SMOOTH_PX
from appliance.skin.pores import measure_pores
from appliance.skin.preprocess import prepare
from appliance.skin.texture import measure_texture

UM_PER_PX = 10.0


def baseline_features(rgb: np.ndarray, um_per_px: float) -> dict[str, float]:
    """The five target features the straightforward scikit-image way."""
    from skimage import color, feature, filters, measure, morphology

    gray = color.rgb2gray(rgb)
    flat = gray / filters.gaussian(gray, sigma=40)
    ridges = filters.frangi(flat, sigmas=(1, 2, 3), black_ridges=True)
    furrows = ridges > filters.threshold_otsu(ridges)
    skeleton = morphology.skeletonize(furrows)
    area_mm2 = rgb.shape[0] * rgb.shape[1] * um_per_px**2 / 1e6
    hills = measure.label(~furrows, connectivity=1)
    props = [p for p in measure.regionprops(hills) if p.area * um_per_px**2 / 1e6 >= 0.003]
    height, width = furrows.shape
    cut = [p for p in props if p.bbox[0] == 0 or p.bbox[1] == 0 or p.bbox[2] == height
           or p.bbox[3] == width]
    inside = [p.area for p in props if p not in cut]
    blobs = feature.blob_log(1.0 - np.clip(flat, 0, 1), min_sigma=3, max_sigma=12, num_sigma=6,
                             threshold=0.08)
    diameters = 2.0 * np.sqrt(2.0) * blobs[:, 2] * um_per_px if len(blobs) else np.zeros(1)
    return {
        "pore_count": float(len(blobs)),
        "pore_mean_diameter_um": float(diameters.mean()),
        "furrow_density_mm_per_mm2": float(skeleton.sum()) * um_per_px / 1000.0 / area_mm2,
        "hill_density_per_mm2": (len(inside) + 0.5 * len(cut)) / area_mm2,
        "hill_mean_area_mm2": float(np.mean(inside)) * um_per_px**2 / 1e6 if inside else 0.0,
    }


def _ours(rgb: np.ndarray) -> dict[str, float]:
    features = analyze(rgb, UM_PER_PX).features
    return {key: float(getattr(features, key)) for key in TARGET_KEYS}


@dataclass
class _Times:
    cpu_s: list[float] = field(default_factory=list)  # thread CPU time per call
    wall_s: list[float] = field(default_factory=list)

    def ms(self, wall: bool = False, digits: int = 2) -> dict[str, Any]:
        values = np.asarray(self.wall_s if wall else self.cpu_s) * 1000.0
        return {"median": round(float(np.median(values)), digits),
                "p90": round(float(np.percentile(values, 90)), digits), "frames": len(values)}


def _timed(function: Any, frames: list[np.ndarray]) -> tuple[_Times, list[Any]]:
    times, outputs = _Times(), []
    for rgb in frames:
        started_wall, started_cpu = time.perf_counter(), time.thread_time()
        outputs.append(function(rgb))
        times.cpu_s.append(time.thread_time() - started_cpu)
        times.wall_s.append(time.perf_counter() - started_wall)
    return times, outputs


def stage_times_ms(frames: list[np.ndarray]) -> dict[str, float]:
    """Median thread CPU (ms) of each step of ``analyze``, called one by one as it calls them."""
    stages: dict[str, list[float]] = {"prepare": [], "texture": [], "pores": [], "colour": []}
    for rgb in frames:
        marks = [time.thread_time()]
        prepared = prepare(rgb, UM_PER_PX, fine_smooth_px=FINE_SMOOTH_PX)  # as analyze calls it
        marks.append(time.thread_time())
        texture = measure_texture(prepared)
        marks.append(time.thread_time())
        measure_pores(prepared, texture.furrow_sample, hair=texture.hair)
        marks.append(time.thread_time())
        colour_features(prepared.rgb_work)
        marks.append(time.thread_time())
        for times, start, end in zip(stages.values(), marks, marks[1:], strict=False):
            times.append(end - start)
    return {stage: round(float(np.median(times)) * 1000.0, 2) for stage, times in stages.items()}


def _overall(summary: dict[str, Any]) -> float:
    return round(float(np.median([v["median_abs_rel_error"] for v in summary.values()])), 4)


def peak_rss_mb(images: list[Path]) -> float:
    """Peak resident memory (MB) of ``appliance analyze --json`` over the images."""
    command = [sys.executable, "-m", "appliance", "analyze", "--json", *map(str, images)]
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)


def main() -> None:
    """Time both methods and the gate on the same frames; print one JSON object."""
    args = _parser().parse_args()
    cv2.setNumThreads(1)
    keep_frame_buffers()  # as the daemon does at start-up
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    load_at_start = load_average()
    images = ensure_frames(args.frames, args.count, args.seed)
    rss_mb = peak_rss_mb(images)  # first, while this process is small (fork copies it)
    frames = [load_frame(path) for path in images[: args.timed_frames]]
    _ours(frames[0])  # warm-up: imports, OpenCV initialisation
    ours, ours_out = _timed(_ours, frames)
    stages = stage_times_ms(frames)
    gate, _ = _timed(QualityGate().assess, frames)
    stream_gate, previous = QualityGate(), dict(zip(map(id, frames[1:]), frames, strict=False))
    gate_motion, _ = _timed(lambda rgb: stream_gate.assess(rgb, previous.get(id(rgb))), frames)
    base_frames = frames[: args.baseline_frames]
    base, base_out = _timed(lambda rgb: baseline_features(rgb, UM_PER_PX), base_frames)
    truths = [truth_of(path) for path in images[: args.baseline_frames]]
    ours_acc = error_summary(ours_out[: args.baseline_frames], truths)
    base_acc = error_summary(base_out, truths)
    result = _report(ours, gate, base, (ours_acc, base_acc), rss_mb)
    result["analyze_stages_thread_cpu_ms"] = stages
    result["quality_gate_with_motion_thread_cpu_ms"] = gate_motion.ms(digits=3)
    result["load_average"] = {"start": load_at_start, "end": load_average()}
    result["malloc"] = {"choice": args.malloc,
                        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
    print(json.dumps(result))


def _report(ours: _Times, gate: _Times, base: _Times, accuracies: tuple[Any, Any],
            rss_mb: float) -> dict[str, Any]:
    ours_acc, base_acc = accuracies
    analyze_ms, gate_ms = ours.ms(), gate.ms(digits=3)
    ratio = float(np.median(base.cpu_s) / np.median(ours.cpu_s))
    return {
        "benchmark": "skin_speed",
        "frame_px": [1280, 960],
        "analyze_thread_cpu_ms": analyze_ms,
        "analyze_ms": ours.ms(wall=True),
        "quality_gate_thread_cpu_ms": gate_ms,
        "quality_gate_ms": gate.ms(wall=True, digits=3),
        "baseline_skimage_thread_cpu_ms": base.ms(digits=1),
        "baseline_skimage_ms": base.ms(wall=True, digits=1),
        "speed_ratio": round(ratio, 1),
        "speed_ratio_wall": round(float(np.median(base.wall_s) / np.median(ours.wall_s)), 1),
        "accuracy_same_frames": {
            "ours_median_of_median_errors": _overall(ours_acc),
            "baseline_median_of_median_errors": _overall(base_acc),
            "ours": ours_acc,
            "baseline": base_acc,
        },
        "peak_rss_mb_analyze_cli": rss_mb,
        "targets": {
            "analyze_median_le_33ms": analyze_ms["median"] <= 33.0,
            "quality_gate_le_3ms": gate_ms["median"] <= 3.0,
            "ratio_ge_80": ratio >= 80.0,
            "at_least_as_accurate": _overall(ours_acc) <= _overall(base_acc),
            "peak_rss_lt_300mb": rss_mb < 300.0,
        },
    }


if __name__ == "__main__":
    main()
