"""Storage faults on the kiosk: a full disk (a real 4 MiB tmpfs) and a corrupt outbox file.

Every measurement is either committed or counted as dropped (status, metrics, journal); the
camera pauses while the outbox cannot write and resumes when space returns; a damaged outbox
is moved aside, its readable rows recovered, and the daemon carries on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Config, config_from_mapping
from appliance.diskspace import full_disk_hint
from appliance.edge import daemon as daemon_module
from appliance.edge.committer import ResultCommitter
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.testing import ResultCollector, fast_daemon, wait_until
from appliance.synthetic import fleet as fleetsim
from appliance.transport import wallclock
from appliance.transport.broker import free_port
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import (
    OUTBOX_SCHEMA,
    OutboxCorruptError,
    OutboxError,
    OutboxWriteError,
)
from appliance.transport.outbox_repair import build_repaired, open_outbox
from tests.disk_helpers import fill, fill_inodes, refuse_moving, small_tmpfs

PAGE_BYTES = 4096


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (the kiosk's small SD card, in miniature)."""
    with small_tmpfs(tmp_path / "disk") as mount:
        yield mount


def edge_config(state: Path, broker: Any, prefix: str, **edge: Any) -> Config:
    data = {
        "device": {"id": "kiosk-disk", "site": "lab"},
        "camera": {"source": "synthetic", "limit": edge.pop("limit", None)},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(state),
        "edge": {"synthetic_fps": 200, **edge},
    }
    return config_from_mapping(data, "test", environ={})


def run_in_thread(daemon: EdgeDaemon) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    return thread, codes


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    return {k: float(v) for k, v in (ln.split() for ln in lines if not ln.startswith("#"))}


def check_paused_and_counted(daemon: EdgeDaemon, metrics_port: int) -> None:
    """While the disk is full: nothing measured, the loss in status and metrics, screen says so."""
    paused_frames = daemon.analysis.frames_paused
    measured = daemon.analysis.measurements
    assert wait_until(lambda: daemon.analysis.frames_paused > paused_frames + 50, 30)
    assert daemon.analysis.measurements == measured  # nothing measured only to be dropped
    assert daemon.display.state.snapshot()["guidance"] == "guide_paused_disk_full"
    lost = daemon.committer.refused
    assert lost > 0
    assert b'"dropped":%d' % lost in daemon.status.payload("online")
    assert b'"measuring_paused":"disk_full"' in daemon.status.payload("online")  # staff.py
    assert b"measuring_paused" not in daemon.status.payload("offline")  # no longer holds
    metrics = scrape(metrics_port)
    assert metrics["appliance_edge_measurements_lost_total"] == lost
    assert metrics["appliance_edge_measuring_paused"] == 1.0


@pytest.mark.broker
def test_full_disk_counts_every_lost_measurement_pauses_the_camera_and_recovers(
    small_disk: Path, mqtt_broker: Any, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    collector = ResultCollector(
        mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#", f"c-{topic_prefix[-10:]}"
    )
    daemon = fast_daemon(edge_config(small_disk / "state", mqtt_broker, topic_prefix,
                                     metrics_port=port))
    thread, codes = run_in_thread(daemon)
    try:
        assert wait_until(lambda: daemon.committer.committed >= 5, 30)
        filler = fill(small_disk)
        assert wait_until(daemon.measuring_paused.is_set, 30), \
            "no commit was refused on a full disk"
        check_paused_and_counted(daemon, port)
        filler.unlink()  # space returns
        assert wait_until(lambda: not daemon.measuring_paused.is_set(), 30)
        assert wait_until(lambda: daemon.display.state.snapshot()["guidance"] is None, 30)
        after, shown = daemon.committer.committed, daemon.screen.shown
        assert wait_until(lambda: daemon.committer.committed >= after + 5, 30)
        assert wait_until(lambda: daemon.screen.shown > shown, 30)  # the screen updates again
    finally:
        daemon.request_stop()
        thread.join(15)
        collector.close()
    assert codes == [0]
    assert daemon.analysis.measurements == daemon.committer.committed + daemon.committer.refused
    with sqlite3.connect(small_disk / "state" / "outbox.sqlite3") as db:
        saved = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0]
    # the loss is on disk: counted in place in the tally beside the outbox (or, had that
    # refused too, folded into the outbox's counter with the next commit)
    tallied = struct.unpack("<q", (small_disk / "state" / "outbox.sqlite3.lost").read_bytes())[0]
    assert saved + tallied == daemon.committer.refused
    journal = [r.getMessage() for r in caplog.records if "dropped:" in r.getMessage()]
    assert len(journal) == daemon.committer.refused  # one line per lost measurement id


def waiting_results(path: Path, prefix: str, count: int) -> set[str]:
    """``count`` results of the kiosk ``edge_config`` makes, waiting in its outbox at ``path``
    from an earlier run; their measurement ids."""
    rng = random.Random(3)
    results = [fleetsim.sample_result(rng, "lab", "kiosk-disk", i) for i in range(count)]
    outbox = Outbox(path)
    outbox.add_many([(r.measurement_id, f"{prefix}/lab/kiosk-disk/result", r.to_json())
                     for r in results])
    outbox.close()
    return {r.measurement_id for r in results}


