"""Read commands never change the store: on an empty database or an older schema they exit 2
naming the database and `appliance store migrate`, and leave it as it was; writers migrate.
SQLite and PostgreSQL (a throw-away database of its own per test)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, Store, StoreError, open_store
from appliance.backoffice.store_schema import LATEST_VERSION
from appliance.backoffice.storeerrors import STORE_ERRORS
from appliance.cli import main
from appliance.console.auth import password_hash
from appliance.pathology.jobstore import open_pathology_store
from appliance.synthetic import fleet as fleetsim
from appliance.updates.operations import init_repository

# the migrations a version-5 store runs
_SINCE_6 = ", ".join(str(version) for version, _, _ in MIGRATIONS[5:])

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
OLDER = MIGRATIONS[:5]  # a store as the code before migration 6 left it
RESULT = fleetsim.sample_result(random.Random(1), "lab", "k1", 1)


def _read_commands(tmp_path: Path) -> list[list[str]]:
    repo = init_repository(tmp_path / "repo")
    return [["fleet"], ["fleet", "--json"], ["results", "query"],
            ["results", "export", "--out", str(tmp_path / "out.csv")],
            ["results", "dead-letters"], ["report", "cohort", "--out", str(tmp_path / "report")],
            ["console", "reference", "--out", str(tmp_path / "ranges.json")],
            ["models", "status", "--repo", str(repo.dir)]]


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    import psycopg

    name = f"test_read_only_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _pg_tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()
    return sorted(row[0] for row in rows)


def _older_store(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as before_6:
        before_6.setattr("appliance.backoffice.store_schema.MIGRATIONS", OLDER)
        open_store(url).close()


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.postgres
def test_read_commands_create_nothing_in_an_empty_postgres_database(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in _read_commands(tmp_path):
        assert main([*command, "--store", pg_database]) == 2, command
        err = capsys.readouterr().err
        assert f"PostgreSQL database {pg_database} has no back-office tables" in err, command
        assert "`appliance store migrate` (with the same --store or --config)" in err
    assert _pg_tables(pg_database) == []
    for written in ("report", "out.csv", "ranges.json"):
        assert not (tmp_path / written).exists()


@pytest.mark.postgres
def test_an_older_postgres_schema_is_refused_until_store_migrate_runs(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _older_store(pg_database, monkeypatch)
    tables = _pg_tables(pg_database)
    for command in _read_commands(tmp_path):
        assert main([*command, "--store", pg_database]) == 2, command
        err = capsys.readouterr().err
        assert f"PostgreSQL database {pg_database} is at schema version 5; this appliance " \
               f"reads version {LATEST_VERSION}" in err, command
        assert "run `appliance store migrate`" in err
    assert _pg_tables(pg_database) == tables
    store = Store(pg_database)
    assert store.schema_version() == 5
    store.close()
    assert main(["store", "migrate", "--store", pg_database]) == 0
    assert f"applied migration(s) {_SINCE_6}; schema version {LATEST_VERSION}" in (
        capsys.readouterr().out)
    assert "public.pathology_jobs" in _pg_tables(pg_database)  # the pathology server's too
    assert main(["results", "query", "--store", pg_database]) == 0
    assert capsys.readouterr().out == "no results match\n"
    assert main(["store", "migrate", "--store", pg_database]) == 0
    assert "already up to date" in capsys.readouterr().out


@pytest.mark.postgres
def test_a_password_in_the_postgres_url_is_not_printed(
    pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with_password = pg_database.replace("postgres@", "postgres:hunter2@")  # trust auth: unused
    assert main(["fleet", "--store", with_password]) == 2
    err = capsys.readouterr().err
    assert "PostgreSQL database postgresql://postgres:***@127.0.0.1:5432/" in err
    assert "hunter2" not in err


def test_read_commands_leave_an_empty_sqlite_file_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    empty = folder / "backoffice.sqlite3"
    empty.write_bytes(b"")
    for command in _read_commands(tmp_path):
        assert main([*command, "--store", f"sqlite:///{empty}"]) == 2, command
        assert f"SQLite store {empty} has no back-office tables" in capsys.readouterr().err
    assert list(folder.iterdir()) == [empty]
    assert empty.stat().st_size == 0


def test_an_older_sqlite_schema_is_refused_unchanged_then_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "state"
    url = f"sqlite:///{folder / 'backoffice.sqlite3'}"
    _older_store(url, monkeypatch)
    before = _files(folder)
    for command in _read_commands(tmp_path):
        assert main([*command, "--store", url]) == 2, command
        assert "is at schema version 5" in capsys.readouterr().err
    assert _files(folder) == before  # not a byte changed, no WAL files left behind
    assert main(["store", "migrate", "--store", url]) == 0
    assert f"applied migration(s) {_SINCE_6};" in capsys.readouterr().out
    assert main(["fleet", "--store", url]) == 0


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_writers_still_migrate_an_older_store(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = (f"sqlite:///{tmp_path / 'backoffice.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("pg_database"))
    _older_store(url, monkeypatch)
    older = Store(url)  # opened without migrating, as the older code left it
    older.write("INSERT INTO console_users (name, password_hash, role, created_at) "  # as it did
                "VALUES (?, ?, ?, ?)", [("ops", password_hash("a long enough password"),
                                         "viewer", "2026-11-26T00:00:00.000000Z")])
    older.close()
    assert main(["console", "token", "create", "ops", "--store", url]) == 0
    assert len(capsys.readouterr().out.strip()) >= 32  # the token
    store = Store(url)
    assert store.schema_version() == LATEST_VERSION
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_a_read_only_store_refuses_every_write(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path / 'backoffice.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("pg_database"))
    open_store(url).close()
    reader = Store(url, read_only=True)
    try:
        with pytest.raises(STORE_ERRORS, match=r"read.?only"):
            reader.write("INSERT INTO devices (site, device_id, last_seen) VALUES (?, ?, ?)",
                         [("lab", "k1", "2026-11-26T00:00:00.000000Z")])
        assert reader.devices() == []
        with pytest.raises(STORE_ERRORS, match=r"read.?only"):
            reader.migrate()
    finally:
        reader.close()


def test_a_read_only_store_makes_no_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "backoffice.sqlite3"
    with pytest.raises(StoreError, match=re.escape(f"cannot open SQLite store {missing}")):
        Store(f"sqlite:///{missing}", read_only=True)
    assert not missing.parent.exists()


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A store left by a stopped back office (no WAL files), on a tmpfs then remounted read-only
    (root can mount one): a backup, a snapshot, another user's folder."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                          capture_output=True, check=False)
    assert done.returncode == 0, f"cannot mount a tmpfs (needs root): {done.stderr!r}"
    try:
        store = open_store(f"sqlite:///{disk / 'backoffice.sqlite3'}")
        store.write_batch(Batch(results=[result_row(RESULT, iso_utc(RESULT.captured_at),
                                                    RESULT.to_json().decode())]), 100)
        store.close()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_read_commands_read_a_store_whose_folder_cannot_be_written(
    read_only_disk: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{read_only_disk / 'backoffice.sqlite3'}"
    assert sorted(p.name for p in read_only_disk.iterdir()) == ["backoffice.sqlite3"]
    assert main(["results", "query", "--store", url]) == 0
    assert f"{RESULT.measurement_id}" in capsys.readouterr().out
    assert main(["fleet", "--store", url]) == 0
    assert main(["store", "migrate", "--store", url]) == 2
    assert f"its folder {read_only_disk} cannot be written here" in capsys.readouterr().err


def _lost_store_commands(tmp_path: Path) -> list[list[str]]:
    return [["fleet"], ["results", "query"], ["results", "dead-letters"],
            ["results", "retry", "--dry-run"],
            ["results", "export", "--out", str(tmp_path / "out.csv"), "--force"],
            ["results", "export", "--format", "parquet", "--out", str(tmp_path / "out.pq")],
            ["report", "cohort", "--out", str(tmp_path / "report")],
            ["console", "reference", "--out", str(tmp_path / "ranges.json")]]


@pytest.mark.postgres
def test_a_postgres_server_lost_mid_command_is_one_line_naming_it(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The database goes away after the command opened it (a restart, a failover): the command
    says so in one line, exit 1, and leaves the file it was replacing as it was."""
    import psycopg

    open_store(pg_database).close()
    opened_then_lost = _opened_then_lost(pg_database, psycopg)
    monkeypatch.setattr("appliance.backoffice.store.open_existing_store", opened_then_lost)
    (tmp_path / "out.csv").write_text("the last export\n")
    for command in _lost_store_commands(tmp_path):
        assert main([*command, "--store", pg_database]) == 1, command
        err = capsys.readouterr().err
        assert f"{' '.join(command[:2])}: the PostgreSQL database {pg_database} failed: " in err
        assert ("terminating connection due to administrator command" in err
                or "server closed the connection unexpectedly" in err), err
        assert "Traceback" not in err
    assert (tmp_path / "out.csv").read_text() == "the last export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@pytest.mark.postgres
