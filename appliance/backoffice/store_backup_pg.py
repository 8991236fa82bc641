"""Backing up a PostgreSQL store, and reading an archive for its restore, with PostgreSQL's
own tools, ``pg_dump`` and ``pg_restore`` (Debian's ``postgresql-client``; its major version
at least the server's).

1. The backup is ``pg_dump --format=custom`` of the store's database, run on a snapshot this
   module exports from a REPEATABLE READ transaction (``pg_export_snapshot``): the dump and the
   counts the command prints are the same moment, while the workers go on committing. It is
   written as SQLite's backup is (outfile.replaced_when_complete: a hidden file, owner-only,
   flushed, renamed), after ``pg_restore --list`` read it whole.
2. The password never goes on a command line, which other users of the host can read
   (``/proc/PID/cmdline``): the tools get it in their environment (``PGPASSWORD``).
3. A restore (restore_pg.py) first reads the archive's list here: a damaged or foreign file is
   refused, naming it, and so is one listing what a store's dump never holds (a function, a
   trigger, a view, another application's table), and its schema version (the
   ``schema_migrations`` rows).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.backoffice.backup_rotation import held_while_written
from appliance.backoffice.sqlitefile import OWN_TABLES
from appliance.backoffice.store_backup import (
    OWNER_ONLY,
    BackupError,
    BackupFailedError,
)
from appliance.backoffice.store_contents import StoreContents, contents_of
from appliance.backoffice.storeurl import store_name
from appliance.logsafe import escape_controls
from appliance.outfile import OutputError, replaced_when_complete

TOOLS_PACKAGE = "postgresql-client"
# what pg_dump lists for a store's tables, the longer before the shorter that begins it
STORE_ENTRIES = ("TABLE DATA", "TABLE", "INDEX", "FK CONSTRAINT", "CONSTRAINT",
                 "SEQUENCE OWNED BY", "SEQUENCE SET", "SEQUENCE", "DEFAULT", "SCHEMA", "ACL",
                 "COMMENT")
STORE_TABLES = OWN_TABLES | {"pathology_slides_orphaned"}  # the last kept by a migration
TOOL_ERROR_LINES = 5  # of a tool's error output, in the command's message


def tool(name: str) -> str:
    """The path of ``pg_dump`` or ``pg_restore``; a BackupError saying what to install."""
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed here, and a PostgreSQL store is backed up "
                          f"and restored with it: install {TOOLS_PACKAGE} (apt-get install "
                          f"{TOOLS_PACKAGE}; its major version at least the server's)")
    return found


def _refuse_older_tool(pg_dump: str, server_version: int, url: str) -> None:
    """A BackupError when ``pg_dump`` is of an older major version than the server, which it
    refuses to dump ("server version mismatch", once each night under the timer)."""
    said = subprocess.run([pg_dump, "--version"], capture_output=True, text=True,
                          check=False).stdout
    found = re.search(r"\s(\d+)(?:\.\d+)*", said)
    server_major = server_version // 10000  # 150020: 15; 90624: 9 (its 9.6 then reads as 9)
    if found is None or int(found.group(1)) >= server_major:
        return
    raise BackupError(f"{pg_dump} is of PostgreSQL {found.group(1)}, older than the "
                      f"{store_name(url)}'s server, PostgreSQL {server_major}, which it refuses "
                      f"to back up: install {TOOLS_PACKAGE}-{server_major} (PostgreSQL's own "
                      "apt repository, apt.postgresql.org, where the host's release has none); "
                      "nothing was written")


def conninfo_and_env(url: str) -> tuple[str, dict[str, str]]:
    """The URL as libpq's connection string without its password, and an environment that
    carries the password (``PGPASSWORD``) to the tool."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

    params = {key: str(value) for key, value in conninfo_to_dict(url).items()}
    env = dict(os.environ)
    if (password := params.pop("password", None)) is not None:
        env["PGPASSWORD"] = password
    return make_conninfo(**params), env


def run_tool(args: list[str], url: str, what: str, failure: type[BackupError] = BackupError
         ) -> str:
    """Run a tool; its standard output, or ``failure`` with the end of its errors."""
    _, env = conninfo_and_env(url)
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = " ".join(done.stderr.strip().splitlines()[-TOOL_ERROR_LINES:])
        raise failure(f"{what}: {Path(args[0]).name} failed (exit {done.returncode}): "
                          f"{said or 'no message'}")
    return done.stdout


