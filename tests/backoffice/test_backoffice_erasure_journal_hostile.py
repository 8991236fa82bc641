"""The erasure journal against a hostile host: a journal replaced by a link, made writable by
others, owned by another user or planted as a FIFO is refused by name before anything is read
from it or written to it (a root ``results erase`` once appended to, and cut the tail of, the
file a planted link named); a full disk in the middle of its line leaves the store unchanged
and the journal whole; a forged line nested deeper than the decoder follows is refused by file
and line; a line of gigabytes is read in bounded memory."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.backoffice.backup_rotation import journal_copy_of
from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.service import run_backoffice
from appliance.backoffice.store import Batch, open_store
from appliance.config import config_from_mapping
from appliance.synthetic import fleet
from appliance.transport.broker import free_port
from tests.erasure_journal_helpers import REPO, live_journal, query
from tests.erasure_journal_helpers import cli as in_process
from tests.erasure_journal_helpers import cli_process as cli

VICTIM = b"root:x:0:0:a file of root's\nits last line, no newline"
OTHER_UID = 4242


def _store_of_three(tmp_path: Path) -> tuple[str, list[str]]:
    """A SQLite store holding three results, and their ids."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    rng = random.Random(7)
    results = [fleet.sample_result(rng, "lab", "kiosk-1", i, None) for i in range(3)]
    store = open_store(url)
    try:
        received = iso_utc(datetime.now(UTC) - timedelta(hours=1))
        store.write_batch(Batch(results=[result_row(r, received, r.to_json().decode())
                                         for r in results]), 1000, 2**40)
    finally:
        store.close()
    return url, [r.measurement_id for r in results]


def _stored(url: str) -> set[str]:
    store = open_store(url)
    try:
        return {str(row[0]) for row in store.query("SELECT measurement_id FROM results")}
    finally:
        store.close()


def _a_link_to_a_victim(journal: Path) -> Path:
    victim = journal.parent / "victim"
    victim.write_bytes(VICTIM)
    journal.unlink()
    journal.symlink_to(victim)
    return victim


def _writable_by_everyone(journal: Path) -> Path:
    journal.chmod(0o666)
    return journal


def _writable_by_its_group(journal: Path) -> Path:
    journal.chmod(0o620)
    return journal


def _owned_by_another_user(journal: Path) -> Path:
    os.chown(journal, OTHER_UID, OTHER_UID)
    return journal


def _a_fifo(journal: Path) -> Path:
    journal.unlink()
    os.mkfifo(journal, 0o600)
    return journal


def _a_second_name(journal: Path) -> Path:
    os.link(journal, journal.parent / "second-name")
    return journal


PLANTED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "symlink": (_a_link_to_a_victim, "is a symbolic link (to "),
    "world-writable": (_writable_by_everyone, "is writable by everyone (mode 0666)"),
    "group-writable": (_writable_by_its_group, "is writable by its group (mode 0620)"),
    "other-owner": (_owned_by_another_user, f"is owned by uid {OTHER_UID}, not by the user"),
    "fifo": (_a_fifo, "is not a regular file"),
    "hard-link": (_a_second_name, "is a file with 2 names (a hard link)"),
}


@pytest.mark.parametrize("planted", list(PLANTED), ids=list(PLANTED))
def test_a_journal_that_is_no_file_of_its_own_is_refused_by_every_command(
        tmp_path: Path, planted: str) -> None:
    if planted == "other-owner" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    url, ids = _store_of_three(tmp_path)
    first = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[0], "--yes")
    assert first.returncode == 0, first.stderr
    journal = live_journal()
    line = journal.read_bytes()
    make, words = PLANTED[planted]
    target = make(journal)
    before = target.read_bytes() if target.is_file() else None

    erase = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[1], "--yes")
    check = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")
    apply = cli(tmp_path, "results", "erasures", "--store", url, "--apply-journal")

    for done in (erase, check, apply):
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"the erasure journal {journal} {words}" in done.stderr
    assert "nothing was changed in the store" in erase.stderr
    assert _stored(url) == set(ids[1:])  # the second erasure was not made
    if before is not None:
        assert target.read_bytes() == before  # nothing appended, nothing cut
    if planted != "symlink" and before is not None:
        assert before == line


