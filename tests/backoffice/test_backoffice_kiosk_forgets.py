"""An erasure reaches the kiosks' kept copies: its transaction records the erased ids by the
kiosk that sent each (SQLite and PostgreSQL), and the back office asks each kiosk on its
cmd/forget when they are recorded and again each time it comes online, in requests the kiosk
takes, until keep_confirmed_h after the erasure. End to end over a private mosquitto: the
back-office service, a kiosk's real outbox and link, `results erase --subject`; the kiosk
online at the erasure, offline at it, and offline with the broker's session state lost."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.backoffice import ingest
from appliance.backoffice.erasure import Selector
from appliance.backoffice.kiosk_forgets import REASK_EVERY_S, ForgetPublisher, requests
from appliance.backoffice.schema import dead_letter, device_row, iso_utc, result_row
from appliance.backoffice.service import run_backoffice
from appliance.backoffice.store import Batch, Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.cli import main
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker
from appliance.transport.forget import MAX_IDS, parse_request
from appliance.transport.payloads import Result, new_measurement_id, utc_now
from tests.erasure_journal_helpers import cli, new_store_url
from tests.resend_kiosk import ResendKiosk
from tests.store_helpers import BACKENDS, fresh_store

RECEIVED = "2026-12-07T00:00:00.000000Z"
PREFIX = "forgettest"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_forgets", open_store) as opened:
        yield opened


def _results(
    subject: str | None, count: int, seed: int, site: str = "lab", device: str = "kiosk-1"
) -> list[Result]:
    rng = random.Random(seed)
    return [fleet.sample_result(rng, site, device, seed * 100 + i, subject) for i in range(count)]


def _store(store: Store, results: list[Result]) -> None:
    store.write_batch(
        Batch(results=[result_row(r, RECEIVED, r.to_json().decode()) for r in results]), 1000, 2**40
    )


def _forgets(store: Store) -> set[tuple[Any, ...]]:
    return set(store.query("SELECT site, device_id, measurement_id, erased_at FROM kiosk_forgets"))


def test_an_erasure_records_each_erased_id_by_the_kiosk_that_sent_it(store: Store) -> None:
    one = _results("subj-7", 2, 1)
    other = _results("subj-7", 1, 2, site="shop", device="kiosk-9")
    kept = _results("subj-8", 2, 3)
    single = _results(None, 1, 4, device="kiosk-2")
    _store(store, one + other + kept + single)

    store.erase(Selector("subject", "subj-7"), "alice")
    store.erase(Selector("result", single[0].measurement_id), "bob")

    times = dict(store.query("SELECT selector, erased_at FROM erasures"))
    assert _forgets(store) == {
        *{("lab", "kiosk-1", r.measurement_id, times["subj-7"]) for r in one},
        ("shop", "kiosk-9", other[0].measurement_id, times["subj-7"]),
        ("lab", "kiosk-2", single[0].measurement_id, times[single[0].measurement_id]),
    }


def _letter(result: Result, topic: str, payload: bytes | None = None) -> Any:
    """``result`` (or ``payload``) as a dead letter kept whole on ``topic``."""
    return dead_letter(RECEIVED, topic, "refused", result.to_json() if payload is None else payload)


def _letters(prefix: str) -> tuple[list[Result], list[Any]]:
    """subj-7's results held only as letters: one on a kiosk's result topic (recorded for
    it), one on a kiosk's status topic, one under another prefix and one naming an id of
    another form than a result's (none of those three recorded); and a result of it stored."""
    held, status, foreign, stored = _results("subj-7", 4, 11, site="shop", device="kiosk-5")
    odd = json.loads(held.to_json())
    odd["measurement_id"] = "not-a-uuid"
    letters = [
        _letter(held, f"{prefix}/shop/kiosk-5/result"),
        _letter(status, f"{prefix}/shop/kiosk-6/status"),
        _letter(foreign, "elsewhere/shop/kiosk-7/result"),
        _letter(held, f"{prefix}/shop/kiosk-8/result", json.dumps(odd).encode()),
    ]
    return [held, stored], letters


def _letters_stored(url: str, prefix: str) -> Result:
    """``_letters(prefix)``'s letters written to a new store at ``url``; the result held."""
    store = open_store(url, create=True)
    try:
        (held, _), letters = _letters(prefix)
        store.write_batch(Batch(dead_letters=letters), 1000, 2**40)
    finally:
        store.close()
    return held


def test_an_erased_letter_is_recorded_for_the_kiosk_its_result_topic_names(store: Store) -> None:
    (held, stored), letters = _letters("p")
    _store(store, [stored])
    store.write_batch(Batch(dead_letters=letters), 1000, 2**40)

    done = store.erase(Selector("subject", "subj-7"), "alice", topic_prefix="p")

    assert (done.results, done.dead_letters) == (1, 4)
    assert {row[:3] for row in _forgets(store)} == {
        ("shop", "kiosk-5", held.measurement_id),
        ("shop", "kiosk-5", stored.measurement_id),
    }