def test_console_user_and_token_commands_name_a_postgres_server_lost_mid_command(
    pg_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`console user list` and `console token list` ended in a psycopg traceback."""
    import psycopg

    open_store(pg_database).close()
    monkeypatch.setattr("appliance.backoffice.store.open_existing_store",
                        _opened_then_lost(pg_database, psycopg))
    for kind in ("user", "token"):
        assert main(["console", kind, "list", "--store", pg_database]) == 1, kind
        err = capsys.readouterr().err
        assert f"console {kind} list: the PostgreSQL database {pg_database} failed: " in err
        assert "Traceback" not in err


def _opened_then_lost(url: str, psycopg: Any) -> Any:
    """``open_existing_store`` whose connection the server ends before it is returned."""
    from appliance.backoffice.store import open_existing_store

    def opened(*args: Any, **kwargs: Any) -> Store:
        store = open_existing_store(*args, **kwargs)
        _end_connections(url, psycopg)
        return store

    return opened


def _end_connections(url: str, psycopg: Any) -> None:
    """The server ends every connection to the database ``url`` names (a restart)."""
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (url.rsplit("/", 1)[1],))


@pytest.mark.postgres
def test_a_postgres_store_holds_one_batch_of_an_export_in_memory(pg_database: str) -> None:
    """The rows of an export (or a report) stay on the server until they are fetched, 1,000 at
    a time, so exporting millions of results takes no memory for them (a plain psycopg cursor
    took the whole answer at once: 200,000 results, 290 MB). Seen from outside: once the first
    row is read, the server going away ends the reading; all rows at once would all be read."""
    import psycopg

    rng = random.Random(2)
    results = [fleetsim.sample_result(rng, "lab", "k1", i) for i in range(2500)]
    store = open_store(pg_database)
    store.write_batch(Batch(results=[result_row(r, iso_utc(r.captured_at), r.to_json().decode())
                                     for r in results]), 100)
    rows = store.select_results(("measurement_id",))
    next(rows)
    _end_connections(pg_database, psycopg)
    with pytest.raises(STORE_ERRORS):
        list(rows)
    store.close()


@pytest.mark.postgres
def test_an_export_ended_by_sigterm_leaves_no_partial_file(
    tmp_path: Path, pg_database: str
) -> None:
    """`timeout 60 appliance results export ...`, or systemd stopping a timer's job: the
    hidden file the export was writing goes with it (it stayed, as large as the export had
    got, one more each time), and the export it was replacing stays whole."""
    import psycopg

    open_store(pg_database).close()
    out = tmp_path / "results.csv"
    out.write_text("the last export\n")
    with psycopg.connect(pg_database) as blocker:  # the export waits, its file begun
        blocker.execute("LOCK TABLE results IN ACCESS EXCLUSIVE MODE")
        export = subprocess.Popen(
            [sys.executable, "-m", "appliance", "results", "export", "--store", pg_database,
             "--out", str(out), "--force"], stderr=subprocess.PIPE)
        try:
            _wait_for_a_second_file(tmp_path, export)
            export.send_signal(signal.SIGTERM)
            assert export.wait(timeout=60) == 128 + signal.SIGTERM
        finally:
            export.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    assert out.read_text() == "the last export\n"


def _wait_for_a_second_file(folder: Path, process: subprocess.Popen[bytes]) -> None:
    """Until the export's hidden file appears beside the one it replaces (or it ended)."""
    while len(list(folder.iterdir())) < 2:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)


