"""Model rollout figures: 20 simulated kiosks to `installed`, and memory during a download.

Prints ONE JSON object. Runs against a private mosquitto on a free port (started here) and the
repository's own static HTTP server. Rollout: 20 real edge daemons in this process (synthetic
camera, real gate and sessions, FAKE constant analyser, real model, real updater) start on
1.0.0; the back office releases 1.1.0 and rolls it out (2 canaries, then a wave of 18); the
figure is the time from the start of the rollout until every kiosk reported installed and
healthy (health check: 2 measurements). Download: the kiosk's ngclient download of a 40 MB
target; peak Python allocation (tracemalloc) and the process's peak RSS growth show that
the body is streamed to disk, not held in memory.
Usage: .venv/bin/python benchmarks/model_rollout.py [--kiosks N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from appliance.synthetic.arguments import whole_number


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiosks", type=whole_number(1, 1000), default=20,
                        help="simulated kiosks in the rollout, 1-1000 (20)")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import numpy as np

from appliance.backoffice.store import open_store
from appliance.config import Config, config_from_mapping
from appliance.transport.broker import PrivateBroker
from appliance.updates.fetch import RepositoryClient
from appliance.updates.fleetwatch import FleetWatcher
from appliance.updates.manifest import FEATURE_SCHEMA, ModelManifest, SelfTestVector
from appliance.updates.operations import assign, init_repository, release_model
from appliance.updates.release import manifest_for
from appliance.updates.repository import FileRepository
from appliance.updates.rollout import Rollout, RolloutPlan
from appliance.updates.serve import RepositoryServer
from appliance.updates.testing import kiosk_daemon, linear_model

SITE = "bench"
DOWNLOAD_BYTES = 40 * 1024 * 1024


def kiosk_config(work: Path, broker: PrivateBroker, repo: FileRepository, url: str,
                 device_id: str) -> Config:
    """One simulated kiosk's config: starts on 1.0.0, updates from ``url``."""
    return config_from_mapping({
        "device": {"id": device_id, "site": SITE},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "bench"},
        "state_dir": str(work / device_id),
        "model": {"path": str(work / "initial.onnx")},
        "edge": {"synthetic_fps": 16},
        "updates": {"url": url, "trusted_root": str(repo.metadata_dir / "1.root.json"),
                    "check_interval_s": 600, "health_measurements": 2},
    }, "bench", environ={})


def inputs(rows: int = 12) -> list[list[float]]:
    """Self-test inputs at realistic feature scales."""
    scales = np.array([90, 75, 150, 0.02, 6, 12, 0.08, 45, 0.3, 30, 60, 10, 15, 30, 20, 0.05])
    return (np.random.default_rng(0).lognormal(0.0, 0.2, (rows, 16)) * scales).tolist()


def rollout_figures(work: Path, broker: PrivateBroker, kiosks: int) -> dict[str, Any]:
    """Seconds from rollout start until every kiosk is installed and healthy."""
    repo = init_repository(work / "repo")
    server = RepositoryServer(repo.dir / "public").start()
    linear_model(work / "initial.onnx", "1.0.0")
    names = [f"kiosk-{i:02d}" for i in range(kiosks)]
    daemons = [kiosk_daemon(kiosk_config(work, broker, repo, server.url, n)) for n in names]
    threads = [threading.Thread(target=d.run, daemon=True) for d in daemons]
    for thread in threads:
        thread.start()
    mqtt = config_from_mapping({"mqtt": {"port": broker.port, "topic_prefix": "bench"}}, "b",
                               environ={}).mqtt
    watcher = FleetWatcher(mqtt, "bench-watcher")
    store = open_store(f"sqlite:///{work / 'backoffice.sqlite3'}")
    try:
        while len(watcher.devices()) < kiosks:
            time.sleep(0.1)
        model = linear_model(work / "new.onnx", "1.1.0", bias=(2.5, 0.0, 0.0))
        manifest = manifest_for(model, "1.1.0", inputs())
        release_model(repo, model, manifest)
        plan = RolloutPlan(manifest, [(SITE, n) for n in names], canaries=2,
                           wave_size=kiosks, timeout_s=120)
        started_s = time.monotonic()
        outcome = Rollout(repo, watcher, store, plan).run()
        took_s = time.monotonic() - started_s
    finally:
        for daemon in daemons:
            daemon.request_stop()
        for thread in threads:
            thread.join(10)
        watcher.close()
        store.close()
        server.close()
    installed = sum(o[0] == "installed" for o in outcome.outcomes.values())
    return {"kiosks": kiosks, "state": outcome.state, "installed_healthy": installed,
            "seconds_to_all_installed_healthy": round(took_s, 2), "target_s": 60}


def download_figures(work: Path) -> dict[str, Any]:
    """Peak memory while the kiosk downloads a 40 MB target through ngclient."""
    repo = init_repository(work / "big-repo")
    big = work / "big.onnx"
    with big.open("wb") as out:
        for _ in range(DOWNLOAD_BYTES // (1 << 20)):
            out.write(os.urandom(1 << 20))
    vector = SelfTestVector(features=[0.0] * 16, label="fine", probabilities=[1.0, 0.0, 0.0])
    manifest = ModelManifest(name="big", version="1.0.0", feature_schema=FEATURE_SCHEMA,
                             device_types=["skin-kiosk"], self_test=[vector])
    release_model(repo, big, manifest)
    assign(repo, [(SITE, "kiosk-dl")], manifest)
    server = RepositoryServer(repo.dir / "public").start()
    try:
        config = config_from_mapping({"updates": {
            "url": server.url, "trusted_root": str(repo.metadata_dir / "1.root.json")}},
            "bench", environ={})
        client = RepositoryClient(config.updates, SITE, "kiosk-dl", work / "dl-state")
        rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        started_s = time.monotonic()
        found = client.check()
        if found is None:
            raise RuntimeError("the download benchmark's assignment was not found")
        client.download(found[0], found[1], work / "downloaded.onnx")
        took_s = time.monotonic() - started_s
        _, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        server.close()
    return {"target_bytes": DOWNLOAD_BYTES, "seconds": round(took_s, 2),
            "peak_python_alloc_bytes": peak_bytes,
            "peak_rss_growth_bytes": max(0, rss_after_kb - rss_before_kb) * 1024}


def main(argv: list[str]) -> int:
    """Run both parts and print one JSON object."""
    kiosks = _parser().parse_args(argv).kiosks
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        download = download_figures(work)  # first: peak RSS growth is only visible on a new peak
        broker = PrivateBroker(workdir=work / "broker")
        broker.start()
        try:
            rollout = rollout_figures(work, broker, kiosks)
        finally:
            broker.close()
    print(json.dumps({
        "machine": {"cores": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]},
        "rollout": rollout,
        "download": download,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
