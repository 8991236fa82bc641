"""Dead-letter bounds benchmark: what one ingest batch bringing a dead letter costs, by how many
letters the store keeps already.

Prints ONE JSON object. For each store (SQLite in a temporary folder; PostgreSQL in a
throw-away schema of ``--pg-url``'s database, dropped afterwards) and each ``--kept`` count:
the store is filled with that many distinct letters of ``--letter-bytes`` each, then
``--batches`` batches each bring one new letter, timed one by one (``write_batch``, its commit
included):
- ``under_bounds``: the default bounds (100,000 rows, 64 MiB) are not reached: nothing is pruned;
- ``at_row_bound``: the row bound is the kept count: every batch prunes the oldest letter.
Each case checks the letters kept afterwards against the bound. Figures: median and 90th
percentile milliseconds per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kept", type=_whole_number, nargs="+", default=[20_000, 100_000],
                        help="letters kept before the timed batches")
    parser.add_argument("--batches", type=_whole_number, default=50)
    parser.add_argument("--letter-bytes", type=_whole_number, default=300)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--skip-postgres", action="store_true")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.backoffice.schema import dead_letter
from appliance.backoffice.store import Batch, Store, open_store
from appliance.config import BackofficeConfig

AT = "2026-12-05T00:00:00.000000Z"
FILL_AT_ONCE = 5000  # letters per filling batch


def _letters(start: int, count: int, size: int) -> list[Any]:
    """``count`` distinct refused status messages of ``size`` payload bytes."""
    return [dead_letter(AT, f"p/lab/k{i % 500}/status", "status not valid JSON",
                        (b"%012d" % i) + b"x" * max(0, size - 12))
            for i in range(start, start + count)]


def _timed_batches(store: Store, first: int, args: argparse.Namespace,
                   max_rows: int, max_bytes: int) -> list[float]:
    """Milliseconds of each of ``args.batches`` batches that bring one new letter."""
    spent = []
    for n in range(args.batches):
        batch = Batch(dead_letters=_letters(first + n, 1, args.letter_bytes))
        started = time.perf_counter()
        store.write_batch(batch, max_rows, max_bytes)
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def _summary(spent: list[float]) -> dict[str, float]:
    ordered = sorted(spent)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3)}


def run_case(store: Store, kept: int, args: argparse.Namespace) -> dict[str, Any]:
    """Fill ``store`` to ``kept`` letters, then time batches under and at the row bound."""
    defaults = BackofficeConfig()
    max_rows, max_bytes = defaults.dead_letter_max_rows, defaults.dead_letter_max_total_bytes
    filled = store.count_dead_letters()
    while filled < kept:
        count = min(FILL_AT_ONCE, kept - filled)
        store.write_batch(Batch(dead_letters=_letters(filled, count, args.letter_bytes)),
                          max(max_rows, kept), max_bytes)
        filled += count
    under = _timed_batches(store, 10**9, args, max(max_rows, kept + args.batches), max_bytes)
    at_bound = _timed_batches(store, 2 * 10**9, args, kept, max_bytes)
    return {"kept": kept, "under_bounds": _summary(under), "at_row_bound": _summary(at_bound),
            "kept_after_within_row_bound": store.count_dead_letters() == kept}


def run_store(url: str, pg_schema: str | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every ``--kept`` count on one store, growing it from the smallest."""
    store = open_store(url, pg_schema=pg_schema)
    try:
        return [run_case(store, kept, args) for kept in sorted(args.kept)]
    finally:
        if pg_schema is not None:
            store.drop_postgres_schema(pg_schema)
        store.close()


def main() -> None:
    """Run the cases and print one JSON object."""
    args = _parser().parse_args()
    load_at_start = os.getloadavg()[0]
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs["sqlite"] = run_store(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", None, args)
    if not args.skip_postgres:
        schema = f"bench_dead_letters_{uuid.uuid4().hex[:10]}"
        runs["postgresql"] = run_store(args.pg_url, schema, args)
    print(json.dumps({
        "benchmark": "dead_letter_bounds", "batches": args.batches,
        "letter_bytes": args.letter_bytes, "runs": runs,
        "load_average_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
