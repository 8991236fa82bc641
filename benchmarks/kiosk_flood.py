"""One kiosk floods, another sends a burst: how fast is the other kiosk's burst stored?

Prints ONE JSON object. A private mosquitto and one back-office worker (SQLite store). A
flooding kiosk's login publishes ``--flood`` distinct valid results at QoS 1 as fast as one
socket takes them (raw MQTT 3.1.1, a separate process, PUBACKs not waited for); half a second
in, a second kiosk publishes ``--burst`` results. Two runs on the same traffic:
- ``unbounded``: kiosk buckets far larger than the flood (``backoffice.kiosk_results_per_s``
  and ``kiosk_results_burst`` at 1,000,000), as the worker was before the per-kiosk bound;
- ``bounded``: the shipped defaults (appliance/backoffice/kiosk_rate.py).
Figures: the second kiosk's results stored a second (its burst over the seconds from its first
publish to its last result stored), what of the flood was stored or refused for its rate, and
the messages the worker got through a second (all of them over the seconds from the flood's
start to the last one handled: a flood faster than that queues in the broker, refused or not).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import tempfile
import time
import uuid
from typing import Any


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=200)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from ingest import connect_packet, publish_packet, started_flood

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import BackofficeConfig, config_from_mapping
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker
from appliance.transport.payloads import Result

PREFIX = "bench"
UNBOUNDED = 1_000_000


def _packets(device: str, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    topic = f"{PREFIX}/lab/{device}/result"
    return [publish_packet(topic, fleet.sample_result(rng, "lab", device, i).to_json(),
                           i % 65535 + 1) for i in range(count)]


def run(per_s: float, burst: int, flood: list[bytes], second: list[bytes]) -> dict[str, Any]:
    """One run: the flood, then the second kiosk's burst; the figures of it."""
    stored_at: list[float] = []

    def on_stored(results: list[Result]) -> None:
        now_s = time.perf_counter()
        stored_at.extend(now_s for r in results if r.device_id == "second")

    with tempfile.TemporaryDirectory() as tmp, PrivateBroker() as broker:
        config = config_from_mapping({
            "mqtt": {"port": broker.port, "topic_prefix": PREFIX}, "state_dir": tmp,
            "backoffice": {"client_id": "bench-flood-worker", "kiosk_results_per_s": per_s,
                           "kiosk_results_burst": burst}}, environ={})
        store = open_store(f"sqlite:///{tmp}/bench.sqlite3")
        worker = IngestWorker(config, store, on_stored=on_stored)
        worker.start()
        worker.subscribed.wait(10)
        flooder, go_s = started_flood(broker.port, f"bench-flood-{uuid.uuid4().hex[:6]}", flood)
        time.sleep(0.5)
        sent_s = time.perf_counter()
        kiosk = socket.create_connection(("127.0.0.1", broker.port))
        kiosk.sendall(connect_packet("bench-second") + b"".join(second))
        deadline_s = time.monotonic() + 300
        while len(stored_at) < len(second) and time.monotonic() < deadline_s:
            time.sleep(0.01)
        seconds = (stored_at[-1] if stored_at else time.perf_counter()) - sent_s
        flooder.join()
        total = len(flood) + len(second)
        while worker.stats.received < total and time.monotonic() < deadline_s:
            time.sleep(0.01)
        handled_s = time.perf_counter() - go_s
        kiosk.close()
        worker.stop()
        stats = worker.stats
        store.close()
    return {
        "kiosk_results_per_s": per_s, "kiosk_results_burst": burst,
        "second_kiosk_stored": len(stored_at),
        "second_kiosk_seconds_to_all_stored": round(seconds, 3),
        "second_kiosk_stored_results_per_s": round(len(stored_at) / seconds, 1),
        "flood_sent": len(flood), "flood_stored": stats.stored - len(stored_at),
        "flood_over_rate": stats.over_rate,
        "messages_handled_per_s": round(total / handled_s),
    }


def main() -> None:
    """Run unbounded, then bounded, and print one JSON object."""
    args = _parser().parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    flood, second = _packets("flood", args.flood, 1), _packets("second", args.burst, 2)
    defaults = BackofficeConfig()
    load_at_start = os.getloadavg()[0]
    runs = {
        "unbounded": run(UNBOUNDED, UNBOUNDED, flood, second),
        "bounded": run(defaults.kiosk_results_per_s, defaults.kiosk_results_burst, flood, second),
    }
    print(json.dumps({
        "benchmark": "kiosk_flood", "runs": runs,
        "load_average_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
