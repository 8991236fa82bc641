"""Restoring a PostgreSQL store from a pg_dump archive (``appliance store restore``), running
none of the archive's SQL.

An archive's entries carry SQL text (pgarchive.py), and ``pg_restore`` into a database runs it
under the store's login whatever the entry's type and name in the list say: a TABLE whose text
also creates a role, an INDEX whose text calls a function, a "COPY" that is something else. So
the archive never reaches the server through ``pg_restore``:

1. Its list is read (a damaged or foreign file is refused, and one listing a function, a
   trigger, a view or another application's table, naming them), and its schema version (the
   ``schema_migrations`` rows). A database other sessions are connected to, or one holding
   results without ``--force``, is refused.
2. The product makes the store's schema at the archive's version itself, with its own
   migrations, in a schema of its own in the target database (``appliance_restoring_HEX``), and
   dumps that with pg_dump. Each entry of the archive must be one of that dump's with the same
   SQL, the schema's name aside (a table's rows: the same ``COPY schema.table (columns) FROM
   stdin;``; a sequence's value: a bare ``setval``), or the archive is refused, naming the
   entry. Where the archive lacks one, the product's own stands (made by the migrations).
3. The rows are read from ``pg_restore --data-only --file=-`` (no server: its output) and sent
   with the product's own COPY into the product's tables; a sequence's value with its own
   ``setval``. Rows that do not fit (a type, a key, a foreign key) refuse the archive.
4. In the same transaction the product's tables in the store's schema are dropped and the
   loaded ones moved there: a failure anywhere changes nothing, and the schema of step 2 is
   dropped (one a killed restore left is dropped by the next).
5. The migrations take an older backup forward.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from appliance.backoffice.pgarchive import ArchiveEntry, archive_entries
from appliance.backoffice.restore_pg_rows import NAME, REFUSED, SETVAL, load_rows, put_in_place
from appliance.backoffice.store_backup import SQLITE_MAGIC, BackupError, refuse_no_file, starts_with
from appliance.backoffice.store_backup_pg import (
    STORE_TABLES,
    archive_version,
    connection,
    conninfo_and_env,
    run_tool,
    server_failures,
    tool,
)
from appliance.backoffice.store_contents import StoreContents, contents_of
from appliance.backoffice.store_schema import LATEST_VERSION
from appliance.backoffice.storeurl import store_name
from appliance.logsafe import escape_controls

STAGING_PREFIX = "appliance_restoring_"
NEVER_RUN = frozenset({"DATABASE", "DATABASE PROPERTIES"})  # used by pg_restore --create only
ENCODING = re.compile(r"SET client_encoding = '([A-Z0-9_]+)';\n")


def restore_postgres(archive: Path, url: str, force: bool) -> tuple[int, StoreContents, str]:
    """Restore the store in ``archive`` into the database of ``url`` (see the module's steps);
    the archive's schema version, what the database holds after, and the results it held
    before, which the restore dropped ("" where it held none)."""
    refuse_no_file(archive)
    if starts_with(archive, SQLITE_MAGIC):
        raise BackupError(f"{archive} is a SQLite store's backup: restore it into a SQLite "
                          "store (--store sqlite:///PATH)")
    version = archive_version(archive, url)
    if version > LATEST_VERSION:
        raise BackupError(f"{archive} holds a store at schema version {version}, newer than "
                          f"this appliance's {LATEST_VERSION}: restore it with the appliance "
                          "that wrote it")
    entries = archive_entries(archive)
    with server_failures("nothing was changed"):
        has_tables, dropped = _refuse_target(url, force)
        with _staging_schema(url) as staging:
            _make_schema(url, staging, version, entries)
            copies = _checked_against_product(entries, _product_entries(url, staging),
                                              staging, archive)
            replaced = STORE_TABLES if has_tables else frozenset()
            _load_and_put_in_place(url, (staging, archive), copies, _encoding(entries), replaced)
    with server_failures(f"{archive} was restored, but not yet migrated: run `appliance "
                         "store migrate` once the server answers"):
        return version, _migrated_contents(url), dropped


def _refuse_target(url: str, force: bool) -> tuple[bool, str]:
    """Refuse a database in use, or holding results without ``force``; whether the store's
    tables are there, and the results they hold ("" where none). Schemas a killed restore
    left (step 4) are dropped."""
    conn = connection(url, missing=_no_database_to_restore_into(url))
    try:
        others = conn.execute(
            "SELECT application_name, usename, client_addr FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' ORDER BY backend_start").fetchall()
        if others:
            raise BackupError(
                f"the {store_name(url)} has {len(others)} other session(s) connected "
                f"({_sessions(others)}): stop them first (the back office's workers, its "
                "console, a backup being taken: run the restore again once it is done); "
                "nothing was changed")
        _refuse_without_create(conn, url)
        _drop_left_staging(conn)
        if conn.execute("SELECT to_regclass('results') IS NULL").fetchone()[0]:
            return False, ""
        results, newest = conn.execute("SELECT COUNT(*), MAX(received_at) FROM results"
                                       ).fetchone()
    finally:
        conn.close()
    held = f"{results} result(s), the newest received {newest}" if results else ""
    if held and not force:
        raise BackupError(f"the {store_name(url)} holds {held}: pass --force to replace its "
                          "tables with the backup's, which drops them and keeps no copy "
                          "(`appliance store backup --out FILE` first keeps one)")
    return True, held


def _sessions(rows: list[tuple[str, str, Any]], shown: int = 5) -> str:
    """The sessions of ``rows`` (application name, login, client address) for a message, alike
    ones counted together (a console holds several): the first ``shown``, and how many more."""
    alike = Counter(rows)
    named = [f"{escape_controls(name or 'a session that names no program')!r} as "
             f"{escape_controls(login or '?')} "
             f"{f'from {address}' if address is not None else 'over the local socket'}"
             f"{f' ({count} sessions)' if count > 1 else ''}"
             for (name, login, address), count in list(alike.items())[:shown]]
    more = f" and {len(alike) - shown} more" if len(alike) > shown else ""
    return ", ".join(named) + more


def _refuse_without_create(conn: Any, url: str) -> None:
    """Refuse a login that may not make the restore's own schema (step 2) in the database,
    naming the grant that lets it, where the server's own words named neither."""
    login, database, may_create = conn.execute(
        "SELECT current_user, current_database(), "
        "has_database_privilege(current_database(), 'CREATE')").fetchone()
    if not may_create:
        grant = f"GRANT CREATE ON DATABASE {_ident(database)} TO {_ident(login)}"
        raise BackupError(
            f"the login {_ident(login)} may not create a schema in the {store_name(url)}, "
            "which the restore needs for the schema it loads the backup into: as the "
            f"database's owner or user postgres, run {grant} (or restore as the database's "
            "owner); nothing was changed")


def _no_database_to_restore_into(url: str) -> str:
    """What a restore into a database the server lacks needs, and the command that makes it
    (README "Back up and restore the back office": ``createdb --owner`` as user postgres)."""
    from psycopg import Error  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        params = conninfo_to_dict(url)
    except Error:
        params = {}
    login = str(params.get("user") or os.environ.get("PGUSER") or getpass.getuser())
    name = str(params.get("dbname") or login)
    where = [f"--{key} {shlex.quote(str(params[key]))}" for key in ("host", "port")
             if str(params.get(key, "")) not in ("", "localhost", "127.0.0.1", "::1", "5432")
             and not str(params.get(key, "")).startswith("/")]
    createdb = " ".join(["createdb", *where, "--owner", shlex.quote(login), shlex.quote(name)])
    return (f": a restore needs a database that is there, empty (or holding a store that "
            f"--force replaces), which the login {_ident(login)} owns or may create schemas "
            f"in: as user postgres run `{escape_controls(createdb)}`, then the restore again "
            "(`appliance store migrate` is not needed: the restore makes the store's tables); "
            "nothing was changed")


def _ident(name: str) -> str:
    """A role's or database's name as SQL quotes it, fit to print."""
    return escape_controls('"' + name.replace('"', '""') + '"')


def _drop_left_staging(conn: Any) -> None:
    """Drop the schemas of restores killed on the way (they hold a backup's personal data)."""
    for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                                (f"{STAGING_PREFIX}%",)).fetchall():
        if re.fullmatch(f"{STAGING_PREFIX}[0-9a-f]{{16}}", name):
            conn.execute(f"DROP SCHEMA {name} CASCADE")
    conn.commit()


