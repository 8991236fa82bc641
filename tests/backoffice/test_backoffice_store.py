"""The store keeps each measurement once, tracks the fleet, keeps dead letters; SQLite and PG."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import pytest

from appliance.backoffice.accounts import Login
from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import (
    RESULT_COLUMNS,
    DeadLetter,
    dead_letter,
    device_row,
    iso_utc,
    result_row,
)
from appliance.backoffice.store import Batch, Store, StoreError, open_store
from appliance.backoffice.storeerrors import DATABASE_ERRORS
from appliance.config import BackofficeConfig
from appliance.console import auth
from appliance.pathology.jobstore import PathologyStore
from appliance.synthetic import fleet
from tests.store_helpers import BACKENDS, PG_URL, fresh_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend (PostgreSQL in a throw-away schema)."""
    with fresh_store(request.param, tmp_path, "test_store", open_store) as opened:
        yield opened


def _rows(count: int, seed: int = 1) -> list[tuple[object, ...]]:
    rng = random.Random(seed)
    results = [fleet.sample_result(rng, "lab", f"kiosk-{i % 3}", i) for i in range(count)]
    return [result_row(r, "2026-11-26T00:00:00.000000Z", r.to_json().decode()) for r in results]


def test_each_measurement_is_stored_once_across_and_within_batches(store: Store) -> None:
    rows = _rows(10)
    first = store.write_batch(Batch(results=rows[:6] + rows[:2]), dead_letter_max_rows=100)
    second = store.write_batch(Batch(results=rows[4:] + rows[4:]), dead_letter_max_rows=100)
    assert first == [row[0] for row in rows[:6]]
    assert second == [row[0] for row in rows[6:]]
    assert store.count_results() == 10


def test_migrations_are_versioned_and_run_once(store: Store) -> None:
    assert store.schema_version() == MIGRATIONS[-1][0]
    assert store.migrate() == []


def test_status_messages_build_the_fleet_and_results_refresh_last_seen(store: Store) -> None:
    birth = fleet.online_status("lab", "kiosk-0", outbox_depth=7)
    store.write_batch(Batch(statuses=[device_row(birth, "2026-11-26T01:00:00.000000Z")]), 100)
    store.write_batch(Batch(results=_rows(1)), 100)
    offline = birth.model_copy(update={"state": "offline"})
    store.write_batch(Batch(statuses=[device_row(offline, "2026-11-26T02:00:00.000000Z")]), 100)
    (device,) = store.devices()
    assert device["state"] == "offline"
    assert device["last_seen"] == "2026-11-26T02:00:00.000000Z"
    assert (device["model_name"], device["outbox_depth"]) == ("skin-texture-grade", 7)


def test_dead_letters_keep_reason_and_payload_and_are_pruned(store: Store) -> None:
    letters = [
        dead_letter("2026-11-26T00:00:00.000000Z", f"t/{i}", f"reason {i}", b"\xff\x00x")
        for i in range(5)
    ]
    store.write_batch(Batch(dead_letters=letters), dead_letter_max_rows=3)
    kept = store.dead_letters()
    assert [d.topic for d in kept] == ["t/4", "t/3", "t/2"]
    assert kept[0].payload == b"\xff\x00x"
    assert kept[0].reason == "reason 4"


AT = "2026-11-26T00:00:00.000000Z"


def test_a_dead_letter_received_again_is_kept_once_and_pushes_no_other_out(
    store: Store,
) -> None:
    """A kiosk re-sends a refused result until an ack reaches it: every copy is the same
    letter. Rows are counted, so PostgreSQL's ids spent on the copies prune nothing."""
    others = [dead_letter(AT, f"p/lab/k{i}/result", "bad", b"junk %d" % i) for i in range(3)]
    store.write_batch(Batch(dead_letters=others), 5, 10_000)
    resent = dead_letter(AT, "p/lab/k9/result", "ahead of the clock", b'{"measurement_id": "x"}')
    for _ in range(50):
        store.write_batch(Batch(dead_letters=[resent, resent]), 5, 10_000)
    other_device = dead_letter(AT, "p/lab/k8/result", "ahead of the clock", resent.payload)
    store.write_batch(Batch(dead_letters=[other_device]), 5, 10_000)
    assert [d.topic for d in store.dead_letters()] == [
        "p/lab/k8/result", "p/lab/k9/result", "p/lab/k2/result", "p/lab/k1/result",
        "p/lab/k0/result"]
    assert store.count_dead_letters() == 5


