"""``appliance store backup`` and ``store restore`` of a PostgreSQL store, with pg_dump and
pg_restore against the suite's server: throw-away databases, dropped afterwards. Without the
tools the commands say what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.store import open_existing_store, open_store
from tests.appliance_here import appliance_here
from tests.store_helpers import store_with_results

pytestmark = pytest.mark.postgres
SERVER = "postgres@127.0.0.1:5432"
ADMIN_URL = f"postgresql://{SERVER}/test"
REPO = Path(__file__).resolve().parents[2]
needs_tools = pytest.mark.skipif(shutil.which("pg_dump") is None, reason="no pg_dump here")


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql)


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """The URLs of two new, empty databases; dropped afterwards."""
    names = [f"backup_{which}_{uuid.uuid4().hex[:10]}" for which in ("live", "new")]
    for name in names:
        _admin(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://{SERVER}/{names[0]}", f"postgresql://{SERVER}/{names[1]}"
    finally:
        for name in names:
            _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _cli(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """``appliance ARGS`` in this process, from the checkout, with ``path`` as PATH where given
    (tests/appliance_here.py: a child costs ~0.4 CPU-s more, 2-6 commands a test)."""
    return appliance_here(list(args), REPO, None if path is None else {"PATH": path})


def _backed_up(live: str, tmp_path: Path, results: int) -> Path:
    """``results`` results of kiosk-1 stored in ``live``, then backed up: the archive."""
    store_with_results(live, {"kiosk-1": results}, "2026-12-01T10:00:00.000000Z")
    archive = tmp_path / "store.dump"
    assert _cli("store", "backup", "--store", live, "--out", str(archive)).returncode == 0
    return archive


def _ids(url: str) -> set[str]:
    store = open_existing_store(url)
    try:
        return {row[0] for row in store.query("SELECT measurement_id FROM results")}
    finally:
        store.close()


@needs_tools
def test_a_pg_dump_backup_restores_into_a_new_database_and_says_what_it_holds(
        databases: tuple[str, str], tmp_path: Path) -> None:
    live, new = databases
    ids = store_with_results(live, {"kiosk-1": 3, "kiosk-2": 2}, "2026-12-01T10:00:00.000000Z")
    archive = tmp_path / "store.dump"
    done = _cli("store", "backup", "--store", live, "--out", str(archive))
    assert done.returncode == 0, done.stderr
    assert "5 result(s) of 2 kiosk(s), the newest received 2026-12-01T10:00:00" in done.stdout
    assert os.stat(archive).st_mode & 0o077 == 0
    done = _cli("store", "restore", str(archive), "--store", new)
    assert done.returncode == 0, done.stderr
    assert "lab/kiosk-1: 3 result(s), newest received 2026-12-01T10:00:00" in done.stdout
    assert _ids(new) == ids


@needs_tools
def test_pg_restore_refuses_a_database_in_use_one_with_results_and_a_damaged_archive(
        databases: tuple[str, str], tmp_path: Path) -> None:
    live, new = databases
    archive = _backed_up(live, tmp_path, 2)
    newer = store_with_results(new, {"kiosk-9": 1}, "2026-12-05T08:00:00.000000Z")
    running = open_store(new)  # as a worker holds it
    try:
        done = _cli("store", "restore", str(archive), "--store", new, "--force")
    finally:
        running.close()
    assert done.returncode == 2
    assert "other session(s) connected" in done.stderr
    done = _cli("store", "restore", str(archive), "--store", new)
    assert done.returncode == 2
    assert "holds 1 result(s), the newest received 2026-12-05T08:00:00" in done.stderr
    assert _ids(new) == newer
    damaged = tmp_path / "damaged.dump"
    damaged.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    done = _cli("store", "restore", str(damaged), "--store", new, "--force")
    assert done.returncode == 2
    assert str(damaged) in done.stderr
    assert _ids(new) == newer
    sqlite_backup = tmp_path / "backoffice.sqlite3"
    sqlite_backup.write_bytes(b"SQLite format 3\x00" + bytes(4096))
    done = _cli("store", "restore", str(sqlite_backup), "--store", new, "--force")
    assert done.returncode == 2
    assert f"{sqlite_backup} is a SQLite store's backup" in done.stderr
    done = _cli("store", "restore", str(archive), "--store", new, "--force")
    assert done.returncode == 0, done.stderr
    assert _ids(new) == _ids(live)


def test_without_pg_dump_the_backup_says_what_to_install(
        databases: tuple[str, str], tmp_path: Path) -> None:
    live, _ = databases
    store_with_results(live, {"kiosk-1": 1}, "2026-12-01T10:00:00.000000Z")
    out = tmp_path / "store.dump"
    done = _cli("store", "backup", "--store", live, "--out", str(out), path=str(tmp_path))
    assert done.returncode == 2
    assert "pg_dump is not installed here" in done.stderr
    assert "postgresql-client" in done.stderr
    assert not out.exists()


def test_a_pg_dump_older_than_the_server_is_refused_saying_which_client_to_install(
        databases: tuple[str, str], tmp_path: Path) -> None:
    """pg_dump refuses a newer server: before, the backup failed with its words alone ("server
    version mismatch"), exit 1, every night under the timer."""
    import psycopg

    live, _ = databases
    store_with_results(live, {"kiosk-1": 1}, "2026-12-01T10:00:00.000000Z")
    with psycopg.connect(live) as conn:
        server = conn.info.server_version // 10000
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "pg_dump"  # one major version behind the server, as pg_dump answers then
    fake.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "pg_dump (PostgreSQL) '
                    f'{server - 1}.4"; exit 0; fi\necho "pg_dump: error: aborting because of '
                    'server version mismatch" >&2\nexit 1\n')
    fake.chmod(0o755)
    out = tmp_path / "store.dump"
    done = _cli("store", "backup", "--store", live, "--out", str(out),
                path=f"{tools}:{os.environ['PATH']}")
    assert done.returncode == 2, done.stderr
    assert (f"{fake} is of PostgreSQL {server - 1}, older than the " in done.stderr)
    assert f"server, PostgreSQL {server}, which it refuses to back up" in done.stderr
    assert f"install postgresql-client-{server} " in done.stderr
    assert not out.exists()
    fake.write_text(fake.read_text().replace(f"{server - 1}.4", f"{server}.1"))  # as new: used
    done = _cli("store", "backup", "--store", live, "--out", str(out),
                path=f"{tools}:{os.environ['PATH']}")
    assert done.returncode == 1
    assert "server version mismatch" in done.stderr