@contextmanager
def _staging_schema(url: str) -> Iterator[str]:
    """The name of a new schema for the block (step 2), dropped after it where it is left;
    where the server is gone by then, by the next restore."""
    import psycopg  # noqa: PLC0415  (the backoffice extra)

    from appliance.backoffice.storeerrors import StoreError  # noqa: PLC0415

    staging = f"{STAGING_PREFIX}{uuid.uuid4().hex[:16]}"
    try:
        yield staging
    finally:
        with suppress(StoreError, psycopg.Error):  # the block's own error is the one to say
            conn = connection(url)
            try:
                conn.execute(f"DROP SCHEMA IF EXISTS {staging} CASCADE")
                conn.commit()
            finally:
                conn.close()


def _make_schema(url: str, staging: str, version: int, entries: list[ArchiveEntry]) -> None:
    """The product's tables at schema version ``version``, empty, in the schema ``staging``."""
    from appliance.pathology.jobstore import PathologyStore  # noqa: PLC0415

    store = PathologyStore(url, pg_schema=staging)
    try:
        store.migrate(through=version)
        tables = {entry.tag for entry in entries if entry.desc == "TABLE"}
        if "pathology_slides_orphaned" in tables:  # made by the migration that keyed slides
            store.make_unkeyed_pathology()
        if any(table.startswith("pathology_") for table in tables):
            store.migrate_pathology()
    finally:
        store.close()


