"""Shared helpers of the skin benchmarks: the frame set on disk and error statistics.

Light to import: the argument types and the frame-set parser need neither NumPy nor the skin
code, so a benchmark can parse its arguments (``--help``, a bad value) before its heavy imports;
the helpers that need them import them when called."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

TARGET_KEYS = (
    "pore_count",
    "pore_mean_diameter_um",
    "furrow_density_mm_per_mm2",
    "hill_density_per_mm2",
    "hill_mean_area_mm2",
)
DEFAULT_FRAMES_DIR = Path("/tmp/skin-bench-frames")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (else exit 2 saying so)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def frame_set_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the frame-set options both skin benchmarks take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--frames", type=Path, default=DEFAULT_FRAMES_DIR)
    parser.add_argument("--count", type=int_at_least(1), default=100)
    parser.add_argument("--seed", type=int_at_least(0), default=1)
    return parser


def ensure_frames(folder: Path, count: int, seed: int, preset: str = "mixed") -> list[Path]:
    """The first ``count`` frames (JPEG + sidecar) of the series, generated when missing (the
    whole series again, with --force over the frames there: the same seed draws the same)."""
    folder = folder if preset == "mixed" else folder / preset
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted(folder.glob(f"skin-{seed}-*.jpg"))[:count]
    if len(images) < count:
        command = [sys.executable, "-m", "appliance", "synth", "skin", "--out", str(folder),
                   "--count", str(count), "--seed", str(seed), "--preset", preset, "--force"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        images = sorted(folder.glob(f"skin-{seed}-*.jpg"))[:count]
    return images


def um_per_px_of(image: Path) -> float:
    """The calibrated scale in the sidecar next to a frame."""
    sidecar: dict[str, Any] = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
    return float(sidecar["um_per_px"])


def truth_of(image: Path) -> dict[str, float]:
    """The ground truth of a frame: its sidecar's, or, where the sidecar of a frame of the
    project's generator was written under another definition (before dead ends that meet a
    furrow split hills: no ``truth_definition``), the truth recomputed from the frame's
    geometry (its seed, index and preset)."""
    from appliance.synthetic.skin import TRUTH_DEFINITION, synthetic_geometry
    from appliance.synthetic.skin_truth import ground_truth

    sidecar: dict[str, Any] = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
    if "preset" in sidecar and sidecar.get("truth_definition") != TRUTH_DEFINITION:
        params, geometry = synthetic_geometry(sidecar["seed"], sidecar["index"], sidecar["preset"])
        return ground_truth(geometry, params.um_per_px)
    return {key: float(value) for key, value in sidecar["truth"].items()}


def error_summary(
    measured: list[dict[str, float]], truths: list[dict[str, float]]
) -> dict[str, Any]:
    """Median and 90th-percentile absolute relative error per target key, and the signed median
    (positive: the measurement reads high), which tells a bias from scatter."""
    import numpy as np

    summary: dict[str, Any] = {}
    for key in TARGET_KEYS:
        pairs = zip(measured, truths, strict=True)
        signed = np.array([(m[key] - t[key]) / t[key] for m, t in pairs if t[key] > 0])
        errors = np.abs(signed)
        summary[key] = {
            "median_abs_rel_error": round(float(np.median(errors)), 4),
            "p90_abs_rel_error": round(float(np.percentile(errors, 90)), 4),
            "median_signed_rel_error": round(float(np.median(signed)), 4),
        }
    return summary


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared; read figures with them)."""
    return [round(x, 2) for x in os.getloadavg()]


def nearest_segment(starts: np.ndarray, ends: np.ndarray, point: np.ndarray) -> int:
    """Index of the segment (``starts[i]`` to ``ends[i]``, (E, 2) each) nearest to a point."""
    import numpy as np

    along = ends - starts
    share = np.clip(np.sum((point - starts) * along, axis=1)
                    / np.maximum(np.sum(along * along, axis=1), 1e-9), 0.0, 1.0)
    return int(np.argmin(np.hypot(*(starts + share[:, None] * along - point).T)))