def test_the_password_reaches_pg_dump_in_its_environment_never_on_its_command_line(
        databases: tuple[str, str], tmp_path: Path) -> None:
    """Any user of the host reads a process's command line (/proc/PID/cmdline)."""
    live, _ = databases
    store_with_results(live, {"kiosk-1": 1}, "2026-12-01T10:00:00.000000Z")
    with_password = live.replace("postgres@", "postgres:s3cret-word@")  # trust: any password
    tools = tmp_path / "bin"
    tools.mkdir()
    seen = tmp_path / "seen"
    fake = tools / "pg_dump"  # records what it was given, then fails as pg_dump would
    fake.write_text(f'#!/bin/sh\necho "$@" > {seen}.args\necho "$PGPASSWORD" > {seen}.env\n'
                    'echo "pg_dump: error: connection failed" >&2\nexit 1\n')
    fake.chmod(0o755)
    out = tmp_path / "store.dump"
    done = _cli("store", "backup", "--store", with_password, "--out", str(out),
                path=f"{tools}:{os.environ['PATH']}")
    assert done.returncode == 1
    assert "pg_dump failed (exit 1): pg_dump: error: connection failed" in done.stderr
    assert "s3cret-word" not in Path(f"{seen}.args").read_text()
    assert Path(f"{seen}.env").read_text().strip() == "s3cret-word"
    assert "s3cret-word" not in done.stderr + done.stdout
    assert not out.exists()
    assert list(tmp_path.glob(".store.dump*")) == []


