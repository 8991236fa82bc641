"""Every reading of ``appliance.skin.analyze`` on a fixed frame set, saved or compared bit for bit.

A speed-up of the measurement must not change any number: ``--save DIR`` writes, per frame, every
feature, the validity verdict and every array of the result (furrow mask, hill labels, centre
lines, border segments, pore centres and diameters) to ``DIR/<frame>.npz``; ``--against DIR``
reads them back and compares each with ``==`` (no tolerance, NaN equal to NaN, same dtype and
shape). The frames: JPEGs with sidecars under ``--frames`` (``appliance synth skin``, each at its
sidecar's scale) and ``--second-count`` frames of the evaluation renderer (exactness only: no
threshold is read from them). Prints one JSON object; exit 1 when anything differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from skin_common import um_per_px_of


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=Path, nargs="+", required=True)
    parser.add_argument("--second-count", type=int, default=4)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path)
    mode.add_argument("--against", type=Path)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import numpy as np

from appliance.skin.analysis import analyze
from appliance.skin.frames import load_frame
from appliance.synthetic.skin_voronoi import voronoi_frame


def flatten(value: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    """Every number inside ``value`` (dataclasses, dicts, tuples, arrays) under a dotted name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            flatten(getattr(value, item.name), f"{prefix}.{item.name}", out)
    elif isinstance(value, dict):
        for key in sorted(value):
            flatten(value[key], f"{prefix}.{key}", out)
    elif isinstance(value, tuple) and not all(isinstance(item, str) for item in value):
        for index, item in enumerate(value):
            flatten(item, f"{prefix}.{index}", out)
    else:
        out[prefix] = np.asarray(value)


def frames(folders: list[Path], second_count: int) -> list[tuple[str, np.ndarray, float]]:
    """(name, RGB, µm/px) of every frame of the set."""
    found = []
    for folder in folders:
        for image in sorted(folder.glob("*.jpg")):
            found.append((f"{folder.name}-{image.stem}", load_frame(image), um_per_px_of(image)))
    for index in range(second_count):
        frame = voronoi_frame(1001, index)
        found.append((f"second-{index}", frame.image_rgb, frame.um_per_px))
    return found


def readings(rgb: np.ndarray, um_per_px: float) -> dict[str, np.ndarray]:
    """Every reading of one frame."""
    out: dict[str, np.ndarray] = {}
    flatten(analyze(rgb, um_per_px), "analysis", out)
    return out


def differences(now: dict[str, np.ndarray], then: dict[str, np.ndarray]) -> list[str]:
    """Names whose value differs in any bit that matters (dtype, shape, any element)."""
    changed = sorted(set(now) ^ set(then))
    for name in sorted(set(now) & set(then)):
        a, b = now[name], then[name]
        same = a.dtype == b.dtype and a.shape == b.shape
        if same and a.dtype.kind == "f":
            same = bool(np.array_equal(a, b, equal_nan=True))
        elif same:
            same = bool(np.array_equal(a, b))
        if not same:
            changed.append(name)
    return changed


def main() -> None:
    """Save or compare every reading of the frame set; print one JSON object."""
    args = _parser().parse_args()
    report: dict[str, Any] = {"benchmark": "skin_exactness", "frames": 0, "differing": {}}
    for name, rgb, um_per_px in frames(args.frames, args.second_count):
        now = readings(rgb, um_per_px)
        report["frames"] += 1
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(args.save / f"{name}.npz", **now)  # type: ignore[arg-type]
            continue
        with np.load(args.against / f"{name}.npz") as stored:
            changed = differences(now, {key: stored[key] for key in stored.files})
        if changed:
            report["differing"][name] = changed
        report["arrays_per_frame"] = len(now)
    print(json.dumps(report))
    sys.exit(1 if report["differing"] else 0)


if __name__ == "__main__":
    main()