def test_results_erase_asks_the_kiosk_of_a_result_held_only_as_a_letter(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mqtt:\n  topic_prefix: fleet9\nstate_dir: {tmp_path / 'state'}\nstore:\n  url: {url}\n"
    )
    held = _letters_stored(url, "fleet9")

    code = main(["results", "erase", "--config", str(config), "--subject", "subj-7", "--yes"])

    assert code == 0
    store = open_store(url)
    try:
        assert {row[:3] for row in _forgets(store)} == {("shop", "kiosk-5", held.measurement_id)}
    finally:
        store.close()


class Published:
    """What a ForgetPublisher sent, by topic; ``up`` False: as a worker not connected."""

    def __init__(self) -> None:
        self.up = True
        self.messages: list[tuple[str, list[str]]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        if self.up:
            self.messages.append((topic, parse_request(payload)))  # each one a kiosk takes
        return self.up

    def taken(self) -> list[tuple[str, list[str]]]:
        done, self.messages = self.messages, []
        return done


def _set_status(store: Store, state: str, link_ms: int | None) -> None:
    store.write("DELETE FROM devices WHERE site = 'lab' AND device_id = 'kiosk-1'", [()])
    store.write(
        "INSERT INTO devices (site, device_id, state, last_seen, status_link_ms) "
        "VALUES ('lab', 'kiosk-1', ?, ?, ?)",
        [(state, RECEIVED, link_ms)],
    )


def _clocks(mono: list[float]) -> dict[str, Any]:
    """A publisher's monotonic clock read from ``mono`` and its UTC clock stepped with it
    (the minute of the re-ask bound is held on both: kiosk_forget_asks)."""
    start = utc_now() - timedelta(seconds=mono[0])
    return {"clock": lambda: mono[0], "now": lambda: start + timedelta(seconds=mono[0])}


def test_each_kiosk_is_asked_when_its_ids_are_recorded_and_again_when_it_comes_online(
    store: Store,
) -> None:
    gone, elsewhere = _results("subj-7", 3, 1), _results("subj-7", 1, 2, device="kiosk-2")
    _store(store, gone + elsewhere)
    _set_status(store, "online", 1000)
    sent, now = Published(), [0.0]
    publisher = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(),
                                **_clocks(now))
    assert publisher.run_once(store) == 0  # nothing erased yet
    store.erase(Selector("subject", "subj-7"), "alice")
    sent.up = False  # the worker off the broker: tried again at the next look
    assert publisher.run_once(store) == 0
    sent.up = True
    publisher.run_once(store)
    own = "p/lab/kiosk-1/cmd/forget"
    ids = sorted(r.measurement_id for r in gone)
    assert sorted(sent.taken()) == [
        (own, ids),
        ("p/lab/kiosk-2/cmd/forget", [elsewhere[0].measurement_id]),
    ]
    publisher.run_once(store)
    assert sent.taken() == []  # asked, and on the same connection since
    now[0] += REASK_EVERY_S
    _set_status(store, "online", 2000)  # it connected again (a restart, a lost link)
    publisher.run_once(store)
    assert sent.taken() == [(own, ids)]
    _set_status(store, "offline", 2000)
    publisher.run_once(store)
    assert sent.taken() == []
    now[0] += REASK_EVERY_S
    _set_status(store, "online", None)  # a status without boot stamps: offline, then online
    publisher.run_once(store)
    assert sent.taken() == [(own, ids)]


def test_a_kiosk_reconnecting_again_and_again_is_asked_for_all_once_a_minute(
    store: Store,
) -> None:
    gone, later = _results("subj-7", 3, 1), _results("subj-8", 1, 2)
    _store(store, gone + later)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent = Published()
    publisher = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event())
    publisher.run_once(store)
    own, ids = "p/lab/kiosk-1/cmd/forget", sorted(r.measurement_id for r in gone)
    assert sent.taken() == [(own, ids)]

    for link_ms in range(1001, 1031):  # a new connection at each look (every 2 s: a minute)
        _set_status(store, "online", link_ms)
        publisher.run_once(store)
    assert sent.taken() == []
    store.erase(Selector("subject", "subj-8"), "bob")  # a new id still goes at once
    _set_status(store, "online", 1031)
    publisher.run_once(store)
    assert sent.taken() == [(own, [later[0].measurement_id])]


def test_a_held_back_kiosk_is_asked_for_all_when_the_minute_ends(store: Store) -> None:
    gone = _results("subj-7", 2, 1)
    _store(store, gone)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, now = Published(), [100.0]
    publisher = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(),
                                **_clocks(now))
    publisher.run_once(store)
    own, ids = "p/lab/kiosk-1/cmd/forget", sorted(r.measurement_id for r in gone)
    assert sent.taken() == [(own, ids)]
    _set_status(store, "online", 2000)
    now[0] += REASK_EVERY_S - 1
    publisher.run_once(store)
    assert sent.taken() == []
    now[0] += 1  # its connection is still new to the asking: asked now, once
    publisher.run_once(store)
    publisher.run_once(store)
    assert sent.taken() == [(own, ids)]


