"""``appliance store backup`` and ``store restore`` of a SQLite store: a backup taken while a
real back office ingests from a real mosquitto (its own port) holds every result committed
before it; files no restore may use are refused naming them; the live store is never written
over; a full disk (a file-size limit in the child) leaves no part of a backup under its name."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice import store_restore, store_schema
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.store import open_store
from appliance.backoffice.store_backup import BackupFailedError, back_up_sqlite
from appliance.backoffice.store_restore import restore_sqlite
from appliance.backoffice.store_schema import LATEST_VERSION
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker
from tests.appliance_here import appliance_here
from tests.store_helpers import store_with_results

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, limit_bytes: int | None = None,
         process: bool = False) -> subprocess.CompletedProcess[str]:
    """``appliance ARGS`` from the checkout: in this process (tests/appliance_here.py: a child
    costs ~0.4 CPU-s more), or in a child under a file-size limit when given, or with
    ``process`` where the test is about the process (a pipe whose open could hang it, a
    backup beside a live writer)."""
    if limit_bytes is None and not process:
        return appliance_here(list(args), REPO)

    def limited() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, cwd=REPO, preexec_fn=limited, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _ids(path: Path) -> set[str]:
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT measurement_id FROM results")}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "backoffice.sqlite3"
    path.parent.mkdir()
    store_with_results(f"sqlite:///{path}", {"kiosk-1": 3, "kiosk-2": 2},
                       "2026-12-01T10:00:00.000000Z")
    return path


def test_a_backup_taken_while_results_are_ingested_restores_every_result_committed_before_it(
        private_broker: PrivateBroker, tmp_path: Path) -> None:
    prefix = f"test/backup-{uuid.uuid4().hex[:8]}"
    live = tmp_path / "live.sqlite3"
    config = config_from_mapping({
        "mqtt": {"host": private_broker.host, "port": private_broker.port,
                 "topic_prefix": prefix},
        "state_dir": str(tmp_path), "backoffice": {"client_id": "backup-w"}}, environ={})
    writer = open_store(f"sqlite:///{live}")
    worker = IngestWorker(config, writer)
    worker.start()
    assert worker.subscribed.wait(10)
    rng, published, failed = random.Random(3), [], []
    backup_done = threading.Event()

    def publish(count: int) -> set[str]:
        start = len(published)
        results = [fleet.sample_result(rng, "lab", f"kiosk-{n % 4}", n)
                   for n in range(start, start + count)]
        fleet.publish_messages(private_broker.host, private_broker.port, [
            (f"{prefix}/lab/{r.device_id}/result", r.to_json()) for r in results])
        published.extend(r.measurement_id for r in results)
        return {r.measurement_id for r in results}

    def publish_until_backup_done() -> None:
        try:
            while not backup_done.is_set():
                publish(20)
        except Exception as exc:  # said by the test, not lost with the thread
            failed.append(exc)

    publisher = threading.Thread(target=publish_until_backup_done)
    publisher.start()
    try:
        assert wait_until(lambda: len(_ids(live)) >= 100, 60), failed  # ingest under way
        committed_before = _ids(live)
        done = _cli("store", "backup", "--store", f"sqlite:///{live}",
                    "--out", str(tmp_path / "nightly.sqlite3"), process=True)
        backup_done.set()
        publisher.join()
        after = publish(20)  # sent once the backup was taken
        assert wait_until(lambda: set(published) <= _ids(live), 60), failed
    finally:
        backup_done.set()
        publisher.join()
        worker.stop()
        writer.close()
    assert not failed
    assert done.returncode == 0, done.stderr
    assert "kiosk(s)" in done.stdout
    assert "lab/kiosk-0:" in done.stdout
    stored_at_end = _ids(live)
    restored = tmp_path / "restored" / "backoffice.sqlite3"
    restored.parent.mkdir()
    back = _cli("store", "restore", str(tmp_path / "nightly.sqlite3"),
                "--store", f"sqlite:///{restored}")
    assert back.returncode == 0, back.stderr
    in_backup = _ids(restored)
    assert committed_before <= in_backup <= stored_at_end
    assert not after & in_backup
    assert f"It holds {len(in_backup)} result(s) of 4 kiosk(s)" in back.stdout
    assert "not in it" in back.stdout


def test_restore_says_what_the_store_holds_and_an_older_backup_is_migrated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    older = tmp_path / "older.sqlite3"  # as the appliance before the last migration made it
    with monkeypatch.context() as patch:
        patch.setattr(store_schema, "MIGRATIONS", MIGRATIONS[:-1])
        ids = store_with_results(f"sqlite:///{older}", {"kiosk-1": 3, "kiosk-2": 2},
                          "2026-12-01T10:00:00.000000Z")
    out = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{older}", "--out", str(out)
                ).returncode == 0
    assert os.stat(out).st_mode & 0o077 == 0  # personal data: its owner's only
    target = tmp_path / "new" / "backoffice.sqlite3"
    target.parent.mkdir()
    done = _cli("store", "restore", str(out), "--store", f"sqlite:///{target}")
    assert done.returncode == 0, done.stderr
    assert f"backed up at schema version {LATEST_VERSION - 1}" in done.stdout
    assert f"schema version {LATEST_VERSION}" in done.stdout
    assert "lab/kiosk-1: 3 result(s), newest received 2026-12-01T10:00:00" in done.stdout
    assert "lab/kiosk-2: 2 result(s)" in done.stdout
    assert _ids(target) == ids


def test_a_backup_is_never_written_over_the_store_or_an_earlier_backup(
        store: Path, tmp_path: Path) -> None:
    before = store.read_bytes()
    for own in (store, Path(f"{store}-wal")):
        done = _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(own),
                    "--force")
        assert done.returncode == 2
        assert "never over the store" in done.stderr
    assert store.read_bytes() == before
    earlier = tmp_path / "earlier.sqlite3"
    earlier.write_bytes(b"an earlier backup")
    done = _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(earlier))
    assert done.returncode == 2
    assert "pass --force" in done.stderr
    assert earlier.read_bytes() == b"an earlier backup"


def test_a_full_disk_leaves_no_part_of_a_backup_under_its_name(
        store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    previous = folder / "nightly.sqlite3"
    previous.write_bytes(b"last night's backup")
    running = open_store(f"sqlite:///{store}")  # the back office runs: its -shm is there
    try:
        done = _cli("store", "backup", "--store", f"sqlite:///{store}", "--out",
                    str(previous), "--force", limit_bytes=64 * 1024)  # the copy cannot fit
    finally:
        running.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert str(previous) in done.stderr
    assert previous.read_bytes() == b"last night's backup"
    assert sorted(p.name for p in folder.iterdir()) == ["nightly.sqlite3"]  # no temporaries


@pytest.mark.parametrize("kind", ["damaged", "foreign", "newer", "no store", "text",
                                  "pg_dump"])
def test_a_file_no_restore_may_use_is_refused_naming_it(
        store: Path, tmp_path: Path, kind: str) -> None:
    bad = tmp_path / f"{kind.replace(' ', '-')}.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(bad)
                ).returncode == 0
    _spoil(bad, kind)
    target = tmp_path / "target.sqlite3"
    done = _cli("store", "restore", str(bad), "--store", f"sqlite:///{target}")
    assert done.returncode == 2, done.stdout
    assert str(bad) in done.stderr
    assert {"damaged": "damaged", "foreign": "another application's tables",
            "newer": "newer than this appliance's", "no store": "holds no back-office store",
            "text": "no SQLite database",
            "pg_dump": "is a pg_dump archive, a PostgreSQL store's backup"}[kind] in done.stderr
    assert not target.exists()


def _spoil(path: Path, kind: str) -> None:
    """Make the backup at ``path`` one of the files a restore refuses."""
    if kind == "damaged":  # a page in the middle overwritten, the header whole
        data = bytearray(path.read_bytes())
        data[len(data) // 2:len(data) // 2 + 4096] = os.urandom(4096)
        path.write_bytes(bytes(data))
    elif kind == "text":
        path.write_text("results,device\n1,kiosk-1\n")
    elif kind == "pg_dump":  # a PostgreSQL store's backup offered to a SQLite store
        path.write_bytes(b"PGDMP\x01\x0e\x00" + os.urandom(4096))
    else:
        with sqlite3.connect(path) as conn:
            if kind == "newer":
                conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 'x')",
                             (LATEST_VERSION + 1,))
            else:
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                            "'table' AND name NOT LIKE 'sqlite%'").fetchall():
                    conn.execute(f"DROP TABLE {name}")
                if kind == "foreign":
                    conn.execute("CREATE TABLE invoices (id INTEGER)")
                else:
                    conn.execute("CREATE TABLE schema_migrations (version INTEGER, "
                                 "description TEXT, applied_at TEXT)")


def test_restore_refuses_a_store_in_use_and_one_with_results_without_force(
        store: Path, tmp_path: Path) -> None:
    backup = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(backup)
                ).returncode == 0
    newer = store_with_results(f"sqlite:///{store}", {"kiosk-3": 1}, "2026-12-05T08:00:00.000000Z")
    running = open_store(f"sqlite:///{store}")  # as a worker holds it
    try:
        done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{store}", "--force")
    finally:
        running.close()
    assert done.returncode == 2
    assert "open in another program" in done.stderr
    done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{store}")
    assert done.returncode == 2
    assert "holds 6 result(s), the newest received 2026-12-05T08:00:00" in done.stderr
    assert "newer than the backup's" in done.stderr
    assert "--force" in done.stderr
    assert newer <= _ids(store)
    done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{store}", "--force")
    assert done.returncode == 0, done.stderr
    (aside,) = store.parent.glob("backoffice.sqlite3.replaced-*[0-9Z]")
    assert newer <= _ids(aside)  # the replaced store is kept whole
    assert not newer & _ids(store)
    assert len(_ids(store)) == 5


def test_a_copy_of_a_live_store_with_its_log_beside_is_refused_not_read_without_it(
        store: Path, tmp_path: Path) -> None:
    running = open_store(f"sqlite:///{store}")  # the back office runs: its log holds rows
    try:
        store_with_results(f"sqlite:///{store}", {"kiosk-3": 1}, "2026-12-05T08:00:00.000000Z")
        copy = tmp_path / "copied.sqlite3"
        copy.write_bytes(store.read_bytes())
        Path(f"{copy}-wal").write_bytes(Path(f"{store}-wal").read_bytes())
    finally:
        running.close()
    assert Path(f"{copy}-wal").stat().st_size > 0
    target = tmp_path / "target.sqlite3"
    done = _cli("store", "restore", str(copy), "--store", f"sqlite:///{target}")
    assert done.returncode == 2, done.stdout
    assert f"{copy} has a write-ahead log beside it" in done.stderr
    assert not target.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives files to another user")
def test_a_restore_run_as_root_gives_the_store_to_its_folder_s_owner(
        store: Path, tmp_path: Path) -> None:
    """Run as root (a restore typed without runuser), the store was root's, 0600: the workers,
    user appliance, could not open it."""
    backup = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(backup)
                ).returncode == 0
    folder = tmp_path / "appliance"
    folder.mkdir()
    os.chown(folder, 4321, 4322)  # as StateDirectory= makes it for the units' user
    target = folder / "backoffice.sqlite3"
    done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{target}")
    assert done.returncode == 0, done.stderr
    assert (target.stat().st_uid, target.stat().st_gid) == (4321, 4322)


def test_keep_writes_each_backup_under_its_time_and_removes_the_oldest_beyond_n(
        store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    other = folder / "backoffice-handmade.sqlite3"  # not of the pattern: never touched
    other.write_bytes(b"kept by hand")
    oldest = folder / "backoffice-20261201T030000.000000Z.sqlite3"  # an earlier night's
    oldest.write_bytes(b"the oldest")
    written = []
    for _ in range(3):
        done = _cli("store", "backup", "--store", f"sqlite:///{store}",
                    "--out", str(folder / "backoffice.sqlite3"), "--keep", "2")
        assert done.returncode == 0, done.stderr
        (name,) = re.findall(r"to (\S+): ", done.stdout)
        written.append(Path(name))
    assert len(set(written)) == 3
    assert sorted(folder.iterdir()) == sorted([other, *written[1:]])
    assert other.read_bytes() == b"kept by hand"
    assert f"removed 1 older backup(s) beyond the 2 newest: {written[0].name}" in done.stdout
    assert _ids(written[-1]) == _ids(store)



def test_keep_rotates_a_sqlite_store_s_backups_by_time_with_a_dump_of_that_pattern_beside(
        store: Path, tmp_path: Path) -> None:
    """A SQLite store's backups keep --out's suffix and an existing folder of them rotates as
    before (a PostgreSQL store's are named .dump); a .dump beside them is no SQLite store's
    backup and is left."""
    folder = tmp_path / "backups"
    folder.mkdir()
    older = [folder / f"backoffice-2026110{day}T030000.000000Z.sqlite3" for day in (1, 2, 3)]
    for path in older:
        path.write_bytes(b"an earlier night's")
    dump = folder / "backoffice-20261104T030000.000000Z.dump"
    dump.write_bytes(b"PGDMP")
    done = _cli("store", "backup", "--store", f"sqlite:///{store}",
                "--out", str(folder / "backoffice.sqlite3"), "--keep", "2")
    assert done.returncode == 0, done.stderr
    (name,) = re.findall(r"to (\S+): ", done.stdout)
    assert name.endswith(".sqlite3")
    assert sorted(folder.iterdir()) == sorted([Path(name), older[-1], dump])


def test_a_rename_refused_at_the_end_names_where_both_stores_are(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(backup)
                ).returncode == 0
    replace = os.replace

    def refused(source: Any, target: Any) -> None:
        if str(source).endswith(".restoring"):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(target))
        replace(source, target)

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(BackupFailedError) as refusal:
        restore_sqlite(backup, store, force=True)
    (copy,) = store.parent.glob(".backoffice.sqlite3.*.restoring")
    assert f"it is whole in {copy}" in str(refusal.value)
    (aside,) = store.parent.glob("backoffice.sqlite3.replaced-*[0-9Z]")
    assert _ids(copy) == _ids(aside) == _ids(backup)


HOSTILE = {  # what a handed-over backup may carry, and what the refusal says
    "trigger": ("CREATE TRIGGER steal AFTER INSERT ON results BEGIN DELETE FROM results; END",
                "holds trigger steal"),
    "view": ("CREATE VIEW every_result AS SELECT * FROM results", "holds view every_result"),
    "table": ("CREATE TABLE loot (measurement_id TEXT)", "holds table loot"),
    "index": ("CREATE UNIQUE INDEX one_a_subject ON results (measurement_id, site)",
              "holds index one_a_subject"),
    "schema lie": ("DROP TABLE erasures", "lacks table erasures"),
    "constraint": ("REBUILD erasures WITH CHECK (0)", "holds table erasures defined otherwise"),
}


def _rebuilt_refusing_every_insert(conn: sqlite3.Connection, table: str) -> None:
    """``table`` made again as it was, its indexes too, with a CHECK no row passes."""
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    indexes = [row[0] for row in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,))]
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"{sql[:sql.rindex(')')]}, CHECK (0))")
    for index in indexes:
        conn.execute(index)


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_backup_carrying_code_or_a_schema_not_the_product_s_is_refused(
        store: Path, tmp_path: Path, kind: str) -> None:
    """Before, the restored store kept the backup's triggers, views and tables: a trigger on
    results ran on the workers' first insert."""
    backup = tmp_path / "handed-over.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(backup)
                ).returncode == 0
    statement, said = HOSTILE[kind]
    with closing(sqlite3.connect(backup)) as conn:
        if statement.startswith("REBUILD "):
            _rebuilt_refusing_every_insert(conn, statement.split()[1])
        else:
            conn.execute(statement)
        conn.commit()
    target = tmp_path / "target" / "backoffice.sqlite3"
    target.parent.mkdir()
    done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{target}")
    assert done.returncode == 2, done.stdout
    assert f"{backup} {said}" in done.stderr
    assert list(target.parent.iterdir()) == []  # nothing made, no copy left


