"""Pathology server, whole path: JPEG slides -> slide scores, 3 concurrent jobs of mixed sizes.

    .venv/bin/python benchmarks/pathology_service.py [--backends onnx-cpu-int8 onnx-cpu-float]
        [--full-width] [--workers 2]

Prints ONE JSON object. For each backend a private mosquitto and a fresh SQLite store are
started, one ``PathologyServer`` runs in this process (slide preparation in worker processes),
and, after a one-slide warm-up job, three jobs are published at once: 1, 3 and 6 synthetic
slides (biopsies and surgical specimens). The figure is tiles scored per second of wall time
from the first submit to the last job's ``done`` (median of ``--rounds`` alternating runs),
with the server's own figures (shared batches, accelerator busy fraction, tiles per second of
model time). ``torch-cuda`` (eager, fp16, channels-last) and ``torch-cuda-compiled`` run only
where a GPU is present; with ``--full-width`` (or ``--width W --tile-px P``) the model is a
randomly initialised VGG19 of that width (GAP head; speed only, an INT8 twin and a guard fitted
on random tiles) instead of the demo model. GPU figures are never estimated: without a GPU the
JSON says so. On a GPU machine:
    benchmarks/pathology_service.py --full-width --workers 16 --batch 512 \
        --backends torch-cuda torch-cuda-compiled
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models" / "pathology"
sys.path.insert(0, str(MODELS))
sys.path.insert(0, str(REPO))
JOB_SIZES = (1, 3, 6)
# name -> (pathology.backends entry, INT8 model, torch.compile); torch-cuda is the eager
# baseline printed beside torch-cuda-compiled
BACKENDS = {
    "onnx-cpu-int8": ("onnx-cpu", True, False), "onnx-cpu-float": ("onnx-cpu", False, False),
    "torch-cpu": ("torch-cpu", False, False), "torch-cuda": ("torch-cuda", False, False),
    "torch-cuda-compiled": ("torch-cuda", False, True),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=sorted(BACKENDS),
                        default=["onnx-cpu-int8", "onnx-cpu-float"])
    parser.add_argument("--full-width", action="store_true",
                        help="random full-width VGG19 at 224 px (same as --width 1 --tile-px 224)")
    parser.add_argument("--width", type=float, help="random VGG19 of this width (speed only)")
    parser.add_argument("--tile-px", type=int, default=224, help="tile size of --width model")
    parser.add_argument("--workers", type=int, default=2, help="slide preparation processes")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all)")
    parser.add_argument("--batch", type=int, default=64, help="pathology.max_batch")
    parser.add_argument("--rounds", type=int, default=3, help="runs per backend (median)")
    return parser.parse_args()


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    parse_args()

import numpy as np


def make_slides(folder: Path) -> list[Path]:
    """Ten synthetic slides (mixed biopsies and surgical specimens) as JPEG."""
    from PIL import Image

    from appliance.synthetic.he import cohort_specs, render_slide

    specs = cohort_specs(12, seed=42)[: sum(JOB_SIZES)]
    paths = []
    for spec in specs:
        path = folder / f"{spec.slide}.jpg"
        Image.fromarray(render_slide(spec)).save(path, quality=88)
        paths.append(path)
    return paths


def random_model(folder: Path, width: float, tile_px: int, *, int8: bool) -> Path:
    """A random VGG19 (GAP head) with features and a guard, for speed only; with an INT8 twin
    when an INT8 backend is measured (quantizing takes the CPU a minute at full width)."""
    import torch
    from export import export_onnx, quantize_int8, read_metadata, set_metadata
    from fit_ood import add_features_output, model_features
    from vgg import VGG19

    from appliance.pathology.model import TileModel
    from appliance.pathology.ood import fit_guard, guard_inputs

    torch.manual_seed(0)
    path = folder / f"vgg19-w{width:g}-{tile_px}px.onnx"
    metadata = {"name": "vgg19-random", "version": "0", "labels": '["MSS", "MSI"]',
                "tile_px": str(tile_px), "tile_um": "256", "threshold": "0.5"}
    export_onnx(VGG19(width=width, head="gap").eval(), path, tile_px, metadata)
    rng = np.random.default_rng(0)
    if int8:
        quantize_int8(path, path.with_suffix(".int8.onnx"), rng.uniform(
            0, 255, (16, 3, tile_px, tile_px)).astype(np.float32))
    for model_path in (path, path.with_suffix(".int8.onnx"))[: 2 if int8 else 1]:
        add_features_output(model_path)
        model = TileModel(model_path, provider="auto", require_guard=False)  # CUDA if any
        probe = rng.integers(0, 255, (1, tile_px, tile_px, 3), dtype=np.uint8)
        dims = guard_inputs(probe, model_features(model, probe)).shape[1]
        tiles = rng.integers(0, 255, (dims + 200, tile_px, tile_px, 3), dtype=np.uint8)
        guard = fit_guard(guard_inputs(tiles, model_features(model, tiles)), np.zeros(len(tiles)))
        set_metadata(model_path, {**read_metadata(model_path), "ood": guard.to_metadata()})
    return path


def bench_config(name: str, port: int, slides: list[Path], model: Path, *,
                 args: argparse.Namespace, folder: Path) -> Any:
    """The server's config for one backend."""
    from appliance.config import config_from_mapping

    backend, int8, compiled = BACKENDS[name]
    int8_path = str(model.with_suffix("")) + ".int8.onnx"
    return config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": "bench"},
        "state_dir": str(folder / name),
        "pathology": {"slide_roots": [str(slides[0].parent)], "backends": [backend],
                      "model": str(model), "int8_model": int8_path if int8 else None,
                      "results_dir": str(folder / name / "out"), "max_batch": args.batch,
                      "prepare_workers": args.workers, "cpu_threads": args.threads,
                      "compile": compiled}})