def test_four_workers_ask_a_kiosk_reconnecting_at_every_look_for_all_once_a_minute(
    store: Store,
) -> None:
    """The re-ask bound is the fleet's, not each worker's: four workers, the kiosk on a new
    connection at each look for three minutes, ask it for all three times (main: twelve, once
    a minute each); the asking of the four workers started together goes once (main: from
    every worker), a new id from one (kiosk_forgets.asked_at)."""
    gone, later = _results("subj-7", 3, 1), _results("subj-8", 1, 2)
    _store(store, gone + later)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, mono, start = Published(), [0.0], utc_now()
    workers = [
        ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), clock=lambda: mono[0],
                        now=lambda: start + timedelta(seconds=mono[0]))
        for _ in range(4)
    ]
    for worker in workers:
        worker.run_once(store)
    own, ids = "p/lab/kiosk-1/cmd/forget", sorted(r.measurement_id for r in gone)
    assert sent.taken() == [(own, ids)]  # started together: asked for all once

    for look in range(1, 91):  # three minutes of looks, every 2 s, a new connection at each
        mono[0] = 2.0 * look
        _set_status(store, "online", 1000 + look)
        for worker in workers:
            worker.run_once(store)
    assert sent.taken() == [(own, ids)] * 3
    store.erase(Selector("subject", "subj-8"), "bob")
    for worker in workers:
        worker.run_once(store)
    assert sent.taken() == [(own, [later[0].measurement_id])]


def test_a_fresh_erasure_is_published_once_whatever_the_number_of_workers(store: Store) -> None:
    """Four workers looking in turn: each fresh erasure reaches each kiosk in one copy, not
    four (main: every worker published it); to a kiosk offline at the erasure too, which
    on its return is asked for all once; a worker that could not publish marks nothing, so
    the next one asks."""
    first, elsewhere = _results("subj-7", 3, 1), _results("subj-7", 1, 2, device="kiosk-2")
    second, third, fourth = (_results(f"subj-{n}", 1, n) for n in (8, 9, 10))
    _store(store, first + elsewhere + second + third + fourth)
    _set_status(store, "online", 1000)
    sent, mono, start = Published(), [0.0], utc_now()
    workers = [
        ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), clock=lambda: mono[0],
                        now=lambda: start + timedelta(seconds=mono[0]))
        for _ in range(4)
    ]

    def looks(rounds: int = 2) -> list[tuple[str, list[str]]]:
        for _ in range(rounds):
            mono[0] += 2.0
            for worker in workers:
                worker.run_once(store)
        return sorted(sent.taken())

    assert looks() == []  # started: nothing erased yet
    own = "p/lab/kiosk-1/cmd/forget"
    store.erase(Selector("subject", "subj-7"), "alice")
    assert looks() == [(own, sorted(r.measurement_id for r in first)),
                       ("p/lab/kiosk-2/cmd/forget", [elsewhere[0].measurement_id])]
    store.erase(Selector("subject", "subj-8"), "bob")
    assert looks() == [(own, [second[0].measurement_id])]

    _set_status(store, "offline", 1000)
    store.erase(Selector("subject", "subj-9"), "carol")  # queued in its broker session
    assert looks() == [(own, [third[0].measurement_id])]
    mono[0] += REASK_EVERY_S
    _set_status(store, "online", 2000)  # back on a new connection: asked for all, once
    every = sorted(r.measurement_id for r in first + second + third)
    assert looks() == [(own, every)]

    unconnected = Published()
    unconnected.up = False
    workers[0]._publish = unconnected  # noqa: SLF001  (the first to look is off the broker)
    store.erase(Selector("subject", "subj-10"), "dave")
    assert looks(1) == [(own, [fourth[0].measurement_id])]  # from the next worker
    assert store.query("SELECT COUNT(*) FROM kiosk_forgets WHERE asked_at IS NULL") == [(0,)]


def test_workers_started_together_ask_a_pending_kiosk_for_all_once(store: Store) -> None:
    """Four workers started together, ids erased while none ran: each kiosk is asked for all
    in one copy, not four (main: one a worker); the first to look is off the broker, so the
    next asks, and the first, back on it, asks nothing; a worker started after that asking (a
    restart: its predecessor may have died between a claim and its publish) asks again, once."""
    gone, other = _results("subj-7", 3, 1), _results("subj-7", 1, 2, device="kiosk-2")
    _store(store, gone + other)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, mono, start = Published(), [0.0], utc_now()
    clocks = {"clock": lambda: mono[0], "now": lambda: start + timedelta(seconds=mono[0])}
    unconnected = Published()
    unconnected.up = False
    workers = [ForgetPublisher(store.url, "p", 48.0, unconnected if n == 0 else sent,
                               threading.Event(), **clocks) for n in range(4)]
    every = sorted([("p/lab/kiosk-1/cmd/forget", sorted(r.measurement_id for r in gone)),
                    ("p/lab/kiosk-2/cmd/forget", [other[0].measurement_id])])

    def looks() -> list[tuple[str, list[str]]]:
        for _ in range(3):
            for worker in workers:
                worker.run_once(store)
            mono[0] += 2.0
        return sorted(sent.taken())

    assert looks() == every
    workers[0]._publish = sent  # noqa: SLF001  (the first worker back on the broker)
    assert looks() == []
    restarted = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), **clocks)
    workers.append(restarted)
    assert looks() == every