FOREIGN = {  # what another database's dump, or a tampered store's, may hold
    "trigger": ["CREATE TABLE loot (measurement_id TEXT)",
                "CREATE FUNCTION steal() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "INSERT INTO loot VALUES (NEW.measurement_id); RETURN NULL; END $$",
                "CREATE TRIGGER steal BEFORE INSERT ON results FOR EACH ROW "
                "EXECUTE FUNCTION steal()"],
    "another application": ["CREATE TABLE schema_migrations (version VARCHAR PRIMARY KEY)",
                            "INSERT INTO schema_migrations VALUES ('3')",
                            "CREATE TABLE users (id INTEGER)"],
}


@needs_tools
@pytest.mark.parametrize("kind", FOREIGN)
def test_an_archive_holding_code_or_another_application_s_tables_is_refused_naming_them(
        databases: tuple[str, str], tmp_path: Path, kind: str) -> None:
    """Before, the trigger (and its function) came back with the store and ran on the workers'
    first insert; another application's dump with a schema_migrations table was restored into
    the database, then its migration failed with a traceback."""
    import psycopg

    live, new = databases
    if kind == "trigger":
        store_with_results(live, {"kiosk-1": 2}, "2026-12-01T10:00:00.000000Z")
    with psycopg.connect(live, autocommit=True) as conn:
        for statement in FOREIGN[kind]:
            conn.execute(statement)
    archive = tmp_path / "handed-over.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={archive}", f"--dbname={live}"],
                   check=True)
    done = _cli("store", "restore", str(archive), "--store", new)
    assert done.returncode == 2, done.stdout + done.stderr
    named = "TRIGGER public results steal" if kind == "trigger" else "TABLE public users"
    assert f"{archive} holds " in done.stderr
    assert named in done.stderr
    with psycopg.connect(new) as conn:  # nothing restored
        assert conn.execute("SELECT COUNT(*) FROM information_schema.tables "
                            "WHERE table_schema = 'public'").fetchone()[0] == 0


@needs_tools
def test_a_server_that_does_not_answer_is_one_line_and_nothing_written(
        databases: tuple[str, str], tmp_path: Path) -> None:
    """Before, backup and restore ended in a traceback (StoreError) when the server could
    not be reached."""
    gone = "postgresql://postgres@127.0.0.1:1/none"  # nothing listens on port 1
    out = tmp_path / "store.dump"
    done = _cli("store", "backup", "--store", gone, "--out", str(out))
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "cannot connect to the PostgreSQL database" in done.stderr
    assert f"{out}: no backup was written under that name" in done.stderr
    assert list(tmp_path.iterdir()) == []
    live, _ = databases
    store_with_results(live, {"kiosk-1": 1}, "2026-12-01T10:00:00.000000Z")
    assert _cli("store", "backup", "--store", live, "--out", str(out)).returncode == 0
    done = _cli("store", "restore", str(out), "--store", gone)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "cannot connect to the PostgreSQL database" in done.stderr
    assert "nothing was changed" in done.stderr


@pytest.fixture(scope="module")
def genuine_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store's archive as `store backup` writes it (pg_dump --format=custom), 3 results."""
    name = f"backup_crafted_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql://{SERVER}/{name}"
        store_with_results(url, {"kiosk-1": 3}, "2026-12-01T10:00:00.000000Z")
        archive = tmp_path_factory.mktemp("crafted") / "genuine.dump"
        subprocess.run(["pg_dump", "--format=custom", f"--file={archive}", f"--dbname={url}"],
                       check=True)
        yield archive
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


LOOT = "CREATE TABLE public.loot AS SELECT * FROM pg_catalog.pg_authid;\n"
CRAFTED = {  # an entry of the archive, and the SQL it is made to carry besides its own
    "table": (("TABLE", "devices"), "defn", "CREATE ROLE {role} SUPERUSER LOGIN;\n"),
    "index": (("INDEX", "results_subject"), "defn", LOOT),
    "sequence": (("SEQUENCE", "erasures_id_seq"), "defn", LOOT),
    "constraint": (("CONSTRAINT", "results results_pkey"), "defn", LOOT),
    "copy": (("TABLE DATA", "results"), "copy_stmt", LOOT),
    "search path": (("SEARCHPATH", "SEARCHPATH"), "defn", LOOT),
}