@pytest.mark.parametrize(("url", "said"), [
    ("mysql://db/x", "store migrate: store url 'mysql://db/x': use sqlite:///PATH or "
                     "postgresql://..."),
    # no server on port 1 (a missing database on a server is created: test_backoffice_store_migrate)
    pytest.param("postgresql://postgres@127.0.0.1:1/test",
                 "store migrate: cannot connect to the PostgreSQL database "
                 "postgresql://postgres@127.0.0.1:1/test: ", marks=pytest.mark.postgres),
])
def test_store_migrate_names_a_store_it_cannot_use_once_and_as_what_it_is(
    url: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", "migrate", "--store", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(said)
    assert err.count(url) == 1


def test_store_migrate_tells_the_version_a_newer_appliance_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The back office rolled back after a newer one migrated its store: migrate says so
    rather than 'already up to date; schema version' this code's."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    store = open_store(url)
    newer = LATEST_VERSION + 1
    store.close()
    with sqlite3.connect(tmp_path / "backoffice.sqlite3") as db:
        db.execute("INSERT INTO schema_migrations VALUES (?, 'a newer appliance', '')", (newer,))
    assert main(["store", "migrate", "--store", url]) == 0
    out = capsys.readouterr().out
    assert f"at schema version {newer}, newer than this appliance's {LATEST_VERSION}" in out
    assert "up to date" not in out


def test_results_retry_on_a_newer_store_is_refused_for_what_it_would_write_past(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results retry` refuses a store a newer appliance migrated, as the account commands do,
    but it said the newer one kept account rules there (disabled users, token expiry) that it
    could not enforce: no reason of a retry's. It names what it cannot know, changing nothing."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    open_store(url).close()
    newer = LATEST_VERSION + 1
    with sqlite3.connect(tmp_path / "backoffice.sqlite3") as db:
        db.execute("INSERT INTO schema_migrations VALUES (?, 'a newer appliance', '')", (newer,))
    before = (tmp_path / "backoffice.sqlite3").read_bytes()
    assert main(["results", "retry", "--store", url]) == 2
    err = capsys.readouterr().err
    assert f"at schema version {newer}, newer than this appliance's {LATEST_VERSION}: a newer " \
           "appliance may keep tables and rules there that this one does not know, so it " \
           "changes nothing" in err
    assert "account" not in err
    assert (tmp_path / "backoffice.sqlite3").read_bytes() == before


def test_a_relative_sqlite_store_is_the_config_files_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`store: {url: sqlite:///store.db}` was the working folder's store.db: `store migrate`
    from the config's folder, then a read from another one, said there was no store there.
    Now both use the file beside the config, and the commands name it."""
    folder, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    config = folder / "config.yaml"
    config.write_text("store:\n  url: sqlite:///store.db\n")
    monkeypatch.chdir(folder)
    assert main(["store", "migrate", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"SQLite store {folder / 'store.db'}: applied")
    monkeypatch.chdir(elsewhere)
    store = open_store(f"sqlite:///{folder / 'store.db'}")
    store.write_batch(Batch(results=[
        result_row(RESULT, iso_utc(RESULT.captured_at), RESULT.to_json().decode())]), 100)
    store.close()
    assert main(["results", "query", "--config", str(config)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("1 result(s), newest first")
    assert main(["results", "export", "--config", str(config), "--out", "out.csv"]) == 0
    assert (f"exported 1 result(s) as csv to out.csv from the SQLite store "
            f"{folder / 'store.db'}") in capsys.readouterr().err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["out.csv"]


@pytest.mark.parametrize("kind", ["folder", "pipe"])
def test_a_store_path_that_is_a_folder_or_a_pipe_is_refused_by_writers_as_by_readers(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`store migrate --store sqlite:///DIR` said "unable to open database file; check the
    path", and on a device SQLite made DEVICE-journal beside it (/dev/null-journal in /dev);
    the read commands already named a folder as such."""
    place = tmp_path / "store"
    if kind == "folder":
        place.mkdir()
        said = f"{place} is a folder, not a store file: name the SQLite file in it"
    else:
        os.mkfifo(place)
        said = f"{place} is not a regular file (a device, a pipe or a socket), so no store file"
    url = f"sqlite:///{place}"
    assert main(["store", "migrate", "--store", url]) == 2
    assert capsys.readouterr().err.startswith(f"store migrate: {said}")
    assert main(["results", "retry", "--store", url]) == 2  # a writer
    assert capsys.readouterr().err.startswith(f"results retry: store error: {said}")
    assert main(["fleet", "--store", url]) == 2  # a reader
    assert capsys.readouterr().err.startswith(f"fleet: store error: {said}")
    with pytest.raises(StoreError, match=re.escape(said)):
        open_store(url)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


@pytest.mark.parametrize("schema", ["new", "up to date"])
def test_store_migrate_on_a_store_another_program_holds_locked_says_so_as_writers_do(
    schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`store migrate` said only 'store migrate: SQLite store P: database is locked' (neither
    what it could not do nor what to do), where a writer says why and to try again later."""
    import appliance.backoffice.store as store_module

    path = tmp_path / "store.sqlite3"
    if schema == "up to date":
        open_store(f"sqlite:///{path}").close()
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    url = f"sqlite:///{path}"
    holder = sqlite3.connect(path, isolation_level=None)  # WAL: others still read
    try:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN EXCLUSIVE")
        assert main(["store", "migrate", "--store", url]) == 2
        said = capsys.readouterr().err
        assert main(["results", "retry", "--store", url]) == 2  # a writer, for comparison
        writer_said = capsys.readouterr().err
    finally:
        holder.close()
    locked = (f"the SQLite store {path}: database is locked (another program held it locked "
              "longer than the busy timeout: try again once that program is done)\n")
    assert said == f"store migrate: cannot migrate {locked}"
    assert writer_said.endswith(locked)
    assert main(["store", "migrate", "--store", url]) == 0  # once that program is done


def _schema_text_not_utf8(store_file: Path) -> None:
    """A store whose schema no longer parses and names a table with a byte that is no UTF-8
    (a damaged sector, say): SQLite's error message quotes the name, which Python cannot
    decode."""
    open_store(f"sqlite:///{store_file}").close()
    data = bytearray(store_file.read_bytes())
    data[data.index(b"tableschema_migrations") + len(b"tablesch")] = 0xAA
    data[data.index(b"CREATE TABLE schema_migrations") + len(b"CREATE TABL")] = ord("X")
    store_file.write_bytes(bytes(data))
    for leftover in store_file.parent.glob(f"{store_file.name}-*"):
        leftover.unlink()


@pytest.mark.parametrize("damage", ["not a database", "schema not UTF-8"])
def test_a_damaged_store_file_is_one_line_saying_so_and_stays_as_it_was(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`store migrate` and `results retry` on a store whose schema is no UTF-8 text ended in a
    UnicodeDecodeError traceback (the readers said "'utf-8' codec can't decode byte 0xaa"), and
    a file that is no database was "file is not a database; check the path"."""
    store_file = tmp_path / "store.sqlite3"
    if damage == "not a database":
        store_file.write_text("the minutes of the last meeting\n")
    else:
        _schema_text_not_utf8(store_file)
    before = store_file.read_bytes()
    url = f"sqlite:///{store_file}"
    for command, said in ((["store", "migrate"], "store migrate"), (["results", "retry"],
                          "results retry: store error"), (["fleet"], "fleet: store error")):
        assert main([*command, "--store", url]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"{said}: cannot open SQLite store {store_file}: "), err
        assert err.endswith("; the file is damaged or is no SQLite database: restore the store "
                            "from a backup (appliance store restore BACKUP --force), or name "
                            "another (--store, the config's store.url)\n"), err
    assert store_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["store.sqlite3"]


def test_another_applications_sqlite_database_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`store migrate` (and every writer) added the back office's tables to any SQLite file,
    another application's database given by mistake included, and turned it to WAL mode."""
    other = tmp_path / "crm.db"
    with sqlite3.connect(other) as conn:  # a Rails-style marker of the same name is not ours
        conn.executescript("CREATE TABLE users (id INTEGER); CREATE TABLE orders (id INTEGER);"
                           "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY);")
    conn.close()
    before = other.read_bytes()
    url = f"sqlite:///{other}"
    said = (f"SQLite store {other} holds another application's tables: orders, "
            "schema_migrations, users, and none of the back office's; nothing was changed. "
            "Name the back office's store file (--store, the config's store.url)\n")
    assert main(["store", "migrate", "--store", url]) == 2
    assert capsys.readouterr().err == f"store migrate: {said}"
    assert main(["results", "retry", "--store", url]) == 2
    assert capsys.readouterr().err == f"results retry: store error: {said}"
    with pytest.raises(StoreError, match="holds another application's tables"):
        open_store(url)
    assert other.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["crm.db"]


def test_a_store_the_pathology_server_made_first_is_the_back_offices(tmp_path: Path) -> None:
    """The pathology server's tables are the appliance's: the back office migrates beside
    them, and an empty database file is a new store."""
    first = tmp_path / "shared.sqlite3"
    open_pathology_store(f"sqlite:///{first}").close()
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    for made in (first, empty):
        store = open_store(f"sqlite:///{made}")
        try:
            assert store.schema_version() == LATEST_VERSION
        finally:
            store.close()