def test_the_backup_s_temporary_is_its_owner_s_only_from_its_start(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the temporary was made as open() makes a file (0644 under umask 022), then
    0600: a reader that opened it meanwhile kept a descriptor reading the whole backup."""
    modes: list[int] = []
    chmod = os.chmod

    def recording(path: Any, mode: int, **kwargs: Any) -> None:
        modes.append(mode)
        chmod(path, mode, **kwargs)

    monkeypatch.setattr(os, "chmod", recording)
    out = tmp_path / "b.sqlite3"
    back_up_sqlite(store, out)
    assert [mode for mode in modes if mode & 0o077] == []
    assert out.stat().st_mode & 0o777 == 0o600


def test_keep_never_removes_the_backup_just_written_when_the_clock_went_back(
        store: Path, tmp_path: Path) -> None:
    """Before, backups named while the clock ran ahead sorted newer than tonight's, which was
    removed as the oldest right after it was written, the command saying it was done."""
    folder = tmp_path / "backups"
    folder.mkdir()
    ahead = [folder / f"backoffice-2099010{day}T030000.000000Z.sqlite3" for day in (1, 2)]
    for path in ahead:
        path.write_bytes(b"named while the clock ran ahead")
    done = _cli("store", "backup", "--store", f"sqlite:///{store}",
                "--out", str(folder / "backoffice.sqlite3"), "--keep", "2")
    assert done.returncode == 0, done.stderr
    (name,) = re.findall(r"to (\S+): ", done.stdout)
    assert _ids(Path(name)) == _ids(store)
    assert sorted(folder.iterdir()) == sorted([Path(name), ahead[1]])


KILLED_BEFORE_THE_LAST_RENAME = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from appliance.backoffice.store_restore import restore_sqlite
replace = os.replace
def killed(source, target):
    if str(source).endswith(".restoring"):  # the copy whole, about to take the store's name
        os.kill(os.getpid(), signal.SIGKILL)
    replace(source, target)
os.replace = killed
restore_sqlite(Path(sys.argv[1]), Path(sys.argv[2]), force=True)
"""


def test_a_restore_killed_before_its_last_rename_leaves_the_store_at_its_name(
        store: Path, tmp_path: Path) -> None:
    """Before, the store was renamed aside first: killed then (kill -9), no store was at its
    name, and a worker started next made an empty one there."""
    backup = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(backup)
                ).returncode == 0
    ids = store_with_results(f"sqlite:///{store}", {"kiosk-3": 1}, "2026-12-05T08:00:00.000000Z")
    before = _ids(store)
    done = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_LAST_RENAME, str(backup),
                           str(store)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == -9, done.stderr
    assert ids <= _ids(store) == before  # whole, at its name
    done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{store}", "--force")
    assert done.returncode == 0, done.stderr  # and a restore run again puts the backup there
    assert _ids(store) == _ids(backup)


