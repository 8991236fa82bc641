"""An erasure survives a restore: each erasure and release is a line of the erasure journal,
flushed before the store commits, and ``store restore`` applies them again with their own
times; a kill between the two leaves what a rerun or a restore completes; a damaged line is
refused by file and line. SQLite always, PostgreSQL in throw-away databases (erasej_*)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

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

SUBJECT = "subj-journal"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new store's URL: a SQLite file, or a new PostgreSQL database (dropped afterwards)."""
    yield from new_store_url(request.param, tmp_path, "erasej")


def _backed_up_then_erased(url: str, tmp_path: Path) -> tuple[Path, list[Result], list[Result]]:
    """A store of a subject's 3 results and 3 others, backed up, then the subject and one
    other result erased: the backup, the subject's results, the others."""
    subject, others = sample_results(SUBJECT, 3, 1), sample_results(None, 3, 2)
    deliver(url, subject + others, datetime.now(UTC) - timedelta(hours=2))
    backup = tmp_path / "backup.file"
    done = cli(tmp_path, "store", "backup", "--store", url, "--out", str(backup))
    assert done.returncode == 0, done.stderr
    for chosen in (["--subject", SUBJECT], ["--result", others[0].measurement_id]):
        done = cli(tmp_path, "results", "erase", "--store", url, *chosen, "--yes")
        assert done.returncode == 0, done.stderr
    return backup, subject, others


def test_a_restore_applies_the_erasures_again_with_their_own_times(
        url: str, tmp_path: Path) -> None:
    backup, subject, others = _backed_up_then_erased(url, tmp_path)
    audit_sql = "SELECT kind, selector, erased_at, results FROM erasures ORDER BY erased_at"
    audit = query(url, audit_sql)
    tombstones = query(url, "SELECT measurement_id FROM erased_results ORDER BY 1")

    done = cli(tmp_path, "store", "restore", str(backup), "--store", url, "--force")

    assert done.returncode == 0, done.stderr
    assert ("re-applied 2 erasure(s) and 0 release(s) from the erasure journal "
            f"{live_journal()}, with their own times: they erased 4 result(s)") in done.stdout
    lines = done.stdout.splitlines()
    assert next(i for i, line in enumerate(lines) if "re-applied" in line) < next(
        i for i, line in enumerate(lines) if "fleet resend" in line)
    assert stored(url) == {r.measurement_id for r in others[1:]}
    assert query(url, audit_sql) == audit  # the erasure times, not the restore's
    assert query(url, "SELECT measurement_id FROM erased_results ORDER BY 1") == tombstones
    # the kiosk sends the subject's results again (fleet resend), and one captured before
    # the erasure that it had not delivered: none is stored, nor the erased single result
    late = sample_results(SUBJECT, 1, 3)
    assert deliver(url, subject + late + others[:1], datetime.now(UTC)) == []
    assert stored(url) == {r.measurement_id for r in others[1:]}
    again = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the store holds each of the 2 erasure(s)" in again.stdout


def test_the_restore_says_what_the_store_holds_once_the_journal_is_applied(
        url: str, tmp_path: Path) -> None:
    """It said "It holds 6 result(s)" (the backup as put in place) before the journal's line
    erased 4 of them: the count is now the store's after the erasures, printed after them."""
    backup, _subject, _others = _backed_up_then_erased(url, tmp_path)

    done = cli(tmp_path, "store", "restore", str(backup), "--store", url, "--force")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    said = [next(i for i, line in enumerate(lines) if line.startswith(start))
            for start in ("restored the ", "re-applied 2 erasure(s)", "It holds ",
                          "  lab/kiosk-1: ", "Note: ")]
    assert said == sorted(said)
    assert lines[said[2]].startswith("It holds 2 result(s) of 1 kiosk(s)")
    assert "; 0 dead letter(s), 2 erasure(s) recorded;" in lines[said[2]]
    assert lines[said[3]].startswith("  lab/kiosk-1: 2 result(s), newest received ")
    assert sum(line.startswith("It holds ") for line in lines) == 1


