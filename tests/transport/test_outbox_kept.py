"""Confirmed results the outbox keeps for a resend: kept, never sent on their own, expired after
the window, never pushing out a waiting one, the first to go on a full disk; an outbox of the
release before opens with every row waiting."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from appliance.diskspace import free_bytes
from appliance.transport.outbox import Outbox
from tests.disk_helpers import small_tmpfs

HOUR_S = 3600.0


def rows(n: int, start: int = 0, size: int = 8) -> list[tuple[str, str, bytes]]:
    return [(f"m{i}", "t/result", b"x" * size) for i in range(start, start + n)]


def ids(outbox: Outbox) -> list[str]:
    return [message.measurement_id for message in outbox.pending()]


def test_a_confirmed_result_is_kept_not_sent_and_expires_after_the_window(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)
    seqs = outbox.add_many(rows(3))
    assert outbox.remove_ids(["m0", "m1"]) == seqs[:2]
    assert (ids(outbox), outbox.depth(), outbox.kept_confirmed()) == (["m2"], 1, 2)
    assert outbox.get(seqs) == outbox.pending()  # a resend round reads no kept one either
    assert outbox.remove_ids(["m0"]) == []  # a second ack of a kept one changes nothing
    outbox.close()
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)  # kept across a restart
    assert (outbox.depth(), outbox.kept_confirmed()) == (1, 2)
    assert outbox.expire(now_s=time.time() + 47 * HOUR_S) == 0
    assert outbox.kept_confirmed() == 2
    assert outbox.expire(now_s=time.time() + 49 * HOUR_S) == 0  # delivered: not counted dropped
    assert (outbox.kept_confirmed(), outbox.depth(), outbox.dropped()) == (0, 1, 0)
    outbox.close()


def test_without_a_window_a_confirmed_result_is_deleted_at_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.add_many(rows(2))
    outbox.remove_ids(["m0"])
    assert outbox.kept_confirmed() == 0
    assert sqlite3.connect(tmp_path / "o.db").execute("SELECT COUNT(*) FROM outbox").fetchone() \
        == (1,)
    outbox.close()


def test_reopened_results_wait_again_from_the_time_asked(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)
    outbox.add_many(rows(4))
    outbox.remove_ids(["m0", "m1"])
    since_s = time.time()
    time.sleep(0.01)
    outbox.remove_ids(["m2"])
    reopened = outbox.reopen_confirmed(since_s)
    assert [m.measurement_id for m in outbox.get(reopened)] == ["m2"]
    assert (ids(outbox), outbox.depth(), outbox.kept_confirmed()) == (["m2", "m3"], 2, 2)
    assert outbox.remove_ids(["m2"]) == reopened  # confirmed again: kept again
    assert outbox.kept_confirmed() == 3
    outbox.close()


def test_a_confirmed_result_never_pushes_out_a_waiting_one(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_rows=10, keep_confirmed_s=48 * HOUR_S)
    outbox.add_many(rows(10))
    outbox.remove_ids([f"m{i}" for i in range(10)])
    outbox.add_many(rows(10, start=10))  # the row limit counts what waits only
    assert (outbox.depth(), outbox.dropped(), outbox.kept_confirmed()) == (10, 0, 10)
    outbox.add_many(rows(1, start=20))  # over the limit: the oldest *waiting* one goes
    assert ids(outbox) == [f"m{i}" for i in range(11, 21)]
    assert (outbox.dropped(), outbox.kept_confirmed()) == (1, 10)
    outbox.remove_ids(["m11", "m12"])  # more kept than the row limit: the oldest kept go
    assert (outbox.kept_confirmed(), outbox.depth()) == (10, 8)
    outbox.close()


def test_kept_results_go_when_the_disk_runs_low_and_waiting_ones_stay(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", size="8m") as disk:
        outbox = Outbox(disk / "o.db", keep_confirmed_s=48 * HOUR_S, keep_free_bytes=2 << 20)
        outbox.add_many(rows(40, size=20_000))
        outbox.remove_ids([f"m{i}" for i in range(30)])
        assert outbox.expire() == 0  # room enough: kept
        assert outbox.kept_confirmed() == 30
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (free_bytes(disk) - (1 << 20)))  # 1 MiB left
        assert outbox.expire() == 0  # not counted dropped: delivered
        assert (outbox.kept_confirmed(), outbox.depth(), outbox.dropped()) == (0, 10, 0)
        assert ids(outbox) == [f"m{i}" for i in range(30, 40)]
        outbox.add_many(rows(5, start=40, size=20_000))
        assert outbox.depth() == 15
        outbox.close()
        filler.unlink()


def test_an_outbox_of_the_release_before_opens_with_every_row_waiting(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    old = sqlite3.connect(path, isolation_level=None)  # the schema the release before made
    old.execute("PRAGMA journal_mode=WAL")
    for statement in (
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, measurement_id TEXT NOT "
        "NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, created_at_s REAL NOT NULL)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('dropped', 3)",
        "CREATE INDEX outbox_measurement_id ON outbox (measurement_id)",
    ):
        old.execute(statement)
    old.executemany("INSERT INTO outbox (measurement_id, topic, payload, created_at_s) "
                    "VALUES (?, ?, ?, ?)", [(m, t, p, time.time()) for m, t, p in rows(3)])
    old.close()
    outbox = Outbox(path, keep_confirmed_s=48 * HOUR_S)
    assert (ids(outbox), outbox.depth(), outbox.dropped()) == (["m0", "m1", "m2"], 3, 3)
    outbox.remove_ids(["m0"])
    assert (ids(outbox), outbox.kept_confirmed()) == (["m1", "m2"], 1)
    outbox.close()
    fresh = tmp_path / "new.db"
    Outbox(fresh).close()
    schema = ("SELECT type, name, sql, CASE type WHEN 'table' THEN rootpage END FROM "
              "sqlite_schema ORDER BY name")  # an index made since has its own root page
    assert sqlite3.connect(path).execute(schema).fetchall() == \
        sqlite3.connect(fresh).execute(schema).fetchall()  # migrated as a new one is made


def test_a_resend_does_not_start_a_kept_result_s_window_anew(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)
    [seq] = outbox.add_many(rows(1))
    first_s = time.time()
    outbox.remove_ids(["m0"], confirmed_at_s=first_s)
    last_s = first_s
    for asked_h in (20.0, 47.0):  # a login asking for a resend within every window
        assert outbox.reopen_confirmed(last_s - 60) == [seq]  # by its latest ack's time
        last_s = first_s + asked_h * HOUR_S
        assert outbox.remove_ids(["m0"], confirmed_at_s=last_s) == [seq]
    assert outbox.expire(now_s=first_s + 47.5 * HOUR_S) == 0
    assert outbox.kept_confirmed() == 1
    assert outbox.expire(now_s=first_s + 48.5 * HOUR_S) == 0  # 48 h from the FIRST ack
    assert (outbox.kept_confirmed(), outbox.depth(), outbox.dropped()) == (0, 0, 0)
    outbox.close()


def test_an_earlier_ack_of_a_resent_result_moves_its_window_back(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)
    outbox.add_many(rows(1))
    first_s = time.time()
    outbox.remove_ids(["m0"], confirmed_at_s=first_s)
    outbox.reopen_confirmed(first_s)
    outbox.remove_ids(["m0"], confirmed_at_s=first_s - HOUR_S)  # a worker whose clock lags
    outbox.expire(now_s=first_s + 47.5 * HOUR_S)
    assert outbox.kept_confirmed() == 0  # the earliest ack's window
    outbox.close()


def test_an_outbox_of_the_last_release_keeps_its_kept_results_windows(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    first_s = time.time()
    old = sqlite3.connect(path, isolation_level=None)  # the schema the last release made
    old.execute("PRAGMA journal_mode=WAL")
    for statement in (
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, measurement_id TEXT NOT "
        "NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, created_at_s REAL NOT NULL)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('dropped', 0)",
        "CREATE INDEX outbox_measurement_id ON outbox (measurement_id)",
        "ALTER TABLE outbox ADD COLUMN confirmed_at_s REAL",
        "CREATE INDEX outbox_confirmed_at_s ON outbox (confirmed_at_s) WHERE confirmed_at_s "
        "IS NOT NULL",
    ):
        old.execute(statement)
    old.executemany("INSERT INTO outbox (measurement_id, topic, payload, created_at_s, "
                    "confirmed_at_s) VALUES (?, 't/result', x'00', ?, ?)",
                    [("m0", first_s, first_s), ("m1", first_s, None)])
    old.close()
    outbox = Outbox(path, keep_confirmed_s=48 * HOUR_S)
    assert (ids(outbox), outbox.kept_confirmed()) == (["m1"], 1)
    assert len(outbox.reopen_confirmed(first_s)) == 1
    outbox.remove_ids(["m0"], confirmed_at_s=first_s + 47 * HOUR_S)
    assert outbox.expire(now_s=first_s + 48.5 * HOUR_S) == 0
    assert (ids(outbox), outbox.kept_confirmed()) == (["m1"], 0)  # its window ran from m0's ack
    outbox.close()
    fresh = tmp_path / "new.db"
    Outbox(fresh).close()
    schema = ("SELECT type, name, sql, CASE type WHEN 'table' THEN rootpage END FROM "
              "sqlite_schema ORDER BY name")
    assert sqlite3.connect(path).execute(schema).fetchall() == \
        sqlite3.connect(fresh).execute(schema).fetchall()


def test_a_resent_result_past_the_age_limit_is_never_counted_lost(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_age_s=720 * HOUR_S, keep_confirmed_s=48 * HOUR_S)
    made_s = time.time()
    outbox.add_many(rows(2))  # m1 is never confirmed: the age limit takes it, counted
    outbox.remove_ids(["m0"], confirmed_at_s=made_s + 700 * HOUR_S)  # waited 700 h, confirmed
    assert len(outbox.reopen_confirmed(made_s + 699 * HOUR_S)) == 1  # a restore asks for it
    assert outbox.expire(now_s=made_s + 721 * HOUR_S) == 1
    assert (ids(outbox), outbox.depth(), outbox.dropped()) == (["m0"], 1, 1)  # m1's loss only
    assert outbox.oldest_age_s(now_s=made_s + 721 * HOUR_S) is None  # no result can age out
    assert outbox.expire(now_s=made_s + 749 * HOUR_S) == 0  # its window passed: delivered once
    assert (ids(outbox), outbox.depth(), outbox.kept_confirmed(), outbox.dropped()) == \
        ([], 0, 0, 1)
    outbox.close()


def test_room_for_a_new_result_is_made_first_from_resent_ones_uncounted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_rows=3, keep_confirmed_s=48 * HOUR_S)
    outbox.add_many(rows(3))
    outbox.remove_ids(["m1"])
    outbox.reopen_confirmed(0.0)
    outbox.add_many(rows(1, start=3))  # one too many: m1, delivered once, makes the room
    assert (ids(outbox), outbox.depth(), outbox.dropped()) == (["m0", "m2", "m3"], 3, 0)
    outbox.add_many(rows(1, start=4))  # then the oldest never confirmed, counted lost
    assert (ids(outbox), outbox.depth(), outbox.dropped()) == (["m2", "m3", "m4"], 3, 1)
    outbox.close()


def test_a_refuse_new_outbox_makes_room_from_resent_ones_before_refusing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_rows=3, policy="refuse_new",
                    keep_confirmed_s=48 * HOUR_S)
    outbox.add_many(rows(3))
    outbox.remove_ids(["m1"])
    outbox.reopen_confirmed(0.0)
    outbox.add_many(rows(1, start=3))  # taken: m1, delivered once, makes the room
    assert (ids(outbox), outbox.depth(), outbox.dropped()) == (["m0", "m2", "m3"], 3, 0)
    outbox.close()