@pytest.mark.parametrize("end", ["", "-wal", "-journal"])
def test_out_naming_a_file_of_the_store_by_another_path_is_refused(
        store: Path, tmp_path: Path, end: str) -> None:
    """Before, `--out DIR/../DIR/NAME-wal` was written where the store's write-ahead log is
    (none there at the time), where SQLite looks for the store's log, and the
    backup's own read connection removed it as it closed, the command saying it was done."""
    link = tmp_path / "link"
    link.symlink_to(store.parent)
    for out in (store.parent / ".." / store.parent.name / f"{store.name}{end}",
                link / f"{store.name}{end}"):
        done = _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(out),
                    "--force")
        assert done.returncode == 2, done.stdout
        assert f"{out} is the store's own file" in done.stderr
    assert sorted(path.name for path in store.parent.iterdir()) == [store.name]


def test_a_backup_copied_in_the_middle_of_a_write_is_refused_naming_its_journal(
        store: Path, tmp_path: Path) -> None:
    """Before, the file was read without its hot journal and refused as damaged ("take an
    older backup"), though opening it once rolls it back whole."""
    source = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(source)
                ).returncode == 0
    copy = tmp_path / "copied.sqlite3"
    with closing(sqlite3.connect(source, isolation_level=None)) as conn:
        conn.execute("PRAGMA cache_size=1")  # pages reach the file before the commit
        conn.execute("BEGIN")
        conn.execute("DELETE FROM results")
        copy.write_bytes(source.read_bytes())
        Path(f"{copy}-journal").write_bytes(Path(f"{source}-journal").read_bytes())
        conn.execute("ROLLBACK")
    target = tmp_path / "target.sqlite3"
    done = _cli("store", "restore", str(copy), "--store", f"sqlite:///{target}")
    assert done.returncode == 2, done.stdout
    assert f"{copy} has a rollback journal beside it" in done.stderr
    assert not target.exists()
    with closing(sqlite3.connect(copy)) as conn:  # rolled back as the refusal says
        conn.execute("PRAGMA quick_check")
    done = _cli("store", "restore", str(copy), "--store", f"sqlite:///{target}")
    assert done.returncode == 0, done.stderr
    assert _ids(target) == _ids(store)