@needs_tools
@pytest.mark.parametrize("kind", CRAFTED)
def test_an_archive_whose_entry_carries_sql_of_its_own_is_refused_and_none_of_it_runs(
        databases: tuple[str, str], genuine_archive: Path, tmp_path: Path, kind: str) -> None:
    """Before, `store restore` checked the archive's list (each entry's type and name, which
    are labels) and pg_restore ran each entry's text: a TABLE entry that also created a
    superuser role, an INDEX, a SEQUENCE, a CONSTRAINT, a COPY or the search path that copied
    pg_authid into a table of the store, under the store's login."""
    import psycopg

    from tests.pg_archive import Archive

    _, new = databases
    ids = store_with_results(new, {"kiosk-9": 2}, "2026-12-05T08:00:00.000000Z")
    role = f"backup_crafted_{uuid.uuid4().hex[:10]}"
    (desc, tag), field, extra = CRAFTED[kind]
    archive = Archive(genuine_archive)
    entry = archive.entry(desc, tag)
    entry.fields[field] = extra.format(role=role) + str(entry.fields[field])
    crafted = tmp_path / "crafted.dump"
    archive.write(crafted)
    try:
        done = _cli("store", "restore", str(crafted), "--store", new, "--force")
        with psycopg.connect(ADMIN_URL) as admin:
            role_made = admin.execute("SELECT COUNT(*) FROM pg_roles WHERE rolname = %s",
                                      (role,)).fetchone()[0]
    finally:
        _admin(f"DROP ROLE IF EXISTS {role}")
    assert done.returncode == 2, done.stdout + done.stderr
    named = f"{desc} {'-' if desc == 'SEARCHPATH' else 'public'} {tag}"
    assert f"{crafted} holds {named} whose SQL is not what the appliance's store" in done.stderr
    assert role_made == 0
    with psycopg.connect(new) as conn:
        assert conn.execute("SELECT to_regclass('public.loot') IS NULL").fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM pg_namespace WHERE nspname <> 'public' AND "
                            "nspname NOT LIKE 'pg!_%' ESCAPE '!' AND nspname <> "
                            "'information_schema'").fetchone()[0] == 0
    assert _ids(new) == ids  # the store as it was


@needs_tools
def test_the_crafting_keeps_a_genuine_archive_restorable_and_a_killed_restore_s_schema_goes(
        databases: tuple[str, str], genuine_archive: Path, tmp_path: Path) -> None:
    """The archive the test above crafts from, taken apart and put back unchanged, restores:
    the refusals are the crafted SQL's, not the crafting's. The schema a restore killed on
    the way left (a backup's rows: personal data) is dropped by the next."""
    import psycopg

    from tests.pg_archive import Archive

    _, new = databases
    store_with_results(new, {"kiosk-9": 2}, "2026-12-05T08:00:00.000000Z")
    with psycopg.connect(new, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA appliance_restoring_0123456789abcdef")
        conn.execute("CREATE TABLE appliance_restoring_0123456789abcdef.results (x text)")
    rewritten = tmp_path / "rewritten.dump"
    Archive(genuine_archive).write(rewritten)
    assert rewritten.read_bytes() == genuine_archive.read_bytes()
    done = _cli("store", "restore", str(rewritten), "--store", new, "--force")
    assert done.returncode == 0, done.stderr
    assert "lab/kiosk-1: 3 result(s), newest received 2026-12-01T10:00:00" in done.stdout
    assert len(_ids(new)) == 3
    with psycopg.connect(new) as conn:
        assert conn.execute("SELECT COUNT(*) FROM pg_namespace WHERE nspname LIKE "
                            "'appliance!_restoring!_%' ESCAPE '!'").fetchone()[0] == 0


@needs_tools
def test_an_archive_of_an_older_schema_version_is_compared_with_that_version_and_taken_forward(
        databases: tuple[str, str], tmp_path: Path) -> None:
    """The product's tables are made at the archive's version (its migrations up to it), the
    rows loaded there, then the later migrations run."""
    from appliance.backoffice.store import Store
    from appliance.backoffice.store_schema import LATEST_VERSION

    live, new = databases
    older = Store(live)
    try:
        older.migrate(through=LATEST_VERSION - 5)
    finally:
        older.close()
    archive = tmp_path / "older.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={archive}", f"--dbname={live}"],
                   check=True)
    done = _cli("store", "restore", str(archive), "--store", new)
    assert done.returncode == 0, done.stderr
    assert f"(backed up at schema version {LATEST_VERSION - 5})" in done.stdout
    assert f"schema version {LATEST_VERSION}" in done.stdout


