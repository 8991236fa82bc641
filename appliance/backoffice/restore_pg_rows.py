"""The rows of a pg_dump archive loaded into the tables the product made for them, with the
product's own SQL, then put in the store's place (restore_pg.py, steps 3 and 4).

``pg_restore --data-only --file=-`` writes, without a server, each table's rows as its COPY
statement, the rows in COPY's text format and a line ``\\.``, and each sequence's value as a
``setval``. Only this is read from it: a COPY line must be one of the archive's entries that
restore_pg.py found the product's, and is then sent as the product writes it (the table and
columns of the product's own dump, in the schema it made); the rows go to the server as COPY
data, never as SQL. Between the tables, only what pg_restore prints itself may stand (its
comments, its ``SET`` lines); anything else refuses the archive. The foreign keys of the
product's tables are dropped while the rows load, in whatever order the archive has them, and
added again after, which checks every row against them.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.backoffice.pgarchive import ArchiveEntry
from appliance.backoffice.store_backup import BackupError, BackupFailedError
from appliance.backoffice.store_backup_pg import TOOL_ERROR_LINES, tool
from appliance.logsafe import escape_controls

NAME = r"[a-z_][a-z0-9_]*"
COPY_STATEMENT = re.compile(rf"COPY ({NAME})\.({NAME}) \(({NAME}(?:, {NAME})*)\) FROM stdin;\n")
SETVAL = re.compile(rf"SELECT pg_catalog\.setval\('({NAME})\.({NAME})', (\d+), (true|false)\);\n")
REFUSED = "no store is restored from it; take a backup `store backup` wrote"
END_OF_ROWS = b"\\.\n"
RESTRICT_LINE = re.compile(rb"\\(un)?restrict [A-Za-z0-9]+\n")
SEARCH_PATH_LINE = b"SELECT pg_catalog.set_config('search_path', '', false);\n"
BUFFER_BYTES = 256 * 1024  # rows sent to the server at once


def load_rows(conn: Any, staging: str, archive: Path, copies: dict[str, ArchiveEntry],
              encoding: str) -> None:
    """Every table's rows and every sequence's value in ``archive`` into the schema
    ``staging`` (the connection's search path), in the connection's transaction."""
    conn.execute(f"SET LOCAL client_encoding TO '{encoding}'")  # checked: [A-Z0-9_]+
    keys = _foreign_keys(conn, staging)
    for table, name, _ in keys:
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    tables = [row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (staging,)).fetchall()]
    conn.execute(f"TRUNCATE {', '.join(tables)}")  # a migration's own rows: the archive's stand
    with _archive_rows(archive) as lines:
        _read(conn, staging, archive, lines, dict(copies))
    for table, name, definition in keys:
        _add_key_again(conn, table, name, definition, archive)


def put_in_place(conn: Any, staging: str, target: str, replaced: frozenset[str]) -> None:
    """Drop the tables named in ``replaced`` from the schema ``target`` and move every table
    of ``staging`` there (their indexes, constraints and sequences with them)."""
    there = [row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)",
        (target, sorted(replaced))).fetchall()]
    if there:
        conn.execute(f"DROP TABLE {', '.join(f'{_quoted(target)}.{name}' for name in there)}")
    for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                 (staging,)).fetchall():
        conn.execute(f"ALTER TABLE {staging}.{table} SET SCHEMA {_quoted(target)}")
    conn.execute(f"DROP SCHEMA {staging}")


def _foreign_keys(conn: Any, staging: str) -> list[tuple[str, str, str]]:
    """Each foreign key of the product's tables: its table, its name, its definition."""
    rows: list[tuple[str, str, str]] = conn.execute(
        "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND c.contype = 'f' ORDER BY 1, 2", (staging,)).fetchall()
    return rows


def _add_key_again(conn: Any, table: str, name: str, definition: str, archive: Path) -> None:
    import psycopg  # noqa: PLC0415  (the backoffice extra)

    try:
        with conn.transaction():  # a savepoint: the error is this one's
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    except psycopg.Error as exc:
        raise BackupError(f"{archive} holds rows of {table} that break its foreign key "
                          f"{name} ({_first_line(exc)}): {REFUSED}; nothing was changed"
                          ) from exc


@contextmanager
def _archive_rows(archive: Path) -> Iterator[Iterator[bytes]]:
    """The lines pg_restore writes for the archive's rows; a BackupFailedError where it failed
    (ended, where the block did not read them all)."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([tool("pg_restore"), "--data-only", "--file=-", str(archive)],
                                   stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        finished = False
        try:
            yield iter(process.stdout)
            finished = True
        finally:
            if not finished:
                process.kill()
            process.stdout.close()
            code = process.wait()
        if code != 0:
            errors.seek(0)
            said = " ".join(errors.read().decode(errors="replace").strip().splitlines()[
                -TOOL_ERROR_LINES:])
            raise BackupFailedError(f"reading the rows of {archive} failed: pg_restore (exit "
                                    f"{code}): {said or 'no message'}; nothing was changed")


def _read(conn: Any, staging: str, archive: Path, lines: Iterator[bytes],
          copies: dict[str, ArchiveEntry]) -> None:
    """Each COPY's rows into its table, each setval run as the product's; refuse the rest."""
    for line in lines:
        text = line.decode(errors="replace")
        if (entry := copies.pop(text, None)) is not None:
            _copy_rows(conn, staging, archive, entry, lines)
        elif (value := SETVAL.fullmatch(text)) is not None:
            conn.execute("SELECT setval(%s::regclass, %s, %s)",
                         (f"{staging}.{value.group(2)}", int(value.group(3)),
                          value.group(4) == "true"))
        elif not _printed_by_pg_restore(line):
            raise BackupError(f"{archive} holds, among its rows, {escape_controls(text[:80])!r}"
                              f", which is neither a table's rows nor a sequence's value: "
                              f"{REFUSED}")


def _printed_by_pg_restore(line: bytes) -> bool:
    """A blank line, a comment, a SET line, or psql's ``\\restrict KEY`` around the script
    (pg_restore 17.6, 16.10, 15.14 and later: psql refuses meta-commands in between)."""
    return (not line.strip() or line.startswith((b"--", b"SET ")) or line == SEARCH_PATH_LINE
            or RESTRICT_LINE.fullmatch(line) is not None)


def _copy_rows(conn: Any, staging: str, archive: Path, entry: ArchiveEntry,
               lines: Iterator[bytes]) -> None:
    """The rows after one COPY line, to its product table, up to the line ``\\.``."""
    import psycopg  # noqa: PLC0415  (the backoffice extra)

    found = COPY_STATEMENT.fullmatch(entry.copy_stmt)
    if found is None:  # the product's own COPY: never
        raise BackupError(f"{archive}: no COPY statement for {entry.tag}: {REFUSED}")
    table, columns = found.group(2), found.group(3)  # checked: [a-z_][a-z0-9_]*, ", "
    try:
        with conn.transaction(), conn.cursor().copy(
                f"COPY {staging}.{table} ({columns}) FROM STDIN") as copy:
            if not _sent(copy, lines):
                raise BackupError(f"{archive} ends inside the rows of {table}: {REFUSED}")
    except psycopg.Error as exc:
        raise BackupError(f"{archive} holds rows of {table} that the appliance's table does "
                          f"not take ({_first_line(exc)}): {REFUSED}; nothing was changed"
                          ) from exc


def _sent(copy: Any, lines: Iterator[bytes]) -> bool:
    """Send the rows up to the line ``\\.``; whether that line came."""
    buffer = bytearray()
    for line in lines:
        if line == END_OF_ROWS:
            copy.write(bytes(buffer))
            return True
        buffer += line
        if len(buffer) >= BUFFER_BYTES:
            copy.write(bytes(buffer))
            buffer.clear()
    return False


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: Exception) -> str:
    return escape_controls(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))

