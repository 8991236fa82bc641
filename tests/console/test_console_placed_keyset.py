"""Result lists are keyset pages on (placed_at, measurement_id): results placed at the same
moment (a backlog placed at its receipt less the outbox bound, say) are paged through onward
and back without one lost or shown twice, and every list, count and export of results reads
a range of a migration-22 index on a few thousand results, never the whole table, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from console_helpers import make_result

from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import RESULT_COLUMNS, iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.console.filters import parse_query
from appliance.console.views import LIST_COLUMNS, results_page
from tests.store_helpers import BACKENDS, PG_URL

RECEIVED = datetime(2026, 12, 5, 12, tzinfo=UTC)
TIED = 23  # results placed at one moment
STORED = (*RESULT_COLUMNS, "placed_at")  # a result's columns as the ingest writes them
PLACED_INDEXES = ("results_placed_id", "results_site_placed_id", "results_label_placed_id",
                  "results_device_placed_id")


def _tied_and_others(store: Store) -> list[str]:
    """TIED results received at RECEIVED and captured by their kiosk's clock more than the
    outbox bound before it (all placed at RECEIVED less that bound), each written earlier the
    later its id, and two placed before and two after them; every id, newest placed first."""
    tied = [(make_result(i, "s", "k1", "30-39").model_copy(
        update={"captured_at": RECEIVED - timedelta(days=60, minutes=i)}), RECEIVED)
        for i in range(TIED)]
    others = [(make_result(TIED + i, "s", "k2", "30-39").model_copy(
        update={"captured_at": received - timedelta(hours=1)}), received)
        for i, received in enumerate((RECEIVED, RECEIVED - timedelta(days=40)) * 2)]
    store.write_batch(Batch(results=[result_row(r, iso_utc(at), r.to_json().decode())
                                     for r, at in tied + others]), 100)
    placed = store.query("SELECT placed_at, measurement_id FROM results")
    assert max(sum(at == row[0] for row in placed) for at, _ in placed) == TIED
    return [str(m) for _, m in sorted(placed, reverse=True)]


def _walk(store: Store, limit: int, start: str | None = None,
          way: str = "before") -> tuple[list[list[str]], str | None]:
    """The pages of ids from the ``start`` cursor on (``way``: before, onward; after,
    back), each as the list shows it, and the cursor the last page gives the other way."""
    pages, cursor = [], start
    while True:
        params = {"limit": str(limit), **({way: cursor} if cursor else {})}
        page = results_page(store, parse_query(params, sizes=None))
        pages.append([item["measurement_id"] for item in page.items])
        onward = page.older if way == "before" else page.newer
        if onward is None:
            return pages, page.newer if way == "before" else page.older
        cursor = onward


def test_results_placed_at_one_moment_are_paged_onward_and_back_once_each(
    store: Store
) -> None:
    newest_first = _tied_and_others(store)
    pages, back_from = _walk(store, 4)
    assert [m for page in pages for m in page] == newest_first
    assert back_from is not None
    pages_back, _ = _walk(store, 4, back_from, way="after")
    assert pages_back == pages[-2::-1]  # each page before the last, newest page last


def _fill(store: Store, count: int) -> None:
    """``count`` results over 30 days (five placed at each moment), 20 sites, 200 kiosks and
    3 grades; statistics taken, as a live database keeps them."""
    rows = []
    for i in range(count):
        placed = iso_utc(RECEIVED - timedelta(days=30) * (i // 5) / (count // 5))
        row = {"measurement_id": f"01900000-0000-7000-8000-{i:012d}", "device_id": f"k{i % 200}",
               "site": f"site-{i % 20}", "captured_at": placed, "received_at": placed,
               "placed_at": placed, "software_version": "0.1.0", "quality_verdict": "ok",
               "label": ("fine", "normal", "coarse")[i % 3], "payload": "{}",
               "not_validated": "", "pore_count": 30}
        rows.append(tuple(row.get(c, 1.0 if c not in ("model_name", "model_version",
                                                     "subject_id", "age_band") else None)
                          for c in STORED))
    store.write(f"INSERT INTO results ({','.join(STORED)}) "
                f"VALUES ({','.join('?' * len(STORED))})", rows)
    store.write("ANALYZE", [()])


def _statements(store: Store, monkeypatch: pytest.MonkeyPatch,
                read: Callable[[Store], Any]) -> list[tuple[str, list[Any]]]:
    """The SQL (with its parameters) that ``read`` sends to the store, none of it run."""
    sent: list[tuple[str, list[Any]]] = []

    def fetch(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        sent.append((sql, list(params)))
        return [(0,)]

    def stream(sql: str, params: Any, rows_at_once: int = 1000) -> Any:
        sent.append((sql, list(params)))
        return iter(())

    with monkeypatch.context() as reading:
        reading.setattr(store, "_fetch", fetch)
        reading.setattr(store, "_stream", stream)
        read(store)
    return sent


DAY, TWO_DAYS, WEEK = (iso_utc(RECEIVED - timedelta(days=days)) for days in (1, 2, 7))
CURSOR = (iso_utc(RECEIVED - timedelta(days=3)), "01900000-0000-7000-8000-000000001400")
READS: dict[str, Callable[[Store], Any]] = {
    "the newest page": lambda s: s.page_results(LIST_COLUMNS, ResultFilter(), None, 51),
    "a page deep in": lambda s: s.page_results(LIST_COLUMNS, ResultFilter(), CURSOR, 51),
    "a page back": lambda s: s.page_results(LIST_COLUMNS, ResultFilter(), None, 51,
                                            after=CURSOR),
    "one site": lambda s: s.page_results(LIST_COLUMNS, ResultFilter(site="site-3"), CURSOR, 51),
    "one kiosk": lambda s: s.page_results(LIST_COLUMNS, ResultFilter(device_id="k7"), None, 51),
    "one grade": lambda s: s.page_results(LIST_COLUMNS, ResultFilter(label="fine"), None, 51),
    "since yesterday": lambda s: s.page_results(LIST_COLUMNS, ResultFilter(placed_from=DAY),
                                                None, 51),
    "a day's count": lambda s: s.count_results_up_to(
        ResultFilter(placed_from=TWO_DAYS, placed_before=DAY), 10_000),
    "the query command": lambda s: s.select_results(("measurement_id",),
                                                    ResultFilter(placed_from=DAY), 50,
                                                    newest_first=True),
    "a kiosk's export": lambda s: s.select_results(
        ("measurement_id",), ResultFilter(device_id="k7", placed_from=WEEK)),
    "a site's export": lambda s: s.select_results(
        ("measurement_id",), ResultFilter(site="site-7", placed_from=WEEK)),
    "a kiosk of one site's query": lambda s: s.select_results(
        ("measurement_id",), ResultFilter(site="site-7", device_id="k7"), 50, newest_first=True),
    "one kiosk of one site": lambda s: s.page_results(
        LIST_COLUMNS, ResultFilter(site="site-7", device_id="k7"), None, 51),
}


@pytest.mark.parametrize("read", READS)
def test_every_list_of_results_reads_a_placed_at_index(
    store: Store, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    _fill(store, 3000)
    [(sql, params)] = _statements(store, monkeypatch, READS[read])
    explain = "EXPLAIN " if store.postgres else "EXPLAIN QUERY PLAN "
    plan = "\n".join(str(row[-1]) for row in store.query(explain + sql, params))
    assert any(index in plan for index in PLACED_INDEXES), plan
    if store.postgres:  # a filter few results meet may be read whole, then sorted
        assert "Seq Scan" not in plan, plan
    else:
        assert "TEMP B-TREE" not in plan, plan
        assert all("USING" in line for line in plan.splitlines() if "SCAN results" in line), plan


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_22_places_a_result_an_older_worker_stored_and_indexes_placed_at(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ingest worker older than migration 20, still running after it, stored results with
    no placed_at: the lists would never show them (a row compared with NULL is no match)."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"test_placed_keyset_{uuid.uuid4().hex[:12]}"
    result = make_result(1, "s", "k1", "30-39").model_copy(
        update={"captured_at": RECEIVED - timedelta(days=3)})
    with monkeypatch.context() as before_22:
        before_22.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:21])
        store = open_store(url, pg_schema=schema)
    try:
        store.write(f"INSERT INTO results ({','.join(RESULT_COLUMNS)}) "
                    f"VALUES ({','.join('?' * len(RESULT_COLUMNS))})",
                    [result_row(result, iso_utc(RECEIVED), result.to_json().decode())])
        assert store.migrate() == [version for version, _, _ in MIGRATIONS[21:]]  # 22 on
        page = store.page_results(("measurement_id", "placed_at"), ResultFilter(), None, 10)
        assert page == [(str(result.measurement_id), iso_utc(result.captured_at))]
    finally:
        if schema is not None:
            store.drop_postgres_schema(schema)
        store.close()