def test_a_workers_asking_at_its_start_waits_for_the_retained_statuses(store: Store) -> None:
    """Worker b starts 3 s after a, both before the kiosks' retained statuses are stored:
    a asks nothing until they are, so its asking begins after b started and b takes it as
    its own: one copy (asked at a's first look, b would ask again)."""
    gone = _results("subj-7", 3, 1)
    _store(store, gone)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, mono, start, stored = Published(), [0.0], utc_now(), [False]
    clocks = {"clock": lambda: mono[0], "now": lambda: start + timedelta(seconds=mono[0]),
              "statuses_stored": lambda: stored[0]}
    a = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), **clocks)
    a.run_once(store)
    assert sent.taken() == []
    mono[0] = 3.0
    b = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), **clocks)
    b.run_once(store)
    mono[0], stored[0] = 6.0, True
    for worker in (a, b, a, b):
        worker.run_once(store)
    assert sent.taken() == [("p/lab/kiosk-1/cmd/forget", sorted(r.measurement_id for r in gone))]


def test_a_connection_another_worker_asked_on_is_not_asked_again(store: Store) -> None:
    """Worker b, seeing the kiosk's new connection after worker a asked it for all on it,
    leaves it; on the next new connection past the minute, only the first to look asks."""
    gone = _results("subj-7", 2, 1)
    _store(store, gone)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, mono, start = Published(), [0.0], utc_now()
    a, b = (ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(),
                            clock=lambda: mono[0], now=lambda: start + timedelta(seconds=mono[0]))
            for _ in range(2))
    a.run_once(store)
    b.run_once(store)
    assert len(sent.taken()) == 1  # started together: the first to look asks for all
    mono[0] = REASK_EVERY_S + 1
    _set_status(store, "online", 2000)
    a.run_once(store)
    assert len(sent.taken()) == 1
    for _ in range(3):
        mono[0] += REASK_EVERY_S  # long past the minute: that connection stays asked
        b.run_once(store)
        a.run_once(store)
    assert sent.taken() == []
    _set_status(store, "offline", 2000)  # a kiosk without stamps is held to the minute alone
    b.run_once(store)
    _set_status(store, "online", None)
    b.run_once(store)
    a.run_once(store)
    assert len(sent.taken()) == 1


class Spied:
    """``store`` for a ForgetPublisher, keeping the statements it runs."""

    def __init__(self, store: Store) -> None:
        self.store, self.statements = store, []

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        return self.store.query(sql, params)

    def write(self, sql: str, rows: Any) -> None:
        self.statements.append(sql)
        self.store.write(sql, rows)

    def write_returning(self, sql: str, rows: Any) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        return self.store.write_returning(sql, rows)

    def taken(self) -> list[str]:
        done, self.statements = self.statements, []
        return done


def _reads_of_ids(statements: list[str]) -> int:
    return sum(sql.startswith("SELECT site, device_id, measurement_id") for sql in statements)


def test_a_look_reads_the_ids_only_after_an_erasure_committed(store: Store) -> None:
    first, second = _results("subj-7", 2, 1), _results("subj-8", 1, 2)
    _store(store, first + second)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, spied = Published(), Spied(store)
    publisher = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event())
    publisher.run_once(spied)  # type: ignore[arg-type]
    assert _reads_of_ids(spied.taken()) == 1
    assert len(sent.taken()) == 1

    for _ in range(5):  # nothing erased since: the ids are not read again, nor pruned
        publisher.run_once(spied)  # type: ignore[arg-type]
        statements = spied.taken()
        assert _reads_of_ids(statements) == 0, statements
        assert not [sql for sql in statements if "DELETE" in sql]
    assert sent.taken() == []

    store.erase(Selector("subject", "subj-8"), "bob")
    sent.up = False  # the worker off the broker: the new id is asked at the next look
    publisher.run_once(spied)  # type: ignore[arg-type]
    sent.up = True
    publisher.run_once(spied)  # type: ignore[arg-type]
    assert sent.taken() == [("p/lab/kiosk-1/cmd/forget", [second[0].measurement_id])]
    publisher.run_once(spied)  # type: ignore[arg-type]
    assert _reads_of_ids(spied.taken()) == 2
    assert sent.taken() == []


def test_many_ids_go_in_requests_a_kiosk_takes_and_none_past_the_window(store: Store) -> None:
    now = utc_now()
    recent = [new_measurement_id(1_765_000_000_000 + n) for n in range(2 * MAX_IDS + 500)]
    old = [new_measurement_id(1_764_000_000_000 + n) for n in range(3)]
    rows = [("lab", "kiosk-1", mid, iso_utc(now - timedelta(hours=1))) for mid in recent]
    rows += [("lab", "kiosk-1", mid, iso_utc(now - timedelta(hours=49))) for mid in old]
    store.write(
        "INSERT INTO kiosk_forgets (site, device_id, measurement_id, erased_at) "
        "VALUES (?, ?, ?, ?)",
        rows,
    )
    sent = Published()
    assert ForgetPublisher(store.url, "p", 48.0, sent, threading.Event()).run_once(store) == 3
    messages = sent.taken()
    assert [len(named) for _, named in messages] == [MAX_IDS, MAX_IDS, 500]
    assert sorted(mid for _, named in messages for mid in named) == sorted(recent)
    assert {row[2] for row in _forgets(store)} == set(recent)  # past the window: pruned