def test_the_oldest_dead_letters_are_still_pruned_to_the_bounds(store: Store) -> None:
    letters = [dead_letter(AT, f"p/lab/k{i}/result", "bad", b"x" * 100) for i in range(5)]
    one_letter = len(letters[0].payload) + len("bad") + len(letters[0].topic)
    store.write_batch(Batch(dead_letters=letters[:4]), 3, 10_000)
    assert [d.topic[6:8] for d in store.dead_letters()] == ["k3", "k2", "k1"]
    store.write_batch(Batch(dead_letters=letters[:4]), 3, 10_000)  # again: k0 comes back
    assert [d.topic[6:8] for d in store.dead_letters()] == ["k0", "k3", "k2"]
    store.write_batch(Batch(dead_letters=letters[4:]), 3, 2 * one_letter)
    assert [d.topic[6:8] for d in store.dead_letters()] == ["k4", "k0"]


def test_a_letter_the_bounds_prune_at_once_is_taken_out_of_its_batch(store: Store) -> None:
    """The worker confirms the letters left in its batch: one pruned at once was not kept."""
    letters = [dead_letter(AT, f"p/lab/k{i}/result", "bad", b"x" * 100) for i in range(4)]
    one_letter = len(letters[0].payload) + len("bad") + len(letters[0].topic)
    by_bytes = Batch(dead_letters=letters[:3])
    store.write_batch(by_bytes, 100, 2 * one_letter)
    assert by_bytes.dead_letters == letters[1:3]
    by_rows = Batch(dead_letters=[letters[3], letters[2]])  # k2 is kept already
    store.write_batch(by_rows, 1)
    assert by_rows.dead_letters == [letters[3]]
    assert [d.topic for d in store.dead_letters()] == [letters[3].topic]