def test_a_restore_into_a_store_of_its_own_applies_them_too(tmp_path: Path) -> None:
    """The "check a backup" case: a store --store names, not the config's."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    backup, _, others = _backed_up_then_erased(url, tmp_path)
    check = f"sqlite:///{tmp_path / 'check.sqlite3'}"

    done = cli(tmp_path, "store", "restore", str(backup), "--store", check)

    assert done.returncode == 0, done.stderr
    assert stored(check) == {r.measurement_id for r in others[1:]}
    assert "the kiosks need not send anything again" in done.stdout


def test_a_release_after_the_erasure_survives_a_restore(url: str, tmp_path: Path) -> None:
    backup, _, _ = _backed_up_then_erased(url, tmp_path)
    erased_at = datetime.fromisoformat(str(query(
        url, "SELECT erased_at FROM erasures WHERE kind = 'subject'")[0][0]))
    # the person came back and agreed again: a result captured just after the erasure, by
    # a kiosk clock never read, is held; the operator releases it
    agreed = sample_results(SUBJECT, 1, 4)[0].model_copy(
        update={"captured_at": erased_at + timedelta(seconds=1)})
    assert deliver(url, [agreed], erased_at + timedelta(seconds=2)) == []
    done = cli(tmp_path, "results", "release", "--store", url, "--result",
               agreed.measurement_id, "--yes")
    assert done.returncode == 0, done.stderr
    assert agreed.measurement_id in stored(url)

    done = cli(tmp_path, "store", "restore", str(backup), "--store", url, "--force")

    assert done.returncode == 0, done.stderr
    assert "re-applied 2 erasure(s) and 1 release(s)" in done.stdout
    # the restored store lacks it (it came after the backup); the kiosk sends it again
    assert deliver(url, [agreed], datetime.now(UTC)) == [agreed.measurement_id]
    assert agreed.measurement_id in stored(url)


KILLED_ERASE = """
import os, signal, sys
from appliance.backoffice import erasure_journal
from appliance.cli import main

written = erasure_journal.append

def append_then_die(path, entry):
    written(path, entry)
    os.kill(os.getpid(), signal.SIGKILL)  # a power cut between the journal and the commit

