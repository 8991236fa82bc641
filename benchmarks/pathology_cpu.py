"""Pathology on CPU: VGG19 float32 vs INT8 speed, demo-model INT8 AUROC loss, 20k-slide memory.

    .venv/bin/python benchmarks/pathology_cpu.py [--cohort /tmp/he200] [--skip-memory]

Prints ONE JSON object. Speed: full-width VGG19 (paper head, random weights) at 224 px, ONNX
Runtime CPU, batches of 8, after one warm-up batch. Accuracy: the shipped demo model, float32 and
INT8, on the held-out test patients of its splits file (the same prepared tiles go to both).
Memory: peak RSS (wait4 rusage) of a child process running ``appliance pathology submit`` on a
synthetic 20,000 x 20,000 px JPEG.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=Path("/tmp/he200"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--big-px", type=int, default=20_000)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models" / "pathology"
SHIPPED = REPO / "appliance" / "shipped"
DEMO = SHIPPED / "msi-vgg19-w16.onnx"
DEMO_INT8 = SHIPPED / "msi-vgg19-w16.int8.onnx"
SPLITS = SHIPPED / "msi-vgg19-w16.splits.csv"
sys.path.insert(0, str(MODELS))
sys.path.insert(0, str(REPO))


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (the machine is shared)."""
    return [round(value, 2) for value in os.getloadavg()]


def tiles_per_s(
    model_paths: list[Path], tiles: np.ndarray, batch: int, repeats: int, threads: int
) -> list[float]:
    """Throughput of each ONNX model on CPU; batches alternate between models so that load
    changes on the shared machine hit every model alike. One warm-up batch each."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for p in model_paths]
    names = [session.get_inputs()[0].name for session in sessions]
    for session, name in zip(sessions, names, strict=True):
        session.run(None, {name: tiles[:batch]})
    seconds = [0.0] * len(sessions)
    for index in range(repeats):
        start = (index * batch) % max(1, len(tiles) - batch + 1)
        for k, (session, name) in enumerate(zip(sessions, names, strict=True)):
            started = time.perf_counter()
            session.run(None, {name: tiles[start : start + batch]})
            seconds[k] += time.perf_counter() - started
    return [repeats * batch / value for value in seconds]


def vgg19_speed(workdir: Path, batch: int, repeats: int, threads: int) -> dict[str, object]:
    """Export full-width VGG19 at 224 px, quantize it, time both."""
    import torch
    from export import export_onnx, quantize_int8
    from vgg import VGG19

    torch.manual_seed(0)
    model = VGG19(width=1.0, head="paper").eval()
    meta = {"name": "vgg19-random", "version": "0", "labels": '["MSS", "MSI"]',
            "tile_px": "224", "tile_um": "256"}
    float_path = export_onnx(model, workdir / "vgg19.onnx", 224, meta)
    del model
    rng = np.random.default_rng(0)
    tiles = rng.uniform(0, 255, (32, 3, 224, 224)).astype(np.float32)
    int8_path = quantize_int8(float_path, workdir / "vgg19.int8.onnx", tiles[:8])
    float_speed, int8_speed = tiles_per_s([float_path, int8_path], tiles, batch, repeats, threads)
    return {
        "vgg19_224_float32_tiles_per_s": round(float_speed, 2),
        "vgg19_224_int8_tiles_per_s": round(int8_speed, 2),
        "int8_speedup": round(int8_speed / float_speed, 2),
        "vgg19_float32_mb": round(float_path.stat().st_size / 1e6, 1),
        "vgg19_int8_mb": round(int8_path.stat().st_size / 1e6, 1),
        "batch": batch, "timed_batches": repeats, "ort_threads": threads,
    }


def test_slides(cohort: Path) -> list[dict[str, str]]:
    """labels.csv rows of the held-out test patients, painting the slides if they are missing."""
    from appliance.synthetic.he import cohort_specs, write_cohort

    with SPLITS.open(newline="") as handle:
        test = {row["patient"] for row in csv.DictReader(handle) if row["split"] == "test"}
    if not (cohort / "labels.csv").is_file():
        specs = [spec for spec in cohort_specs(200, 7) if spec.patient in test]
        write_cohort(cohort, specs, workers=2)
    with (cohort / "labels.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["patient"] in test]


def demo_int8_auroc(cohort: Path) -> dict[str, object]:
    """Slide AUROC of the demo model in float32 and INT8 on the same prepared test tiles."""
    from appliance.pathology.metrics import auroc
    from appliance.pathology.model import TileModel
    from appliance.pathology.prepare import TileSettings, prepare_slide, tile_batches

    rows = test_slides(cohort)
    models = [TileModel(DEMO, "cpu"), TileModel(DEMO_INT8, "cpu")]
    info = models[0].info
    settings = TileSettings(info.tile_px, info.tile_um, reference=info.stain_reference)
    scores: list[list[float]] = [[], []]
    for row in rows:
        prepared = prepare_slide(cohort / f"{row['slide']}.jpg", float(row["um_per_px"]), settings)
        parts: list[list[np.ndarray]] = [[], []]
        for _, pixels in tile_batches(prepared, settings, 128):
            for index, model in enumerate(models):
                parts[index].append(model.predict(pixels).probability)
        prepared.close()
        for index in range(2):
            scores[index].append(float(np.concatenate(parts[index]).mean()))
    truth = np.array([row["label"] == "MSI" for row in rows])
    float_auc, int8_auc = auroc(truth, np.array(scores[0])), auroc(truth, np.array(scores[1]))
    return {
        "demo_test_slides": len(rows),
        "demo_float32_auroc": round(float_auc, 4),
        "demo_int8_auroc": round(int8_auc, 4),
        "demo_int8_auroc_loss": round(float_auc - int8_auc, 4),
        "demo_float32_kb": round(DEMO.stat().st_size / 1e3, 1),
        "demo_int8_kb": round(DEMO_INT8.stat().st_size / 1e3, 1),
    }


def _paint_big_slide(path: Path, side_px: int) -> None:
    """A side_px square JPEG made of tiled synthetic tissue (child process, then freed)."""
    code = (
        "import cv2, numpy as np, sys\n"
        "from appliance.synthetic.he import cohort_specs, render_slide\n"
        "spec = next(s for s in cohort_specs(10, 3) if s.material == 'surgical')\n"
        "tile = cv2.cvtColor(render_slide(spec), cv2.COLOR_RGB2BGR)\n"
        "n = -(-int(sys.argv[2]) // tile.shape[0])\n"
        "big = np.tile(tile, (n, n, 1))[: int(sys.argv[2]), : int(sys.argv[2])]\n"
        "cv2.imwrite(sys.argv[1], big, [cv2.IMWRITE_JPEG_QUALITY, 85])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(side_px)], check=True, cwd=REPO)


def peak_rss_mb(command: list[str]) -> tuple[float, int, float]:
    """Peak RSS (MB), exit status and seconds of one child process, from wait4's rusage."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, process.returncode, time.perf_counter() - started


