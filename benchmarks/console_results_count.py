"""What the results page's count of matching results costs, on SQLite and on PostgreSQL.

Prints ONE JSON object: per backend, for 100,000 results (``--results``) from 500 kiosks at 50
sites over a year, the milliseconds (p50, p95, max over ``--repeat`` runs) of
- ``capped``: the count the page shows (``Store.count_results``: at most RESULTS_COUNTED, then
  "more than"), unfiltered, by site, by day range, by grade;
- ``exact``: a plain ``COUNT(*)`` of the same filters, for comparison (what an uncapped count
  would cost; it grows with the store, the capped one stops at the cap).
The store is a throw-away SQLite file and a throw-away PostgreSQL schema (127.0.0.1:5432,
database ``test``), both dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import RESULT_READ_COLUMNS
from appliance.backoffice.store import Store, open_store
from appliance.console.views import RESULTS_COUNTED

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FILTERS = {
    "every result": ResultFilter(),
    "one site": ResultFilter(site="site-7"),
    "a month": ResultFilter(placed_from="2026-03-01T00:00:00.000000Z",
                            placed_before="2026-04-01T00:00:00.000000Z"),
    "one grade": ResultFilter(label="fine"),
}


def _rows(count: int) -> list[tuple[Any, ...]]:
    """``count`` results in RESULT_READ_COLUMNS order: 500 kiosks, 50 sites, one every 5
    minutes, each placed at its capture."""
    rows = []
    for i in range(count):
        minutes = i * 5
        day, minute = divmod(minutes, 24 * 60)
        month, day_of = divmod(day % 336, 28)
        captured = (f"2026-{month + 1:02d}-{day_of + 1:02d}T{minute // 60:02d}:{minute % 60:02d}"
                    f":00.{i % 1000000:06d}Z")
        row = {"measurement_id": f"{uuid.UUID(int=i)}", "device_id": f"kiosk-{i % 500}",
               "site": f"site-{i % 500 // 10}", "captured_at": captured, "received_at": captured,
               "placed_at": captured,
               "software_version": "0.1.0", "quality_verdict": "ok",
               "label": ("fine", "normal", "coarse")[i % 3], "payload": "{}",
               "not_validated": ""}
        rows.append(tuple(row.get(c, 1.0 if c not in ("model_name", "model_version",
                                                     "subject_id", "age_band") else None)
                          for c in RESULT_READ_COLUMNS))
    return rows


def _timed(call: Callable[[], object], repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 2),
            "max_ms": round(times[-1], 2)}


def _exact(store: Store, where: ResultFilter) -> int:
    conditions, params = where.where()
    sql = "SELECT COUNT(*) FROM results" + (f" WHERE {' AND '.join(conditions)}"
                                            if conditions else "")
    return int(store.query(sql, params)[0][0])


def _measure(store: Store, count: int, repeat: int) -> dict[str, Any]:
    store.write(f"INSERT INTO results ({','.join(RESULT_READ_COLUMNS)}) VALUES "
                f"({','.join('?' * len(RESULT_READ_COLUMNS))})", _rows(count))
    store.write("ANALYZE", [()])
    figures: dict[str, Any] = {}
    for name, where in FILTERS.items():
        figures[name] = {
            "matching": _exact(store, where),
            "shown": store.count_results_up_to(where, RESULTS_COUNTED).text(),
            "capped": _timed(lambda w=where: store.count_results_up_to(w, RESULTS_COUNTED),
                             repeat),
            "exact": _timed(lambda w=where: _exact(store, w), repeat),
        }
    return figures


def main() -> None:
    args = _parser().parse_args()
    out: dict[str, Any] = {"results": args.results, "repeat": args.repeat,
                           "counted_at_most": RESULTS_COUNTED}
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'count.sqlite3'}")
        try:
            out["sqlite"] = _measure(store, args.results, args.repeat)
        finally:
            store.close()
    schema = f"console_count_{uuid.uuid4().hex[:8]}"
    store = open_store(PG_URL, pg_schema=schema)
    try:
        out["postgresql"] = _measure(store, args.results, args.repeat)
    finally:
        store.drop_postgres_schema(schema)
        store.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