@pytest.mark.parametrize(("offered", "said"), [
    ("/dev/zero", "is not a regular file (a device, a pipe or a socket)"),
    ("fifo", "is not a regular file (a device, a pipe or a socket)"),
    ("folder", "is a folder")])
def test_a_device_a_pipe_or_a_folder_offered_as_a_backup_is_refused_saying_what_it_is(
        tmp_path: Path, offered: str, said: str) -> None:
    """Before, each was "no such backup file", though it was there."""
    backup = Path(offered) if offered.startswith("/") else tmp_path / offered
    if offered == "fifo":
        os.mkfifo(backup)
    elif offered == "folder":
        backup.mkdir()
    target = tmp_path / "target.sqlite3"
    for store in (f"sqlite:///{target}", "postgresql://appliance@127.0.0.1:1/none"):
        done = _cli("store", "restore", str(backup), "--store", store, process=True)
        assert done.returncode == 2, done.stdout
        assert f"{backup} {said}, so no backup" in done.stderr
    assert not target.exists()


def test_two_restores_in_one_second_keep_both_stores_they_replaced(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the second restore's NAME.replaced-TIME was renamed over the first's: the store
    the first one replaced (the newer results) was gone."""
    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            return cls(2026, 12, 7, 3, 0, 0, tzinfo=tz)

    monkeypatch.setattr(store_restore, "datetime", Frozen)
    backup = tmp_path / "b.sqlite3"
    back_up_sqlite(store, backup)
    newer = store_with_results(f"sqlite:///{store}", {"kiosk-3": 1}, "2026-12-05T08:00:00.000000Z")
    first = restore_sqlite(backup, store, force=True).replaced
    second = restore_sqlite(backup, store, force=True).replaced
    assert first is not None
    assert second is not None
    assert newer <= _ids(first)  # kept whole, under a name of its own
    assert first != second
    assert _ids(second) == _ids(backup)


def test_a_store_of_every_older_schema_restores_past_the_schema_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check compares a migrated copy with a fresh store: stores migrated from any older
    version (tables rebuilt and renamed on the way) must read as the fresh one."""
    for version in range(1, len(MIGRATIONS)):
        older = tmp_path / f"v{version}.sqlite3"
        with monkeypatch.context() as patch:
            patch.setattr(store_schema, "MIGRATIONS", MIGRATIONS[:version])
            open_store(f"sqlite:///{older}").close()
        done = restore_sqlite(older, tmp_path / f"restored-v{version}.sqlite3", force=False)
        assert done.backup.schema_version == version
        assert done.restored.schema_version == LATEST_VERSION


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_out_a_folder_or_a_pipe_is_refused_before_anything_is_copied(
        store: Path, tmp_path: Path, kind: str) -> None:
    """Before, a folder failed only after the whole copy, and either was exit 1 (a failure
    on the way) where nothing was wrong but the name."""
    out = tmp_path / "out"
    out.mkdir() if kind == "folder" else os.mkfifo(out)
    done = _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(out), "--force",
                process=True)
    assert done.returncode == 2, done.stderr
    assert f"{out} is " in done.stderr
    assert "--out FILE" in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "state"]


