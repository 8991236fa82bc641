"""`results retry` benchmark: how long the retry keeps an ingest batch waiting, on a store of
``--letters`` dead letters.

Prints ONE JSON object. For each store (SQLite in a temporary folder; PostgreSQL in a
throw-away schema of ``--pg-url``'s database, dropped afterwards) the store is filled with
``--letters`` dead-lettered results of about 1 kB, half of them taken now and half still
refused (captured in the far future), then `appliance results retry` runs as a user runs it
while a probe writes the way an ingest batch with a dead letter does (its own connection:
the write lock on SQLite, ``UPDATE dead_letter_totals`` on both) every 10 ms. Figures: the
retry's wall time, the probe's longest wait (what an ingest batch waited at most: about the
time the retry held the lock), and the command's own line. Run it with the code before and
after a change (``PYTHONPATH``) to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--schema-prefix", default="bench_retry_lock",
                        help="the throw-away PostgreSQL schema's name starts with this")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.backoffice.schema import dead_letter
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main as appliance_main
from appliance.synthetic import fleet

AT = "2026-12-05T00:00:00.000000Z"
FILL_AT_ONCE = 2000  # letters per filling batch
PROBE_EVERY_S = 0.01


def _letters(start: int, count: int) -> list[Any]:
    """Dead-lettered results: the even ones taken by a retry now, the odd ones captured in
    2099 (a kiosk clock far ahead: still refused)."""
    letters = []
    for index in range(start, start + count):
        result = fleet.sample_result(random.Random(index), "lab", f"k{index % 50}", index)
        if index % 2:
            result = result.model_copy(update={"captured_at": datetime(2099, 1, 1, tzinfo=UTC)})
        letters.append(dead_letter(AT, f"appliance/lab/k{index % 50}/result",
                                   "captured_at is ahead of the back office's clock",
                                   result.to_json()))
    return letters


def _fill(url: str, pg_schema: str | None, count: int) -> None:
    store = open_store(url, pg_schema=pg_schema)
    try:
        for start in range(0, count, FILL_AT_ONCE):
            store.write_batch(Batch(dead_letters=_letters(start, min(FILL_AT_ONCE,
                                                                     count - start))), 10 * count)
    finally:
        store.close()


class _Probe(threading.Thread):
    """Writes as an ingest batch with a dead letter does, every PROBE_EVERY_S, until stopped;
    keeps the longest wait."""

    def __init__(self, url: str, pg_schema: str | None) -> None:
        super().__init__(daemon=True)
        self.url, self.pg_schema = url, pg_schema
        self.stop = threading.Event()
        self.longest_s, self.probes = 0.0, 0

    def run(self) -> None:
        connection = self._connect()
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                self._write(connection)
                self.longest_s = max(self.longest_s, time.perf_counter() - started)
                self.probes += 1
                time.sleep(PROBE_EVERY_S)
        finally:
            connection.close()

    def _connect(self) -> Any:
        if self.pg_schema is None:
            import sqlite3

            connection = sqlite3.connect(self.url.removeprefix("sqlite:///"),
                                         isolation_level=None, timeout=600)
            return connection
        import psycopg

        connection = psycopg.connect(self.url, autocommit=True)
        connection.execute(f"SET search_path TO {self.pg_schema}")
        return connection

    def _write(self, connection: Any) -> None:
        begin = "BEGIN IMMEDIATE" if self.pg_schema is None else "BEGIN"
        connection.execute(begin)
        connection.execute("UPDATE dead_letter_totals SET letters = letters")
        connection.execute("COMMIT")


def run_store(url: str, pg_schema: str | None, letters: int) -> dict[str, Any]:
    """Fill one store, then time `results retry` on it with the probe writing."""
    _fill(url, pg_schema, letters)
    command_url = url if pg_schema is None else f"{url}?options=-csearch_path%3D{pg_schema}"
    probe = _Probe(url, pg_schema)
    said = io.StringIO()
    probe.start()
    started = time.perf_counter()
    with contextlib.redirect_stdout(said):
        code = appliance_main(["results", "retry", "--store", command_url])
    retry_s = time.perf_counter() - started
    probe.stop.set()
    probe.join()
    return {"letters": letters, "exit_code": code, "retry_s": round(retry_s, 3),
            "ingest_longest_wait_s": round(probe.longest_s, 3), "probes": probe.probes,
            "said": said.getvalue().strip()}


def main() -> None:
    """Run on each store and print one JSON object."""
    args = _parser().parse_args()
    load_at_start = os.getloadavg()[0]
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs["sqlite"] = run_store(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", None, args.letters)
    if not args.skip_postgres:
        schema = f"{args.schema_prefix}_{uuid.uuid4().hex[:10]}"
        try:
            runs["postgresql"] = run_store(args.pg_url, schema, args.letters)
        finally:
            owner = open_store(args.pg_url, pg_schema=schema)
            owner.drop_postgres_schema(schema)
            owner.close()
    print(json.dumps({
        "benchmark": "retry_lock", "runs": runs,
        "load_average_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