def back_up_postgres(url: str, out: Path) -> StoreContents:
    """``pg_dump`` the store's database to ``out`` (see the module's steps); what it holds."""
    pg_dump = tool("pg_dump")
    conninfo, _ = conninfo_and_env(url)
    with server_failures(f"{out}: no backup was written under that name"):
        conn = connection(url, missing=(
            ", so there is no store there to back up: check the database's name in --store or "
            "the config's store.url (`psql --list` as user postgres lists the server's "
            f"databases); {out}: no backup was written under that name"))
        try:
            _refuse_older_tool(pg_dump, conn.info.server_version, url)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            try:
                with replaced_when_complete(out, mode=OWNER_ONLY) as temp, \
                        held_while_written(temp):
                    run_tool([pg_dump, "--format=custom", "--no-owner", f"--snapshot={snapshot}",
                          f"--file={temp}", f"--dbname={conninfo}"], url,
                         f"{out}: no backup was written under that name", BackupFailedError)
                    _archive_list(temp, url, out)
                    contents = _contents(conn)  # before the rename: a server gone, no backup
            except OutputError as exc:
                raise BackupFailedError(str(exc)) from exc
            return contents
        finally:
            conn.close()


@contextmanager
def server_failures(what: str) -> Iterator[None]:
    """A server that cannot be reached, refuses or goes away (StoreError, psycopg's errors) as
    a BackupFailedError naming ``what`` was left, where it was a traceback."""
    import psycopg  # noqa: PLC0415  (the backoffice extra)

    from appliance.backoffice.storeerrors import StoreError  # noqa: PLC0415

    try:
        yield
    except StoreError as exc:
        raise BackupFailedError(f"{exc}; {what}") from exc
    except psycopg.Error as exc:
        raise BackupFailedError(f"the PostgreSQL server failed ({exc}); {what}") from exc


def _archive_list(archive: Path, url: str, named: Path) -> str:
    """``pg_restore --list`` of an archive, refused when it is no store's dump."""
    listing = run_tool([tool("pg_restore"), "--list", str(archive)], url,
                   f"{named} is damaged or is no pg_dump archive")
    if "TABLE DATA" not in listing or " schema_migrations " not in listing:
        raise BackupError(f"{named} is a pg_dump archive of another database, no back-office "
                          "store (no schema_migrations table)")
    return listing


def _refuse_foreign_entries(listing: str, archive: Path) -> None:
    """A BackupError naming the entries of an archive's list that a store's dump never holds:
    code (a function, a trigger, a view, a rule), or a table not the appliance's."""
    foreign = []
    for line in listing.splitlines():
        if not line or line.startswith(";"):
            continue
        entry = line.split(" ", 3)[-1]  # "ID; OID OID TYPE SCHEMA NAME OWNER"
        kind = next((kind for kind in STORE_ENTRIES if entry.startswith(f"{kind} ")), None)
        name = entry[len(kind or "") + 1:].split(" ")[1:2] if kind else []
        if kind is None or (kind in ("TABLE", "TABLE DATA") and name[0] not in STORE_TABLES):
            foreign.append(escape_controls(entry.rsplit(" ", 1)[0]))
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise BackupError(f"{archive} holds {', '.join(foreign[:5])}{more}, which a store's "
                          "dump never holds (code that would run in the restored store, or "
                          "another application's tables): no store is restored from it; take "
                          "a backup `store backup` wrote")


def archive_version(archive: Path, url: str) -> int:
    """The newest migration the store in a pg_dump archive had run, after refusing an archive
    that holds what no store's dump holds."""
    _refuse_foreign_entries(_archive_list(archive, url, archive), archive)
    rows = run_tool([tool("pg_restore"), "--data-only", "--table=schema_migrations", "--file=-",
                 str(archive)], url, f"{archive} cannot be read")
    versions = [int(line.split("\t")[0]) for line in rows.splitlines()
                if line[:1].isdigit() and "\t" in line]
    return max(versions, default=0)


def connection(url: str, missing: str | None = None) -> Any:
    """A connection to the store's database; with ``missing``, a server that lacks the database
    is a BackupError (a refusal, exit 2) "the DATABASE does not exist" and ``missing`` (what the
    command needs and what to do), where it was the connection's hint for ``store migrate``
    (which makes a new store, no help to a backup, and not what README's restore steps run)."""
    from appliance.backoffice.pgconnect import (  # noqa: PLC0415
        postgres_connection,
        says_database_missing,
    )
    from appliance.backoffice.storeerrors import StoreError  # noqa: PLC0415

    try:
        return postgres_connection(url, application_name="appliance store backup")
    except StoreError as exc:
        if missing is None or not says_database_missing(exc.__cause__):
            raise
        raise BackupError(f"the {store_name(url)} does not exist{missing}") from exc


def _contents(conn: Any) -> StoreContents:
    tables = frozenset(row[0] for row in conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema()").fetchall())
    return contents_of(lambda sql: conn.execute(sql).fetchall(), tables)