class Interleaved(Spied):
    """``store`` for worker a: ``between`` (worker b's look) runs once after a read the ids
    and before it claims them, as when the two look at the same instant."""

    def __init__(self, store: Store, between: Any) -> None:
        super().__init__(store)
        self.between = between

    def write_returning(self, sql: str, rows: Any) -> list[tuple[Any, ...]]:
        if self.between is not None:
            self.between, between = None, self.between
            between()
        return super().write_returning(sql, rows)


def test_two_workers_reading_a_fresh_erasure_at_the_same_instant_publish_one_copy(
    store: Store,
) -> None:
    """Both read the ids unasked; b claims and publishes them before a claims: a's claim takes
    none, so a publishes nothing (marked after the publish, both published)."""
    gone = _results("subj-7", 3, 1)
    _store(store, gone)
    _set_status(store, "online", 1000)
    sent = Published()
    a, b = (ForgetPublisher(store.url, "p", 48.0, sent, threading.Event()) for _ in range(2))
    a.run_once(store)
    b.run_once(store)
    store.erase(Selector("subject", "subj-7"), "alice")

    a.run_once(Interleaved(store, lambda: b.run_once(store)))  # type: ignore[arg-type]

    assert sent.taken() == [("p/lab/kiosk-1/cmd/forget", sorted(r.measurement_id for r in gone))]
    a.run_once(store)
    b.run_once(store)
    assert sent.taken() == []


class ErasedBeforeTheMarks(Spied):
    """``store`` for a worker: ``erase`` runs once just before it marks what it asked for
    all, after it read the rows and published them."""

    def __init__(self, store: Store, erase: Any) -> None:
        super().__init__(store)
        self.erase = erase

    def write(self, sql: str, rows: Any) -> None:
        if "FROM erasures" in sql and self.erase is not None:
            self.erase, erase = None, self.erase
            erase()
        super().write(sql, rows)


def test_an_erasure_committed_between_a_read_and_its_marks_is_still_asked(store: Store) -> None:
    """A started worker asks a kiosk for all and marks the rows asked; an erasure committing
    between its read and its marks is not marked with them (its ids were not published),
    so another worker asks them."""
    first, later = _results("subj-7", 2, 1), _results("subj-8", 1, 2)
    _store(store, first + later)
    _set_status(store, "online", 1000)
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, mono, start = Published(), [0.0], utc_now()
    clocks = {"clock": lambda: mono[0], "now": lambda: start + timedelta(seconds=mono[0])}
    b = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), **clocks)
    b.run_once(store)  # b started first: asked for all
    sent.taken()
    mono[0] += 1.0  # a started after b asked (a restart): a asks for all too
    a = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), **clocks)

    a.run_once(ErasedBeforeTheMarks(  # type: ignore[arg-type]
        store, lambda: store.erase(Selector("subject", "subj-8"), "bob")))
    b.run_once(store)

    own = "p/lab/kiosk-1/cmd/forget"
    assert sent.taken() == [(own, sorted(r.measurement_id for r in first)),
                            (own, [later[0].measurement_id])]
    a.run_once(store)
    b.run_once(store)
    assert sent.taken() == []


def test_a_kiosks_shared_ask_row_goes_once_nothing_is_left_to_ask_it_or_it_is_gone(
    store: Store,
) -> None:
    """kiosk_forget_asks kept one row a kiosk ever asked for all while online, for ever (a
    kiosk taken out of the fleet too): the minute's prune now deletes the row of a kiosk
    whose ids are all pruned past its window and of one gone from ``devices``, and keeps
    the row of a kiosk still asked; a prune with nothing to delete writes nothing."""
    erased = {device: _results("subj-7", 1, n, device=device)
              for n, device in enumerate(("kiosk-1", "kiosk-2", "kiosk-3"), start=1)}
    _store(store, [r for results in erased.values() for r in results])
    for link_ms, device in enumerate(erased, start=1000):
        store.write("DELETE FROM devices WHERE device_id = ?", [(device,)])
        store.write("INSERT INTO devices (site, device_id, state, last_seen, status_link_ms) "
                    "VALUES ('lab', ?, 'online', ?, ?)", [(device, RECEIVED, link_ms)])
    store.erase(Selector("subject", "subj-7"), "alice")
    sent, mono, spied = Published(), [0.0], Spied(store)
    publisher = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(), **_clocks(mono))
    publisher.run_once(spied)  # type: ignore[arg-type]
    assert len(sent.taken()) == 3
    asks = "SELECT device_id FROM kiosk_forget_asks ORDER BY device_id"
    assert store.query(asks) == [("kiosk-1",), ("kiosk-2",), ("kiosk-3",)]
    mono[0] += 61.0
    spied.taken()
    publisher.run_once(spied)  # type: ignore[arg-type]  # the minute's prune: none stale
    assert not [sql for sql in spied.taken() if sql.startswith("DELETE")]

    store.write("UPDATE kiosk_forgets SET erased_at = ? WHERE device_id = 'kiosk-1'",
                [(iso_utc(utc_now() - timedelta(hours=49)),)])  # past its window
    store.write("DELETE FROM devices WHERE device_id = 'kiosk-2'", [()])  # out of the fleet
    mono[0] += 61.0
    publisher.run_once(spied)  # type: ignore[arg-type]

    assert store.query(asks) == [("kiosk-3",)]
    assert {row[1] for row in _forgets(store)} == {"kiosk-2", "kiosk-3"}
    assert sent.taken() == []


