"""What the workers' asking of the kiosks to forget erased results (ForgetPublisher) costs an
ingesting back office, with ``--pending`` ids waiting in ``kiosk_forgets``.

Prints ONE JSON object. For each store (SQLite in a temporary folder; PostgreSQL in a
throw-away schema of ``--pg-url``'s database, dropped afterwards) and each count of pending
rows (0 and ``--pending``, spread over ``--kiosks`` kiosks, each "online" with link stamps, all
asked once before the figures so every look is the steady state: nothing new to send):

- ``look_ms``: median and 90th percentile of one ``ForgetPublisher.run_once`` (its own
  connection, as the worker's thread has), ``--looks`` of them;
- ``results_per_s``: results written by ``write_batch`` in batches of ``--batch`` for
  ``--seconds``, while a thread runs ``run_once`` every 2 s (FORGETS_EVERY_S) on its own
  connection, as ``appliance backoffice`` does; rounds with 0 and with the pending rows
  alternate ``--rounds`` times;
- ``plan``: the query plan of the look's read of ``kiosk_forgets``.

Run it with the code before and after a change (``PYTHONPATH``) to compare.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--kiosks", type=int, default=10)
    parser.add_argument("--looks", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--schema-prefix",
        default="bench_kiosk_forgets",
        help="the throw-away PostgreSQL schema's name starts with this",
    )
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.backoffice.kiosk_forgets import FORGETS_EVERY_S, ForgetPublisher
from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.synthetic import fleet
from appliance.transport.payloads import new_measurement_id, utc_now

RECEIVED = "2026-12-07T00:00:00.000000Z"
LOOK_SQL = (  # ForgetPublisher._read where a kiosk says a window of its own (erased_at read)
    "SELECT site, device_id, measurement_id, asked_at, erased_at FROM kiosk_forgets "
    "WHERE erased_at >= ? ORDER BY site, device_id, measurement_id"
)


def _open(backend: str, folder: Path, schema: str, pg_url: str) -> Any:
    if backend == "sqlite":
        return open_store(f"sqlite:///{folder / 'store.sqlite3'}", create=True)
    return open_store(pg_url, pg_schema=schema)


def _fill(store: Any, pending: int, kiosks: int) -> None:
    """``pending`` rows erased an hour ago, over ``kiosks`` kiosks, each online."""
    at = iso_utc(utc_now() - timedelta(hours=1))
    base = 1_765_000_000_000
    rows = [
        ("lab", f"kiosk-{n % kiosks}", new_measurement_id(base + n), at) for n in range(pending)
    ]
    store.write("DELETE FROM kiosk_forgets", [()])
    if rows:
        store.write(
            "INSERT INTO kiosk_forgets (site, device_id, measurement_id, erased_at) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )
    store.write("DELETE FROM devices", [()])
    store.write(
        "INSERT INTO devices (site, device_id, state, last_seen, status_boot, "
        "status_link_ms) VALUES (?, ?, 'online', ?, ?, ?)",
        [("lab", f"kiosk-{n}", RECEIVED, "boot-1", 1000) for n in range(kiosks)],
    )


def _publisher() -> ForgetPublisher:
    return ForgetPublisher("unused", "bench", 48.0, lambda topic, payload: True, threading.Event())


def _looks(store: Any, count: int) -> dict[str, float]:
    publisher = _publisher()
    publisher.run_once(store)  # asks everything once: what follows is the steady state
    times = []
    for _ in range(count):
        start = time.perf_counter()
        publisher.run_once(store)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "median": round(statistics.median(times), 3),
        "p90": round(times[int(0.9 * (len(times) - 1))], 3),
    }


def _ingest(store: Any, looker: Any, seconds: float, batch: int, seed: int) -> float:
    """Results written per second while a thread looks every FORGETS_EVERY_S."""
    stop = threading.Event()
    publisher = _publisher()

    def look() -> None:
        while True:
            publisher.run_once(looker)
            if stop.wait(FORGETS_EVERY_S):
                return

    thread = threading.Thread(target=look)
    thread.start()
    rng = random.Random(seed)
    written, start = 0, time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            results = [
                fleet.sample_result(rng, "lab", f"kiosk-{n % 10}", seed * 10**6 + written + n)
                for n in range(batch)
            ]
            store.write_batch(
                Batch(results=[result_row(r, RECEIVED, r.to_json().decode()) for r in results]),
                1000,
                2**40,
            )
            written += batch
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        thread.join()
    return round(written / elapsed, 1)


def _plan(store: Any) -> list[str]:
    cut = iso_utc(utc_now() - timedelta(hours=48))
    if store.postgres:
        return [str(row[0]) for row in store.query("EXPLAIN " + LOOK_SQL, (cut,))]
    return [str(row[-1]) for row in store.query("EXPLAIN QUERY PLAN " + LOOK_SQL, (cut,))]


def _one(backend: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    schema = f"{args.schema_prefix}_{uuid.uuid4().hex[:12]}"
    store = _open(backend, folder, schema, args.pg_url)
    looker = _open(backend, folder, schema, args.pg_url)
    figures: dict[str, Any] = {"looks": {}, "results_per_s": {"0": [], str(args.pending): []}}
    try:
        for pending in (0, args.pending):
            _fill(store, pending, args.kiosks)
            figures["looks"][str(pending)] = _looks(looker, args.looks)
        figures["plan"] = _plan(store)
        for round_ in range(args.rounds):
            for pending in (0, args.pending):
                _fill(store, pending, args.kiosks)
                figures["results_per_s"][str(pending)].append(
                    _ingest(store, looker, args.seconds, args.batch, round_ * 2 + bool(pending))
                )
    finally:
        looker.close()
        if backend == "postgres":
            store.drop_postgres_schema(schema)
        store.close()
    return figures


def main() -> None:
    args = _parser().parse_args()
    out: dict[str, Any] = {"pending": args.pending, "kiosks": args.kiosks}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = _one("sqlite", args, Path(tmp))
    if not args.skip_postgres:
        out["postgres"] = _one("postgres", args, Path("."))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