def test_refused_results_the_bounds_prune_later_are_counted_as_lost_by_device_and_warned(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused result kept whole on its kiosk's result topic is confirmed to the kiosk,
    which drops it: the letter is then its only copy, and pruning it loses the result."""
    def whole(device: str, n: int) -> DeadLetter:
        return dead_letter(AT, f"p/lab/{device}/result", "bad", b'{"measurement_id": "%d"}' % n)

    kept_cut = dead_letter(AT, "p/lab/k3/result", "too big", b"y" * 50, max_bytes=10)
    not_results = [dead_letter(AT, "p/lab/k3/result", "not JSON", b"names no id"),
                   dead_letter(AT, "p/lab/k3/status", "bad", b"z"),
                   dead_letter(AT, "p/pathology/jobs/result", "bad", b"z"),
                   dead_letter(AT, "elsewhere/lab/k3/result", "bad", b"z")]
    first = [whole("k1", 1), whole("k1", 2), whole("k2", 3), kept_cut, *not_results]
    store.write_batch(Batch(dead_letters=first, topic_prefix="p"), 100)
    assert store.pruned_only_copies(10).letters == 0
    caplog.set_level(logging.WARNING, "appliance.backoffice.store_writes")
    # the bounds keep one row: the 8 letters before go, and k5's letter at once (not
    # confirmed: its kiosk still holds it)
    second = Batch(dead_letters=[whole("k5", 5), whole("k4", 4)], topic_prefix="p")
    store.write_batch(second, 1)
    assert second.pruned_only_copies == Counter({("lab", "k1"): 2, ("lab", "k2"): 1})
    assert [d.topic for d in store.dead_letters()] == ["p/lab/k4/result"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "pruned 3 refused result(s)" in warning
    assert "lab/k1 (2), lab/k2 (1)" in warning
    third = Batch(dead_letters=[whole("k1", 6)], topic_prefix="p")  # by bytes: k4's goes
    store.write_batch(third, 100, len(whole("k1", 6).payload) + len("bad") + 20)
    assert third.pruned_only_copies == Counter({("lab", "k4"): 1})
    lost = store.pruned_only_copies(1)
    assert (lost.letters, lost.devices) == (4, 3)
    assert [row[:3] for row in lost.worst] == [("lab", "k1", 2)]
    assert "LOST: the dead-letter bounds pruned 4 refused result(s)" in lost.text()
    assert lost.text().endswith("on 3 device(s): lab/k1 2 (last " + lost.worst[0][3]
                                + ") and 2 more")


def test_the_largest_dead_letter_bounds_a_config_takes_keep_every_letter(store: Store) -> None:
    """Larger bounds, accepted before, failed every batch with a dead letter on SQLite (an
    integer over 64 bits): each letter was set aside, never kept nor confirmed."""
    bounds = BackofficeConfig(dead_letter_max_rows=2**62, dead_letter_max_total_bytes=2**62)
    letters = Batch(dead_letters=[dead_letter(AT, "p/lab/k1/result", "bad", b"x")])
    store.write_batch(letters, bounds.dead_letter_max_rows, bounds.dead_letter_max_total_bytes)
    assert len(letters.dead_letters) == 1
    assert store.count_dead_letters() == 1


def test_results_filter_by_device_and_time(store: Store) -> None:
    rows = _rows(9)
    store.write_batch(Batch(results=rows), 100)
    since = sorted(row[3] for row in rows)[4]
    picked = list(store.select_results(("device_id", "captured_at"),
                                       ResultFilter(device_id="kiosk-1", placed_from=since)))
    expected = sorted((r[1], r[3]) for r in rows if r[1] == "kiosk-1" and r[3] >= since)
    assert picked == [(d, t) for d, t in expected]
    assert picked


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite3'}")
    bad = _rows(2)
    bad[1] = (*bad[1][:-2], None, bad[1][-1])  # NULL in a NOT NULL feature column
    with pytest.raises(sqlite3.IntegrityError):
        store.write_batch(Batch(results=bad), 100)
    assert store.count_results() == 0


def test_bad_store_urls_are_explained(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="sqlite:///PATH or postgresql"):
        Store("mysql://x")
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL database "
                       r"postgresql://postgres:\*\*\*@127.0.0.1:1/test: ") as refused:
        Store("postgresql://postgres:hunter2@127.0.0.1:1/test")
    assert "hunter2" not in str(refused.value)
    # a byte the locale could not decode (--store $'...\xff'): psycopg cannot encode the URL
    with pytest.raises(StoreError, match=r"cannot connect to the PostgreSQL database "
                       r"postgresql://127.0.0.1:1/test\\udcff: .*not UTF-8"):
        Store("postgresql://127.0.0.1:1/test\udcff")


@pytest.mark.postgres
def test_a_database_the_server_lacks_is_named_with_what_creates_it() -> None:
    """`appliance demo --store postgresql://.../newdb` (or the console, or a worker) said only
    the server's 'database "newdb" does not exist'; store migrate creates it, and nothing said
    so."""
    missing = f"stranger_{uuid.uuid4().hex[:10]}"
    with pytest.raises(StoreError) as refused:
        Store(PG_URL.rsplit("/", 1)[0] + f"/{missing}")
    assert f'database "{missing}" does not exist' in str(refused.value)
    assert str(refused.value).endswith(
        "; `appliance store migrate` (with the same --store or --config) creates it where the "
        "role may create databases (CREATEDB)")
    with pytest.raises(StoreError) as refused:
        Store("postgresql://postgres@127.0.0.1:1/test")
    assert "store migrate" not in str(refused.value)


def test_a_password_in_a_store_url_is_never_printed() -> None:
    """libpq also takes a password as a parameter (``?password=``), which messages printed
    whole; and a URL of no store backend was echoed with its password."""
    with pytest.raises(StoreError) as refused:
        Store("mysql://ops:hunter2@db.example/app")
    assert str(refused.value) == ("store url 'mysql://ops:***@db.example/app': use "
                                  "sqlite:///PATH or postgresql://...")
    with pytest.raises(StoreError) as refused:
        Store("postgresql://postgres@127.0.0.1:1/test?sslmode=disable&password=hunter2")
    assert str(refused.value).startswith(
        "cannot connect to the PostgreSQL database "
        "postgresql://postgres@127.0.0.1:1/test?sslmode=disable&password=***: ")
    assert "hunter2" not in str(refused.value)


def test_a_replayed_retained_status_updates_state_but_not_last_seen(store: Store) -> None:
    birth = fleet.online_status("lab", "kiosk-0")
    store.write_batch(Batch(statuses=[device_row(birth, "2026-11-26T05:00:00.000000Z")]), 100)
    will = birth.model_copy(update={"state": "offline"})
    store.write_batch(Batch(statuses=[device_row(will, "2026-11-20T00:00:00.000000Z")]), 100)
    (device,) = store.devices()
    assert device["state"] == "offline"
    assert device["last_seen"] == "2026-11-26T05:00:00.000000Z"


def test_a_last_will_keeps_the_camera_and_outbox_of_the_last_online_status(store: Store) -> None:
    started = fleet.online_status("lab", "kiosk-0", outbox_depth=0)
    will = started.model_copy(update={"state": "offline", "camera": None})  # made at connect
    birth = started.model_copy(update={"at": started.at + timedelta(seconds=1),
                                       "camera": "online"})
    later = birth.model_copy(update={"at": started.at + timedelta(minutes=5),
                                     "camera": "offline", "outbox_depth": 4})
    for status, seen_at in ((birth, "2026-11-26T05:00:00.000000Z"),
                            (later, "2026-11-26T05:05:00.000000Z"),
                            (will, "2026-11-26T05:06:00.000000Z")):
        store.write_batch(Batch(statuses=[device_row(status, seen_at)]), 100)
    (device,) = store.devices()
    assert (device["state"], device["last_seen"]) == ("offline", "2026-11-26T05:06:00.000000Z")
    assert (device["camera"], device["outbox_depth"]) == ("offline", 4)  # as last reported
    assert device["status_at"] == iso_utc(later.at)
    next_run = will.model_copy(update={"at": later.at + timedelta(hours=1)})  # never online here
    store.write_batch(Batch(statuses=[device_row(next_run, "2026-11-26T07:00:00.000000Z")]), 100)
    (device,) = store.devices()
    assert (device["camera"], device["outbox_depth"]) == (None, 0)  # newer: the will's own
    assert device["status_at"] == iso_utc(next_run.at)


def test_a_kiosk_s_measuring_paused_is_its_newest_status_s(store: Store) -> None:
    """Stored as the latest status says it: a paused kiosk's reason stays through a last will
    made before it (the fleet shows an offline kiosk's state alone), and goes with the status
    that says it measures again."""
    birth = fleet.online_status("lab", "kiosk-0")
    will = birth.model_copy(update={"state": "offline"})  # made at connect
    paused = birth.model_copy(update={"at": birth.at + timedelta(minutes=1),
                                      "measuring_paused": "disk_full"})
    again = birth.model_copy(update={"at": birth.at + timedelta(minutes=2)})
    written = []
    for status, seen_at in ((paused, "2026-11-26T05:01:00.000000Z"),
                            (will, "2026-11-26T05:01:30.000000Z"),
                            (again, "2026-11-26T05:02:00.000000Z")):
        store.write_batch(Batch(statuses=[device_row(status, seen_at)]), 100)
        (device,) = store.devices()
        written.append((device["state"], device["measuring_paused"]))
    assert written == [("online", "disk_full"), ("offline", "disk_full"), ("online", None)]


def test_grade_probabilities_are_read_in_the_order_they_were_sent(store: Store) -> None:
    """The console tells a near-tie from them (edge/grade_margin.py: its two grades in the
    model's label order); a result without a grade has none."""
    rng = random.Random(5)
    graded, ungraded = (fleet.sample_result(rng, "lab", "kiosk-0", i) for i in range(2))
    assert graded.classification is not None
    sent = {"normal": 0.46, "fine": 0.44, "coarse": 0.10}  # not in alphabetical order
    graded = graded.model_copy(update={"classification": graded.classification.model_copy(
        update={"probabilities": sent})})
    ungraded = ungraded.model_copy(update={"classification": None})
    store.write_batch(Batch(results=[result_row(r, "2026-11-26T00:00:00.000000Z",
                                                r.to_json().decode())
                                     for r in (graded, ungraded)]), 100)
    read = store.grade_probabilities([graded.measurement_id, ungraded.measurement_id])
    assert list(read) == [graded.measurement_id]
    assert list(json.loads(read[graded.measurement_id]).items()) == list(sent.items())


def test_a_kiosk_s_outbox_in_use_is_its_newest_status_s(store: Store) -> None:
    """Stored as the latest status says it (the kiosk on its repaired outbox copy), and gone
    with the status of a kiosk back on its own outbox."""
    birth = fleet.online_status("lab", "kiosk-0")
    on_copy = birth.model_copy(update={"at": birth.at + timedelta(minutes=1),
                                       "outbox_in_use": "repaired_copy"})
    again = birth.model_copy(update={"at": birth.at + timedelta(minutes=2)})
    written = []
    for status, seen_at in ((on_copy, "2026-11-26T05:01:00.000000Z"),
                            (again, "2026-11-26T05:02:00.000000Z")):
        store.write_batch(Batch(statuses=[device_row(status, seen_at)]), 100)
        (device,) = store.devices()
        written.append((device["state"], device["outbox_in_use"]))
    assert written == [("online", "repaired_copy"), ("online", None)]


def test_a_reconnected_store_sees_the_same_data(store: Store) -> None:
    rows = _rows(4)
    store.write_batch(Batch(results=rows[:3]), 100)
    store.reconnect()
    assert store.count_results() == 3
    assert store.write_batch(Batch(results=rows), 100) == [rows[3][0]]


def test_each_result_keeps_the_features_outside_the_validated_range(store: Store) -> None:
    rng = random.Random(3)
    outside = ["pore_mean_diameter_um", "hill_density_per_mm2", "kime_score"]
    results = [fleet.sample_result(rng, "lab", "kiosk-0", i) for i in range(2)]
    results[0] = results[0].model_copy(update={"not_validated": outside})
    store.write_batch(Batch(results=[result_row(r, "2026-11-26T00:00:00.000000Z",
                                                r.to_json().decode()) for r in results]), 100)
    kept = dict(store.select_results(("measurement_id", "not_validated")))
    assert kept == {results[0].measurement_id: ",".join(outside),
                    results[1].measurement_id: ""}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_migration_6_fills_not_validated_in_from_stored_payloads(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"test_store_{uuid.uuid4().hex[:12]}"
    rng = random.Random(4)
    results = [fleet.sample_result(rng, "lab", "kiosk-0", i) for i in range(3)]
    outside = ["pore_count", "furrow_anisotropy", "kime_score", "lab_l"]
    results[1] = results[1].model_copy(update={"not_validated": outside})
    old_rows = [result_row(r, "2026-11-26T00:00:00.000000Z", r.to_json().decode())
                for r in results]
    with monkeypatch.context() as before_6:  # a store as it was before migration 6
        before_6.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:5])
        old = open_store(url, pg_schema=schema)
    try:
        columns = [c for c in RESULT_COLUMNS if c != "not_validated"]
        old.write(f"INSERT INTO results ({','.join(columns)}) "
                  f"VALUES ({','.join('?' * len(columns))})",
                  [row[:-2] + row[-1:] for row in old_rows])  # without the new column
        assert old.migrate() == [version for version, _, _ in MIGRATIONS[5:]]
        kept = dict(old.select_results(("measurement_id", "not_validated")))
        assert kept[results[1].measurement_id] == ",".join(outside)  # in the payload's order
        assert kept[results[0].measurement_id] == kept[results[2].measurement_id] == ""
    finally:
        if schema is not None:
            old.drop_postgres_schema(schema)
        old.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_migration_10_keeps_the_copies_kept_before_it_and_each_letter_after_it_once(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"test_store_{uuid.uuid4().hex[:12]}"
    with monkeypatch.context() as before_10:  # a store as it was before migration 10
        before_10.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:9])
        old = open_store(url, pg_schema=schema)
    try:
        old.write("INSERT INTO dead_letters (received_at, topic, reason, payload_bytes, payload) "
                  "VALUES (?, ?, ?, ?, ?)", [(AT, "p/lab/k1/result", "bad", 1, b"x")] * 2)
        assert old.migrate() == [version for version, _, _ in MIGRATIONS[9:]]  # 10 on
        letter = dead_letter(AT, "p/lab/k1/result", "bad", b"x")
        for _ in range(3):
            old.write_batch(Batch(dead_letters=[letter]), 100)
        assert [d.letter_sha256 for d in old.dead_letters()] == [letter.letter_sha256, None, None]
    finally:
        if schema is not None:
            old.drop_postgres_schema(schema)
        old.close()


def test_a_token_or_session_of_no_user_is_refused_and_removing_a_user_takes_its_own(
    store: Store,
) -> None:
    """SQLite connections did not enforce foreign keys: a token of a user who is not there was
    stored, and became a working token of whoever was later added under that name."""
    with pytest.raises(DATABASE_ERRORS, match=r"(?i)foreign key"):  # on main: stored (SQLite)
        store.add_token("a" * 64, "nobody", "", 3600.0)
    with pytest.raises(DATABASE_ERRORS, match=r"(?i)foreign key"):
        store.add_session("b" * 64, "nobody", "csrf", 3600.0)
    assert store.tokens() == []
    auth.add_user(store, "ann", "viewer", "correct horse battery")
    auth.add_user(store, "bob", "operator", "correct horse battery")
    token = auth.create_token(store, "ann").token
    store.write("DELETE FROM console_users WHERE name = ?", [("ann",)])  # no explicit deletes
    assert store.tokens() == []  # the token went with its user
    auth.add_user(store, "ann", "viewer", "correct horse battery")
    assert auth.bearer_login(store, f"Bearer {token}") is None


def test_migration_12_forgets_tokens_and_sessions_of_users_no_longer_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite store of schema version 11 with data in it, tokens and sessions left by users
    removed while foreign keys were not enforced among it, migrates; afterwards its data
    holds to its foreign keys and the rest is as it was."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    with monkeypatch.context() as before_12:  # a store as it was before migration 12
        before_12.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:11])
        old = open_store(url)
    try:
        # this code's ingest reads erasures (18) and clocks (19): the rows as they were stored
        old.write(f"INSERT INTO results ({','.join(RESULT_COLUMNS)}) "
                  f"VALUES ({','.join('?' * len(RESULT_COLUMNS))})", _rows(5))
        auth.add_user(old, "ann", "operator", "correct horse battery")
        kept = auth.create_token(old, "ann").token
        old.add_session("c" * 64, "ann", "csrf", 3600.0)
        with sqlite3.connect(tmp_path / "old.sqlite3") as older:  # foreign keys unenforced
            older.execute("INSERT INTO console_tokens (token_sha256, name, created_at) "
                          "VALUES (?, 'gone', '2026-01-02T03:04:05.000000Z')", ("d" * 64,))
            older.execute("INSERT INTO console_sessions VALUES (?, 'gone', 'x', "
                          "'2099-01-01T00:00:00.000000Z')", ("e" * 64,))
        assert old.query("PRAGMA foreign_key_check") != []
        assert old.migrate() == [version for version, _, _ in MIGRATIONS[11:]]  # 12 on
        assert old.query("PRAGMA foreign_key_check") == []
        assert [t.name for t in old.tokens()] == ["ann"]
        assert old.query("SELECT name FROM console_sessions") == [("ann",)]
        assert auth.bearer_login(old, f"Bearer {kept}") is not None
        assert old.count_results() == 5
    finally:
        old.close()