@needs_tools
def test_an_archive_of_a_store_whose_slides_the_migration_keyed_restores_with_its_kept_rows(
        databases: tuple[str, str], tmp_path: Path) -> None:
    """That migration names the slides' key after the table it built (``..._keyed_pkey``) and
    keeps slides naming no job in pathology_slides_orphaned: the product's schema it is
    compared with is made the same way."""
    import psycopg

    from appliance.pathology.jobstore import PathologyStore

    live, new = databases
    older = PathologyStore(live)
    try:
        older.migrate()
        older.make_unkeyed_pathology()
        older.write("INSERT INTO pathology_slides VALUES ('gone', 0, 's', 'p', 'l', 0.5, 0.5, "
                    "0.1, 3, 1.0, '', '', '', '', '', 'cpu', 'srv', 'now')", [()])
        older.migrate_pathology()
    finally:
        older.close()
    archive = tmp_path / "keyed.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={archive}", f"--dbname={live}"],
                   check=True)
    done = _cli("store", "restore", str(archive), "--store", new)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(new) as conn:
        assert conn.execute("SELECT job_id FROM pathology_slides_orphaned").fetchall() == [
            ("gone",)]


@needs_tools
def test_rows_that_end_early_and_carry_sql_after_are_refused_not_run_nor_cut_short(
        databases: tuple[str, str], tmp_path: Path) -> None:
    """Rows are COPY data: before, a line ``\\.`` put before a table's rows ended its COPY at
    the server, which dropped every row after it (exit 0, the results gone); the SQL after it
    never ran there, and does not now: the archive is refused, naming what it holds."""
    import psycopg

    from tests.pg_archive import Archive

    live, new = databases
    store_with_results(live, {"kiosk-1": 3}, "2026-12-01T10:00:00.000000Z")
    plain = tmp_path / "plain.dump"
    subprocess.run(["pg_dump", "--format=custom", "--compress=0", f"--file={plain}",
                    f"--dbname={live}"], check=True)
    archive = Archive(plain)
    archive.insert_in_rows(int(archive.entry("TABLE DATA", "results").fields["dump_id"] or 0),
                           b"\\.\n" + LOOT.encode())
    crafted = tmp_path / "crafted.dump"
    archive.write(crafted)
    done = _cli("store", "restore", str(crafted), "--store", new)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{crafted} holds, among its rows, 'CREATE TABLE public.loot AS" in done.stderr
    with psycopg.connect(new) as conn:
        assert conn.execute("SELECT to_regclass('public.loot') IS NULL").fetchone()[0]
        assert conn.execute("SELECT to_regclass('public.results') IS NULL").fetchone()[0]


@needs_tools
def test_a_login_without_create_on_its_database_is_refused_naming_the_grant(
        databases: tuple[str, str], tmp_path: Path) -> None:
    live, new = databases
    archive = _backed_up(live, tmp_path, 2)
    database = new.rsplit("/", 1)[1]
    login = f"backup_nocreate_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE ROLE {login} LOGIN")
    try:  # it may make tables in the schema public, not a schema of its own
        import psycopg

        with psycopg.connect(new, autocommit=True) as db:
            db.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {login}")
        url = new.replace("postgres@", f"{login}@", 1)
        done = _cli("store", "restore", str(archive), "--store", url)
        assert done.returncode == 2, done.stderr
        assert f'the login "{login}" may not create a schema' in done.stderr
        assert f'GRANT CREATE ON DATABASE "{database}" TO "{login}"' in done.stderr
        assert "nothing was changed" in done.stderr
        _admin(f"GRANT CREATE ON DATABASE {database} TO {login}")
        done = _cli("store", "restore", str(archive), "--store", url)
        assert done.returncode == 0, done.stderr
        assert _ids(new) == _ids(live)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        _admin(f"DROP ROLE IF EXISTS {login}")


