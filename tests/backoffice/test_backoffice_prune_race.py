"""Two back-office workers on one PostgreSQL store prune dead letters at once: each pruned
letter that was a result's only copy is counted once, whichever worker pruned it."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from appliance.backoffice.schema import DeadLetter, dead_letter
from appliance.backoffice.store import Batch, Store, open_store
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from tests.store_helpers import PG_URL

AT = "2026-11-26T00:00:00.000000Z"
WAIT_S = 20.0


def _whole(device: str, n: int) -> DeadLetter:
    """A refused result kept whole on its kiosk's result topic (a whole result, refused for
    a reason since mended)."""
    result = fleet.sample_result(random.Random(n), "lab", device, n)
    return dead_letter(AT, f"p/lab/{device}/result", "bad", result.to_json())


@pytest.fixture
def stores() -> Iterator[tuple[Store, Store, Store]]:
    """Two workers' connections and an observer's, on one throw-away PostgreSQL schema."""
    schema = f"review_prune_race_{uuid.uuid4().hex[:12]}"
    first = open_store(PG_URL, pg_schema=schema)
    others = [open_store(PG_URL, pg_schema=schema) for _ in range(2)]
    try:
        yield first, others[0], others[1]
    finally:
        for store in others:
            store.close()
        first.drop_postgres_schema(schema)
        first.close()


def _backend_pid(store: Store) -> int:
    return int(store._fetch("SELECT pg_backend_pid()")[0][0])  # noqa: SLF001 - the test's probe


def _wait_until_blocked(observer: Store, pid: int) -> None:
    """Until the backend ``pid`` waits for a lock another transaction holds."""

    def waits_for_a_lock() -> bool:
        rows = observer._fetch(  # noqa: SLF001 - the test's probe
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", (pid,))
        return bool(rows) and rows[0][0] == "Lock"

    if not wait_until(waits_for_a_lock, WAIT_S):
        pytest.fail(f"backend {pid} never waited for a lock in {WAIT_S:.0f} s")


def _while_a_prunes(stores: tuple[Store, Store, Store], batch_a: Batch,
                    b_changes: Callable[[Store], object]) -> None:
    """Worker A writes ``batch_a`` with a bound of one row (k1's three older letters go) and
    stops after its DELETE, uncommitted, while ``b_changes`` runs on the second store until
    that backend waits for a lock; then A commits and both finish."""
    store_a, store_b, observer = stores
    store_a.write_batch(Batch(dead_letters=[_whole("k1", n) for n in range(3)],
                              topic_prefix="p"), 100)
    a_deleted, a_goes_on = threading.Event(), threading.Event()
    still_kept = store_a._still_kept  # noqa: SLF001 - A stops after its DELETE, uncommitted

    def pause_after_delete(cur: Any, letters: list[DeadLetter]) -> list[DeadLetter]:
        a_deleted.set()
        a_goes_on.wait(WAIT_S)
        return still_kept(cur, letters)

    store_a._still_kept = pause_after_delete  # type: ignore[method-assign]  # noqa: SLF001
    worker_a = threading.Thread(target=store_a.write_batch, args=(batch_a, 1))
    worker_b = threading.Thread(target=b_changes, args=(store_b,))
    worker_a.start()
    try:
        assert a_deleted.wait(WAIT_S)
        b_pid = _backend_pid(store_b)
        worker_b.start()
        _wait_until_blocked(observer, b_pid)
    finally:
        a_goes_on.set()
        worker_a.join(WAIT_S)
        if worker_b.ident is not None:
            worker_b.join(WAIT_S)


@pytest.mark.postgres
def test_two_workers_pruning_the_same_letters_count_each_lost_result_once(
    stores: tuple[Store, Store, Store],
) -> None:
    """Worker B's bound (one row) prunes the letter A kept, confirmed to k5 once A committed:
    B waited for the totals row while A held it, then counted only the letters below the
    newest id it had read before waiting, so k5's only copy was pruned uncounted."""
    batch_a = Batch(dead_letters=[_whole("k5", 5)], topic_prefix="p")
    batch_b = Batch(dead_letters=[_whole("k6", 6)], topic_prefix="p")
    _while_a_prunes(stores, batch_a, lambda store_b: store_b.write_batch(batch_b, 1))
    assert [d.topic for d in batch_a.dead_letters] == ["p/lab/k5/result"]  # kept: confirmed
    assert batch_b.pruned_only_copies == {("lab", "k5"): 1}
    lost = stores[0].pruned_only_copies(10)
    assert sorted(row[:3] for row in lost.worst) == [("lab", "k1", 3), ("lab", "k5", 1)]
    assert [d.topic for d in stores[0].dead_letters()] == ["p/lab/k6/result"]
