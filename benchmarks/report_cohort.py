"""Report benchmark: peak memory and time of ``appliance report cohort`` over N stored results.

Prints ONE JSON object. A throw-away store of each backend (a SQLite file in a temporary folder,
a PostgreSQL schema on 127.0.0.1:5432 that is dropped afterwards) is filled with ``--results``
results of the simulated fleet (1,000 distinct results drawn by ``fleet.sample_result``, each
stored many times under new measurement ids; 90 % carry an age band, and one subject in ten is
measured twice). Then ``appliance report cohort --store URL --out DIR`` runs as its own process,
as an operator runs it, and its peak resident memory (``ru_maxrss``) and wall time are taken.
``small``: the same command on 1,000 results, so the part that grows with the store shows apart
from what importing numpy, scipy and matplotlib costs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def _whole_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _backends(text: str) -> list[str]:
    named = text.split(",")
    if not named or any(name not in BACKENDS for name in named):
        raise argparse.ArgumentTypeError(f"{text!r}: name sqlite, postgresql or both")
    return named


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=_whole_number, default=200_000,
                        help="results stored (200000)")
    parser.add_argument("--backends", type=_backends, default=list(BACKENDS),
                        help="comma-separated: sqlite, postgresql (both)")
    parser.add_argument("--schema-prefix", default="bench_cohort",
                        help="name of the throw-away PostgreSQL schema (a suffix is added)")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.synthetic import fleet
from appliance.transport.payloads import new_measurement_id

DISTINCT = 1000
BATCH_ROWS = 5000
_SUBJECT_AT, _AGE_BAND_AT = 10, 11  # in a result_row


def _rows(count: int) -> Any:
    """``count`` result rows: distinct ids, subjects and (for 90 %) an age band."""
    rng = random.Random(7)
    samples = []
    for i in range(DISTINCT):
        result = fleet.sample_result(rng, "lab", f"k{i % 20}", i)
        samples.append(list(result_row(result, iso_utc(result.captured_at),
                                       result.to_json().decode())))
    repeated = count // 10  # subjects s0 .. s{repeated-1} are measured twice
    for i in range(count):
        row = list(samples[i % DISTINCT])
        row[0] = new_measurement_id(1_780_000_000_000 + i)
        row[_SUBJECT_AT] = f"s{i % (count - repeated)}"
        row[_AGE_BAND_AT] = None if i % 10 == 9 else row[_AGE_BAND_AT]
        yield tuple(row)


def _fill(store: Store, count: int) -> float:
    started = time.perf_counter()
    batch: list[tuple[Any, ...]] = []
    for row in _rows(count):
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            store.write_batch(Batch(results=batch), 10)
            batch = []
    if batch:
        store.write_batch(Batch(results=batch), 10)
    return time.perf_counter() - started


def _report(url: str, out: Path) -> dict[str, Any]:
    """Run ``appliance report cohort`` as a process: its peak RSS (MB) and wall seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "report", "cohort", "--store", url, "--out",
         str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = (stream.read().decode() for stream in (process.stdout, process.stderr)
                      if stream is not None)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"report cohort exited {process.returncode}: {stderr or stdout}")
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 2)}


def _sqlite(count: int, tmp: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp / f'cohort-{count}.sqlite3'}"
    store = open_store(url)
    try:
        fill_s = _fill(store, count)
    finally:
        store.close()
    return {**_report(url, tmp / f"sqlite-{count}"), "fill_seconds": round(fill_s, 1)}


def _postgres(count: int, tmp: Path, schema_prefix: str) -> dict[str, Any]:
    schema = f"{schema_prefix}_{uuid.uuid4().hex[:10]}"
    store = open_store(PG_URL, pg_schema=schema)
    try:
        fill_s = _fill(store, count)
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        return {**_report(url, tmp / f"postgres-{count}"), "fill_seconds": round(fill_s, 1)}
    finally:
        store.drop_postgres_schema(schema)
        store.close()


def main() -> None:
    """Fill each store, run the report, print the figures as one JSON object."""
    args = _parser().parse_args()
    figures: dict[str, Any] = {"results": args.results}
    with tempfile.TemporaryDirectory(prefix="report-cohort-bench-") as tmp:
        for backend in args.backends:
            run = _sqlite if backend == "sqlite" else (
                lambda n, t: _postgres(n, t, args.schema_prefix))
            figures[backend] = {"small": run(1000, Path(tmp)), "large": run(args.results,
                                                                            Path(tmp))}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