def _host_clock(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    """This console host's clock runs ``offset`` off the true time."""

    class Skewed(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Skewed:
            moment = datetime.now(tz) + offset
            return cls.fromtimestamp(moment.timestamp(), tz)

    monkeypatch.setattr(auth, "datetime", Skewed)


@pytest.mark.parametrize(
    "store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_console_sessions_run_on_the_stores_clock_not_a_skewed_hosts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consoles on several hosts share one PostgreSQL store: a session opened on a host whose
    clock ran two hours behind was over at once for every other host, a host two hours ahead
    turned every fresh session away, and one behind kept a lapsed session open."""
    auth.add_user(store, "alice", "viewer", "a long enough password")
    alice = Login("alice", "viewer")
    _host_clock(monkeypatch, timedelta(hours=-2))
    opened = auth.open_session(store, alice, hours=1)
    _host_clock(monkeypatch, timedelta(0))
    assert auth.session_login(store, opened.cookie) == Login("alice", "viewer", opened.csrf)
    _host_clock(monkeypatch, timedelta(hours=2))
    assert auth.session_login(store, opened.cookie) == Login("alice", "viewer", opened.csrf)
    lapsing = auth.open_session(store, alice, hours=0.2 / 3600)  # 0.2 s
    time.sleep(0.4)
    _host_clock(monkeypatch, timedelta(hours=-2))
    assert auth.session_login(store, lapsing.cookie) is None
    assert auth.session_login(store, opened.cookie) is not None



def _migrate_as_store_migrate_does(schema: str, start: threading.Barrier) -> None:
    store = PathologyStore(PG_URL, pg_schema=schema)
    try:
        start.wait()
        store.migrate()
        store.migrate_pathology()
    finally:
        store.close()


@pytest.mark.postgres
def test_migrations_at_once_on_a_fresh_postgresql_store_all_succeed() -> None:
    """What ``store migrate`` runs, four at once (pathology servers started together, each
    migrating on start, do the same): PostgreSQL's CREATE TABLE IF NOT EXISTS is no guard
    against a concurrent one, so each must wait for the others' DDL."""
    for _ in range(3):  # the race is lost often, not always: a few fresh schemas
        schema = f"test_migrate_{uuid.uuid4().hex[:12]}"
        owner = Store(PG_URL, pg_schema=schema)  # the schema exists; its tables do not
        start = threading.Barrier(4)
        try:
            with ThreadPoolExecutor(4) as pool:
                runs = [pool.submit(_migrate_as_store_migrate_does, schema, start)
                        for _ in range(4)]
                for run in runs:
                    run.result()
            assert owner.schema_version() == MIGRATIONS[-1][0]
            assert owner.has_table("pathology_jobs")
        finally:
            owner.drop_postgres_schema(schema)
            owner.close()



def test_an_up_to_date_store_another_program_holds_is_not_said_to_need_migrating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer starting on a store another program held locked past the busy timeout said
    'cannot migrate the SQLite store ...', though nothing needed migrating: it says it cannot
    write to it, where, and why (it still stops at start: it could not write)."""
    import appliance.backoffice.store as store_module

    path = tmp_path / "store.sqlite3"
    open_store(f"sqlite:///{path}").close()
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(path, isolation_level=None)  # WAL: others still read
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError) as refused:
            open_store(f"sqlite:///{path}")
    finally:
        holder.close()
    said = str(refused.value)
    assert said.startswith(f"cannot write to the SQLite store {path}: database is locked "
                           "(another program held it locked longer than the busy timeout"), said
    assert "migrate" not in said
    open_store(f"sqlite:///{path}").close()  # once that program is done
