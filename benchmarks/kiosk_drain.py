"""A kiosk's backlog beyond its back office's bucket: how many messages does it send a result?

Prints ONE JSON object. A private mosquitto, one back-office worker (SQLite store) whose token
bucket a kiosk is ``--per-s`` and ``--burst`` (appliance/backoffice/kiosk_rate.py), and a
kiosk's link (transport/mqtt.py) started on an outbox of ``--backlog`` results, with
``edge.ack_resend_initial_s`` at ``--resend-initial-s``. Figures: the results the link
published (first sends and resends), how many of them the worker turned away for the rate, and
the messages sent per result stored, over the drain (link start to an empty outbox); also the
seconds the drain took, which the bucket sets (backlog beyond the burst / rate).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=300)
    parser.add_argument("--per-s", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--resend-initial-s", type=float, default=4.0)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import config_from_mapping
from appliance.synthetic import fleet
from appliance.transport.acks import ack_topic
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import LinkSettings
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox

PREFIX = "bench"


def run(backlog: int, per_s: float, burst: int, resend_initial_s: float) -> dict[str, Any]:
    """One drain of ``backlog`` results; the figures of it."""
    rng = random.Random(11)
    topic = f"{PREFIX}/lab/drain/result"
    results = [fleet.sample_result(rng, "lab", "drain", i) for i in range(backlog)]
    with tempfile.TemporaryDirectory() as tmp, PrivateBroker() as broker:
        config = config_from_mapping({
            "mqtt": {"port": broker.port, "topic_prefix": PREFIX}, "state_dir": tmp,
            "backoffice": {"client_id": "bench-drain-worker", "kiosk_results_per_s": per_s,
                           "kiosk_results_burst": burst}}, environ={})
        store = open_store(f"sqlite:///{tmp}/bench.sqlite3")
        worker = IngestWorker(config, store)
        worker.start()
        worker.subscribed.wait(10)
        outbox = Outbox(Path(tmp) / "outbox.sqlite3")
        outbox.add_many([(r.measurement_id, topic, r.to_json()) for r in results])
        link = MqttLink(
            LinkSettings("127.0.0.1", broker.port, "bench-drain-kiosk",
                         ack_resend_initial_s=resend_initial_s,
                         ack_resend_cap_s=max(300.0, resend_initial_s)),
            outbox, status_topic=f"{PREFIX}/lab/drain/status", status_payload=lambda _: b"",
            ack_topic=ack_topic(PREFIX, "lab", "drain"))
        started_s = time.perf_counter()
        link.start()
        deadline_s = time.monotonic() + 1800
        while not link.idle() and time.monotonic() < deadline_s:
            time.sleep(0.05)
        seconds = time.perf_counter() - started_s
        link.stop_event.set()
        link.wake()
        link.join(5)
        worker.stop()
        stored = store.count_results()
        store.close()
        outbox.close()
    return {
        "backlog": backlog, "kiosk_results_per_s": per_s, "kiosk_results_burst": burst,
        "ack_resend_initial_s": resend_initial_s, "stored": stored,
        "published": link.stats.published, "resent": link.stats.resent,
        "turned_away_for_rate": worker.stats.over_rate,
        "messages_per_stored_result": round(link.stats.published / max(stored, 1), 2),
        "drain_seconds": round(seconds, 1),
    }


def main() -> None:
    """Drain one backlog and print one JSON object."""
    args = _parser().parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    load_at_start = os.getloadavg()[0]
    figures = run(args.backlog, args.per_s, args.burst, args.resend_initial_s)
    print(json.dumps({
        "benchmark": "kiosk_drain", **figures,
        "load_average_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