def _says_window(store: Store, device: str, hours: float | None, at_s: int = 0) -> None:
    """``device``'s status, saying ``hours`` as its window (None: not said), as stored."""
    birth = fleet.online_status("lab", device)
    status = birth.model_copy(update={"at": birth.at + timedelta(seconds=at_s),
                                      "keep_confirmed_h": hours})
    store.write_batch(Batch(statuses=[device_row(status, iso_utc(status.at))]), 100)


def _erased(device: str, hours_ago: float, now: Any) -> tuple[str, str, str, str]:
    return ("lab", device, new_measurement_id(int((now.timestamp() - hours_ago * 3600) * 1000)),
            iso_utc(now - timedelta(hours=hours_ago)))


def test_each_kiosk_is_asked_for_its_own_window_and_no_row_is_kept_past_720_h(
    store: Store,
) -> None:
    """A kiosk whose status says 96 h is asked for an id erased 60 h ago (main: 48 h, the
    back office's, so its copy stayed a day and a half unasked); one that says nothing for
    the back office's window or the default 48 h, whichever is longer; one that says 0 for
    none; a stored window out of bounds (1e9 h, written by hand: a status saying it is a dead
    letter) is read as 720 h, so no row is kept for ever."""
    for device, hours in (("kiosk-1", 96.0), ("kiosk-2", None), ("kiosk-3", 0.0),
                          ("kiosk-4", None)):
        _says_window(store, device, hours)
    store.write("UPDATE devices SET keep_confirmed_h = 1e9 WHERE device_id = 'kiosk-4'", [()])
    now = utc_now()
    rows = {(device, ago): _erased(device, ago, now)
            for device in ("kiosk-1", "kiosk-2", "kiosk-3", "kiosk-4", "kiosk-5")
            for ago in (1, 60, 800)}
    store.write("INSERT INTO kiosk_forgets (site, device_id, measurement_id, erased_at) "
                "VALUES (?, ?, ?, ?)", list(rows.values()))
    sent = Published()
    ForgetPublisher(store.url, "p", 24.0, sent, threading.Event()).run_once(store)

    wanted = {("kiosk-1", 1), ("kiosk-1", 60), ("kiosk-2", 1), ("kiosk-4", 1), ("kiosk-4", 60),
              ("kiosk-5", 1)}  # kiosk-5: no status at all, the back office's window or 48 h
    asked = {(topic.split("/")[2], mid) for topic, ids in sent.taken() for mid in ids}
    assert asked == {(device, rows[device, ago][2]) for device, ago in wanted}
    assert {row[2] for row in _forgets(store)} == {rows[key][2] for key in wanted}


def test_no_row_is_pruned_before_the_kiosks_retained_statuses_are_stored(store: Store) -> None:
    """A worker's first look pruned by the windows in the store before the kiosks' retained
    statuses of its start were stored: kiosk-1 keeps 96 h but its window was never stored (its
    statuses refused until the back office was updated), so its id erased 60 h ago was pruned
    at the fallback, 48 h, and never asked (main). Nothing is pruned now until those statuses
    are stored; then kiosk-1's window is read, its id asked, and only the 800 h row pruned."""
    now = utc_now()
    kept, old = _erased("kiosk-1", 60, now), _erased("kiosk-2", 800, now)
    store.write("INSERT INTO kiosk_forgets (site, device_id, measurement_id, erased_at) "
                "VALUES (?, ?, ?, ?)", [kept, old])
    statuses_in, sent = [False], Published()
    publisher = ForgetPublisher(store.url, "p", 48.0, sent, threading.Event(),
                                statuses_stored=lambda: statuses_in[0])
    publisher.run_once(store)
    assert {row[2] for row in _forgets(store)} == {kept[2], old[2]}
    assert sent.taken() == []  # past the fallback window: not asked yet
    _says_window(store, "kiosk-1", 96.0)  # its retained status, stored
    statuses_in[0] = True
    publisher.run_once(store)
    assert {row[2] for row in _forgets(store)} == {kept[2]}
    assert sent.taken() == [("p/lab/kiosk-1/cmd/forget", [kept[2]])]


