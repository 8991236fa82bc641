"""A back-office worker applies the erasure journal's lines its store lacks before it takes any
message (appliance/backoffice/journal_start.py): after a PostgreSQL restore killed between the
swap and the journal, or a crash between an erasure's line and its commit; once, however many
workers start together; and a journal it cannot use stops it, naming the file and line."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice import erasure, erasure_reapply, journal_start
from appliance.backoffice.erasure_journal import read_journal
from appliance.backoffice.service import run_backoffice
from appliance.backoffice.store import open_store
from appliance.config import Config, config_from_mapping
from appliance.transport.broker import free_port, port_open
from appliance.transport.payloads import Result
from tests.erasure_journal_helpers import (
    REPO,
    cli,
    deliver,
    live_journal,
    new_store_url,
    query,
    sample_results,
    stored,
)

SUBJECT = "subj-journalstart"
KILLED = """
import os, signal, sys
from appliance.backoffice import erasure_journal, store_backup_cli
from appliance.cli import main

written = erasure_journal.append

def append_then_die(path, entry):
    written(path, entry)
    os.kill(os.getpid(), signal.SIGKILL)  # a power cut between the journal and the commit

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the restore killed once the backup is in place

erasure_journal.append = append_then_die if sys.argv[1] == "erase" else written
store_backup_cli._journal_applied = die
main(sys.argv[2:])
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new store's URL: a SQLite file, or a new PostgreSQL database (dropped afterwards)."""
    yield from new_store_url(request.param, tmp_path, "journalstart")


def _killed(tmp_path: Path, point: str, *args: str) -> None:
    """The command ``args`` killed (SIGKILL) at ``point``: "erase" once the journal's line
    is written, "restore" once the backup is in place."""
    done = subprocess.run([sys.executable, "-c", KILLED, point, *args], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          check=False, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr


def _config(url: str, tmp_path: Path, client: str = "a") -> Config:
    return config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "journalstart"},
        "state_dir": str(tmp_path), "store": {"url": url,
                                              "erasure_journal": str(live_journal())},
        "backoffice": {"client_id": f"journalstart-{client}-{uuid.uuid4().hex[:8]}"}},
        environ={})


def _started(config: Config) -> int:
    """A worker started, then stopped at once (no broker needed: it stops before it
    connects); its exit code."""
    stop = threading.Event()
    stop.set()
    return run_backoffice(config, stop)


def _erased_by_a_crash(url: str, tmp_path: Path) -> list[Result]:
    """A subject's 3 results stored, then its erasure killed between its journal line and its
    commit: the store holds them, the journal their erasure."""
    subject = sample_results(SUBJECT, 3, 1)
    deliver(url, subject, datetime.now(UTC) - timedelta(hours=1))
    _killed(tmp_path, "erase", "results", "erase", "--store", url, "--subject", SUBJECT, "--yes")
    assert stored(url) == {r.measurement_id for r in subject}
    return subject