def big_slide_memory(workdir: Path, side_px: int) -> dict[str, object]:
    """Peak RSS of scoring a side_px square JPEG with the demo model: at 0.5 µm/px (decoded at
    1/8 scale) and at 4 µm/px (the model's own resolution: decoded at full size)."""
    slide = workdir / "big.jpg"
    _paint_big_slide(slide, side_px)
    result: dict[str, object] = {
        "big_slide_px": side_px, "big_slide_jpeg_mb": round(slide.stat().st_size / 1e6, 1),
        "bench_parent_rss_mb_at_spawn":
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    for label, um_per_px in (("reduced", "0.5"), ("full_decode", "4.0")):
        out = workdir / f"big-run-{label}"
        command = [sys.executable, "-m", "appliance", "pathology", "submit", str(slide),
                   "--um-per-px", um_per_px, "--out", str(out), "--model", str(DEMO)]
        rss_mb, status, seconds = peak_rss_mb(command)
        with (out / "results.csv").open(newline="") as handle:
            row = next(csv.DictReader(handle))
        result[f"big_slide_{label}"] = {
            "um_per_px": float(um_per_px), "peak_rss_mb": round(rss_mb, 1), "exit": status,
            "tiles": int(row["tile_count"] or 0), "seconds": round(seconds, 1),
            "error": row["error"],
        }
    return result


def main() -> int:
    """Run the chosen parts and print one JSON object."""
    args = _parser().parse_args()
    result: dict[str, object] = {"load_before": load_average(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="pathology-bench-") as tmp:
        # Memory first: a forked child's ru_maxrss starts at the parent's RSS at fork time,
        # so the parent must still be small (its RSS then is reported beside the figure).
        if not args.skip_memory:
            result |= big_slide_memory(Path(tmp), args.big_px)
        if not args.skip_speed:
            result |= vgg19_speed(Path(tmp), args.batch, args.repeats, args.threads)
        if not args.skip_accuracy:
            result |= demo_int8_auroc(args.cohort)
    result["load_after"] = load_average()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
