"""The erasure journal kept with the backups: `store backup` (so the nightly unit) writes the
journal beside each archive, `--keep` removes it with its archive, and a restore after a lost
disk (no live journal) finds the newest copy beside the backup, applies it, says so and puts it
back. SQLite always, PostgreSQL in throw-away databases (tidy5_*)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.backoffice.erasure_journal import read_journal
from appliance.backoffice.journal_copy import ChosenJournal
from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.transport.payloads import Result
from tests.erasure_journal_helpers import cli, live_journal, new_store_url, sample_results

SUBJECT = "subj-copied"
STAMPED = re.compile(r"backoffice-(\d{8}T\d{6}\.\d{6}Z)\.(sqlite3|dump)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new store's URL: a SQLite file, or a new PostgreSQL database (dropped afterwards)."""
    yield from new_store_url(request.param, tmp_path, "tidy5")


def _stored(url: str) -> set[str]:
    store = open_store(url)
    try:
        return {str(row[0]) for row in store.query("SELECT measurement_id FROM results")}
    finally:
        store.close()


def _delivered(url: str, results: list[Result]) -> None:
    store = open_store(url)
    try:
        received = iso_utc(datetime.now(UTC) - timedelta(hours=2))
        store.write_batch(Batch(results=[result_row(r, received, r.to_json().decode())
                                         for r in results]), 1000, 2**40)
    finally:
        store.close()


def _backup(tmp_path: Path, url: str, keep: str = "3") -> subprocess.CompletedProcess[str]:
    """`store backup` as the nightly unit runs it (--keep), into tmp_path/backups."""
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700, exist_ok=True)
    return cli(tmp_path, "store", "backup", "--store", url, "--out",
               str(folder / "backoffice.sqlite3"), "--keep", keep)


def _erase(tmp_path: Path, url: str, *chosen: str) -> None:
    done = cli(tmp_path, "results", "erase", "--store", url, *chosen, "--yes")
    assert done.returncode == 0, done.stderr


def _archives(tmp_path: Path) -> list[Path]:
    """The archives in the backup folder, oldest first."""
    return sorted(path for path in (tmp_path / "backups").iterdir()
                  if STAMPED.fullmatch(path.name))


def test_each_backup_has_the_journal_beside_it_and_keep_removes_it_with_its_archive(
        url: str, tmp_path: Path) -> None:
    subject, others = sample_results(SUBJECT, 3, 1), sample_results(None, 2, 2)
    _delivered(url, subject + others)
    _erase(tmp_path, url, "--subject", SUBJECT)
    journals = []
    for erased in others:  # three backups, one more erasure before each of the last two
        done = _backup(tmp_path, url, keep="2")
        assert done.returncode == 0, done.stderr
        journals.append(live_journal().read_bytes())
        _erase(tmp_path, url, "--result", erased.measurement_id)
    done = _backup(tmp_path, url, keep="2")
    assert done.returncode == 0, done.stderr
    journals.append(live_journal().read_bytes())

    archives = _archives(tmp_path)
    assert len(archives) == 2  # the oldest removed, with its journal copy
    names = sorted(path.name for path in (tmp_path / "backups").iterdir())
    assert names == sorted([*(a.name for a in archives),
                            *(f"{a.name}.erasure-journal.jsonl" for a in archives)])
    for archive, journal in zip(archives, journals[1:], strict=True):
        copy = archive.with_name(f"{archive.name}.erasure-journal.jsonl")
        assert copy.read_bytes() == journal  # the journal as it was at that backup
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert journals[2].count(b"\n") == 3
    assert (f"copied the erasure journal {live_journal()} (3 line(s)) to "
            f"{archives[-1]}.erasure-journal.jsonl") in done.stdout


def _backed_up_erased_and_lost(url: str, tmp_path: Path) -> tuple[Path, list[Result]]:
    """A backup of 5 results, then the subject's 3 erased, a second backup (its journal copy
    holds the erasure), then the disk lost: the live journal gone (the store is replaced by
    the restore). The first backup, and the results not erased."""
    subject, others = sample_results(SUBJECT, 3, 1), sample_results(None, 2, 2)
    _delivered(url, subject + others)
    assert _backup(tmp_path, url).returncode == 0
    _erase(tmp_path, url, "--subject", SUBJECT)
    assert _backup(tmp_path, url).returncode == 0
    live_journal().unlink()
    return _archives(tmp_path)[0], others


