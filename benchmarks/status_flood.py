"""One kiosk's login floods statuses: how long does another kiosk's result take to be stored?

Prints ONE JSON object. A private mosquitto and one back-office worker, on SQLite (a file in a
temporary folder) and on PostgreSQL (a throw-away schema of ``--pg-url``'s database, dropped
afterwards; ``--pg-url ''``: SQLite only). A flooding login publishes ``--flood`` valid
statuses of its kiosk at QoS 1 as fast as one socket takes them (raw MQTT 3.1.1, a separate
process, PUBACKs not waited for), each a newer moment with a larger outbox depth; half a second
in, an honest kiosk publishes ``--results`` results, one every ``--every-s``. Figures a store:
the honest kiosk's result latency (publish to stored, median and largest), the status upserts
written and the statuses over the kiosk's rate, the messages the worker got through a second
(from the flood's start to the last one handled), and whether the flooding kiosk's row ends at
its last status.

Run it with the code before and after a change (``PYTHONPATH=/path/to/other/checkout``): the
worker runs with the shipped defaults of the code it imports; where that code knows
``backoffice.kiosk_statuses_per_s``, a second run ``unbounded`` sets it and its burst to
1,000,000 (one upsert a kiosk a batch still, no bound across batches).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=20_000)
    parser.add_argument("--results", type=int, default=20)
    parser.add_argument("--every-s", type=float, default=0.1)
    parser.add_argument("--pg-url", default=PG_URL)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from ingest import connect_packet, publish_packet, started_flood

import appliance
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import Store, open_store
from appliance.config import BackofficeConfig, config_from_mapping
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker
from appliance.transport.payloads import Result

PREFIX = "bench"
UNBOUNDED = 1_000_000


def _statuses(count: int) -> list[bytes]:
    """``count`` live statuses of lab/flood, 10 ms apart by its clock, its outbox growing."""
    start = datetime.now(UTC) - timedelta(minutes=4)
    topic = f"{PREFIX}/lab/flood/status"
    return [publish_packet(topic, fleet.online_status("lab", "flood", outbox_depth=n).model_copy(
        update={"at": start + timedelta(milliseconds=10 * n)}).to_json(), n % 65535 + 1)
        for n in range(count)]


def _results(count: int, seed: int) -> list[Result]:
    rng = random.Random(seed)
    return [fleet.sample_result(rng, "lab", "honest", i) for i in range(count)]


def run(store: Store, backoffice: dict[str, Any], flood: list[bytes], honest: list[Result],
        every_s: float) -> dict[str, Any]:
    """One run on ``store``: the flood, the honest kiosk's results meanwhile; the figures."""
    stored_at: dict[str, float] = {}

    def on_stored(results: list[Result]) -> None:
        now_s = time.perf_counter()
        stored_at.update((r.measurement_id, now_s) for r in results if r.device_id == "honest")

    with tempfile.TemporaryDirectory() as tmp, PrivateBroker() as broker:
        config = config_from_mapping({
            "mqtt": {"port": broker.port, "topic_prefix": PREFIX}, "state_dir": tmp,
            "backoffice": {"client_id": "bench-sflood-worker", **backoffice}}, environ={})
        worker = IngestWorker(config, store, on_stored=on_stored)
        worker.start()
        worker.subscribed.wait(10)
        flooder, go_s = started_flood(broker.port, f"bench-sflood-{uuid.uuid4().hex[:6]}", flood)
        time.sleep(0.5)
        kiosk = socket.create_connection(("127.0.0.1", broker.port))
        kiosk.sendall(connect_packet("bench-honest"))
        sent_at: dict[str, float] = {}
        for i, result in enumerate(honest):
            sent_at[result.measurement_id] = time.perf_counter()
            kiosk.sendall(publish_packet(f"{PREFIX}/lab/honest/result", result.to_json(), i + 1))
            time.sleep(every_s)
        deadline_s = time.monotonic() + 300
        while len(stored_at) < len(honest) and time.monotonic() < deadline_s:
            time.sleep(0.01)
        flooder.join()
        total = len(flood) + len(honest)
        while worker.stats.received < total and time.monotonic() < deadline_s:
            time.sleep(0.01)
        handled_s = time.perf_counter() - go_s
        time.sleep(1.0)  # a status held over the rate is written once its bucket lets it in
        kiosk.close()
        worker.stop()
        stats = worker.stats
    latencies = [stored_at[i] - sent_at[i] for i in stored_at]
    rows = [row for row in store.devices() if row["device_id"] == "flood"]
    return {
        **backoffice,
        "honest_results_stored": len(stored_at),
        "honest_result_latency_s_median": round(statistics.median(latencies), 3),
        "honest_result_latency_s_max": round(max(latencies), 3),
        "flood_sent": len(flood), "messages_received": stats.received,
        "status_upserts": stats.statuses,
        "statuses_over_rate": getattr(stats, "statuses_over_rate", None),
        "messages_handled_per_s": round(total / handled_s),
        "flood_row_at_last_status": bool(rows) and rows[0]["outbox_depth"] == len(flood) - 1,
    }


def runs_on(url: str, pg_schema: str | None, args: argparse.Namespace, flood: list[bytes],
            honest: list[Result]) -> dict[str, Any]:
    """The runs on one kind of store, each on a new one (``url`` with ``{run}``, a new schema):
    shipped defaults, and unbounded where the code has the bound."""
    settings: dict[str, dict[str, Any]] = {"shipped": {}}
    if "kiosk_statuses_per_s" in BackofficeConfig.model_fields:
        settings["unbounded"] = {"kiosk_statuses_per_s": UNBOUNDED,
                                 "kiosk_statuses_burst": UNBOUNDED}
    runs = {}
    for name, backoffice in settings.items():
        schema = None if pg_schema is None else f"{pg_schema}_{name}"
        store = open_store(url.format(run=name), pg_schema=schema)
        try:
            runs[name] = run(store, backoffice, flood, honest, args.every_s)
        finally:
            if schema is not None:
                store.drop_postgres_schema(schema)
            store.close()
    return runs


def main() -> None:
    """Run on SQLite, then PostgreSQL, and print one JSON object."""
    args = _parser().parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    flood, honest = _statuses(args.flood), _results(args.results, 2)
    load_at_start = os.getloadavg()[0]
    stores = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores["sqlite"] = runs_on(f"sqlite:///{tmp}/{{run}}.sqlite3", None, args, flood, honest)
    if args.pg_url:
        stores["postgresql"] = runs_on(args.pg_url, f"bench_sflood_{uuid.uuid4().hex[:10]}",
                                       args, flood, honest)
    print(json.dumps({
        "benchmark": "status_flood", "code": os.path.dirname(appliance.__file__),
        "stores": stores,
        "load_average_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