@pytest.mark.broker
def test_a_kiosk_started_on_a_full_disk_sends_what_waits_and_measures_once_space_returns(
    small_disk: Path, mqtt_broker: Any, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite could not make the -shm file of the outbox's write-ahead log: every start exited 1
    # (systemd restarting it), and the results waiting in the outbox were not sent until an
    # operator freed some space; the journal said "cannot open the outbox"
    caplog.set_level(logging.INFO)
    path = small_disk / "state" / "outbox.sqlite3"
    waiting = waiting_results(path, topic_prefix, 6)
    filler = fill(small_disk)
    collector = ResultCollector(
        mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#", f"c-{topic_prefix[-10:]}"
    )
    daemon = fast_daemon(edge_config(small_disk / "state", mqtt_broker, topic_prefix))
    thread, codes = run_in_thread(daemon)
    try:
        assert collector.wait_for(6, 30)
        assert collector.ids() == waiting
        assert wait_until(lambda: daemon.analysis.frames_paused > 50, 30)
        assert daemon.analysis.measurements == 0  # nothing measured only to be dropped
        assert daemon.display.state.snapshot()["guidance"] == "guide_paused_disk_full"
        full = f"the disk holding {path} is full (0 KiB free)"
        assert f"MEASURING PAUSED: {full}" in daemon.status.text()
        assert any(r.getMessage().startswith(f"{full}: free some space; measuring paused")
                   for r in caplog.records)
        filler.unlink()  # space returns: measuring resumes without a restart
        assert wait_until(lambda: daemon.committer.committed >= 3, 30)
        assert wait_until(lambda: len(collector.ids()) >= 9, 30)
    finally:
        daemon.request_stop()
        thread.join(15)
        collector.close()
    assert codes == [0]
    assert daemon.committer.refused == 0
    assert daemon.outbox.dropped() == 0
    catalogue = json.loads(resources.files("appliance.edge").joinpath(
        "screen_static/messages.json").read_text(encoding="utf-8"))
    assert "disk is full" in catalogue["en"]["guide_paused_disk_full"]  # what the screen says
    assert "満杯" in catalogue["ja"]["guide_paused_disk_full"]


def stored_results(path: Path, count: int, site: str = "lab", device: str = "kiosk-c") -> Outbox:
    rng = random.Random(7)
    outbox = Outbox(path)
    results = [fleetsim.sample_result(rng, site, device, i) for i in range(count)]
    topic = f"corrupt/{site}/{device}/result"
    outbox.add_many([(r.measurement_id, topic, r.to_json() + b" " * 800) for r in results])
    return outbox


def damage(path: Path, offset: int) -> None:
    with path.open("r+b") as db:
        db.seek(offset)
        db.write(random.Random(1).randbytes(PAGE_BYTES))


def test_corrupt_middle_page_is_moved_aside_and_readable_rows_recovered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    stored_results(path, 400).close()
    pages = path.stat().st_size // PAGE_BYTES
    damage(path, PAGE_BYTES * (pages // 2))
    outbox = open_outbox(path)
    recovered = outbox.depth()
    assert 300 < recovered < 400  # one page of rows lost, the rest kept
    assert outbox.dropped() == 400 - recovered  # and the loss counted
    aside = tmp_path.glob("outbox.sqlite3.corrupt-*")
    aside = [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1  # the damaged file is kept for inspection
    outbox.add_many([("new-1", "t", b"{}")])  # the fresh outbox works
    assert outbox.depth() == recovered + 1


@pytest.mark.parametrize("offset_pages", [0, 8])
def test_a_repair_keeps_what_the_damaged_outbox_had_counted_as_dropped(
    tmp_path: Path, offset_pages: int
) -> None:
    # the fresh outbox started its dropped counter at 0: the device's status said fewer
    # results were ever lost after a repair than before it
    path = tmp_path / "outbox.sqlite3"
    outbox = stored_results(path, 400)
    outbox.max_rows = 395
    outbox.add_many([(f"new-{i}", "t", b"{}") for i in range(5)])  # 10 oldest dropped
    assert outbox.dropped() == 10
    outbox.close()
    damage(path, PAGE_BYTES * offset_pages)
    repaired = open_outbox(path)
    assert repaired.dropped() == 10 + (395 - repaired.depth())
    repaired.close()


@pytest.mark.parametrize("garbled", ["middle page", "first page"])
def test_a_repair_keeps_the_confirmed_marks_of_the_results_it_recovers(
    tmp_path: Path, garbled: str
) -> None:
    """The repaired outbox held every recovered row as waiting: results the back office had
    confirmed were sent again and kept a new 48 h window from then, and a result sent again
    on request could be counted lost."""
    path, keep_s = tmp_path / "outbox.sqlite3", 48 * 3600.0
    outbox = stored_results(path, 400)
    outbox.keep_confirmed_s = keep_s
    ids = [message.measurement_id for message in outbox.pending(limit=1000)]
    outbox.remove_ids(ids[:150], confirmed_at_s=1_000.0)  # kept
    outbox.remove_ids(ids[150:200], confirmed_at_s=2_000.0)
    outbox.reopen_confirmed(1_500.0)  # 150-199 sent again on request: they wait, once confirmed
    outbox.close()
    marks = {row[0]: row[1:] for row in sqlite3.connect(path).execute(
        "SELECT measurement_id, confirmed_at_s, first_confirmed_at_s FROM outbox")}
    pages = path.stat().st_size // PAGE_BYTES
    damage(path, 0 if garbled == "first page" else PAGE_BYTES * (pages // 2))
    repaired = open_outbox(path, keep_confirmed_s=keep_s)
    found = {row[0]: row[1:] for row in sqlite3.connect(path).execute(
        "SELECT measurement_id, confirmed_at_s, first_confirmed_at_s FROM outbox")}
    assert len(found) > 300
    assert {mid: marks[mid] for mid in found} == found  # every recovered row's marks kept
    kept = [mid for mid in ids[:150] if mid in found]
    assert len(kept) > 100
    assert repaired.kept_confirmed() == len(kept)
    waiting = {message.measurement_id for message in repaired.pending(limit=1000)}
    assert waiting == set(found) - set(kept)  # none confirmed and kept is sent again
    assert repaired.depth() == len(waiting)
    resent = [mid for mid in ids[150:200] if mid in found]  # sent again on request: its first
    assert resent  # confirmation kept, so it is never counted lost
    assert {found[mid] for mid in resent} == {(None, 2_000.0)}
    repaired.close()


def test_a_repair_holds_a_window_of_rows_in_memory_not_the_whole_outbox(tmp_path: Path) -> None:
    # salvage read every row into one list: an outbox of 100,000 results with thumbnails is
    # gigabytes, so the repair ran out of memory at every start and the kiosk never came up
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    thumbnail = b"t" * 64 * 1024
    outbox.add_many([(f"big-{i}", "t", thumbnail) for i in range(640)])  # 40 MiB of rows
    outbox.close()
    damage(path, PAGE_BYTES * 3)
    tracemalloc.start()
    try:
        repaired = open_outbox(path)
        _now, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert repaired.depth() + repaired.dropped() == 640
    assert repaired.depth() > 600
    assert peak_bytes < 20 * 2**20  # about one window of rows (200 x 64 KiB), not all of them
    repaired.close()


def test_rows_whose_records_are_garbled_are_counted_and_the_rest_recovered(tmp_path: Path) -> None:
    # a garbled record can read as a NULL or a number where the payload belongs: bytes(None)
    # raised, so the repair failed at every start and the kiosk never came up
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in OUTBOX_SCHEMA:  # without NOT NULL, to write what a garbled record reads as
        db.execute(statement.replace(" NOT NULL", ""))
    db.executemany(
        "INSERT INTO outbox (measurement_id, topic, payload, created_at_s) VALUES (?, ?, ?, ?)",
        [("good-1", "t", b"{}", 1.7e9), ("null-payload", "t", None, 1.7e9),
         ("number-payload", "t", 5, 1.7e9), (None, "t", b"{}", 1.7e9),
         ("blob-topic", b"t", b"{}", 1.7e9), ("garbled-time", "t", b"{}", None),
         ("good-2", "t", b"{}", 1.7e9)],
    )
    db.close()
    with path.open("r+b") as damaged:
        damaged.write(b"garbage garbage!")  # the file must be repaired
    outbox = open_outbox(path)
    assert [m.measurement_id for m in outbox.pending()] == ["good-1", "garbled-time", "good-2"]
    assert outbox.dropped() == 4
    outbox.close()


def test_rows_lost_on_a_page_whose_cells_are_garbled_are_counted(tmp_path: Path) -> None:
    # a few garbled bytes in a page's cell pointers: looking a row up by its seq then finds
    # nothing rather than an error, so only the table's own row count shows the loss
    path = tmp_path / "outbox.sqlite3"
    stored_results(path, 400).close()
    with path.open("r+b") as db:
        db.seek(PAGE_BYTES * (path.stat().st_size // PAGE_BYTES // 2) + 8)
        db.write(random.Random(1).randbytes(100))
    outbox = open_outbox(path)
    recovered = outbox.depth()
    assert recovered < 400
    assert outbox.dropped() == 400 - recovered
    outbox.close()


@pytest.mark.parametrize("garbage_bytes", [16, 100, PAGE_BYTES])
def test_garbage_over_the_header_or_first_page_loses_no_row(
    tmp_path: Path, garbage_bytes: int
) -> None:
    # the first page (header and schema) was garbled: SQLite calls the file "not a database",
    # and every row on the intact pages behind it was lost without being counted
    path = tmp_path / "outbox.sqlite3"
    stored = stored_results(path, 400)
    ids = [message.measurement_id for message in stored.pending(limit=1000)]
    stored.close()
    with path.open("r+b") as db:
        db.write(random.Random(1).randbytes(garbage_bytes))
    outbox = open_outbox(path)
    assert [message.measurement_id for message in outbox.pending(limit=1000)] == ids
    assert outbox.dropped() == 0
    aside = tmp_path.glob("outbox.sqlite3.corrupt-*")
    aside = [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1  # the damaged file is kept as it was, not deleted
    assert aside[0].read_bytes()[:garbage_bytes] == random.Random(1).randbytes(garbage_bytes)
    assert not list(tmp_path.glob(".outbox-rebuild-*"))  # the working copy is gone
    outbox.close()


def test_two_repairs_in_one_second_keep_both_damaged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both were renamed to outbox.sqlite3.corrupt-<the same second>: the second rename
    # replaced the first damaged file, deleting the rows it still held
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    path = tmp_path / "outbox.sqlite3"
    for garbage in (b"first " * 700, b"second " * 700):
        path.write_bytes(garbage)
        open_outbox(path).close()
    kept = sorted(p.read_bytes()[:6] for p in tmp_path.glob("outbox.sqlite3.corrupt-*"))
    assert kept == [b"first ", b"second"]


def test_a_copy_left_by_a_repair_that_was_killed_is_removed_by_the_next(tmp_path: Path) -> None:
    # a kill while a damaged first page was being rebuilt left a full copy of the outbox in
    # .outbox-rebuild-*, one more with every such kill, on the kiosk's small disk
    path = tmp_path / "outbox.sqlite3"
    stored_results(path, 40).close()
    stale = tmp_path / ".outbox-rebuild-killed"
    stale.mkdir()
    (stale / "outbox.sqlite3.repairing").write_bytes(path.read_bytes())
    with path.open("r+b") as db:
        db.write(random.Random(1).randbytes(100))
    outbox = open_outbox(path)
    assert outbox.depth() == 40
    assert not list(tmp_path.glob(".outbox-rebuild-*"))
    outbox.close()


@pytest.mark.parametrize("tail_bytes", [0, 1000])
def test_an_outbox_cut_short_keeps_the_rows_before_the_cut_and_counts_the_rest(
    tmp_path: Path, tail_bytes: int
) -> None:
    # a file cut short (a power cut on a file system that lost its tail, a copy by hand) still
    # says in its header how many pages it had, so every read failed: all 400 rows were gone,
    # none counted
    path = tmp_path / "outbox.sqlite3"
    stored_results(path, 400).close()
    os.truncate(path, path.stat().st_size // 2 // PAGE_BYTES * PAGE_BYTES + tail_bytes)
    outbox = open_outbox(path)
    assert outbox.depth() > 150
    assert outbox.depth() + outbox.dropped() == 400
    outbox.close()


def test_a_file_with_no_outbox_to_be_found_says_how_much_is_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(random.Random(2).randbytes(4 * PAGE_BYTES))
    outbox = open_outbox(path)
    assert outbox.depth() == 0
    assert "how many results it held is unknown" in caplog.text
    assert "outbox.sqlite3.corrupt-" in caplog.text  # naming the file kept aside
    outbox.close()


def test_outbox_that_is_not_a_database_is_replaced_and_the_daemon_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite3").write_bytes(b"this is not sqlite " * 500)
    config = edge_config(state, type("B", (), {"host": "127.0.0.1", "port": free_port()}), "x")
    daemon = fast_daemon(config)  # no exception, no exit code: it repaired itself
    assert daemon.outbox.depth() == 0
    assert list(state.glob("outbox.sqlite3.corrupt-*"))
    assert "moving it aside" in caplog.text
    daemon.outbox.close()


def test_a_kiosk_whose_outbox_was_emptied_says_how_many_results_it_lost_and_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # an outbox cut to 0 bytes opened as a new one: the kiosk ran on, its status said dropped 0
    state = tmp_path / "state"
    stored_results(state / "outbox.sqlite3", 5).close()
    (state / "outbox.sqlite3").write_bytes(b"")
    config = edge_config(state, type("B", (), {"host": "127.0.0.1", "port": free_port()}), "x")
    daemon = fast_daemon(config)
    assert "5 result(s) are unaccounted for" in caplog.text
    assert "dropped 5" in daemon.status.text()
    assert b'"dropped":5' in daemon.status.payload("offline")
    daemon.outbox.close()


def checkpoint_and_damage_first_page(path: Path, in_use: Outbox | None = None) -> None:
    """Move every committed page into the file, then garble its first page (header, schema).

    With ``in_use`` (the outbox a running daemon writes), none of its statements runs between
    the two: one that ran there read the first page whole and kept it, and the daemon, seeing
    no change of the log's header after it, never read the page again (the damage unseen: the
    test waited 30 s in vain, 5 times in 8 at load 20-80)."""
    with contextlib.ExitStack() as held:
        if in_use is not None:
            held.enter_context(in_use._lock)  # noqa: SLF001 - every statement of it takes this
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        damage(path, 0)


def damage_in_use_and_stop(daemon: Any, path: Path) -> None:
    """Run ``daemon`` until it committed 20 results, damage the first page of the outbox file
    at ``path`` it has in use, and see it stop with exit 1 (systemd starts it again)."""
    thread, codes = run_in_thread(daemon)
    assert wait_until(lambda: daemon.committer.committed >= 20, 30)
    checkpoint_and_damage_first_page(path, daemon.outbox)
    thread.join(30)
    assert codes == [1]


def assert_kept_on_the_copy(path: Path, daemon: Any) -> None:
    """The next start, the damaged outbox at ``path`` still immovable, opens the repaired copy
    with every result ``daemon`` measured, none counted as dropped."""
    restarted = open_outbox(path)
    assert restarted.path == path.with_name(path.name + ".repaired")
    assert restarted.depth() == daemon.analysis.measurements  # every measured result kept
    assert restarted.dropped() == 0
    restarted.close()


def test_an_outbox_damaged_in_use_says_so_and_still_answers_its_counters(tmp_path: Path) -> None:
    # a damaged file raised bare sqlite3 errors from every read: the status line's dropped()
    # killed the daemon's main thread
    path = tmp_path / "outbox.sqlite3"
    outbox = stored_results(path, 10)
    checkpoint_and_damage_first_page(path)
    with pytest.raises(OutboxCorruptError, match=r"outbox\.sqlite3: the outbox file is damaged"):
        outbox.add_many([("new-1", "t", b"{}")])
    assert outbox.damaged is not None
    assert outbox.dropped() == 0
    assert outbox.oldest_age_s() is None
    with pytest.raises(OutboxCorruptError):
        outbox.pending()
    outbox.close()


def test_results_measured_after_the_outbox_is_damaged_in_use_are_kept_not_dropped(
    tmp_path: Path,
) -> None:
    # commits failed on the damaged file and were counted as dropped, the probe's write could
    # still succeed, and the link crashed on pending(): the results in between were lost
    state = tmp_path / "state"
    nobody = type("B", (), {"host": "127.0.0.1", "port": free_port()})  # only the committer
    daemon = fast_daemon(edge_config(state, nobody, "damaged"))  # reads the outbox
    path = state / "outbox.sqlite3"
    damage_in_use_and_stop(daemon, path)  # systemd starts it again, on the repaired outbox
    assert daemon.committer.refused == 0  # nothing counted as dropped
    repaired = Outbox(path)  # repaired on the way out: opens as it is
    assert repaired.depth() == daemon.analysis.measurements  # every measured result kept
    assert repaired.dropped() == 0
    repaired.close()
    assert list(state.glob("outbox.sqlite3.corrupt-*"))  # the damaged file kept aside


def test_held_results_a_failed_repair_cannot_keep_are_counted_as_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # when the repair on the way out failed (no room), the held results were only named in the
    # journal: the device's dropped count never showed them
    state = tmp_path / "state"
    nobody = type("B", (), {"host": "127.0.0.1", "port": free_port()})
    daemon = fast_daemon(edge_config(state, nobody, "damaged"))

    def no_room(config: Config, **_how: Any) -> Outbox:
        raise OutboxError("no room for the repaired outbox (as on a full disk)")

    monkeypatch.setattr(daemon_module, "new_outbox", no_room)
    path = state / "outbox.sqlite3"
    damage_in_use_and_stop(daemon, path)
    monkeypatch.undo()
    repaired = open_outbox(path)  # the next start, with room again
    assert repaired.depth() == daemon.committer.committed  # every committed result kept
    assert repaired.dropped() == daemon.committer.refused  # and every held one counted
    assert repaired.depth() + repaired.dropped() == daemon.analysis.measurements
    repaired.close()


@pytest.mark.broker
def test_a_garbled_row_found_while_sending_is_repaired_away_and_counted(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str
) -> None:
    # a record garbled to a number where the payload belongs passes SQLite's quick check: the
    # link sent it as b"\\x00" * 5, which the back office cannot take, again and again until
    # its age limit
    state = tmp_path / "state"
    path = state / "outbox.sqlite3"
    stored_results(path, 5).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE outbox SET payload = 5 WHERE seq = 3")
    daemon = fast_daemon(edge_config(state, mqtt_broker, topic_prefix))
    thread, codes = run_in_thread(daemon)
    thread.join(30)
    assert codes == [1]  # found on reading it to send, repaired on the way out
    repaired = Outbox(path)
    assert repaired.dropped() == 1
    assert repaired.depth() == 4 + daemon.committer.committed  # the rest, and the new results
    assert all(m.payload.startswith(b"{") for m in repaired.pending(limit=1000))
    repaired.close()


def test_an_outbox_on_a_full_disk_opens_reads_its_rows_and_writes_once_space_returns(
    small_disk: Path,
) -> None:
    # the index of the write-ahead log (the -shm file) takes a new block: on a full disk SQLite
    # said "disk I/O error" and the outbox did not open, its waiting results unread
    path = small_disk / "state" / "outbox.sqlite3"
    stored_results(path, 6).close()
    filler = fill(small_disk)
    outbox = Outbox(path)
    assert outbox.depth() == 6
    assert len(outbox.pending()) == 6
    assert not outbox.writable()
    with pytest.raises(OutboxWriteError, match="disk is full"):
        outbox.add_many([("new-1", "t", b"{}")])
    filler.unlink()
    assert outbox.writable()
    outbox.add_many([("new-1", "t", b"{}")])
    outbox.close()
    assert Outbox(path).depth() == 7


def test_an_outbox_killed_on_a_full_disk_is_read_with_the_rows_in_its_wal(
    small_disk: Path,
) -> None:
    # a daemon killed (or a power cut) leaves the newest rows in the write-ahead log: opened
    # without its shared index, they must still be read, not left behind
    path = small_disk / "state" / "outbox.sqlite3"
    stored_results(path, 6).close()
    writer = Outbox(path)
    writer.add_many([("in-the-wal", "t", b"{}")])
    wal = path.with_name(path.name + "-wal")
    killed = path.read_bytes(), wal.read_bytes()  # the files as a kill -9 leaves them
    assert b"in-the-wal" not in killed[0]
    writer.close()
    path.with_name(path.name + "-shm").unlink(missing_ok=True)
    path.write_bytes(killed[0])
    wal.write_bytes(killed[1])
    filler = fill(small_disk)
    outbox = Outbox(path)
    assert "in-the-wal" in {message.measurement_id for message in outbox.pending()}
    assert outbox.depth() == 7
    outbox.close()
    filler.unlink()


@pytest.mark.parametrize("before", ["no file", "an empty file"])
def test_a_new_outbox_on_a_full_disk_opens_empty_and_is_made_once_space_returns(
    small_disk: Path, before: str,
) -> None:
    # it raised "cannot open the outbox ...; its unsent results stay in it" (none were ever in
    # it), and the daemon exited 1 at every start until the disk had room
    path = small_disk / "state" / "outbox.sqlite3"
    path.parent.mkdir()
    if before == "an empty file":
        path.touch()
    filler = fill(small_disk)
    outbox = Outbox(path)
    assert (outbox.depth(), outbox.pending(), outbox.dropped()) == (0, [], 0)
    assert not outbox.writable()
    assert outbox.probe_error == (f"{path}: the outbox cannot be made yet (database or disk is "
                              f"full): the disk holding {path} is full (0 KiB free): free some "
                              "space")
    with pytest.raises(OutboxWriteError, match=r"cannot be made yet.*could not commit results"):
        outbox.add_many([("new-1", "t", b"{}")])
    assert path.stat().st_size == 0  # nothing of it was written, nor taken in memory
    filler.unlink()
    assert outbox.writable()
    outbox.add_many([("new-1", "t", b"{}")])
    outbox.close()
    assert [m.measurement_id for m in Outbox(path).pending()] == ["new-1"]


def test_a_new_outbox_that_cannot_wait_for_room_says_nothing_waits_in_it(
    small_disk: Path,
) -> None:
    path = small_disk / "state" / "outbox.sqlite3.repairing"  # a repair's copy: made or not
    path.parent.mkdir()
    fill(small_disk)
    with pytest.raises(OutboxError) as refused:
        Outbox(path, side_files=False)
    assert str(refused.value) == (f"{path}: cannot open the outbox (database or disk is full): "
                                  f"{full_disk_hint(path)}; nothing waits in it")


@pytest.mark.broker
def test_a_kiosk_started_on_a_full_disk_without_an_outbox_starts_paused_and_measures_later(
    small_disk: Path, mqtt_broker: Any, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the outbox could not be made: every start exited 1 (systemd restarting it) and the
    # customer's screen showed nothing of why until an operator freed some space
    caplog.set_level(logging.INFO)
    (small_disk / "state").mkdir()
    filler = fill(small_disk)
    collector = ResultCollector(
        mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#", f"c-{topic_prefix[-10:]}"
    )
    daemon = fast_daemon(edge_config(small_disk / "state", mqtt_broker, topic_prefix))
    thread, codes = run_in_thread(daemon)
    try:
        assert wait_until(lambda: daemon.analysis.frames_paused > 50, 30)
        assert daemon.analysis.measurements == 0  # nothing measured only to be dropped
        assert daemon.display.state.snapshot()["guidance"] == "guide_paused_disk_full"
        assert any("nothing waits in it, and it is made once the disk has room" in r.getMessage()
                   for r in caplog.records)
        filler.unlink()  # space returns: the outbox is made, measuring resumes, no restart
        assert wait_until(lambda: daemon.committer.committed >= 3, 30)
        assert wait_until(lambda: len(collector.ids()) >= 3, 30)
    finally:
        daemon.request_stop()
        thread.join(15)
        collector.close()
    assert codes == [0]
    assert daemon.committer.refused == 0
    assert daemon.outbox.dropped() == 0


def _damaged_on_a_full_disk(path: Path, room: Callable[[int], int]) -> Path:
    """1,500 results in an outbox at ``path`` damaged halfway, then its disk filled up to
    ``room(the outbox's size)`` bytes free; returns the file that fills it."""
    stored_results(path, 1500).close()
    damage(path, PAGE_BYTES * (path.stat().st_size // PAGE_BYTES // 2))
    filler = fill(path.parent)
    os.truncate(filler, filler.stat().st_size - room(path.stat().st_size))
    return filler


def test_a_repair_with_no_room_for_the_recovered_rows_is_undone_and_tried_again(
    tmp_path: Path,
) -> None:
    # the fresh outbox was made, the recovered rows did not fit, and the next start opened the
    # fresh, empty outbox: 1,500 results left behind in the damaged copy, none counted
    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        path = disk / "outbox.sqlite3"
        # the copy's rows fit; with its WAL they do not
        filler = _damaged_on_a_full_disk(path, lambda size: size + 100 * 1024)
        damaged = path.read_bytes()
        for _start in range(2):
            with pytest.raises(OutboxError, match=r"repair could not finish.*tried again"):
                open_outbox(path)
            assert path.read_bytes() == damaged  # back in place, as it was
            assert not list(disk.glob("outbox.sqlite3.corrupt-*"))
        filler.unlink()
        outbox = open_outbox(path)
        assert outbox.depth() > 1450
        assert outbox.depth() + outbox.dropped() == 1500
        outbox.close()
        assert not list(disk.glob("outbox.sqlite3.repair*"))


def test_a_repair_with_plainly_too_little_room_is_not_begun_and_says_what_it_needs(
    tmp_path: Path,
) -> None:
    # with less room than the damaged file takes, each start (systemd: every 5 s) read the
    # whole outbox and wrote until the disk was full, then said only "database or disk is full"
    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        path = disk / "outbox.sqlite3"
        filler = _damaged_on_a_full_disk(path, lambda size: 1300 * 1024)
        needed_kib = path.stat().st_size // 1024
        with pytest.raises(OutboxError) as refused:
            open_outbox(path)
        assert f"its repair needs about {needed_kib} KiB free" in str(refused.value)
        assert "the disk has 1" in str(refused.value)  # about 1300 KiB
        filler.unlink()
        outbox = open_outbox(path)
        assert outbox.depth() + outbox.dropped() == 1500
        outbox.close()


KILLED_REPAIR = """
import os, pathlib, signal, sys
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_repair import open_outbox

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "building":
    Outbox.add_recovered = killed
else:  # the damaged file moved aside, the repaired copy not yet in its place
    rename = pathlib.Path.rename
    def rename_or_die(self, target):
        if self.name.endswith(".repaired"):
            killed()
        return rename(self, target)
    pathlib.Path.rename = rename_or_die
open_outbox(pathlib.Path(sys.argv[1]))
"""


@pytest.mark.parametrize("when", ["building", "swapping"])
def test_a_repair_killed_midway_is_finished_at_the_next_start(tmp_path: Path, when: str) -> None:
    # the damaged file was moved aside before the fresh outbox was filled: a kill -9 (or the
    # power cut that caused the damage, again) then left an empty outbox in its place, and the
    # next start used it; every result in the damaged copy was left behind, counted nowhere
    path = tmp_path / "outbox.sqlite3"
    stored_results(path, 400).close()
    damage(path, PAGE_BYTES * (path.stat().st_size // PAGE_BYTES // 2))
    repo = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", KILLED_REPAIR, str(path), when],
                            env={**os.environ, "PYTHONPATH": str(repo)}, check=False)
    assert killed.returncode == -signal.SIGKILL
    outbox = open_outbox(path)
    assert outbox.depth() > 300
    assert outbox.depth() + outbox.dropped() == 400
    outbox.add_many([("new-1", "t", b"{}")])  # a sound outbox, no stale WAL under it
    outbox.close()
    assert Outbox(path).depth() > 300
    assert not list(tmp_path.glob("outbox.sqlite3.repair*"))


def test_a_full_disk_hint_is_empty_where_there_is_room(tmp_path: Path) -> None:
    assert full_disk_hint(tmp_path / "outbox.sqlite3") == ""


def test_an_outbox_on_a_disk_out_of_inodes_names_the_inodes_and_stays_as_it_was(
    tmp_path: Path,
) -> None:
    # a disk full of small files (df -i at 100 %) has bytes to spare, but SQLite cannot make the
    # -wal file: the error said only "unable to open database file", with no word of the disk
    with small_tmpfs(tmp_path / "disk", inodes=64) as disk:
        path = disk / "state" / "outbox.sqlite3"
        stored_results(path, 3).close()
        before = path.read_bytes()
        many = fill_inodes(disk)
        assert full_disk_hint(path) == (f"the disk holding {path} is full: 0 of its 64 inodes "
                                        "free, too few to make a file (df -i): remove some files")
        with pytest.raises(OutboxError) as refused:
            Outbox(path)
        assert str(refused.value) == (f"{path}: cannot open the outbox (unable to open database "
                                      f"file): {full_disk_hint(path)}; its unsent results stay "
                                      "in it")
        assert path.read_bytes() == before
        for name in list(many.iterdir())[:20]:
            name.unlink()
        assert full_disk_hint(path) == ""
        outbox = Outbox(path)
        assert outbox.depth() == 3
        outbox.close()


def test_results_lost_on_a_full_disk_stay_counted_across_a_restart_before_space_returns(
    small_disk: Path,
) -> None:
    # a refused commit's loss was counted in memory only: a daemon stopped while the disk was
    # still full forgot it, so `dropped` under-reported after the restart
    path = small_disk / "outbox.sqlite3"
    outbox = stored_results(path, 2)
    filler = fill(small_disk)
    with pytest.raises(OutboxWriteError):
        outbox.add_many([("lost-1", "t/lab/k/result", b"x" * 20_000)])
    outbox.count_lost(1)  # as the committer does with a refused group
    assert outbox.dropped() == 1
    outbox.close()  # the daemon stops; the disk is still full
    filler.unlink()
    reopened = Outbox(path)
    assert reopened.dropped() == 1
    reopened.count_lost(2)
    assert reopened.dropped() == 3
    reopened.close()
    assert Outbox(path).dropped() == 3


def test_the_outbox_is_not_writable_again_while_its_disk_is_still_full(small_disk: Path) -> None:
    # the probe's one-row commit can fit in pages the outbox already holds: on a disk with no
    # room, measuring resumed, and the next result was measured only to be dropped
    path = small_disk / "outbox.sqlite3"
    outbox = stored_results(path, 40)
    outbox.remove([message.seq for message in outbox.pending()])  # confirmed: free pages
    filler = fill(small_disk)
    assert not outbox.writable()
    assert outbox.probe_error == f"{path}: could not commit a probe (database or disk is full)"
    filler.unlink()
    assert outbox.writable()
    assert outbox.probe_error == ""
    outbox.close()


def test_a_full_disk_that_recovered_is_not_blamed_for_the_next_pause(small_disk: Path) -> None:
    # disk_full and paused_why outlived the pause: a damaged outbox later on showed the
    # customer "the kiosk's disk is full" and said so in systemd's STATUS= line
    outbox = stored_results(small_disk / "outbox.sqlite3", 5)
    stop = threading.Event()
    committer = ResultCommitter(queue.Queue(), outbox, stop, wake_link=lambda: None)
    filler = fill(small_disk)
    committer.pause_unless_writable()
    assert committer.disk_full
    assert "is full" in committer.paused_why
    committer.start()  # probes the outbox while paused
    filler.unlink()
    assert wait_until(lambda: not committer.paused.is_set(), 30)
    stop.set()
    committer.join(10)
    assert (committer.disk_full, committer.paused_why) == (False, "")
    damaged = OutboxCorruptError("outbox.sqlite3: the outbox file is damaged")
    committer._hold([], damaged)  # noqa: SLF001 - what a commit into a damaged outbox calls
    assert committer.paused.is_set()
    assert not committer.disk_full
    assert "damaged" in committer.paused_why
    outbox.close()


def probe_now(committer: ResultCommitter) -> None:
    """Run the committer's probe of a paused outbox now, as its thread does once a second."""
    committer._next_probe_s = 0.0  # noqa: SLF001 - the thread's probe without its wait
    committer._probe_when_due()  # noqa: SLF001 - what the thread calls while paused


def test_measuring_stays_paused_while_the_disk_has_room_for_a_probe_but_not_a_result(
    small_disk: Path,
) -> None:
    # a disk with a few KiB left takes the probe's one-row commit but not a result's: measuring
    # resumed, the next customer was measured only to be dropped, and it paused again, once a
    # second until the probes' own writes had used up the last KiB
    outbox = stored_results(small_disk / "outbox.sqlite3", 5)
    committer = ResultCommitter(queue.Queue(), outbox, threading.Event(), wake_link=lambda: None)
    filler = fill(small_disk)
    committer.pause_unless_writable()
    os.truncate(filler, filler.stat().st_size - 3 * PAGE_BYTES)
    probe_now(committer)
    assert committer.paused.is_set()
    assert committer.disk_full
    assert f"the disk holding {outbox.path} is full" in committer.paused_why
    with pytest.raises(OutboxWriteError):  # what measuring again would have led to
        outbox.add_many([("next-customer", "corrupt/lab/kiosk-c/result", b"x" * 1000)])
    filler.unlink()
    probe_now(committer)
    assert not committer.paused.is_set()
    outbox.close()


def test_results_a_repair_kept_follow_a_jump_of_the_clock_in_the_same_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows a repair recovers were committed in this boot as far as the kiosk can tell
    (it repairs at the start after the one that found the damage): a jump of the clock (NTP's
    first sync) moves their commit times too, or they would look months old and expire."""
    clock = [1_700_000_000.0, 100.0]  # the wall clock (90 days behind), the time since boot
    monkeypatch.setattr(wallclock, "clock_now", lambda: (clock[0], clock[1]))
    path = tmp_path / "outbox.sqlite3"
    stored_results(path, 400).close()
    damage(path, PAGE_BYTES * (path.stat().st_size // PAGE_BYTES // 2))
    outbox = open_outbox(path, max_age_s=30 * 86400.0)
    recovered = outbox.depth()
    clock[0] += 90 * 86400.0  # NTP's first sync
    clock[0], clock[1] = clock[0] + 60.0, clock[1] + 60.0
    outbox.add_many([("new-1", "t", b"{}")])  # the jump is followed with this write
    assert outbox.expire() == 0
    assert outbox.depth() == recovered + 1
    assert outbox.oldest_age_s(clock[0]) == pytest.approx(60.0, abs=5.0)


@pytest.mark.parametrize("error", [errno.EACCES, errno.EPERM, errno.EXDEV, errno.ENOSPC])
def test_a_damaged_outbox_that_cannot_be_moved_aside_is_kept_whole_and_the_copy_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    error: int,
) -> None:
    # the refused rename escaped open_outbox after the damaged file's WAL had moved aside
    # without it: the kiosk did not start (exit 2, which systemd does not restart)
    path, built = tmp_path / "outbox.sqlite3", tmp_path / "outbox.sqlite3.repaired"
    stored_results(path, 40).close()
    damage(path, 0)
    wal = path.with_name("outbox.sqlite3-wal")
    wal.write_bytes(b"")  # the damaged file's (empty) log: it must stay with it
    damaged = path.read_bytes()
    refuse_moving(monkeypatch, path, error)
    with caplog.at_level(logging.ERROR, logger="appliance.transport.outbox_repair"):
        outbox = open_outbox(path)
    said = [r.getMessage() for r in caplog.records if "cannot be moved aside" in r.getMessage()]
    assert len(said) == 1
    assert str(path) in said[0]
    assert os.strerror(error) in said[0]
    assert path.read_bytes() == damaged
    assert wal.exists()
    assert not list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
    assert outbox.path == built
    assert outbox.depth() == 40
    outbox.add_many([("new-1", "t", b"{}")])  # the kiosk goes on measuring into the copy
    outbox.close()
    again = open_outbox(path)  # a restart, still refused: the copy again, nothing lost
    again.add_many([("new-2", "t", b"{}")])
    killed = {p.name: p.read_bytes() for p in tmp_path.glob("outbox.sqlite3.repaired*")}
    again.close()
    for name, data in killed.items():  # as a SIGKILL leaves it: new-2 in the copy's WAL
        (tmp_path / name).write_bytes(data)
    assert path.read_bytes() == damaged
    monkeypatch.undo()
    placed = open_outbox(path)  # a start that can move it: the copy takes its place
    assert placed.path == path
    assert {m.measurement_id for m in placed.pending()} >= {"new-1", "new-2"}
    assert placed.depth() == 42
    assert placed.dropped() == 0
    placed.close()
    aside = [p for p in tmp_path.glob("outbox.sqlite3.corrupt-*") if not p.name.endswith("-wal")]
    assert [p.read_bytes() for p in aside] == [damaged]  # the damaged file kept for inspection
    assert aside[0].with_name(aside[0].name + "-wal").exists()  # with its log
    assert not built.exists()


def test_a_kiosk_whose_outbox_is_damaged_in_use_and_cannot_be_moved_keeps_every_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the repair on the way out raised the refused rename past its OutboxError handler: the
    # results held while the file was damaged were lost, not even counted
    state = tmp_path / "state"
    nobody = type("B", (), {"host": "127.0.0.1", "port": free_port()})
    daemon = fast_daemon(edge_config(state, nobody, "damaged"))
    path = state / "outbox.sqlite3"
    refuse_moving(monkeypatch, path, errno.EACCES)
    damage_in_use_and_stop(daemon, path)  # systemd starts it again
    assert daemon.committer.refused == 0  # nothing counted as dropped
    assert_kept_on_the_copy(path, daemon)  # the next start, the move still refused


def _running_on_a_copy(path: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> bytes:
    """A damaged outbox of ``count`` results that cannot be moved aside (refused from now on),
    repaired into its copy, which is the outbox in use; the damaged file's bytes."""
    stored_results(path, count).close()
    damage(path, 0)
    refuse_moving(monkeypatch, path, errno.EACCES)
    open_outbox(path).close()
    assert path.with_name("outbox.sqlite3.repaired").exists()
    return path.read_bytes()


def test_a_start_on_the_repaired_copy_says_the_outbox_still_cannot_move_not_a_repair_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the kiosk keeps its results in the repaired copy (the damaged outbox cannot be
    moved aside), every start logged "finishing a repair cut short": nothing was cut short.
    Such a start now says only that the damaged outbox cannot be moved aside and the kiosk
    goes on with its copy; the start that can move it, that the copy takes its place."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    _running_on_a_copy(path, monkeypatch, 5)

    def said_at_a_start() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
            open_outbox(path).close()
        return [r.getMessage() for r in caplog.records
                if r.name == "appliance.transport.outbox_repair"]

    said = said_at_a_start()  # a restart, the move still refused
    assert not [line for line in said if "cut short" in line]
    (still,) = said
    assert still.startswith(f"{path}: the damaged outbox cannot be moved aside (")
    assert os.strerror(errno.EACCES) in still
    assert f"the kiosk goes on with its repaired copy {copy}" in still
    monkeypatch.undo()
    aside, placed = said_at_a_start()  # the damaged file can move now
    assert aside.startswith(f"{path}: the damaged outbox is kept as {path}.corrupt-")
    assert placed == f"{path}: the repaired copy {copy} an earlier start left takes its place now"
    assert said_at_a_start() == []  # on its own outbox again: nothing to say


def test_a_repaired_copy_damaged_in_use_is_repaired_itself_where_the_outbox_cannot_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the copy in use found damaged was not repaired over ("both are kept as they are"): every
    # start then met the damaged copy (OutboxCorruptError, exit 1, again every RestartSec), so
    # the kiosk stayed down for as long as the damaged outbox could not be moved
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    damaged = _running_on_a_copy(path, monkeypatch, 40)
    in_use = open_outbox(path)
    in_use.add_many([("new-1", "t", b"{}")])
    checkpoint_and_damage_first_page(copy, in_use)
    with pytest.raises(OutboxCorruptError):
        in_use.pending()
    in_use.close()
    repaired = open_outbox(path, rebuild=True)  # the daemon's repair on its way out
    assert repaired.path == copy
    assert repaired.beside == path
    assert {m.measurement_id for m in repaired.pending()} >= {"new-1"}
    assert repaired.depth() == 41
    assert repaired.dropped() == 0
    repaired.add_many([("new-2", "t", b"{}")])
    repaired.close()
    again = open_outbox(path)  # the next start, the move still refused: the repaired copy
    assert again.path == copy
    assert again.depth() == 42
    again.close()
    assert path.read_bytes() == damaged  # the damaged outbox never written over
    assert [p.name for p in tmp_path.glob("outbox.sqlite3.repaired.corrupt-*")
            if not p.name.endswith(("-wal", "-shm"))]  # the damaged copy kept for inspection
    assert not list(tmp_path.glob("outbox.sqlite3.repaired.repair*"))


def test_a_repaired_copy_found_damaged_at_a_start_is_repaired_where_the_outbox_cannot_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a copy damaged while the kiosk was off (a power cut) escaped open_outbox at every start
    # as OutboxCorruptError: exit 1, again every RestartSec, the kiosk down
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    _running_on_a_copy(path, monkeypatch, 30)
    checkpoint_and_damage_first_page(copy)
    with caplog.at_level(logging.ERROR, logger="appliance.transport.outbox_repair"):
        started = open_outbox(path)
    assert started.path == copy
    assert started.depth() == 30
    assert started.dropped() == 0
    started.close()
    said = [r.getMessage() for r in caplog.records if str(copy) in r.getMessage()]
    assert any("recreated" in line for line in said), said


def _a_damaged_copy_that_cannot_move(path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The kiosk on the repaired copy of its damaged outbox ``path`` (10 results), the copy
    damaged in turn, and a folder that refuses to move either of them; the copy's bytes."""
    copy = path.with_name("outbox.sqlite3.repaired")
    _running_on_a_copy(path, monkeypatch, 10)
    checkpoint_and_damage_first_page(copy)
    monkeypatch.undo()
    refuse_moving(monkeypatch, path, errno.EACCES)
    refuse_moving(monkeypatch, copy, errno.EACCES)
    return copy.read_bytes()


def test_a_copy_whose_own_copy_cannot_take_its_place_is_kept_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One level of copies only: a folder that refuses to move the damaged copy too keeps
    both, and says so (the next start tries again)."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    copied = _a_damaged_copy_that_cannot_move(path, monkeypatch)
    with pytest.raises(OutboxError, match="both are kept as they are"):
        open_outbox(path, rebuild=True)
    assert copy.read_bytes() == copied


@pytest.mark.parametrize("rebuild", [True, False], ids=["on-the-way-out", "at-a-start"])
def test_a_copy_that_cannot_make_way_for_its_own_copy_is_never_said_to_be_gone_on_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    rebuild: bool,
) -> None:
    """Where the damaged copy in use cannot move aside for its own copy either, the journal
    said "the kiosk goes on with its repaired copy" (of the outbox, and of the copy) just
    before the start failed with "both are kept as they are". Now no line says the kiosk goes
    on; the one error names the copy, its copy, the damaged outbox and the reason, and says
    the kiosk cannot start until the folder lets them move, at the repair on the daemon's way
    out and at each start after it alike."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    _a_damaged_copy_that_cannot_move(path, monkeypatch)
    if not rebuild:  # a start after the repair on the way out, which left the copy's copy
        with pytest.raises(OutboxError):
            open_outbox(path, rebuild=True)
        assert copy.with_name("outbox.sqlite3.repaired.repaired").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"), \
            pytest.raises(OutboxError) as failed:
        open_outbox(path, rebuild=rebuild)
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.transport.outbox_repair"]
    assert not [line for line in said if "goes on" in line], said
    error = str(failed.value)
    assert error.startswith(f"{copy}: the repaired copy in use (the damaged outbox {path} "
                            "cannot be moved aside) is damaged too"), error
    assert f"its own repaired copy {copy}.repaired" in error
    assert os.strerror(errno.EACCES) in error
    assert "both are kept as they are" in error
    assert "the kiosk cannot start until the folder lets them move" in error


def test_a_kiosk_whose_repaired_copy_is_damaged_in_use_keeps_every_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the repair on the way out refused to repair the damaged copy: the results held while it
    # was damaged were counted as dropped, and the next start met the damaged copy again
    state = tmp_path / "state"
    state.mkdir()
    path = state / "outbox.sqlite3"
    _running_on_a_copy(path, monkeypatch, 0)
    nobody = type("B", (), {"host": "127.0.0.1", "port": free_port()})
    daemon = fast_daemon(edge_config(state, nobody, "damaged"))
    assert daemon.outbox.path == state / "outbox.sqlite3.repaired"
    damage_in_use_and_stop(daemon, daemon.outbox.path)  # systemd starts it again
    assert daemon.committer.refused == 0  # nothing counted as dropped
    assert_kept_on_the_copy(path, daemon)  # the next start, the move still refused


def _put_at(place: Path, what: str, outbox: Path) -> None:
    """Something that is no repaired copy at ``place``: a folder, a link (to the outbox
    itself, or to nowhere) or an empty file."""
    if what == "folder":
        place.mkdir()
    elif what == "link-to-the-outbox":
        place.symlink_to(outbox)
    elif what == "broken-link":
        place.symlink_to(outbox.with_name("nowhere"))
    else:
        place.write_bytes(b"")


@pytest.mark.parametrize("what", ["folder", "link-to-the-outbox", "broken-link", "empty-file"])
def test_something_else_at_the_repaired_copys_name_never_takes_the_outboxs_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, what: str
) -> None:
    """Whatever stood at ``outbox.sqlite3.repaired`` was taken for a copy an earlier start
    left: a sound outbox was moved aside for it (its results then sent by nobody), and a folder
    or a link to the outbox itself left no outbox the kiosk could open at any start. Now only a
    file with something in it is such a copy; anything else is left alone, the journal says
    what it is, and the outbox opens as it is."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    stored_results(path, 40).close()
    _put_at(copy, what, path)
    with caplog.at_level(logging.ERROR, logger="appliance.transport.outbox_repair"):
        outbox = open_outbox(path)
    assert outbox.path == path
    assert outbox.depth() == 40
    assert outbox.dropped() == 0
    outbox.close()
    assert not list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
    assert copy.is_symlink() == ("link" in what)
    kind = {"folder": "a folder", "empty-file": "an empty file"}.get(what, "a link")
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{copy} is {kind}, not a repaired copy of the outbox: it is left as it is "
                    f"and never takes the place of {path}, which is opened as it is"]


def test_a_damaged_outbox_whose_copy_would_land_on_a_folder_stays_whole_and_says_why(
    tmp_path: Path,
) -> None:
    """A folder at ``outbox.sqlite3.repaired`` beside a damaged outbox was put in the
    outbox's place (the damaged file moved aside, its readable rows in no copy), and every
    start then failed on the folder ("unable to open database file"). Now the repair, whose
    copy cannot be renamed onto a folder, changes nothing and says so; once the folder is gone
    the next start recovers every row."""
    path = tmp_path / "outbox.sqlite3"
    folder = tmp_path / "outbox.sqlite3.repaired"
    stored_results(path, 40).close()
    damage(path, 0)
    damaged = path.read_bytes()
    folder.mkdir()
    with pytest.raises(OutboxError) as refused:
        open_outbox(path)
    assert str(refused.value).startswith(f"{path}: the outbox is damaged and its repair could "
                                         "not finish (")
    assert str(folder) in str(refused.value)
    assert "the repair is tried again at the next start" in str(refused.value)
    assert path.read_bytes() == damaged
    assert folder.is_dir()
    assert not list(tmp_path.glob("outbox.sqlite3.repairing*"))
    folder.rmdir()
    outbox = open_outbox(path)
    assert outbox.path == path
    assert outbox.depth() == 40
    outbox.close()


KILLED_COPY_REPAIR = """
import errno, os, signal, sys
from pathlib import Path
from appliance.transport.outbox_repair import open_outbox

path = Path(sys.argv[1])
rename = os.rename

def refused_or_killed(source, target, **kwargs):
    if os.fspath(source) == str(path):  # the damaged outbox still cannot move
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(source))
    if os.fspath(source).endswith(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    rename(source, target, **kwargs)

os.rename = refused_or_killed
open_outbox(path)
"""


@pytest.mark.parametrize(
    "when", [".repaired.repairing", ".repaired", ".repaired.repaired"],
    ids=["building", "before-the-copy-moved-aside", "after-the-copy-moved-aside"],
)
def test_a_repair_of_the_copy_in_use_killed_at_any_step_loses_none_of_its_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A kill (or a power cut) while the damaged copy in use is repaired one level down,
    the damaged outbox still immovable: at whichever rename it strikes, the next start finds
    every result the copy held, the ones measured into it included. Killed once the damaged
    copy had moved aside, the copy's own copy (those results) was never looked at again: the
    next start repaired the damaged outbox afresh into a new copy, without them, and counted
    them nowhere."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    _running_on_a_copy(path, monkeypatch, 10)
    in_use = open_outbox(path)
    in_use.add_many([(f"new-{i}", "t", b"{}") for i in range(5)])
    in_use.close()
    checkpoint_and_damage_first_page(copy)
    repo = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", KILLED_COPY_REPAIR, str(path), when],
                            env={**os.environ, "PYTHONPATH": str(repo)}, check=False)
    assert killed.returncode == -signal.SIGKILL
    outbox = open_outbox(path)  # the next start, the damaged outbox still refused
    assert outbox.path == copy
    assert {m.measurement_id for m in outbox.pending()} >= {f"new-{i}" for i in range(5)}
    assert outbox.depth() == 15
    assert outbox.dropped() == 0
    outbox.close()
    assert not list(tmp_path.glob("outbox.sqlite3.repaired.repair*"))


def test_a_copy_and_its_copy_kept_as_they_were_leave_no_copy_behind_once_they_can_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the damaged copy in use could not make way for its own copy, both were kept; the
    first start that could move them put the damaged copy in the outbox's place and repaired
    it there, and left the copy's copy behind, a stale copy that a later repair of a copy in
    use would have put in place of the results measured since. Now that start puts the copy's
    copy in place first, then in the outbox's place, and no copy stays behind."""
    path = tmp_path / "outbox.sqlite3"
    _a_damaged_copy_that_cannot_move(path, monkeypatch)
    with pytest.raises(OutboxError):
        open_outbox(path, rebuild=True)
    monkeypatch.undo()  # the folder lets them move
    outbox = open_outbox(path)
    assert outbox.path == path
    assert outbox.depth() == 10
    outbox.add_many([("new-1", "t", b"{}")])
    outbox.close()
    assert not [p.name for p in tmp_path.glob("outbox.sqlite3.repaired*")
                if ".corrupt-" not in p.name]
    again = open_outbox(path)
    assert again.depth() == 11
    assert again.dropped() == 0
    again.close()


def test_a_copy_in_use_on_a_disk_turned_read_only_is_not_said_to_be_gone_on_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A kiosk on the repaired copy whose disk turns read-only (an SD card's filesystem
    remounted so after an error): the start said the damaged outbox cannot be moved aside
    (read-only) and that the kiosk goes on with its copy, then failed to open the copy. Now it
    says the outbox is kept beside the copy, which cannot be used either, with the reason;
    nothing is moved, and once the disk is writable the copy takes the outbox's place."""
    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        path = disk / "outbox.sqlite3"
        copy = disk / "outbox.sqlite3.repaired"
        _running_on_a_copy(path, monkeypatch, 10)
        monkeypatch.undo()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"), \
                pytest.raises(OutboxError) as failed:
            open_outbox(path)
        said = [r.getMessage() for r in caplog.records
                if r.name == "appliance.transport.outbox_repair"]
        assert str(copy) in str(failed.value)
        assert not [line for line in said if "goes on" in line], said
        (kept,) = said
        assert kept.startswith(f"{path}: the damaged outbox cannot be moved aside (")
        assert os.strerror(errno.EROFS) in kept
        assert kept.endswith(f"beside its repaired copy {copy}, which cannot be used either")
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        outbox = open_outbox(path)
        assert outbox.path == path
        assert outbox.depth() == 10
        outbox.close()


def test_a_folder_at_the_name_of_the_copys_copy_leaves_the_copy_in_use_and_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On main a folder at ``outbox.sqlite3.repaired.repaired`` was put in place of the copy
    in use (the copy moved aside with its results, the start failing on the folder); with
    the copy's copy looked at first, the folder was said twice a start. Now the
    copy stays in use, and one line says what stands at that name."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    folder = tmp_path / "outbox.sqlite3.repaired.repaired"
    _running_on_a_copy(path, monkeypatch, 5)
    folder.mkdir()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
        outbox = open_outbox(path)
    assert outbox.path == copy
    assert outbox.depth() == 5
    outbox.close()
    said = [r.getMessage() for r in caplog.records if str(folder) in r.getMessage()]
    assert said == [f"{folder} is a folder, not a repaired copy of the outbox: it is left as it "
                    f"is and never takes the place of {copy}, which is opened as it is"]
    assert folder.is_dir()


def test_a_copys_copy_that_cannot_take_the_place_of_the_copy_gone_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repair of the copy in use cut short once the damaged copy had moved aside leaves the
    copy's results in its own copy alone. Where that cannot be renamed to the copy's name,
    the start went on without it: it repaired the damaged outbox afresh into a new copy
    (without those results) and measured into it. Now the start stops, naming the copy's copy
    and the reason, and builds nothing; once it can move, every result is there."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    inner = tmp_path / "outbox.sqlite3.repaired.repaired"
    _running_on_a_copy(path, monkeypatch, 10)
    in_use = open_outbox(path)
    in_use.add_many([(f"new-{i}", "t", b"{}") for i in range(5)])
    in_use.close()
    build_repaired(copy, inner, beside=path)  # the copy's repair, cut short after this:
    copy.rename(tmp_path / "outbox.sqlite3.repaired.corrupt-1")  # the copy moved aside
    refuse_moving(monkeypatch, inner, errno.EACCES)
    with pytest.raises(OutboxError) as stopped:
        open_outbox(path)
    assert str(stopped.value).startswith(f"{inner}: the repaired copy of the copy in use holds "
                                         "its results")
    assert os.strerror(errno.EACCES) in str(stopped.value)
    assert not copy.exists()
    monkeypatch.undo()
    refuse_moving(monkeypatch, path, errno.EACCES)  # the damaged outbox still immovable
    outbox = open_outbox(path)
    assert outbox.path == copy
    assert outbox.depth() == 15
    assert outbox.dropped() == 0
    outbox.close()


@pytest.mark.parametrize("on_copy", [False, True], ids=["its-outbox", "its-repaired-copy"])
def test_an_outbox_on_a_disk_mounted_read_only_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_copy: bool
) -> None:
    """An SD card's filesystem remounted read-only after an error left the kiosk saying only
    "cannot open the outbox (unable to open database file)", which sends one looking for a
    wrong path. Now the error says the file system is mounted read-only and that the unsent
    results stay in the file; nothing is moved."""
    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        path = disk / "outbox.sqlite3"
        if on_copy:
            _running_on_a_copy(path, monkeypatch, 10)
            monkeypatch.undo()
        else:
            stored_results(path, 10).close()
        before = sorted(p.name for p in disk.iterdir())
        in_use = disk / ("outbox.sqlite3.repaired" if on_copy else "outbox.sqlite3")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(OutboxError) as refused:
            open_outbox(path)
        assert str(refused.value) == (
            f"{in_use}: cannot open the outbox (unable to open database file): the file system "
            f"holding {in_use} is mounted read-only (as after an error of its card or disk: "
            "check it, then remount it read-write or restart); its unsent results stay in it")
        assert sorted(p.name for p in disk.iterdir()) == before


KILLED_ON_THE_COPY = """
import os, signal, sys
from pathlib import Path
from appliance.transport.outbox import Outbox

copy = Outbox(Path(sys.argv[1]), beside=Path(sys.argv[2]))
copy.add_many([(f"new-{i}", "t", b"x" * 3000) for i in range(300)])
os.kill(os.getpid(), signal.SIGKILL)  # its results left in its write-ahead log
"""


def test_a_copy_whose_log_a_full_disk_cannot_fold_in_is_not_said_to_be_an_immovable_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A kiosk on its repaired copy killed with results in the copy's write-ahead log, then
    started on a full disk that would let the damaged outbox move: the copy could not take
    its place (its log cannot be folded in without room), and the journal said "the damaged
    outbox cannot be moved aside (database or disk is full)", which sent one to its
    permissions. Now it says the copy cannot take its place yet, why, and that the disk is
    full; the kiosk goes on with the copy (every result), which takes its place once there
    is room."""
    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        path = disk / "outbox.sqlite3"
        copy = disk / "outbox.sqlite3.repaired"
        _running_on_a_copy(path, monkeypatch, 5)
        repo = Path(__file__).resolve().parents[2]
        killed = subprocess.run([sys.executable, "-c", KILLED_ON_THE_COPY, str(copy), str(path)],
                                env={**os.environ, "PYTHONPATH": str(repo)}, check=False)
        assert killed.returncode == -signal.SIGKILL
        assert copy.with_name("outbox.sqlite3.repaired-wal").stat().st_size > 1 << 20
        monkeypatch.undo()  # the damaged outbox could move now
        filler = fill(disk)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
            outbox = open_outbox(path)
        assert outbox.path == copy
        assert outbox.depth() == 305
        outbox.close()
        said = [r.getMessage() for r in caplog.records]
        assert not [line for line in said if "cannot be moved aside" in line], said
        (line,) = said
        assert line.startswith(f"{path}: the repaired copy {copy} cannot take the place of the "
                               "damaged outbox yet (its write-ahead log cannot be folded into it "
                               "(database or disk is full): the disk holding"), line
        assert line.endswith(f"the kiosk goes on with its repaired copy {copy}, which takes its "
                             "place at a later start that can fold its log in")
        filler.unlink()
        placed = open_outbox(path)
        assert placed.path == path
        assert placed.depth() == 305
        placed.close()


@pytest.mark.parametrize("garbage_bytes", [1, 3 * PAGE_BYTES, 40 * PAGE_BYTES + 17])
def test_garbage_at_the_repaired_copys_name_never_pushes_a_sound_outbox_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, garbage_bytes: int
) -> None:
    """A file of garbage at ``outbox.sqlite3.repaired`` was taken for a copy an earlier start
    left: the sound outbox beside it (40 results) was moved aside as ``corrupt-<time>``, the
    garbage "repaired" into an empty outbox, and none of the 40 was sent or counted dropped.
    A file in which no outbox can be found, even with its first page rebuilt, is no copy now:
    it is kept under another name, said once, and the outbox opens with every result."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    stored = stored_results(path, 40)
    ids = [message.measurement_id for message in stored.pending(limit=1000)]
    stored.close()
    garbage = random.Random(3).randbytes(garbage_bytes)
    copy.write_bytes(garbage)
    with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
        outbox = open_outbox(path)
    assert outbox.path == path
    assert [message.measurement_id for message in outbox.pending(limit=1000)] == ids
    assert outbox.dropped() == 0
    outbox.close()
    assert not list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
    assert not copy.exists()
    (kept,) = tmp_path.glob("outbox.sqlite3.repaired.unreadable-*")
    assert kept.read_bytes() == garbage  # never deleted
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.transport.outbox_repair"]
    assert said == [f"{copy} is a file in which no outbox can be found, not a repaired copy of "
                    f"the outbox: it is kept as {kept} and never takes the place of {path}, "
                    "which is opened as it is"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
        open_outbox(path).close()  # the next start: nothing more to say
    assert [r for r in caplog.records if r.name == "appliance.transport.outbox_repair"] == []


def test_garbage_at_the_name_of_the_copys_copy_leaves_the_copy_in_use_with_its_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A file of garbage at ``outbox.sqlite3.repaired.repaired`` was put in place of the copy
    in use: the copy (5 results) moved aside, the garbage "repaired" into an empty outbox the
    kiosk then measured into. Now it is kept apart, said once, and the copy stays in use."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    inner = tmp_path / "outbox.sqlite3.repaired.repaired"
    _running_on_a_copy(path, monkeypatch, 5)
    garbage = random.Random(5).randbytes(8 * PAGE_BYTES)
    inner.write_bytes(garbage)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
        outbox = open_outbox(path)
    assert outbox.path == copy
    assert outbox.depth() == 5
    assert outbox.dropped() == 0
    outbox.close()
    assert not list(tmp_path.glob("outbox.sqlite3.repaired.corrupt-*"))
    (kept,) = tmp_path.glob("outbox.sqlite3.repaired.repaired.unreadable-*")
    assert kept.read_bytes() == garbage
    said = [r.getMessage() for r in caplog.records if str(inner) in r.getMessage()]
    assert said == [f"{inner} is a file in which no outbox can be found, not a repaired copy of "
                    f"the outbox: it is kept as {kept} and never takes the place of {copy}, "
                    "which is opened as it is"]


def test_a_repaired_copy_whose_first_page_a_power_cut_garbled_still_takes_the_outboxs_place(
    tmp_path: Path,
) -> None:
    """A copy left by a repair cut short (of an outbox found damaged in use, which opens),
    its header and schema then garbled by a power cut: it is not a database by its bytes,
    but its results read with its first page rebuilt, so it is still the copy, and it takes
    the place of the outbox beside it with every result it holds."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    stored_results(path, 40).close()
    held = stored_results(copy, 45, device="kiosk-d")
    ids = [message.measurement_id for message in held.pending(limit=1000)]
    held.close()
    for suffix in ("-wal", "-shm"):
        assert not copy.with_name(copy.name + suffix).exists()
    with copy.open("r+b") as db:
        db.write(random.Random(1).randbytes(PAGE_BYTES))
    outbox = open_outbox(path)
    assert outbox.path == path
    assert [message.measurement_id for message in outbox.pending(limit=1000)] == ids
    assert outbox.dropped() == 0
    outbox.close()
    assert not list(tmp_path.glob("*.unreadable-*"))


def test_garbage_at_the_repaired_copys_name_that_cannot_move_is_left_and_the_outbox_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the folder refuses to move the garbage off the copy's name, it stays as it is,
    whole, the journal says why, and the sound outbox still opens with its 40 results."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    stored_results(path, 40).close()
    garbage = random.Random(4).randbytes(5 * PAGE_BYTES)
    copy.write_bytes(garbage)
    refuse_moving(monkeypatch, copy, errno.EACCES)
    with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
        outbox = open_outbox(path)
    assert outbox.path == path
    assert outbox.depth() == 40
    assert outbox.dropped() == 0
    outbox.close()
    assert copy.read_bytes() == garbage
    assert not list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.transport.outbox_repair"]
    assert said == [f"{copy} is a file in which no outbox can be found, not a repaired copy of "
                    f"the outbox: it cannot be moved off that name ([Errno {errno.EACCES}] "
                    f"{os.strerror(errno.EACCES)}: '{copy}'), so it is left as it is and never "
                    f"takes the place of {path}, which is opened as it is"]


def test_a_repaired_copy_garbled_at_its_first_page_and_its_first_rows_still_takes_the_place(
    tmp_path: Path,
) -> None:
    """A copy whose first page and the page holding its first results a power cut garbled
    was kept apart as no copy (its first rows did not read, so it looked like garbage), and
    the results behind them were left in it. Rows are looked for as salvage reads them (seq
    by seq past a bad page), so it is a copy: it takes the outbox's place, every result on
    its sound pages kept, the garbled ones counted dropped."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    stored_results(path, 40).close()
    held = stored_results(copy, 60, device="kiosk-d")
    first = held.pending(limit=1)[0]
    held.close()
    data = copy.read_bytes()
    first_rows_page = data.index(first.payload) // PAGE_BYTES
    assert first_rows_page > 0
    with copy.open("r+b") as db:
        for page in (0, first_rows_page):
            db.seek(page * PAGE_BYTES)
            db.write(random.Random(page).randbytes(PAGE_BYTES))
    outbox = open_outbox(path)
    assert outbox.path == path
    kept = outbox.depth()
    assert 50 < kept < 60
    assert first.measurement_id not in {m.measurement_id for m in outbox.pending(limit=1000)}
    assert all(m.topic == "corrupt/lab/kiosk-d/result" for m in outbox.pending(limit=1000))
    assert outbox.dropped() == 60 - kept
    outbox.close()
    assert not list(tmp_path.glob("*.unreadable-*"))


def test_a_copy_in_use_garbled_at_its_first_page_and_its_tables_root_is_still_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy in use (the damaged outbox cannot move) whose first page and its table's root
    page a power cut garbled (written one after the other at a checkpoint): no result reads,
    but its index still counts them, so it is the copy, repaired as one, and the 30 results
    measured into it are counted dropped rather than gone without a trace."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    _running_on_a_copy(path, monkeypatch, 40)
    in_use = open_outbox(path)
    in_use.add_many([(f"new-{i}", "t", b"x" * 1500) for i in range(30)])
    in_use.close()
    with copy.open("r+b") as db:
        for page in (0, 1):
            db.seek(page * PAGE_BYTES)
            db.write(random.Random(page).randbytes(PAGE_BYTES))
    outbox = open_outbox(path)
    assert outbox.path == copy
    assert outbox.dropped() == 70
    outbox.close()
    assert not list(tmp_path.glob("*.unreadable-*"))


@pytest.mark.parametrize("still_refused", [True, False])
def test_results_only_an_unreadable_repaired_copy_held_are_counted_dropped_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    still_refused: bool,
) -> None:
    """A copy in use (the damaged outbox cannot move) took 30 new results, its own counted
    drop and acks of 10 recovered ones; then garbage covered it whole. It was kept apart as
    no outbox and the damaged outbox repaired afresh, renumbered past the high-water mark,
    so the 30 results only the copy held, and the 2 it had counted dropped, were neither
    counted nor said (dropped 0). Now they are counted, and the journal says how many,
    naming the outbox and its mark."""
    path = tmp_path / "outbox.sqlite3"
    copy = tmp_path / "outbox.sqlite3.repaired"
    _running_on_a_copy(path, monkeypatch, 40)
    in_use = open_outbox(path, max_rows=58)
    in_use.remove([message.seq for message in in_use.pending(limit=10)])  # acked
    in_use.add_many([(f"new-{i}", "t", b"x" * 1500) for i in range(30)])  # 2 oldest dropped
    assert (in_use.depth(), in_use.dropped()) == (58, 2)
    in_use.close()
    copy.write_bytes(random.Random(9).randbytes(copy.stat().st_size))
    if not still_refused:
        monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="appliance.transport.outbox_repair"):
        outbox = open_outbox(path)
    assert outbox.path == (copy if still_refused else path)
    assert outbox.depth() == 40  # the damaged outbox's results, read again
    assert not {m.measurement_id for m in outbox.pending(limit=1000)} & {"new-0", "new-29"}
    assert outbox.dropped() == 32
    outbox.close()
    (kept,) = tmp_path.glob("outbox.sqlite3.repaired.unreadable-*")
    said = [r.getMessage() for r in caplog.records if "unaccounted" in r.getMessage()]
    assert said == [f"{path}: the outbox had committed up to result #70 with 58 waiting (its "
                    f"high-water mark {path}.highwater), and the damaged file holds up to #40: "
                    "the rest are in none of the files a repair reads (a repaired copy that "
                    "held them can no longer be read, the damage took them, or the file is "
                    "older); 30 result(s) are "
                    "unaccounted for (counted dropped, with the 2 it had counted beyond the "
                    "file)"]
    assert any(str(kept) in r.getMessage() for r in caplog.records)  # the file kept, named
    assert open_outbox(path).dropped() == 32  # the next start: counted once, not again
