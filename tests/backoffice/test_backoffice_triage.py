"""Sorting messages and committing them, without a broker: dead letters, refusals, outages."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from appliance.backoffice import triage
from appliance.backoffice.batcher import COMMIT_OUTAGE, BatchWriter
from appliance.backoffice.outage import StoreOutage
from appliance.backoffice.schema import DeadLetter, dead_letter
from appliance.backoffice.store import Batch, Store, StoreError, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.config import BackofficeConfig
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet


def _result_bytes() -> bytes:
    return fleet.sample_result(random.Random(1), "lab", "k1", 0).to_json()


def test_results_status_and_junk_are_sorted_apart() -> None:
    status = fleet.online_status("lab", "k1").to_json()
    messages = [
        Inbound("p/lab/k1/result", _result_bytes(), 1, 1),
        Inbound("p/lab/k1/status", status, 2, 1),
        Inbound("p/lab/k1/status", b"", 3, 1),  # a cleared retained status: nothing to store
        Inbound("p/lab/k1/result", b"{}", 4, 1),
        Inbound("other/lab/k1/result", _result_bytes(), 5, 1),
    ]
    batch, results = Triage("p", 65536).sort(messages)
    assert [r.device_id for r in results] == ["k1"]
    assert len(batch.results) == 1
    assert len(batch.statuses) == 1
    reasons = [d.reason for d in batch.dead_letters]
    assert reasons[0].startswith("measurement_id: Field required")
    assert reasons[1] == "not a device result, status or model state topic under p"


def test_an_unexpected_error_becomes_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(raw: bytes) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(triage, "parse_result", explode)
    batch, results = Triage("p", 4).sort([Inbound("p/lab/k1/result", b"abcdefgh", 1, 1)])
    assert results == []
    (letter,) = batch.dead_letters
    assert letter.reason == ("unexpected error: RuntimeError: disk on fire "
                             "(kept cut: the first 4 of 8 bytes)")
    assert letter.payload == b"abcd"
    assert letter.payload_bytes == 8


class _FlakyStore:
    """Refuses one measurement for good, and fails ``outages`` times like a lost database."""

    url = "test://store"

    def __init__(self, refused_id: str | None = None, outages: int = 0) -> None:
        self.refused_id, self.outages, self.reconnects = refused_id, outages, 0
        self.stored: list[str] = []
        self.dead: list[DeadLetter] = []

    def write_batch(self, batch: Batch, dead_letter_max_rows: int, max_bytes: int = 0) -> list[str]:
        if self.outages:
            self.outages -= 1
            raise sqlite3.OperationalError("database is locked")
        if any(row[0] == self.refused_id for row in batch.results):
            raise sqlite3.IntegrityError("CHECK constraint failed")
        fresh = [row[0] for row in batch.results]
        self.stored += fresh
        self.dead += batch.dead_letters
        return fresh

    def reconnect(self) -> None:
        self.reconnects += 1

    def reopened_after_close(self, error: BaseException,
                             abandon: threading.Event | None = None) -> bool:
        return False  # a lock, not a connection the server closed

    def answering_within(self, seconds: float) -> AbstractContextManager[None]:
        return nullcontext()  # no server to wait on


def _run_writer(store: _FlakyStore, payloads: list[bytes]) -> tuple[BatchWriter, list[int]]:
    acked: list[int] = []
    writer = BatchWriter(
        store,  # type: ignore[arg-type]
        BackofficeConfig(batch_interval_ms=50),
        Triage("p", 65536),
        lambda messages: acked.extend(m.mid for m in messages),
    )
    for mid, payload in enumerate(payloads, start=1):
        writer.inbox.put(Inbound("p/lab/k1/result", payload, mid, 1))
    writer.start()
    wait_until(lambda: len(acked) >= len(payloads), 20)
    writer.stop_event.set()
    writer.join(20)
    return writer, acked


def _payloads(count: int) -> list[bytes]:
    rng = random.Random(4)
    return [fleet.sample_result(rng, "lab", "k1", i).to_json() for i in range(count)]


def test_a_result_the_store_refuses_is_set_aside_and_the_rest_is_stored() -> None:
    payloads = _payloads(5)
    refused = json.loads(payloads[2])["measurement_id"]
    store = _FlakyStore(refused_id=refused)
    _, acked = _run_writer(store, payloads)
    assert sorted(acked) == [1, 2, 3, 4, 5]
    assert len(store.stored) == 4
    assert refused not in store.stored
    (letter,) = store.dead
    assert letter.reason == "the store refused it: CHECK constraint failed"
    assert json.loads(letter.payload)["measurement_id"] == refused
    assert letter.topic == "p/lab/k1/result"


def test_a_store_outage_is_retried_with_a_new_connection_until_it_passes() -> None:
    store = _FlakyStore(outages=2)
    writer, acked = _run_writer(store, _payloads(3))
    assert sorted(acked) == [1, 2, 3]
    assert len(store.stored) == 3
    assert store.reconnects == 2
    assert writer.stats.commit_failures == 2


def _confirmed(
    store: _FlakyStore, messages: list[Inbound], max_bytes: int = 65536
) -> list[tuple[str, str, str]]:
    """Run the writer over ``messages``; the (site, device, id) it confirmed to devices."""
    acked: list[int] = []
    confirmed: list[tuple[str, str, str]] = []
    writer = BatchWriter(
        store,  # type: ignore[arg-type]
        BackofficeConfig(batch_interval_ms=200),
        Triage("p", max_bytes),
        lambda batch: acked.extend(m.mid for m in batch),
        confirm=confirmed.extend,
    )
    for message in messages:
        writer.inbox.put(message)
    writer.start()
    wait_until(lambda: len(acked) >= len(messages), 20)
    writer.stop_event.set()
    writer.join(20)
    assert len(acked) == len(messages)
    return confirmed


def _invalid(index: int) -> tuple[str, bytes]:
    """A result from a kiosk clock far ahead: refused, but its measurement id is readable."""
    result = fleet.sample_result(random.Random(index), "lab", "k1", index)
    body = json.loads(result.to_json())
    body["captured_at"] = "2999-01-01T00:00:05Z"
    return result.measurement_id, json.dumps(body).encode()


def test_a_dead_lettered_result_is_confirmed_to_the_device_whose_topic_it_came_on() -> None:
    refused_id, refused = _invalid(1)
    valid = _result_bytes()
    store = _FlakyStore()
    confirmed = _confirmed(store, [Inbound("p/lab/k1/result", valid, 1, 1),
                                   Inbound("p/lab/k2/result", refused, 2, 1),
                                   Inbound("p/lab/k1/result", b"\xff not json", 3, 1),
                                   Inbound("p/lab/k1/status", b'{"measurement_id": "x"}', 4, 1)])
    assert len(store.dead) == 3
    assert sorted(confirmed) == [("lab", "k1", json.loads(valid)["measurement_id"]),
                                 ("lab", "k2", refused_id)]  # k2 sent it; junk and status: no id


def test_a_dead_letter_kept_cut_or_refused_by_the_store_is_not_confirmed() -> None:
    _, refused = _invalid(2)
    cut = Inbound("p/lab/k1/result", refused + b"  ", 1, 1)  # what is kept of it still parses
    assert _confirmed(_FlakyStore(), [cut], max_bytes=len(refused)) == []

    class RefusesDeadLetters(_FlakyStore):
        def write_batch(self, batch: Batch, rows: int, max_bytes: int = 0) -> list[str]:
            if batch.dead_letters:
                raise sqlite3.IntegrityError("dead_letters is read-only")
            return super().write_batch(batch, rows, max_bytes)

    whole = Inbound("p/lab/k1/result", refused, 1, 1)
    assert _confirmed(RefusesDeadLetters(), [whole]) == []


class _RefusesWholeBatches:
    """A real store that refuses any batch of more than one message (a constraint one of
    them breaks, say), so the writer commits them one by one."""

    def __init__(self, store: Store) -> None:
        self.store, self.url = store, store.url

    def write_batch(self, batch: Batch, rows: int, max_bytes: int = 0) -> list[str]:
        if len(batch.results) + len(batch.statuses) + len(batch.dead_letters) > 1:
            raise sqlite3.IntegrityError("CHECK constraint failed")
        return self.store.write_batch(batch, rows, max_bytes)

    def reconnect(self) -> None:
        self.store.reconnect()

    def answering_within(self, seconds: float) -> AbstractContextManager[None]:
        return self.store.answering_within(seconds)

    def reopened_after_close(self, error: BaseException,
                             abandon: threading.Event | None = None) -> bool:
        return self.store.reopened_after_close(error, abandon)


def test_only_copies_pruned_by_a_batch_committed_part_by_part_are_counted_under_any_prefix(
    tmp_path: Path,
) -> None:
    """The parts of a refused batch (and a result set aside) were written as batches of the
    default topic prefix 'appliance': under prefix 'p' a letter they pruned was no device's,
    so a result whose only copy it was went uncounted and unwarned."""
    store = open_store(f"sqlite:///{tmp_path / 'bo.sqlite3'}")
    try:
        _, old = _invalid(3)
        store.write_batch(Batch(dead_letters=[dead_letter(
            "2026-11-26T00:00:00.000000Z", "p/lab/k1/result", "bad", old)], topic_prefix="p"), 10)
        acked: list[int] = []
        writer = BatchWriter(
            _RefusesWholeBatches(store),  # type: ignore[arg-type]
            BackofficeConfig(batch_interval_ms=200, dead_letter_max_rows=1),
            Triage("p", 65536),
            lambda batch: acked.extend(m.mid for m in batch),
        )
        valid = fleet.sample_result(random.Random(5), "lab", "k2", 0).to_json()
        writer.inbox.put(Inbound("p/lab/k2/result", valid, 1, 1))
        writer.inbox.put(Inbound("p/lab/k3/result", _invalid(4)[1], 2, 1))
        writer.start()
        wait_until(lambda: len(acked) >= 2, 20)
        writer.stop_event.set()
        writer.join(20)
        assert sorted(acked) == [1, 2]
        assert (writer.stats.stored, writer.stats.dead_letters) == (1, 1)
        assert writer.stats.only_copies_pruned == 1  # on main: 0
        lost = store.pruned_only_copies(10)
        assert [row[:3] for row in lost.worst] == [("lab", "k1", 1)]
        assert [d.topic for d in store.dead_letters()] == ["p/lab/k3/result"]
    finally:
        store.close()


def test_a_batch_committed_part_by_part_keeps_its_kiosks_clock_reading(tmp_path: Path) -> None:
    """A live status read its kiosk's clock (erasure_clock.py); the parts of a refused batch
    were made of its results, statuses and letters only, and the reading was lost."""
    store = open_store(f"sqlite:///{tmp_path / 'bo.sqlite3'}")
    try:
        acked: list[int] = []
        writer = BatchWriter(
            _RefusesWholeBatches(store),  # type: ignore[arg-type]
            BackofficeConfig(batch_interval_ms=200), Triage("p", 65536),
            lambda batch: acked.extend(m.mid for m in batch))
        writer.inbox.put(Inbound("p/lab/k2/status",
                                 fleet.online_status("lab", "k2").to_json(), 1, 1))
        valid = fleet.sample_result(random.Random(5), "lab", "k2", 0).to_json()
        writer.inbox.put(Inbound("p/lab/k2/result", valid, 2, 1))
        writer.start()
        wait_until(lambda: len(acked) >= 2, 20)
        writer.stop_event.set()
        writer.join(20)
        assert sorted(acked) == [1, 2]
        [(read_at,)] = store.query("SELECT clock_read_at FROM devices")
        assert read_at is not None
    finally:
        store.close()


def test_a_store_outage_is_said_once_and_when_it_ends_not_at_every_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # each retry (every 0.2 to 5 s) was one more error line of the same words, for as long as
    # the store was down, and nothing said when it took the batch again
    store = _FlakyStore(outages=4)
    _, acked = _run_writer(store, _payloads(3))
    assert sorted(acked) == [1, 2, 3]
    said = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "appliance.backoffice.batcher"]
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert "commit failed (database is locked" in said[0][1]
    assert "nothing of the batch is acknowledged" in said[0][1]
    assert " answers again after 4 failed tries in " in said[1][1]


class _AwayStore(_FlakyStore):
    """A PostgreSQL server away: its reconnects fail too until the outage is over."""

    def reconnect(self) -> None:
        super().reconnect()
        if self.outages:
            raise sqlite3.OperationalError("connection refused")


def test_a_store_outage_counts_failed_commits_not_failed_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # each failed reconnect counted as one more try: 4 failed commits were "7 failed tries"
    store = _AwayStore(outages=4)
    writer, acked = _run_writer(store, _payloads(3))
    assert sorted(acked) == [1, 2, 3]
    assert store.reconnects == 4
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.backoffice.batcher"
            and r.levelname == "WARNING"]
    assert len(said) == 1, said
    assert " answers again after 4 failed tries in " in said[0]
    assert writer.stats.commit_failures == 4


def test_a_long_store_outage_is_said_again_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    now_s = [0.0]
    outage = StoreOutage(f"sqlite:///{tmp_path / 'store.sqlite3'}",
                         logging.getLogger("appliance.backoffice.batcher"), COMMIT_OUTAGE,
                         clock=lambda: now_s[0])
    for _ in range(26):  # 125 s of retries 5 s apart
        outage.failed(sqlite3.OperationalError("database or disk is full"))
        now_s[0] += 5.0
    outage.passed()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 4, said
    assert "still fail after 13 tries in 60 s (database or disk is full)" in said[1]
    assert "still fail after 25 tries in 120 s" in said[2]
    assert said[3].endswith("answers again after 26 failed tries in 130 s")


def test_an_outage_names_its_cause_when_it_changes_once_for_each_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A server restarted, then back read-only (a standby after a failover): the read-only
    cause is said when it begins, not only in the next minute's line; a cause said already
    in this outage, or another failure of the server being away, is not said again."""
    psycopg = pytest.importorskip("psycopg")
    now_s = [0.0]
    outage = StoreOutage("postgresql://office@db.example/fleet",
                         logging.getLogger("appliance.backoffice.batcher"), COMMIT_OUTAGE,
                         clock=lambda: now_s[0])
    refused = StoreError("cannot connect to the PostgreSQL database: Connection refused")
    refused.__cause__ = psycopg.OperationalError("Connection refused")
    read_only = psycopg.errors.ReadOnlySqlTransaction(
        "cannot execute INSERT in a read-only transaction")
    tries = [psycopg.errors.AdminShutdown("terminating connection due to administrator "
                                          "command"),
             refused, psycopg.OperationalError("the connection is closed"),
             psycopg.errors.CannotConnectNow("the database system is starting up"),
             read_only, read_only, refused, read_only]
    for error in tries:
        outage.failed(error)
        now_s[0] += 1.0
    outage.passed()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 3, said
    assert "commit failed (terminating connection due to administrator command)" in said[0]
    assert said[1].endswith("commits still fail after 5 tries in 4 s, now for another cause "
                            "(cannot execute INSERT in a read-only transaction); retrying")
    assert said[2].endswith("answers again after 8 failed tries in 8 s")