@pytest.mark.parametrize("keep", [False, True])
def test_out_in_a_folder_not_there_is_refused_naming_it(store: Path, tmp_path: Path,
                                                        keep: bool) -> None:
    """Before, it was a traceback (exit 1): README's own command names
    /var/lib/appliance-backup, which only the timer's unit makes, at its first run."""
    folder = tmp_path / "appliance-backup"
    args = ["--keep", "7"] if keep else ["--force"]
    done = _cli("store", "backup", "--store", f"sqlite:///{store}",
                "--out", str(folder / "backoffice.sqlite3"), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"store backup: no folder {folder} for the backup: make it")
    assert not folder.exists()


@pytest.mark.parametrize("keep", [False, True])
def test_the_temporaries_killed_backups_left_are_removed_by_the_next_one(
        store: Path, tmp_path: Path, keep: bool) -> None:
    """Before, each backup killed on the way (kill -9, the unit's timeout) left its hidden
    copy of the store beside --out for good: personal data no erasure reaches."""
    folder = tmp_path / "backups"
    folder.mkdir()
    name = "backoffice-20261201T030000.000000Z.sqlite3" if keep else "backoffice.sqlite3"
    killed, running, fresh = (folder / f".{name}.{part}.tmp.sqlite3"
                              for part in ("k1ll3d_0", "runn1ng_", "fr3sh_00"))
    for path in (killed, running, fresh):
        path.write_bytes(b"part of a backup")
    for path in (killed, running):
        os.utime(path, (1, 1))  # last written long ago
    Path(f"{killed}-journal").write_bytes(b"its journal")
    other = folder / ".backoffice.sqlite3.handmade"  # not a temporary's name: never touched
    other.write_bytes(b"kept")
    holder = os.open(running, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a backup that runs holds its temporary
    try:
        args = ["--keep", "3"] if keep else []
        done = _cli("store", "backup", "--store", f"sqlite:///{store}",
                    "--out", str(folder / "backoffice.sqlite3"), *args)
    finally:
        os.close(holder)
    assert done.returncode == 0, done.stderr
    assert f"removed 1 temporary file(s) that killed backups left: {killed.name}" in done.stdout
    assert not killed.exists()
    assert not Path(f"{killed}-journal").exists()
    assert running.exists()
    assert fresh.exists()
    assert other.exists()


def _killed_restore(backup: Path, store: Path) -> Path:
    """Run a restore of ``backup`` to ``store`` killed (kill -9) just before its last rename;
    the copy it left beside the store, made to look last written long ago."""
    done = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_LAST_RENAME, str(backup),
                           str(store)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == -9, done.stderr
    (left,) = store.parent.glob(f".{store.name}.*.restoring")
    for path in store.parent.glob(f"{left.name}*"):
        os.utime(path, (1, 1))
    return left


def test_the_copies_killed_restores_left_are_removed_by_the_next_one(
        store: Path, tmp_path: Path) -> None:
    """Before, each restore killed on the way left its hidden copy of the backup beside the
    store for good: personal data no erasure reaches."""
    backup = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(backup)
                ).returncode == 0
    killed = _killed_restore(backup, store)
    running, fresh = (store.parent / f".{store.name}.{part}.restoring"
                      for part in ("runn1ng_", "fr3sh_00"))
    for path in (running, fresh):
        path.write_bytes(b"part of a restore")
    os.utime(running, (1, 1))
    other = store.parent / f".{store.name}.handmade"  # not a copy's name: never touched
    other.write_bytes(b"kept")
    holder = os.open(running, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a restore that runs holds its copy
    try:
        done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{store}", "--force")
    finally:
        os.close(holder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"removed 1 copy(ies) of a backup that killed restores left: {killed.name}\n")
    assert not list(store.parent.glob(f"{killed.name}*"))  # its -wal, -shm, -journal too
    assert running.exists()
    assert fresh.exists()
    assert other.exists()


def test_a_restore_holds_its_copy_until_it_takes_the_store_s_name(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock that keeps a later restore from removing the copy of one still running."""
    backup = tmp_path / "b.sqlite3"
    back_up_sqlite(store, backup)
    held_at_rename = []
    replace = os.replace

    def checked(source: Any, target: Any) -> None:
        if str(source).endswith(".restoring"):
            probe = os.open(source, os.O_RDONLY)
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held_at_rename.append(False)
            except BlockingIOError:
                held_at_rename.append(True)
            finally:
                os.close(probe)
        replace(source, target)

    monkeypatch.setattr(os, "replace", checked)
    restore_sqlite(backup, store, force=True)
    assert held_at_rename == [True]


def test_a_backup_the_restoring_user_cannot_read_is_refused_naming_it(
        store: Path, tmp_path: Path) -> None:
    """Before, a traceback (PermissionError): README's restore runs as user appliance, and a
    backup copied back onto a new disk by root is root's, 0600."""
    backup = tmp_path / "b.sqlite3"
    back_up_sqlite(store, backup)
    target = tmp_path / "restored" / "backoffice.sqlite3"
    target.parent.mkdir()
    command = [sys.executable, "-m", "appliance", "store", "restore", str(backup),
               "--store", f"sqlite:///{target}"]
    if os.geteuid() == 0:  # root reads any file: its right to is taken from the child
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (util-linux) to run the restore without root's rights")
        os.chown(backup, 65534, 65534)
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    else:
        backup.chmod(0)
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"store restore: {backup} cannot be read by the user ")
    assert "chown" in done.stderr
    assert list(target.parent.iterdir()) == []


def test_a_restore_during_a_backup_is_refused_naming_the_backup_s_unit(
        store: Path, tmp_path: Path) -> None:
    """Before, the refusal named the workers, the console and the pathology server to stop,
    all stopped already, and not the nightly backup that held the store open."""
    backup = tmp_path / "b.sqlite3"
    back_up_sqlite(store, backup)
    with closing(sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)) as reading:
        reading.execute("SELECT COUNT(*) FROM results").fetchone()  # as a backup reads it
        done = _cli("store", "restore", str(backup), "--store", f"sqlite:///{store}", "--force")
    assert done.returncode == 2
    assert "open in another program" in done.stderr
    assert "appliance-store-backup" in done.stderr