def test_a_later_status_saying_no_window_puts_the_kiosk_back_on_the_default(store: Store) -> None:
    _says_window(store, "kiosk-1", 96.0)
    (stored,) = store.query("SELECT keep_confirmed_h FROM devices")
    assert stored == (96.0,)
    _says_window(store, "kiosk-1", None, at_s=60)  # configured back to the default
    assert store.query("SELECT keep_confirmed_h FROM devices") == [(None,)]
    now = utc_now()
    row = _erased("kiosk-1", 60, now)
    store.write("INSERT INTO kiosk_forgets (site, device_id, measurement_id, erased_at) "
                "VALUES (?, ?, ?, ?)", [row])
    sent = Published()
    assert ForgetPublisher(store.url, "p", 48.0, sent, threading.Event()).run_once(store) == 0
    assert _forgets(store) == set()


@pytest.mark.parametrize("said", ["1000000000", "721", "-1", '"96"', "true", "1e400", "NaN"])
def test_a_status_saying_a_window_out_of_bounds_is_a_dead_letter_naming_it(
    store: Store, said: str
) -> None:
    _says_window(store, "kiosk-1", 96.0)
    birth = fleet.online_status("lab", "kiosk-1")
    body = birth.model_copy(update={"at": birth.at + timedelta(seconds=60)}).to_json()
    payload = body[:-1] + b',"keep_confirmed_h":' + said.encode() + b"}"
    batch, _ = Triage("p", 1000).sort([Inbound("p/lab/kiosk-1/status", payload, 1, 1)])

    (letter,) = batch.dead_letters
    assert "keep_confirmed_h" in letter.reason or "finite" in letter.reason, letter.reason
    assert not batch.statuses
    store.write_batch(batch, 100)
    assert store.query("SELECT keep_confirmed_h FROM devices") == [(96.0,)]  # unchanged


# -- end to end ---------------------------------------------------------------------------

SITE, DEVICE = "lab", "kiosk-1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as started:
        yield started


class BackOffice:
    """`appliance backoffice` (run_backoffice) on a thread, on a SQLite store."""

    def __init__(self, broker: PrivateBroker, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
        config = config_from_mapping(
            {
                "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": PREFIX},
                "state_dir": str(tmp_path / "backoffice"),
                "store": {"url": self.url},
                "backoffice": {"client_id": "forget-w"},
            },
            environ={},
        )
        self.stop, self.codes = threading.Event(), []
        self.thread = threading.Thread(
            target=lambda: self.codes.append(run_backoffice(config, self.stop))
        )
        self.thread.start()

    def stored(self) -> set[str]:
        store = open_store(self.url)
        try:
            return {str(row[0]) for row in store.query("SELECT measurement_id FROM results")}
        finally:
            store.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert self.codes == [0]


def _kiosk(broker: PrivateBroker, tmp_path: Path, keep_h: float | None = None) -> ResendKiosk:
    kiosk = ResendKiosk(tmp_path, broker.host, broker.port, prefix=PREFIX, site=SITE, device=DEVICE,
                        keep_h=keep_h)
    kiosk.start()
    return kiosk


def _outbox_ids(kiosk: ResendKiosk) -> set[str]:
    with sqlite3.connect(kiosk.outbox.path) as db:
        return {row[0] for row in db.execute("SELECT measurement_id FROM outbox")}