FULL_DISK_ERASE = """
import resource, sys
from appliance.backoffice import erasure_journal
from appliance.cli import main

written = erasure_journal.append

def append_on_a_full_disk(path, entry):
    # the disk takes 20 more bytes of the journal: a short write, then EFBIG (Python ignores
    # SIGXFSZ); the store's file is not written under this limit
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 20, limits[1]))
    try:
        written(path, entry)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)

erasure_journal.append = append_on_a_full_disk
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_in_the_middle_of_the_line_leaves_the_store_and_the_journal_whole(
        tmp_path: Path) -> None:
    """A line the disk took part of was left torn while the erasure committed and said it was
    done; the next erasure then cut it off as one that never committed, so a restore would
    bring the erased result back."""
    url, ids = _store_of_three(tmp_path)
    first = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[0], "--yes")
    assert first.returncode == 0, first.stderr
    journal = live_journal()
    before = journal.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    full = subprocess.run([sys.executable, "-c", FULL_DISK_ERASE, "results", "erase", "--store",
                           url, "--result", ids[1], "--yes"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, check=False, timeout=120)

    assert full.returncode == 1, full.stdout + full.stderr
    assert f"cannot write the erasure journal {journal}" in full.stderr
    assert "nothing was changed in the store" in full.stderr
    assert _stored(url) == set(ids[1:])
    assert journal.read_bytes() == before  # no part of the line left
    after = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[2], "--yes")
    assert after.returncode == 0, after.stderr
    assert "cut off a torn last line" not in after.stderr
    assert [ids[0], ids[2]] == [line.split('"id":"')[1].split('"')[0]
                                for line in journal.read_text().splitlines()]


LINE_OF_ZEROS = 400_000_000  # a sparse file: no disk, but a reader that reads it whole holds it
MEASURED = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "appliance", *sys.argv[1:]], check=False)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)
"""


def _peak_bytes(tmp_path: Path, *args: str) -> tuple[int, str]:
    """The command's peak resident memory (its own process alone) and its stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", MEASURED, *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, check=False, timeout=300)
    *said, peak = done.stderr.strip().splitlines()
    return int(peak), "\n".join(said)


@pytest.mark.parametrize("ending", ["newline", "torn"], ids=["refused", "torn-then-cut"])
def test_a_line_of_hundreds_of_megabytes_is_read_a_chunk_at_a_time(
        tmp_path: Path, ending: str) -> None:
    """A 2 GB line took 4.2 GB to refuse (the file read whole, then split) and a torn one
    2.1 GB to cut off (read whole to find its start)."""
    url, ids = _store_of_three(tmp_path)
    first = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[0], "--yes")
    assert first.returncode == 0, first.stderr
    journal = live_journal()
    good = journal.read_bytes()
    with journal.open("r+b") as file:
        file.truncate(len(good) + LINE_OF_ZEROS)
        if ending == "newline":
            file.seek(0, os.SEEK_END)
            file.write(b"\n")

    if ending == "newline":
        peak, said = _peak_bytes(tmp_path, "results", "erasures", "--store", url,
                                 "--check-journal")
        assert f"{journal}:2: not an erasure journal line (over 4096 bytes)" in said
    else:
        peak, said = _peak_bytes(tmp_path, "results", "erase", "--store", url, "--result",
                                 ids[1], "--yes")
        assert f"{journal}:2: cut off a torn last line" in said
        assert journal.read_bytes().startswith(good)
        assert len(journal.read_bytes().splitlines()) == 2
    assert peak < LINE_OF_ZEROS // 2, f"{peak} bytes at the peak"


def test_a_line_nested_deeper_than_the_decoder_follows_is_refused_by_file_and_line(
        tmp_path: Path) -> None:
    """4,000 brackets fit a line's 4,096 bytes; the decoder's RecursionError was a traceback
    from every command that reads the journal, the restore's included."""
    url, ids = _store_of_three(tmp_path)
    first = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[0], "--yes")
    assert first.returncode == 0, first.stderr
    journal = live_journal()
    with journal.open("ab") as file:
        file.write(b"[" * 4000 + b"\n")

    check = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")

    assert check.returncode == 2, check.stdout + check.stderr
    assert f"{journal}:2: not an erasure journal line (not JSON: nested too deeply)" in (
        check.stderr)
    assert "Traceback" not in check.stderr


ERASED_DURING_THE_CHECK = """
import os, subprocess, sys
from appliance.backoffice import store_restore
from appliance.cli import main

checked = store_restore.checked_backup
url, erased = os.environ["ERASE_STORE"], os.environ["ERASE_RESULT"]

def checked_while_an_erasure_commits(backup):
    # an operator's erasure that commits while the restore checks the backup (seconds for
    # a large one), after the restore read the journal and before it locks the store
    subprocess.run([sys.executable, "-m", "appliance", "results", "erase", "--store", url,
                    "--result", erased, "--yes"], check=True, capture_output=True)
    return checked(backup)

store_restore.checked_backup = checked_while_an_erasure_commits
sys.exit(main(sys.argv[1:]))
"""


