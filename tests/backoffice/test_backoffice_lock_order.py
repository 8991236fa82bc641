"""Two ingest workers on one PostgreSQL store whose batches hold the same results, or results of
the same kiosks, in opposite orders: both commit, nothing is lost (rows are locked in one
order by every writer, store_writes.py), where PostgreSQL used to end one with a deadlock."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from appliance.backoffice.schema import device_row, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from tests.store_helpers import PG_URL

AT = "2026-12-05T00:00:00.000000Z"
WAIT_S = 20.0


@pytest.fixture
def stores() -> Iterator[tuple[Store, Store, Store]]:
    """Two workers' connections and an observer's, on one throw-away PostgreSQL schema."""
    schema = f"store_lock_order_{uuid.uuid4().hex[:12]}"
    opened = [open_store(PG_URL, pg_schema=schema) for _ in range(3)]
    try:
        yield opened[0], opened[1], opened[2]
    finally:
        for store in opened[1:]:
            store.close()
        opened[0].drop_postgres_schema(schema)
        opened[0].close()


def _rows(device_ids: Sequence[str], first: int) -> list[tuple[Any, ...]]:
    results = [fleet.sample_result(random.Random(n), "lab", device, n)
               for n, device in enumerate(device_ids, start=first)]
    return [result_row(r, AT, r.to_json().decode()) for r in results]


def _backend_pid(store: Store) -> int:
    return int(store.query("SELECT pg_backend_pid()")[0][0])


def _wait_until_blocked(observer: Store, pid: int) -> None:
    """Until the backend ``pid`` waits for a lock another transaction holds."""

    def waits_for_a_lock() -> bool:
        rows = observer.query("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?",
                              (pid,))
        return bool(rows) and rows[0][0] == "Lock"

    if not wait_until(waits_for_a_lock, WAIT_S):
        pytest.fail(f"backend {pid} never waited for a lock in {WAIT_S:.0f} s")


def _one_row_at_a_time(store: Store, table: str, after_first: threading.Event | None,
                       go_on: threading.Event | None) -> None:
    """The store inserts into ``table`` one row per statement, in the order it is given, and
    (``after_first``) stops after the first until ``go_on``: where each row's lock is taken."""
    insert_many = store._insert_many  # noqa: SLF001 - the test orders the inserts' locks

    def one_by_one(cur: Any, name: str, columns: Sequence[str],
                   rows: Sequence[tuple[Any, ...]], conflict: str, *,
                   returning: str | None = None) -> list[Any]:
        returned = []
        for index, row in enumerate(rows):
            returned += insert_many(cur, name, columns, [row], conflict, returning=returning)
            if name == table and index == 0 and after_first is not None and go_on is not None:
                after_first.set()
                go_on.wait(WAIT_S)
        return returned

    store._insert_many = one_by_one  # type: ignore[method-assign]  # noqa: SLF001


def _opposite_orders(stores: tuple[Store, Store, Store], table: str, batch_a: Batch,
                     batch_b: Batch) -> list[BaseException]:
    """A takes its first ``table`` row and stops; B runs until it waits for a lock; then A
    goes on. The errors either raised."""
    store_a, store_b, observer = stores
    a_first, a_goes_on = threading.Event(), threading.Event()
    _one_row_at_a_time(store_a, table, a_first, a_goes_on)
    _one_row_at_a_time(store_b, table, None, None)
    errors: list[BaseException] = []

    def write(store: Store, batch: Batch) -> None:
        try:
            store.write_batch(batch, 100)
        except Exception as exc:  # the test asserts on it
            errors.append(exc)

    worker_a = threading.Thread(target=write, args=(store_a, batch_a))
    worker_b = threading.Thread(target=write, args=(store_b, batch_b))
    b_pid = _backend_pid(store_b)  # before B runs: its connection is busy then
    worker_a.start()
    try:
        assert a_first.wait(WAIT_S)
        worker_b.start()
        _wait_until_blocked(observer, b_pid)
    finally:
        a_goes_on.set()
        worker_a.join(WAIT_S)
        if worker_b.ident is not None:
            worker_b.join(WAIT_S)
    return errors