@pytest.mark.broker
@pytest.mark.parametrize("kiosk_at_erasure", ["online", "offline", "offline-session-lost"])
def test_results_erase_reaches_the_kiosks_kept_copies(
    broker: PrivateBroker,
    tmp_path: Path,
    kiosk_at_erasure: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subject = _results("subj-gone", 3, 5, SITE, DEVICE)
    others = _results("subj-stays", 2, 6, SITE, DEVICE)
    backoffice = BackOffice(broker, tmp_path)
    kiosk = _kiosk(broker, tmp_path)
    try:
        kiosk.add([(r.measurement_id, r.to_json()) for r in subject + others])
        assert wait_until(lambda: len(backoffice.stored()) == 5 and kiosk.link.idle(), 30)
        assert kiosk.outbox.kept_confirmed() == 5
        if kiosk_at_erasure != "online":
            kiosk.stop()
        if kiosk_at_erasure == "offline-session-lost":  # only the asking at its return helps
            broker.stop()
            shutil.rmtree(broker.workdir / "data")
            (broker.workdir / "data").mkdir()
            broker.start()
        assert (
            main(["results", "erase", "--store", backoffice.url, "--subject", "subj-gone", "--yes"])
            == 0
        )
        capsys.readouterr()
        if kiosk_at_erasure != "online":
            kiosk = _kiosk(broker, tmp_path)
        assert wait_until(lambda: kiosk.outbox.kept_confirmed() == 2, 30), _outbox_ids(kiosk)
        assert _outbox_ids(kiosk) == {r.measurement_id for r in others}
        assert backoffice.stored() == {r.measurement_id for r in others}
    finally:
        kiosk.stop()
        backoffice.close()
    forgets = open_store(backoffice.url)
    try:  # kept for asking again until the window ends
        assert {row[2] for row in _forgets(forgets)} == {r.measurement_id for r in subject}
    finally:
        forgets.close()


def _query(url: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    store = open_store(url)
    try:
        return store.query(sql, params)
    finally:
        store.close()


@pytest.mark.broker
def test_a_kiosk_keeping_96_h_is_asked_at_its_return_60_h_after_the_erasure(
    broker: PrivateBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The kiosk's status says its window (96 h); the back office and the kiosk are both down
    at the erasure (nothing is published: as after a kill -9 between the erasure and the
    ask); 60 h on (the erasure's recorded time moved back), both start again: the kiosk is
    asked and its copies go. Main asked for the back office's 48 h only (and refused the
    status with the field as a dead letter)."""
    subject = _results("subj-gone", 3, 5, SITE, DEVICE)
    others = _results("subj-stays", 2, 6, SITE, DEVICE)
    backoffice = BackOffice(broker, tmp_path)
    kiosk = _kiosk(broker, tmp_path, keep_h=96)
    try:
        kiosk.add([(r.measurement_id, r.to_json()) for r in subject + others])
        assert wait_until(lambda: len(backoffice.stored()) == 5 and kiosk.link.idle(), 30)
        assert wait_until(lambda: _query(backoffice.url, "SELECT keep_confirmed_h FROM devices")
                          == [(96.0,)], 15)
    finally:
        kiosk.stop()
        backoffice.close()
    assert main(["results", "erase", "--store", backoffice.url, "--subject", "subj-gone", "--yes"]
                ) == 0
    capsys.readouterr()
    store = open_store(backoffice.url)
    try:
        store.write("UPDATE kiosk_forgets SET erased_at = ?",
                    [(iso_utc(utc_now() - timedelta(hours=60)),)])
    finally:
        store.close()
    backoffice = BackOffice(broker, tmp_path)
    kiosk = _kiosk(broker, tmp_path, keep_h=96)
    try:
        assert wait_until(lambda: kiosk.outbox.kept_confirmed() == 2, 30), _outbox_ids(kiosk)
        assert _outbox_ids(kiosk) == {r.measurement_id for r in others}
    finally:
        kiosk.stop()
        backoffice.close()


@pytest.mark.broker
def test_a_started_back_office_asks_the_window_a_retained_status_says_before_it_prunes(
    broker: PrivateBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker holds kiosk-9's retained status saying 96 h; the store holds an id of it
    erased 60 h ago and no window for it. `appliance backoffice` starts: main's first look
    pruned the row at the fallback 48 h before the status was stored, and the kiosk was never
    asked; now it is asked once the status is stored."""
    monkeypatch.setattr(ingest, "STATUSES_SETTLE_S", 0.5, raising=False)  # main: none
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    erased = _erased("kiosk-9", 60, utc_now())
    store = open_store(url, create=True)
    try:
        store.write("INSERT INTO kiosk_forgets (site, device_id, measurement_id, erased_at) "
                    "VALUES (?, ?, ?, ?)", [erased])
    finally:
        store.close()
    status = fleet.online_status(SITE, "kiosk-9").model_copy(update={"keep_confirmed_h": 96.0})
    fleet.publish_messages(broker.host, broker.port,
                           [(f"{PREFIX}/{SITE}/kiosk-9/status", status.to_json())], retain=True)
    asked: list[list[str]] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    listener.on_message = lambda _c, _u, message: asked.append(parse_request(message.payload))
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.connect(broker.host, broker.port)
    listener.loop_start()
    try:
        listener.subscribe(f"{PREFIX}/{SITE}/kiosk-9/cmd/forget", qos=1)
        assert subscribed.wait(10)
        backoffice = BackOffice(broker, tmp_path)
        try:
            assert wait_until(lambda: asked == [[erased[2]]], 30), asked
            assert _query(url, "SELECT keep_confirmed_h FROM devices") == [(96.0,)]
        finally:
            backoffice.close()
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_a_request_body_is_what_the_kiosk_parses() -> None:
    ids = [new_measurement_id(1_765_000_000_000 + n) for n in range(MAX_IDS + 1)]
    bodies = requests(ids)
    assert [parse_request(body) for body in bodies] == [ids[:MAX_IDS], ids[MAX_IDS:]]
    assert json.loads(bodies[1]) == {"ids": ids[MAX_IDS:]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new store's URL: a SQLite file, or a new PostgreSQL database (dropped afterwards)."""
    yield from new_store_url(request.param, tmp_path, "forgetwin")


def test_a_restore_records_an_erased_letters_kiosk_as_apply_journal_does(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`store restore` applies the journal again by the one function `results erasures
    --apply-journal` uses, with the config's topic prefix: the kiosk of a result held only as
    a dead letter is asked to forget it after a restore too (main: none recorded)."""
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", "fleet9")
    held = _letters_stored(store_url, "fleet9")
    backup = tmp_path / "backup.file"
    for args in (["store", "backup", "--store", store_url, "--out", str(backup)],
                 ["results", "erase", "--store", store_url, "--subject", "subj-7", "--yes"]):
        done = cli(tmp_path, *args)
        assert done.returncode == 0, done.stderr

    done = cli(tmp_path, "store", "restore", str(backup), "--store", store_url, "--force")

    assert done.returncode == 0, done.stderr
    assert "re-applied 1 erasure(s)" in done.stdout
    store = open_store(store_url)
    try:
        assert {row[:3] for row in _forgets(store)} == {("shop", "kiosk-5", held.measurement_id)}
    finally:
        store.close()