def _product_entries(url: str, staging: str) -> list[ArchiveEntry]:
    """The entries pg_dump writes for the schema ``staging``, as the product made it."""
    conninfo, _ = conninfo_and_env(url)
    with tempfile.TemporaryDirectory(prefix="appliance-restore-") as folder:
        dump = Path(folder) / "product.dump"
        run_tool([tool("pg_dump"), "--format=custom", f"--schema={staging}", f"--file={dump}",
                  f"--dbname={conninfo}"], url, "dumping the product's schema to compare with")
        return archive_entries(dump)


def _checked_against_product(entries: list[ArchiveEntry], product: list[ArchiveEntry],
                             staging: str, archive: Path) -> dict[str, ArchiveEntry]:
    """Refuse the archive, naming the entry, where an entry is not the product's (step 2);
    each table's rows' entry by its COPY statement."""
    namespace = _archive_namespace(entries, archive)
    ours = {(entry.desc, entry.tag): _in_namespace(entry, staging, namespace)
            for entry in product}
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        key = (entry.desc, entry.tag)
        if entry.desc in NEVER_RUN:
            continue
        if key in seen or key not in ours or entry.namespace != ours[key].namespace:
            raise BackupError(f"{archive} holds {_named(entry)}, which the appliance's store "
                              f"has not{' twice' if key in seen else ''}: {REFUSED}")
        seen.add(key)
        if not _same_sql(entry, ours[key]):
            raise BackupError(f"{archive} holds {_named(entry)} whose SQL is not what the "
                              f"appliance's store has there (an entry made or changed by "
                              f"hand, or by another pg_dump than this host's): {REFUSED}")
    return {entry.copy_stmt: ours[(entry.desc, entry.tag)] for entry in entries
            if entry.desc == "TABLE DATA"}


def _archive_namespace(entries: list[ArchiveEntry], archive: Path) -> str:
    """The one schema the archive's store was in (its schema_migrations table's)."""
    found = {entry.namespace for entry in entries
             if entry.desc == "TABLE" and entry.tag == "schema_migrations"}
    if len(found) != 1 or not re.fullmatch(NAME, next(iter(found))):
        raise BackupError(f"{archive} holds no one store's schema_migrations table: {REFUSED}")
    return found.pop()


def _in_namespace(entry: ArchiveEntry, staging: str, namespace: str) -> ArchiveEntry:
    """The product's entry as it reads in the archive's schema, where it was made in
    ``staging`` (a name of its own, found nowhere else in the text)."""
    def moved(text: str) -> str:
        return text.replace(staging, namespace)

    return ArchiveEntry(entry.dump_id, entry.desc, moved(entry.tag), moved(entry.namespace),
                        moved(entry.defn), moved(entry.drop_stmt), moved(entry.copy_stmt))


def _same_sql(entry: ArchiveEntry, ours: ArchiveEntry) -> bool:
    """Whether the entry's SQL is the product's: a sequence's value may differ, its own."""
    if entry.desc == "SEQUENCE SET":
        value = SETVAL.fullmatch(entry.defn)
        return (value is not None and value.group(1, 2) == (entry.namespace, entry.tag)
                and not entry.drop_stmt and not entry.copy_stmt)
    return (entry.defn, entry.drop_stmt, entry.copy_stmt) == (
        ours.defn, ours.drop_stmt, ours.copy_stmt)


def _named(entry: ArchiveEntry) -> str:
    return escape_controls(entry.named)


def _encoding(entries: list[ArchiveEntry]) -> str:
    """The encoding of the archive's rows (its ENCODING entry, checked as the product's)."""
    return next((found.group(1) for entry in entries if entry.desc == "ENCODING"
                 and (found := ENCODING.fullmatch(entry.defn))), "UTF8")


def _load_and_put_in_place(url: str, staging_and_archive: tuple[str, Path],
                           copies: dict[str, ArchiveEntry], encoding: str,
                           replaced: frozenset[str]) -> None:
    """Steps 3 and 4, in one transaction: the rows loaded, the store's tables named in
    ``replaced`` dropped and the loaded ones moved into the store's schema."""
    staging, archive = staging_and_archive
    conn = connection(url)
    try:
        target = conn.execute("SELECT current_schema()").fetchone()[0]
        with conn.transaction():
            conn.execute(f"SET LOCAL search_path TO {staging}")
            load_rows(conn, staging, archive, copies, encoding)
            put_in_place(conn, staging, target, replaced)
    finally:
        conn.close()


def _migrated_contents(url: str) -> StoreContents:
    from appliance.pathology.jobstore import PathologyStore  # noqa: PLC0415

    store = PathologyStore(url)
    try:
        store.migrate()
        store.migrate_pathology()
        tables = frozenset(row[0] for row in store.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()"))
        return contents_of(store.query, tables)
    finally:
        store.close()