def test_an_erasure_committed_while_a_restore_checks_the_backup_is_applied_again(
        tmp_path: Path) -> None:
    """The restore applied the journal it read before the check: an erasure committed in
    between went with the store the backup replaced, and its result was back, the erasure
    in no store, though its command had said it was done."""
    url, ids = _store_of_three(tmp_path)
    backup = tmp_path / "backup.file"
    done = cli(tmp_path, "store", "backup", "--store", url, "--out", str(backup))
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO), "ERASE_STORE": url, "ERASE_RESULT": ids[0]}

    restore = subprocess.run([sys.executable, "-c", ERASED_DURING_THE_CHECK, "store", "restore",
                              str(backup), "--store", url, "--force"], capture_output=True,
                             text=True, cwd=tmp_path, env=env, check=False, timeout=300)

    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert ids[0] in live_journal().read_text()  # the erasure ran in the window
    assert "re-applied 1 erasure(s) and 0 release(s)" in restore.stdout
    assert _stored(url) == set(ids[1:])


def test_a_journal_lost_with_the_disk_is_said_where_the_store_holds_erasures_it_lacks(
        tmp_path: Path) -> None:
    """A restore after a lost disk without the journal put back said "re-applied 0
    erasure(s)" as if there had been none since the backup, though the backup itself holds
    an erasure that no line of the journal names."""
    url, ids = _store_of_three(tmp_path)
    first = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[0], "--yes")
    assert first.returncode == 0, first.stderr
    backup = tmp_path / "backup.file"
    done = cli(tmp_path, "store", "backup", "--store", url, "--out", str(backup))
    assert done.returncode == 0, done.stderr
    later = cli(tmp_path, "results", "erase", "--store", url, "--result", ids[1], "--yes")
    assert later.returncode == 0, later.stderr
    journal = live_journal()
    journal.unlink()  # lost with the disk, not put back
    # and the copy `store backup` wrote beside the archive not kept with it (a backup copied
    # off the host without it, or one an older appliance wrote)
    journal_copy_of(backup).unlink()

    restore = cli(tmp_path, "store", "restore", str(backup), "--store", url, "--force")
    check = cli(tmp_path, "results", "erasures", "--store", url, "--check-journal")

    assert restore.returncode == 0, restore.stderr
    note = (f"Note: the store holds 1 erasure(s) and release(s) that the erasure journal "
            f"{journal} has no line of")
    assert note in restore.stdout
    assert check.returncode == 0, check.stderr
    assert note in check.stderr
    journal.write_text("")  # an empty one made since: the same
    assert note in cli(tmp_path, "results", "erasures", "--store", url,
                       "--check-journal").stderr


def _line_dated(journal: Path, measurement_id: str, at: datetime) -> None:
    with journal.open("a") as file:
        file.write(json.dumps({"kind": "result", "id": measurement_id,
                               "at": iso_utc(at), "by": "mallory"}) + "\n")


def test_a_line_dated_in_the_future_is_refused_by_file_and_line_changing_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A line dated 2099 was taken and applied: an erasure at that time (a subject's results
    to come judged against it until then). Every reader of the journal now refuses it, exit 2,
    naming the file and line, the store unchanged; one dated within the clock skew (a minute
    ahead: another host's clock) is taken."""
    url, ids = _store_of_three(tmp_path)
    backup = tmp_path / "backup.file"
    assert in_process(tmp_path, "store", "backup", "--store", url, "--out",
                      str(backup)).returncode == 0
    first = in_process(tmp_path, "results", "erase", "--store", url, "--result", ids[0], "--yes")
    assert first.returncode == 0, first.stderr
    journal = live_journal()
    _line_dated(journal, ids[1], datetime(2099, 1, 1, tzinfo=UTC))
    erasures_before = query(url, "SELECT id, erased_at, kind, selector FROM erasures")

    check = in_process(tmp_path, "results", "erasures", "--store", url, "--check-journal")
    apply = in_process(tmp_path, "results", "erasures", "--store", url, "--apply-journal")
    restore = in_process(tmp_path, "store", "restore", str(backup), "--store", url, "--force")
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "erasure4"},
        "state_dir": str(tmp_path), "store": {"url": url, "erasure_journal": str(journal)}},
        environ={})
    stop = threading.Event()
    stop.set()  # it stops before it connects: no broker needed
    with caplog.at_level(logging.ERROR, logger="appliance.backoffice.service"):
        worker = run_backoffice(config, stop)

    named = (f"{journal}:2: not an erasure journal line (at is in the future: more than "
             "5 min after this host's clock")
    for done in (check, apply, restore):
        assert done.returncode == 2, done.stdout + done.stderr
        assert named in done.stderr
    assert worker == 2
    assert named in caplog.text
    assert _stored(url) == set(ids[1:])  # the restore refused before it touched the store
    assert query(url, "SELECT id, erased_at, kind, selector FROM erasures") == erasures_before

    journal.write_bytes(journal.read_bytes().splitlines(keepends=True)[0])
    _line_dated(journal, ids[1], datetime.now(UTC) + timedelta(minutes=1))
    apply = in_process(tmp_path, "results", "erasures", "--store", url, "--apply-journal")
    assert apply.returncode == 0, apply.stderr
    assert _stored(url) == set(ids[2:])