@pytest.mark.postgres
def test_the_same_results_in_opposite_orders_do_not_deadlock(
    stores: tuple[Store, Store, Store],
) -> None:
    rows = _rows(["k1", "k1"], 1)
    errors = _opposite_orders(stores, "results", Batch(results=rows),
                              Batch(results=rows[::-1]))
    assert errors == []
    assert stores[2].count_results() == 2


@pytest.mark.postgres
def test_results_of_the_same_kiosks_in_opposite_orders_do_not_deadlock(
    stores: tuple[Store, Store, Store],
) -> None:
    batch_a = Batch(results=_rows(["k1", "k2"], 1))
    batch_b = Batch(results=_rows(["k2", "k1"], 3))
    errors = _opposite_orders(stores, "devices", batch_a, batch_b)
    assert errors == []
    assert stores[2].count_results() == 4
    assert [d["device_id"] for d in stores[2].devices()] == ["k1", "k2"]


@pytest.mark.postgres
def test_a_result_and_a_status_of_two_kiosks_in_opposite_orders_do_not_deadlock(
    stores: tuple[Store, Store, Store],
) -> None:
    """A kiosk's status and another's result: a batch registers the result's kiosk, then
    writes the status; the other batch the two kiosks the other way round."""
    def status(device: str) -> tuple[Any, ...]:
        return device_row(fleet.online_status("lab", device), AT)

    batch_a = Batch(results=_rows(["k2"], 1), statuses=[status("k1")])
    batch_b = Batch(results=_rows(["k1"], 2), statuses=[status("k2")])
    errors = _opposite_orders(stores, "devices", batch_a, batch_b)
    assert errors == []
    assert [(d["device_id"], d["state"]) for d in stores[2].devices()] == [
        ("k1", "online"), ("k2", "online")]


@pytest.mark.postgres
@pytest.mark.parametrize("other_content", [True, False])
def test_a_result_another_worker_stores_first_is_a_duplicate_or_a_conflict(
    stores: tuple[Store, Store, Store], other_content: bool,
) -> None:
    """Worker B read the id as not stored while A's insert of it was not committed; its own
    insert then did nothing, and B still said it stored it: a copy with other content was
    confirmed to its kiosk and kept nowhere. Now B finds it was beaten to it: the same
    content is a duplicate, other content a conflict kept as a dead letter."""
    store_a, store_b, observer = stores
    result = fleet.sample_result(random.Random(1), "lab", "k1", 1)
    first = result_row(result, AT, result.to_json().decode())
    other = result.model_copy(update={"software_version": "forged"}) if other_content else result
    second = result_row(other, AT, other.to_json().decode())
    a_inserted, a_goes_on = threading.Event(), threading.Event()
    touch = store_a._touch_devices  # noqa: SLF001 - A stops after its insert, uncommitted

    def paused(*args: Any) -> None:
        a_inserted.set()
        a_goes_on.wait(WAIT_S)
        touch(*args)

    store_a._touch_devices = paused  # type: ignore[method-assign]  # noqa: SLF001
    stored: dict[str, list[str]] = {}
    worker_a = threading.Thread(
        target=lambda: stored.update(a=store_a.write_batch(Batch(results=[first]), 100)))
    worker_b = threading.Thread(target=lambda: stored.update(
        b=store_b.write_batch(Batch(results=[second], topic_prefix="p"), 100)))
    b_pid = _backend_pid(store_b)  # before B runs: its connection is busy then
    worker_a.start()
    try:
        assert a_inserted.wait(WAIT_S)
        worker_b.start()
        _wait_until_blocked(observer, b_pid)
    finally:
        a_goes_on.set()
        worker_a.join(WAIT_S)
        if worker_b.ident is not None:
            worker_b.join(WAIT_S)
    assert stored == {"a": [first[0]], "b": []}
    assert observer.count_results() == 1
    letters = observer.dead_letters()
    if other_content:
        assert [(d.topic, d.payload) for d in letters] == [
            ("p/lab/k1/result", str(second[-1]).encode())]
        assert "already stored with other content" in letters[0].reason
    else:
        assert letters == []