@needs_tools
def test_a_restore_over_results_says_they_are_dropped_with_no_copy_kept(
        databases: tuple[str, str], tmp_path: Path) -> None:
    live, new = databases
    archive = _backed_up(live, tmp_path, 2)
    store_with_results(new, {"kiosk-9": 3}, "2026-12-05T08:00:00.000000Z")
    done = _cli("store", "restore", str(archive), "--store", new)
    assert done.returncode == 2
    assert "which drops them and keeps no copy" in done.stderr  # SQLite keeps it aside
    assert "`appliance store backup --out FILE` first keeps one" in done.stderr
    done = _cli("store", "restore", str(archive), "--store", new, "--force")
    assert done.returncode == 0, done.stderr
    assert ("the 3 result(s), the newest received 2026-12-05T08:00:00.000000Z it held before "
            "are dropped, no copy kept") in done.stdout
    assert _ids(new) == _ids(live)


@needs_tools
def test_a_restore_says_to_add_again_the_console_users_and_tokens_made_since(
        databases: tuple[str, str], tmp_path: Path) -> None:
    live, _new = databases
    archive = _backed_up(live, tmp_path, 1)
    password = tmp_path / "password"
    password.write_text("a-password-of-length\n")
    done = _cli("console", "user", "add", "alice", "--store", live, "--password-file",
                str(password))
    assert done.returncode == 0, done.stderr
    done = _cli("store", "restore", str(archive), "--store", live, "--force")
    assert done.returncode == 0, done.stderr
    assert ("the console users and API tokens added since are not in it: add them again"
            in done.stdout)
    assert _cli("console", "user", "list", "--store", live).stdout.count("alice") == 0


@needs_tools
def test_a_restore_refused_for_sessions_connected_names_the_program_holding_each(
        databases: tuple[str, str], tmp_path: Path) -> None:
    live, new = databases
    archive = _backed_up(live, tmp_path, 1)
    running = open_store(new)  # as a worker holds it: its session is named by its program
    try:
        done = _cli("store", "restore", str(archive), "--store", new, "--force")
    finally:
        running.close()
    assert done.returncode == 2
    assert "has 1 other session(s) connected ('appliance" in done.stderr
    assert f"(pid {os.getpid()})' as postgres from 127.0.0.1" in done.stderr


@needs_tools
def test_a_missing_database_is_refused_saying_what_a_restore_needs_and_a_backup_names_it(
        genuine_archive: Path, tmp_path: Path) -> None:
    """Before, both hinted `appliance store migrate` (exit 1), where README's restore step makes
    the database with `createdb --owner`, and a backup of a store that is not there has
    nothing to make."""
    name = f"backup_missing_{uuid.uuid4().hex[:10]}"
    login = f"backup_owner_{uuid.uuid4().hex[:10]}"
    url = f"postgresql://{login}@127.0.0.1:5432/{name}"
    _admin(f"CREATE ROLE {login} LOGIN")
    try:
        done = _cli("store", "restore", str(genuine_archive), "--store", url)
        assert done.returncode == 2, done.stderr
        assert f"the PostgreSQL database postgresql://{login}@127.0.0.1:5432/{name} does not " \
               "exist: a restore needs a database that is there, empty" in done.stderr
        assert f'which the login "{login}" owns or may create schemas in' in done.stderr
        assert f"as user postgres run `createdb --owner {login} {name}`" in done.stderr
        assert "nothing was changed" in done.stderr
        assert "creates it where the role may create databases" not in done.stderr
        out = tmp_path / "store.dump"
        done = _cli("store", "backup", "--store", url, "--out", str(out))
        assert done.returncode == 2, done.stderr
        assert f"/{name} does not exist, so there is no store there to back up" in done.stderr
        assert f"{out}: no backup was written under that name" in done.stderr
        assert "store migrate" not in done.stderr
        assert list(tmp_path.iterdir()) == []
        _admin(f"CREATE DATABASE {name} OWNER {login}")  # what the refusal says to run
        done = _cli("store", "restore", str(genuine_archive), "--store", url)
        assert done.returncode == 0, done.stderr
        assert len(_ids(url)) == 3
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _admin(f"DROP ROLE IF EXISTS {login}")