erasure_journal.append = append_then_die
main(sys.argv[1:])
"""


def test_a_kill_between_the_journal_and_the_commit_leaves_what_a_rerun_applies(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    subject = sample_results(SUBJECT, 3, 1)
    deliver(url, subject, datetime.now(UTC) - timedelta(hours=1))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILLED_ERASE, "results", "erase", "--store",
                             url, "--subject", SUBJECT, "--yes"], capture_output=True,
                            text=True, cwd=tmp_path, env=env, check=False, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert stored(url) == {r.measurement_id for r in subject}  # never committed
    journal = live_journal()
    at = journal.read_text().split('"at":"')[1].split('"')[0]

    check = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")

    assert check.returncode == 1
    assert "the store lacks 1 of the 1 erasure(s) and release(s)" in check.stdout
    assert f"{journal}:1: subject {SUBJECT} at {at}" in check.stdout
    done = cli(tmp_path, "results", "erasures", "--store", url, "--apply-journal")
    assert done.returncode == 0, done.stderr
    assert "they erased 3 result(s)" in done.stdout
    assert stored(url) == set()
    assert query(url, "SELECT kind, selector, erased_at FROM erasures") == [
        ("subject", SUBJECT, at)]
    again = cli(tmp_path, "results", "erasures", "--store", url, "--apply-journal")
    assert "re-applied 0 erasure(s) and 0 release(s)" in again.stdout
    assert "1 more the store held already" in again.stdout
    assert len(query(url, "SELECT id FROM erasures")) == 1  # twice changes nothing


def test_a_garbled_journal_line_is_refused_by_file_and_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    backup, _, _ = _backed_up_then_erased(url, tmp_path)
    journal = live_journal()
    good = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(good[0] + b'{"kind":"subject","id":\x00garbage\n' + good[1])
    before = stored(url)

    done = cli(tmp_path, "store", "restore", str(backup), "--store", url, "--force")

    assert done.returncode == 2
    assert f"{journal}:2: not an erasure journal line (not JSON)" in done.stderr
    assert "the store was not restored" in done.stderr
    assert stored(url) == before
    check = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")
    assert check.returncode == 2
    assert f"{journal}:2:" in check.stderr


def test_a_torn_last_line_is_named_not_applied_and_cut_off_by_the_next_erasure(
        tmp_path: Path) -> None:
    """A last line without its newline was cut in the write that comes before the commit:
    that erasure never committed (its command never said it was done)."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    backup, _, others = _backed_up_then_erased(url, tmp_path)
    journal = live_journal()
    with journal.open("ab") as torn:
        torn.write(b'{"kind":"result","id":"' + others[1].measurement_id.encode())

    done = cli(tmp_path, "store", "restore", str(backup), "--store", url, "--force")

    assert done.returncode == 0, done.stderr
    assert f"{journal}:3: a torn last line (no newline)" in done.stdout
    assert others[1].measurement_id in stored(url)  # not applied
    erased = cli(tmp_path, "results", "erase", "--store", url, "--result",
                 others[2].measurement_id, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert f"{journal}:3: cut off a torn last line" in erased.stderr
    lines = journal.read_text().splitlines()
    assert len(lines) == 3
    assert others[2].measurement_id in lines[2]


def test_the_journal_is_owner_only_and_holds_no_result(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    old = os.umask(0)
    try:
        _, subject, _ = _backed_up_then_erased(url, tmp_path)
    finally:
        os.umask(old)
    journal = live_journal()
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    text = journal.read_text()
    assert all(r.measurement_id not in text for r in subject)  # the subject's id only
    assert "kime" not in text


def test_a_line_mended_by_hand_with_an_offset_is_applied_at_the_same_instant(
        url: str, tmp_path: Path) -> None:
    """The store keeps an erasure's time as fixed-width UTC text, which sorts like the time
    (a subject's result is judged against it). A journal line whose ``at`` names the same
    instant in another offset (an operator mending the file in Tokyo's time) was applied as
    written: '2026-...+09:00' sorts nine hours late against the store's UTC times."""
    subject = sample_results(SUBJECT, 2, 5)
    deliver(url, subject, datetime.now(UTC) - timedelta(hours=2))
    backup = tmp_path / "backup.file"
    assert cli(tmp_path, "store", "backup", "--store", url, "--out", str(backup)).returncode == 0
    done = cli(tmp_path, "results", "erase", "--store", url, "--subject", SUBJECT, "--yes")
    assert done.returncode == 0, done.stderr
    audit_sql = "SELECT kind, selector, erased_at FROM erasures"
    (erasure,) = query(url, audit_sql)
    at = datetime.fromisoformat(str(erasure[2]))
    journal = live_journal()
    line = journal.read_text(encoding="utf-8")
    tokyo = at.astimezone(timezone(timedelta(hours=9))).isoformat()
    assert line.count(str(erasure[2])) == 1
    journal.write_text(line.replace(str(erasure[2]), tokyo), encoding="utf-8")

    done = cli(tmp_path, "store", "restore", str(backup), "--store", url, "--force")

    assert done.returncode == 0, done.stderr
    assert query(url, audit_sql) == [erasure]  # the same instant, as the store writes it
    assert stored(url) == set()
    again = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")
    assert again.returncode == 0, again.stdout + again.stderr


KILLED_RESTORE = """
import os, signal, sys
from appliance.backoffice import store_backup_cli
from appliance.cli import main

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # a power cut once the backup is in place

store_backup_cli._journal_applied = die
main(sys.argv[1:])
"""


def test_a_restore_killed_once_the_backup_is_in_place_brings_no_erased_result_back(
        tmp_path: Path) -> None:
    """SQLite: the journal is applied to the restored copy before it replaces the store, so a
    kill after the rename (before, a kill between the rename and the journal's application
    left the backup's erased results in the live store, and nothing said so)."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    backup, _subject, others = _backed_up_then_erased(url, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    killed = subprocess.run([sys.executable, "-c", KILLED_RESTORE, "store", "restore",
                             str(backup), "--store", url, "--force"], capture_output=True,
                            text=True, cwd=tmp_path, env=env, check=False, timeout=120)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(query(url, "SELECT id FROM erasures")) == 2  # the backup, with its 2 lines
    assert stored(url) == {r.measurement_id for r in others[1:]}
    check = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")
    assert check.returncode == 0, check.stdout + check.stderr


def test_apply_journal_names_each_line_it_applies_with_its_user_and_time(
        tmp_path: Path) -> None:
    """A line is applied as written, also one the journal's owner appended by hand (its user
    and time taken from it): --apply-journal names each line it applies, as --check-journal
    does, not only how many."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    subject = sample_results(SUBJECT, 2, 1)
    deliver(url, subject, datetime.now(UTC) - timedelta(hours=1))
    journal = live_journal()
    journal.write_text(f'{{"kind":"subject","id":"{SUBJECT}","at":"2026-12-07T10:00:00.000000Z",'
                       '"by":"dpo-alice"}\n')
    journal.chmod(0o600)

    done = cli(tmp_path, "results", "erasures", "--store", url, "--apply-journal")

    assert done.returncode == 0, done.stderr
    assert "re-applied 1 erasure(s) and 0 release(s)" in done.stdout
    assert (f"  {journal}:1: subject {SUBJECT} at 2026-12-07T10:00:00.000000Z by dpo-alice"
            in done.stdout.splitlines())
    assert stored(url) == set()
    again = cli(tmp_path, "results", "erasures", "--store", url, "--apply-journal")
    assert f"{journal}:1:" not in again.stdout  # nothing applied, nothing named