def test_a_restore_after_a_lost_disk_applies_the_newest_copy_beside_the_backup(
        url: str, tmp_path: Path) -> None:
    """The nightly unit copied the store, not the journal: a restore from the backup taken
    before an erasure, with the journal lost with the disk, brought the person back."""
    first, others = _backed_up_erased_and_lost(url, tmp_path)
    newest = _archives(tmp_path)[-1]
    copy = newest.with_name(f"{newest.name}.erasure-journal.jsonl")

    done = cli(tmp_path, "store", "restore", str(first), "--store", url, "--force")

    assert done.returncode == 0, done.stderr
    assert _stored(url) == {r.measurement_id for r in others}
    assert (f"the erasure journal used: the copy {copy}, the newest beside the backup (no "
            f"live one at {live_journal()})") in done.stdout
    assert f"re-applied 1 erasure(s) and 0 release(s) from the erasure journal {copy}" \
        in done.stdout
    assert f"put the copy back as the erasure journal {live_journal()}" in done.stdout
    assert live_journal().read_bytes() == copy.read_bytes()
    assert stat.S_IMODE(live_journal().stat().st_mode) == 0o600


def test_a_restore_uses_the_live_journal_and_the_lines_only_a_copy_holds(
        tmp_path: Path) -> None:
    """Where there is a live journal it is used; one started again since the copies (a lost
    disk, an erasure, then the restore) lacks the older erasures: those are applied too."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    first, others = _backed_up_erased_and_lost(url, tmp_path)
    newest = _archives(tmp_path)[-1]
    _erase(tmp_path, url, "--result", others[0].measurement_id)  # a new live journal

    done = cli(tmp_path, "store", "restore", str(first), "--store", url, "--force")

    assert done.returncode == 0, done.stderr
    assert _stored(url) == {others[1].measurement_id}
    assert (f"the erasure journal used: the live one, {live_journal()}, and 1 line(s) it lacks "
            f"from its copy {newest}.erasure-journal.jsonl") in done.stdout
    assert "re-applied 2 erasure(s) and 0 release(s)" in done.stdout
    assert "put the copy back" not in done.stdout


def test_a_journal_that_cannot_be_copied_fails_the_backup_and_removes_no_older_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    _delivered(url, sample_results(None, 1, 3))
    assert _backup(tmp_path, url, keep="1").returncode == 0
    unreadable = tmp_path / "journal-folder"
    unreadable.mkdir()
    monkeypatch.setenv("APPLIANCE__STORE__ERASURE_JOURNAL", str(unreadable))

    done = _backup(tmp_path, url, keep="1")

    assert done.returncode == 1
    assert "but the erasure journal" in done.stderr
    assert "could not be copied beside it" in done.stderr
    assert len(_archives(tmp_path)) == 2  # the older one kept: the unit is failed, look


def test_a_journal_copy_s_temporary_a_killed_backup_left_is_removed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    _delivered(url, sample_results(None, 1, 4))
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    left = folder / (".backoffice-20261201T030000.000000Z.sqlite3.erasure-journal.jsonl"
                     ".ab12cd34.tmp.jsonl")
    left.write_bytes(b"")
    os.utime(left, (time.time() - 120, time.time() - 120))

    done = _backup(tmp_path, url)

    assert done.returncode == 0, done.stderr
    assert not left.exists()
    assert f"temporary file(s) that killed backups left: {left.name}" in done.stdout


def test_a_live_journal_made_meanwhile_is_never_written_over_by_the_copy(
        tmp_path: Path) -> None:
    """An erasure that made the live journal between the restore's look and its putting the
    copy back keeps its line: the copy is linked in only where nothing is there."""
    copy = tmp_path / "backoffice-x.sqlite3.erasure-journal.jsonl"
    copy.write_text('{"kind":"result","id":"old","at":"2026-12-01T00:00:00+00:00","by":"a"}\n')
    live = tmp_path / "state" / "erasure-journal.jsonl"
    live.parent.mkdir()
    chosen = ChosenJournal(read_journal(copy), [], live, copied=True)
    live.write_text("the new erasure's line\n")

    said = chosen.put_back()

    assert said == f"Note: {live} was made meanwhile; {copy} not put back"
    assert live.read_text() == "the new erasure's line\n"
    assert sorted(path.name for path in live.parent.iterdir()) == ["erasure-journal.jsonl"]
    live.unlink()
    assert chosen.put_back() == f"put the copy back as the erasure journal {live}, where " \
        "the next erasure goes"
    assert live.read_bytes() == copy.read_bytes()