def test_the_store_a_restore_replaces_is_kept_whole_with_nothing_beside_it(
        store: Path, tmp_path: Path) -> None:
    """Before, the replaced store's emptied write-ahead log was kept beside it, 0 bytes, as
    NAME.replaced-TIME-wal. Here the store was left by a writer killed with rows only in its
    log (its files copied while it ran): they are folded into the store kept aside."""
    backup = tmp_path / "b.sqlite3"
    back_up_sqlite(store, backup)
    crashed = tmp_path / "crashed" / "backoffice.sqlite3"
    crashed.parent.mkdir()
    running = open_store(f"sqlite:///{store}")  # the back office runs: its log holds rows
    try:
        newer = store_with_results(f"sqlite:///{store}", {"kiosk-3": 1},
                                   "2026-12-05T08:00:00.000000Z")
        for end in ("", "-wal"):
            Path(f"{crashed}{end}").write_bytes(Path(f"{store}{end}").read_bytes())
    finally:
        running.close()
    assert Path(f"{crashed}-wal").stat().st_size > 0
    for target in (store, crashed):
        replaced = restore_sqlite(backup, target, force=True).replaced
        assert replaced is not None
        assert sorted(target.parent.iterdir()) == [target, replaced]
        assert newer <= _ids(replaced)
        assert _ids(target) == _ids(backup)