def bench_jobs(name: str, slides: list[Path]) -> list[dict[str, Any]]:
    """A one-slide warm-up job, then the three jobs of JOB_SIZES slides."""
    from appliance.pathology.jobs import JOB_SCHEMA

    groups, start = [[slides[-1]]], 0
    for size in JOB_SIZES:
        groups.append(slides[start : start + size])
        start += size
    names = [f"bench/{name}-warm-up"] + [f"bench/{name}-{index}"  # LOGIN/NAME
                                          for index in range(len(JOB_SIZES))]
    return [{"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
             "slides": [{"path": str(path), "um_per_px": 1.0} for path in group]}
            for job_id, group in zip(names, groups, strict=True)]


def run_backend(name: str, slides: list[Path], model: Path, args: argparse.Namespace,
                folder: Path) -> dict[str, Any]:
    """Serve the three jobs with one backend; throughput and server metrics."""
    from appliance.pathology.jobstore import open_pathology_store
    from appliance.pathology.server import PathologyServer
    from appliance.transport.broker import PrivateBroker

    with PrivateBroker(workdir=folder / f"broker-{name}") as broker:
        store = open_pathology_store(f"sqlite:///{folder / name / 'store.sqlite3'}")
        server = PathologyServer(bench_config(name, broker.port, slides, model, args=args,
                                              folder=folder),
                                 store)
        stop = threading.Event()
        thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
        thread.start()
        server.connected.wait(10)
        time.sleep(0.5)
        warm_up, *jobs = bench_jobs(name, slides)
        submit_and_wait(broker.port, [warm_up], store)  # pool started, model warm
        before = (server.metrics.busy_s_total, server.batcher.stats.batches,
                  server.batcher.stats.shared_batches)
        seconds, tiles = submit_and_wait(broker.port, jobs, store)
        busy_s = server.metrics.busy_s_total - before[0]
        figures = {"backend": server.backend.settings, "tiles": tiles,
                   "seconds": round(seconds, 2), "tiles_per_s": round(tiles / seconds, 1),
                   "batches": server.batcher.stats.batches - before[1],
                   "shared_batches": server.batcher.stats.shared_batches - before[2],
                   "accelerator_busy_fraction": round(busy_s / seconds, 3),
                   "model_tiles_per_busy_s": round(tiles / max(1e-9, busy_s), 1)}
        stop.set()
        thread.join(30)
        store.close()
    return figures


def submit_and_wait(port: int, jobs: list[dict[str, Any]], store: Any) -> tuple[float, int]:
    """Publish every job at once (MQTT, QoS 1); seconds until all are done, tiles scored."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from appliance.pathology.jobs import request_topic

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.monotonic()
    for job in jobs:
        client.publish(request_topic("bench", job["job_id"]), json.dumps(job).encode(), qos=1,
                       retain=True)
    pending = {job["job_id"] for job in jobs}
    while pending:
        time.sleep(0.05)
        pending = {job_id for job_id in pending
                   if (store.job(job_id) or {}).get("state") not in ("done", "failed")}
    seconds = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    tiles = sum(int(row["tile_count"] or 0) for job in jobs
                for row in store.slide_results(job["job_id"]))
    return seconds, tiles


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tiles/s, with every round's tiles/s beside it."""
    ordered = sorted(runs, key=lambda run: run["tiles_per_s"])
    return {**ordered[len(ordered) // 2],
            "tiles_per_s_each_round": [run["tiles_per_s"] for run in runs]}


def measure(args: argparse.Namespace, width: float | None, gpu: str | None) -> dict[str, Any]:
    """Median figures per backend, over alternating rounds (load drifts hit all alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "slides").mkdir()
        slides = make_slides(folder / "slides")
        chosen = [name for name in args.backends if not name.startswith("torch-cuda") or gpu]
        int8 = any(BACKENDS[name][1] for name in chosen)
        model = (random_model(folder, width, args.tile_px, int8=int8) if width
                 else REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
        for round_index in range(args.rounds):
            for name in chosen:
                runs[name].append(run_backend(name, slides, model, args,
                                              folder / f"round{round_index}"))
    return {name: median_run(figures) for name, figures in runs.items()}


def main() -> int:
    """Run the chosen backends and print one JSON object."""
    args = parse_args()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    width = 1.0 if args.full_width else args.width
    results = measure(args, width, gpu)
    print(json.dumps({
        "benchmark": "pathology_service", "jobs_slides": list(JOB_SIZES),
        "model": f"vgg19 width {width:g}, {args.tile_px} px, random weights" if width
        else "msi-vgg19-w16 (demo), 64 px",
        "machine": {"cpus": os.cpu_count(),
                    "load_average": [round(v, 2) for v in os.getloadavg()],
                    "gpu": gpu or "none lent (no CUDA device); no GPU figures measured"},
        "results": results,
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