def test_a_worker_applies_an_erasure_a_crash_left_uncommitted_before_it_serves(
        url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    subject = _erased_by_a_crash(url, tmp_path)
    erased = {r.measurement_id for r in subject}

    with caplog.at_level(logging.WARNING, logger="appliance.backoffice.journal_start"):
        assert _started(_config(url, tmp_path)) == 0

    assert stored(url) == set()
    assert [row[:2] for row in query(url, "SELECT kind, selector FROM erasures")] == [
        ("subject", SUBJECT)]
    assert {str(row[0]) for row in query(url, "SELECT measurement_id FROM kiosk_forgets")
            } == erased  # their kiosks are asked to forget their copies too
    assert f"applied {live_journal()}:1: subject {SUBJECT} at " in caplog.text
    assert deliver(url, subject, datetime.now(UTC)) == []  # sent again: not stored
    check = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")
    assert check.returncode == 0, check.stdout


@pytest.mark.postgres
def test_a_worker_after_a_postgres_restore_killed_before_the_journal_serves_nothing_erased(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = next(urls := new_store_url("postgres", tmp_path, "journalstart"))
    try:
        subject, others = sample_results(SUBJECT, 3, 1), sample_results(None, 3, 2)
        deliver(url, subject + others, datetime.now(UTC) - timedelta(hours=2))
        backup = tmp_path / "backup.dump"
        assert cli(tmp_path, "store", "backup", "--store", url, "--out",
                   str(backup)).returncode == 0
        assert cli(tmp_path, "results", "erase", "--store", url, "--subject", SUBJECT,
                   "--yes").returncode == 0
        _killed(tmp_path, "restore", "store", "restore", str(backup), "--store", url, "--force")
        erased = {r.measurement_id for r in subject}
        assert erased <= stored(url)  # the hole: the backup's erased results are back

        with caplog.at_level(logging.WARNING, logger="appliance.backoffice.journal_start"):
            assert _started(_config(url, tmp_path)) == 0

        assert stored(url) == {r.measurement_id for r in others}
        assert len(query(url, "SELECT id FROM erasures")) == 1
        assert f"{live_journal()}:1: subject {SUBJECT}" in caplog.text
    finally:
        urls.close()


def test_workers_starting_together_apply_each_line_once(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _erased_by_a_crash(url, tmp_path)
    read = journal_start.read_journal
    both_read = threading.Barrier(2)

    def read_when_both_can(path: Path) -> Any:
        # with the store's lock one worker reads alone and the other waits for its end (the
        # barrier gives up); without it both read the journal before either applies it
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait(timeout=3)
        return read(path)

    monkeypatch.setattr(journal_start, "read_journal", read_when_both_can)
    codes: list[int] = []
    workers = [threading.Thread(target=lambda name=name: codes.append(
        _started(_config(url, tmp_path, name)))) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert codes == [0, 0]
    assert [row[:2] for row in query(url, "SELECT kind, selector FROM erasures")] == [
        ("subject", SUBJECT)]  # one audit row for the journal's one line
    assert stored(url) == set()


@pytest.mark.parametrize("damage", ["garbled line", "link"])
def test_a_journal_the_worker_cannot_use_stops_it_naming_the_file(
        damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    subject = _erased_by_a_crash(url, tmp_path)
    journal = live_journal()
    if damage == "garbled line":
        with journal.open("a") as file:
            file.write("this is no erasure\n")
        named = f"{journal}:2: not an erasure journal line"
    else:
        kept = journal.rename(tmp_path / "kept.jsonl")
        journal.symlink_to(kept)
        named = f"the erasure journal {journal} is a symbolic link"

    with caplog.at_level(logging.ERROR, logger="appliance.backoffice.service"):
        assert _started(_config(url, tmp_path)) == 2

    assert named in caplog.text
    assert "Neither a back-office worker nor the console starts while the erasure journal " \
        "cannot be used" in caplog.text
    assert stored(url) == {r.measurement_id for r in subject}  # nothing changed
    assert query(url, "SELECT id FROM erasures") == []


def _console(url: str, tmp_path: Path) -> tuple[int | None, str]:
    """``appliance console`` on ``url`` started, stopped (SIGTERM) once it listens; its exit
    code and output (an exit before it listened: that code)."""
    port = free_port()
    (tmp_path / "backoffice.yaml").write_text(f"console:\n  port: {port}\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "appliance", "console", "--config", "backoffice.yaml", "--store",
         url], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            if server.poll() is not None:
                break
            time.sleep(0.1)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    return server.returncode, output


def test_the_console_applies_the_lines_the_store_lacks_before_it_serves(
        url: str, tmp_path: Path) -> None:
    _erased_by_a_crash(url, tmp_path)

    code, output = _console(url, tmp_path)

    assert code == 0, output
    assert stored(url) == set()
    assert f"applied {live_journal()}:1: subject {SUBJECT} at " in output
    assert output.index("applied ") < output.index("console on http")


def test_the_console_does_not_serve_with_a_journal_it_cannot_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    subject = _erased_by_a_crash(url, tmp_path)
    with live_journal().open("a") as file:
        file.write("this is no erasure\n")

    code, output = _console(url, tmp_path)

    assert code == 2, output
    assert f"console: cannot start: {live_journal()}:2: not an erasure journal line" in output
    assert "console on http" not in output
    assert stored(url) == {r.measurement_id for r in subject}


def test_two_applying_the_journal_at_once_apply_each_line_once(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`results erasures --apply-journal`, a restore and a worker's start all apply with
    erasure_reapply.reapplied: two at once both hold the journal against the store, and the
    store's lock lets one apply the line."""
    _erased_by_a_crash(url, tmp_path)
    held_against = erasure_reapply.missing
    both_read = threading.Barrier(2)

    def missing_when_both_can(store: Any, journal: Any) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait(timeout=3)  # as in the test above
        return held_against(store, journal)

    monkeypatch.setattr(erasure_reapply, "missing", missing_when_both_can)
    journal = read_journal(live_journal())

    def apply_journal() -> None:
        store = open_store(url)
        try:
            erasure_reapply.reapplied(store, journal, "journalstart")
        finally:
            store.close()

    appliers = [threading.Thread(target=apply_journal) for _ in range(2)]
    for thread in appliers:
        thread.start()
    for thread in appliers:
        thread.join(timeout=120)

    assert [row[:2] for row in query(url, "SELECT kind, selector FROM erasures")] == [
        ("subject", SUBJECT)]
    assert stored(url) == set()


@pytest.mark.postgres
def test_an_erasure_retried_after_a_deadlock_past_its_line_writes_one_audit_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An erasure whose first try PostgreSQL ends as deadlocked after its journal line was
    written (here: at the kiosks' rows, the first statement after the audit row) rolls back
    and is tried again with the same time and line; a worker starting in between applies the
    line (its erasure is missing from the store), and the retry then committed a second audit
    row of the one erasure (main: 2 rows). The retry now finds the line's erasure done."""
    import psycopg

    url = next(store_urls := new_store_url("postgres", tmp_path, "erasure4"))
    try:
        subject = sample_results(SUBJECT, 3, 1)
        deliver(url, subject, datetime.now(UTC) - timedelta(hours=1))
        recorded, tries = erasure.record_forgets, []

        def deadlocked_once(*args: Any) -> None:
            if not tries:
                tries.append("deadlocked")
                raise psycopg.errors.DeadlockDetected("deadlock detected (injected)")
            recorded(*args)

        once = erasure.ErasureWrites._erase_once  # noqa: SLF001  (the retry's gap)

        def a_worker_starts_in_the_gap(self: Any, *args: Any) -> Any:
            if tries == ["deadlocked"]:  # rolled back, not yet retried
                tries.append("worker started")
                worker = open_store(url)
                try:
                    journal_start.journal_applied_at_start(worker, _config(url, tmp_path))
                finally:
                    worker.close()
            return once(self, *args)

        monkeypatch.setattr(erasure, "record_forgets", deadlocked_once)
        monkeypatch.setattr(erasure.ErasureWrites, "_erase_once", a_worker_starts_in_the_gap)

        done = cli(tmp_path, "results", "erase", "--store", url, "--subject", SUBJECT, "--yes")

        assert done.returncode == 0, done.stderr
        assert tries == ["deadlocked", "worker started"]
        assert len(read_journal(live_journal()).entries) == 1
        assert query(url, "SELECT kind, selector FROM erasures") == [("subject", SUBJECT)]
        assert stored(url) == set()
    finally:
        store_urls.close()