def test_the_fleet_resend_is_asked_for_the_config_s_store_and_a_check_aside_is_told_apart(
        tmp_path: Path, store: Path) -> None:
    out = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(out)
                ).returncode == 0
    config = tmp_path / "backoffice.yaml"
    config.write_text(f"store:\n  url: sqlite:///{store}\n")
    check = tmp_path / "check.sqlite3"
    aside = _cli("store", "restore", str(out), "--store", f"sqlite:///{check}",
                 "--config", str(config))
    assert aside.returncode == 0, aside.stderr
    assert "only checks the backup, the kiosks need not send anything again" in aside.stdout
    assert f"names another store, SQLite store {store}" in aside.stdout
    for end in ("", "-wal", "-shm"):
        Path(f"{store}{end}").unlink(missing_ok=True)  # the disk lost
    own = _cli("store", "restore", str(out), "--config", str(config))
    assert own.returncode == 0, own.stderr
    assert "need not send" not in own.stdout
    assert "appliance fleet resend --since 2026-12-01T09:45:00Z " in own.stdout


def test_the_fleet_resend_a_restore_prints_names_the_config_the_restore_read(
        tmp_path: Path, store: Path) -> None:
    """Before, it named --config /etc/appliance/backoffice.yaml whatever the restore read, so on
    any other host (the demo's store, a config elsewhere) the line copied as printed said
    "config file not found"."""
    out = tmp_path / "b.sqlite3"
    assert _cli("store", "backup", "--store", f"sqlite:///{store}", "--out", str(out)
                ).returncode == 0
    config = tmp_path / "my config.yaml"
    config.write_text(f"store:\n  url: sqlite:///{store}\n")
    done = _cli("store", "restore", str(out), "--config", str(config), "--force")
    assert done.returncode == 0, done.stderr
    resend = done.stdout.strip().splitlines()[-1]
    assert resend.endswith(
        "appliance fleet resend --since 2026-12-01T09:45:00Z --password-file rollout.password "
        f"--config '{config}'")
    assert "/etc/appliance" not in done.stdout
