"""Pathology servers sharing a backlog: how many of N waiting jobs each of two servers runs.

    .venv/bin/python benchmarks/pathology_spread.py [--jobs 40] [--second-after 2]
        [--limits 0 10000] [--store-url postgresql://...]

Prints ONE JSON object. For each ``pathology.max_running_jobs`` in ``--limits`` (0: unset,
twice ``prepare_workers``; 10000: no limit, as the server was before the key) a private
mosquitto and a fresh SQLite store (or the
``--store-url`` database, as servers on several hosts share; each run's job ids are its own) are
started, N one-slide jobs (a small synthetic biopsy)
are published retained, one server starts, and a second one ``--second-after`` seconds later
(both in this process, onnx-cpu, one preparation worker and one ONNX thread each). The
figures: jobs each server ran (the store's owner), seconds until all were done, and the most
jobs the first server held at once.
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
sys.path.insert(0, str(REPO))


def make_slide(folder: Path) -> Path:
    """One small synthetic biopsy as JPEG."""
    from PIL import Image

    from appliance.synthetic.he import SlideSpec, render_slide

    path = folder / "b11.jpg"
    spec = SlideSpec("b11", "P11", "MSI", "biopsy", 1, 0.5, seed=11)
    Image.fromarray(render_slide(spec)).save(path, quality=88)
    return path


def server_config(name: str, port: int, slide: Path, limit: int, folder: Path) -> Any:
    """One server's config."""
    from appliance.config import config_from_mapping

    return config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": "spread"},
        "state_dir": str(folder),
        "pathology": {"client_id": name, "slide_roots": [str(slide.parent)],
                      "backends": ["onnx-cpu"], "results_dir": str(folder / "out"),
                      "prepare_workers": 1, "cpu_threads": 1,
                      "max_running_jobs": limit or None,
                      # one login ("bench") sends the whole backlog: its share is the total
                      "max_retained_requests_per_login": 1000}})


def start_server(config: Any, store_url: str) -> tuple[Any, threading.Event, threading.Thread]:
    """A server running in a thread of this process."""
    from appliance.pathology.jobstore import open_pathology_store
    from appliance.pathology.server import PathologyServer

    server = PathologyServer(config, open_pathology_store(store_url))
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    server.connected.wait(10)
    return server, stop, thread


def publish_jobs(port: int, slide: Path, count: int, run: str) -> list[str]:
    """Publish count one-slide jobs, retained; their ids."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from appliance.pathology.jobs import JOB_SCHEMA, request_topic

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ids = [f"bench/spread-{run}-{index}" for index in range(count)]  # LOGIN/NAME
    for job_id in ids:
        job = {"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
               "slides": [{"path": str(slide), "um_per_px": 1.0}]}
        client.publish(request_topic("spread", job_id), json.dumps(job).encode(), qos=1,
                       retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    return ids


def run_limit(limit: int, slide: Path, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Two servers, N jobs, one limit: who ran what, and how long it took."""
    from appliance.pathology.jobstore import open_pathology_store
    from appliance.transport.broker import PrivateBroker

    store_url = args.store_url or f"sqlite:///{folder / 'store.sqlite3'}"
    with PrivateBroker(workdir=folder / "broker") as broker:
        first = start_server(server_config("first", broker.port, slide, limit, folder),
                             store_url)
        started = time.monotonic()
        ids = publish_jobs(broker.port, slide, args.jobs, folder.name)
        peak = 0
        while time.monotonic() - started < args.second_after:
            peak = max(peak, len(first[0].runs))
            time.sleep(0.02)
        second = start_server(server_config("second", broker.port, slide, limit, folder),
                              store_url)
        store = open_pathology_store(store_url)
        while any((store.job(job_id) or {}).get("state") not in ("done", "failed")
                  for job_id in ids):
            peak = max(peak, len(first[0].runs))
            time.sleep(0.05)
        seconds = time.monotonic() - started
        owners = [(store.job(job_id) or {}).get("owner") for job_id in ids]
        for _, stop, thread in (first, second):
            stop.set()
            thread.join(30)
        store.close()
    return {"max_running_jobs": limit or f"unset ({first[0].settings.running_jobs_limit})",
            "jobs_first": owners.count("first"), "jobs_second": owners.count("second"),
            "seconds": round(seconds, 1), "first_server_peak_running": peak}


def main() -> int:
    """Run each limit and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="one-slide jobs waiting")
    parser.add_argument("--second-after", type=float, default=2.0,
                        help="seconds between the first server's start and the second's")
    parser.add_argument("--limits", type=int, nargs="+", default=[0, 10_000],
                        help="pathology.max_running_jobs values (0: unset)")
    parser.add_argument("--store-url", help="store both servers share (default: fresh SQLite)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        slide = make_slide(Path(tmp))
        for index, limit in enumerate(args.limits):
            folder = Path(tmp) / f"run{index}-{os.getpid()}"
            folder.mkdir()
            results.append(run_limit(limit, slide, args, folder))
    print(json.dumps({"benchmark": "pathology_spread", "jobs": args.jobs,
                      "second_server_after_s": args.second_after,
                      "store": (args.store_url or "sqlite").split("://")[0],
                      "machine": {"cpus": os.cpu_count(),
                                  "load_average": [round(v, 2) for v in os.getloadavg()]},
                      "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
