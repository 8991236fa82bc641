"""Backing up a SQLite store while the back office runs, and checking a backup before a restore.

1. The backup is SQLite's online backup API in one step: it copies the store's pages under one
   read transaction, so it is the store as it was at one moment (every batch the ingest had
   committed by then, none half), while the workers go on committing in the write-ahead log.
2. It is written to a hidden temporary file beside ``--out``, switched out of WAL mode (one
   self-contained file), checked (``PRAGMA quick_check``), made readable by its owner only (it
   holds personal data), flushed to disk, renamed over ``--out`` and the folder flushed
   (outfile.replaced_when_complete). A full disk, a kill or a failed check leaves the previous
   backup under that name, or none: never part of one.
3. A file offered for a restore is opened read-only as it is (``immutable=1``: nothing is made
   beside it), and refused, naming it, when it is no SQLite database, is damaged, is another
   application's database, holds no store, or was migrated by a newer appliance.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from appliance.backoffice.backup_rotation import held_while_written
from appliance.backoffice.sqlitefile import damaged, foreign_tables, read_mode
from appliance.backoffice.store_contents import StoreContents, contents_of
from appliance.backoffice.store_schema import LATEST_VERSION
from appliance.diskspace import full_disk_hint
from appliance.outfile import OutputError, replaced_when_complete

BUSY_TIMEOUT_MS = 30000  # a writer's checkpoint may hold the store a moment
OWNER_ONLY = 0o600
PG_DUMP_MAGIC = b"PGDMP"  # how pg_dump's custom format begins
SQLITE_MAGIC = b"SQLite format 3\x00"  # how a SQLite database file begins


class BackupError(Exception):
    """A backup or restore refused before anything was written; the text names the file and
    what to do."""


class BackupFailedError(BackupError):
    """A backup or restore that failed on the way (a full disk, a tool's error): nothing was
    written under the name given, and the store is as it was."""


def sqlite_store_path(url: str) -> Path:
    """The file a ``sqlite:///`` URL names."""
    return Path(url.removeprefix("sqlite:///"))


def back_up_sqlite(store: Path, out: Path) -> StoreContents:
    """Write a consistent copy of the SQLite store ``store`` to ``out``; what it holds."""
    _refuse_store_itself(store, out)
    with closing(_open_live(store)) as source:
        try:
            with replaced_when_complete(out, mode=OWNER_ONLY) as temp, held_while_written(temp):
                try:
                    return _copied(source, temp, out)
                finally:
                    Path(f"{temp}-journal").unlink(missing_ok=True)
        except OutputError as exc:
            raise BackupFailedError(f"{exc}{_full_disk(out)}") from exc
        except sqlite3.Error as exc:
            raise BackupFailedError(f"{out}: could not write the backup ({exc}); no backup "
                                    f"was written under that name{_full_disk(out)}") from exc


def _copied(source: sqlite3.Connection, temp: Path, out: Path) -> StoreContents:
    """Copy ``source`` into ``temp`` in one step, as one file, checked; what it holds."""
    with closing(sqlite3.connect(temp, isolation_level=None)) as copy:
        source.backup(copy)  # every page in one step: a snapshot under one read transaction
        copy.execute("PRAGMA journal_mode=DELETE")
        if (problem := _check_failure(copy)) is not None:
            raise BackupFailedError(f"{out}: the copy failed its check ({problem}); no backup "
                                    "was written under that name")
        return _contents(copy)


def _refuse_store_itself(store: Path, out: Path) -> None:
    """A BackupError when ``out`` is the store, or one of its -wal, -shm, -journal files."""
    own = [store, *(Path(f"{store}{end}") for end in ("-wal", "-shm", "-journal"))]
    for path in own:  # by its folder's real path: `..` or a link to the folder names it too
        if _real(out) == _real(path) or (out.exists() and path.exists() and out.samefile(path)):
            raise BackupError(f"{out} is the store's own file {path}: a backup goes to a file "
                              "of its own (better: on another disk), never over the store")


def _real(path: Path) -> Path:
    """``path`` in its folder's real path (its own name kept: a link there is replaced)."""
    return path.parent.resolve() / path.name


def _open_live(store: Path) -> sqlite3.Connection:
    """A connection that reads the store as its writers leave it, never creating it."""
    if not store.is_file():
        raise BackupError(f"no SQLite store at {store.absolute()}: check --store or the "
                          "config's store.url")
    try:
        conn = sqlite3.connect(f"{store.absolute().as_uri()}?{read_mode(store)}", uri=True,
                               isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _refuse_no_store(conn, store)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read SQLite store {store.absolute()}: {exc}") from exc
    return conn


def checked_backup(backup: Path) -> StoreContents:
    """What the backup file ``backup`` holds, after refusing one that no restore may use."""
    refuse_no_file(backup)
    if starts_with(backup, PG_DUMP_MAGIC):
        raise BackupError(f"{backup} is a pg_dump archive, a PostgreSQL store's backup: restore "
                          "it into a PostgreSQL store (--store postgresql://...)")
    if Path(f"{backup}-wal").exists():  # read as it is, the file would lack what the log holds
        raise BackupError(
            f"{backup} has a write-ahead log beside it ({backup}-wal: a copy of a live store's "
            "files, not a file `store backup` wrote): restore a backup, or fold the log in first "
            f"(sqlite3 {backup} 'PRAGMA wal_checkpoint(TRUNCATE)')")
    if (journal := Path(f"{backup}-journal")).exists() and journal.stat().st_size > 0:
        raise BackupError(  # read as it is, the file would be half a transaction
            f"{backup} has a rollback journal beside it ({journal}: it was copied or killed in "
            "the middle of a write, and without the journal it is half of one): roll it back "
            f"first (sqlite3 {backup} 'PRAGMA quick_check'), or take another backup")
    with closing(_open_as_is(backup)) as conn:
        try:
            if (problem := _check_failure(conn)) is not None:
                raise BackupError(f"{backup} is damaged ({problem}): take an older backup")
            _refuse_no_store(conn, backup)
            contents = _contents(conn)
        except sqlite3.Error as exc:
            what = "is damaged or is no SQLite database" if damaged(exc) else "cannot be read"
            raise BackupError(f"{backup} {what} ({exc}): no store can be restored from it"
                              ) from exc
    if contents.schema_version > LATEST_VERSION:
        raise BackupError(f"{backup} holds a store at schema version {contents.schema_version}, "
                          f"newer than this appliance's {LATEST_VERSION}: restore it with the "
                          "appliance that wrote it")
    return contents


def refuse_no_file(backup: Path) -> None:
    """A BackupError when nothing is at ``backup``, no regular file (nothing is read from a
    pipe or a device, which would wait or never end), or a file this user cannot read."""
    if backup.is_file():
        _refuse_unreadable(backup)
        return
    if not backup.exists():
        raise BackupError(f"{backup}: no such backup file")
    what = "a folder" if backup.is_dir() else "not a regular file (a device, a pipe or a socket)"
    raise BackupError(f"{backup} is {what}, so no backup: name the file `store backup` wrote")


def _refuse_unreadable(backup: Path) -> None:
    """A BackupError naming the file and the user when the file cannot be opened (a backup
    copied in by root, 0600, restored as the store's user)."""
    try:
        backup.open("rb").close()
    except OSError as exc:
        raise BackupError(
            f"{backup} cannot be read by the user {_user_name()} that runs the restore "
            f"({exc.strerror}): give it that user (chown), as the store's own files are; "
            "nothing was changed") from exc


def _user_name() -> str:
    """This process's user, by name where the system has one."""
    import pwd  # noqa: PLC0415

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def starts_with(path: Path, magic: bytes) -> bool:
    """Whether the file ``path`` begins with ``magic``."""
    with path.open("rb") as file:
        return file.read(len(magic)) == magic


def _open_as_is(path: Path) -> sqlite3.Connection:
    """``path`` opened read-only, nothing made beside it (no -wal, -shm or -journal)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True,
                           isolation_level=None)


def _refuse_no_store(conn: sqlite3.Connection, path: Path) -> None:
    """A BackupError when ``conn``'s file holds another application's tables, or no store."""
    if (problem := foreign_tables(conn, path)) is not None:
        raise BackupError(problem)
    marked = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                          "AND name IN ('schema_migrations', 'results')").fetchone()[0]
    if marked < 2:
        raise BackupError(f"{path} holds no back-office store (no results or schema_migrations "
                          "table): name the store's file or its backup")


def _check_failure(conn: sqlite3.Connection) -> str | None:
    """SQLite's quick check's first complaint, or None for a whole file."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    return None if rows == [("ok",)] else "; ".join(str(row[0]) for row in rows)


def _contents(conn: sqlite3.Connection) -> StoreContents:
    tables = frozenset(row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"))
    return contents_of(lambda sql: conn.execute(sql).fetchall(), tables)


def _full_disk(path: Path) -> str:
    hint = full_disk_hint(path.parent if path.parent.is_dir() else Path("."))
    return f"; {hint}" if hint else ""


@contextmanager
def no_leftovers(temp: Path) -> Iterator[None]:
    """Remove ``temp`` and its SQLite side files when the block fails."""
    try:
        yield
    except BaseException:
        for end in ("", "-journal", "-wal", "-shm"):
            Path(f"{temp}{end}").unlink(missing_ok=True)
        raise
