"""Restoring a SQLite store from a backup (``appliance store restore``).

1. The backup is checked first (store_backup.checked_backup): a damaged or foreign file, one
   that holds no store, or one a newer appliance migrated is refused, naming it.
2. A store already at the target is taken with an exclusive lock, which SQLite grants only while
   no other connection has it open: a running worker, console or command is refused (stop them
   first), since a file renamed under them would take their later writes with it. One holding
   results is replaced only with ``--force``; the refusal says what it holds against the backup.
3. The backup is copied into a hidden file beside the store and its migrations run there (an
   older backup is taken forward), then flushed. A backup holding triggers or views is refused
   before the migrations run, and a migrated copy that is not the product's schema (another
   program's tables, or a schema version that lies) after (restore_schema.py). The store it
   replaces is moved aside whole, its write-ahead log folded into it (``NAME.replaced-TIME``,
   nothing beside it, never removed; a damaged store whose log cannot be folded keeps it
   beside, as ``NAME.replaced-TIME-wal``; the store is linked to that name and stays at its own
   until the copy is renamed over it), and the copy renamed into its place; the folder is
   flushed. Before the rename, while the store is still held, ``before_in_place`` (the
   erasure journal's application, store_backup_cli.py) runs on the copy, which is flushed
   again: a restore killed after the rename leaves no erased result back in the store.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.backoffice.backup_rotation import dead_restorings_removed, held_while_written
from appliance.backoffice.restore_schema import migrate_file, refuse_code, refuse_unlike_fresh
from appliance.backoffice.store_backup import (
    OWNER_ONLY,
    BackupError,
    BackupFailedError,
    checked_backup,
    no_leftovers,
)
from appliance.backoffice.store_contents import StoreContents, contents_of
from appliance.diskspace import full_disk_hint
from appliance.outfile import fsync_path, temp_name_part

SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Restored:
    """A restore done: what the backup held, what the store holds now, where the store it
    replaced was moved (None when there was none), and the copies killed restores had left
    beside the store, removed."""

    backup: StoreContents
    restored: StoreContents
    replaced: Path | None
    leftovers_removed: list[Path]


def restore_sqlite(backup: Path, store: Path, force: bool,
                   before_in_place: Callable[[Path], None] | None = None) -> Restored:
    """Put the store held in ``backup`` at ``store`` (see the module's steps); a BackupError
    raised by ``before_in_place`` leaves the store as it was."""
    held = checked_backup(backup)
    if not store.parent.is_dir():
        raise BackupError(f"no folder {store.parent.absolute()} for the store {store}: make it")
    _refuse_orphan_log(store)
    leftovers = dead_restorings_removed(store)
    current = _held_exclusively(store) if store.exists() else None
    try:
        if current is not None:
            _refuse_replacing(current, store, held, force)
        with _prepared_copy_or_fail(backup, store) as copy:
            restored = _restored_contents(copy)  # as restored, before_in_place aside
            if before_in_place is not None:
                with no_leftovers(copy):
                    before_in_place(copy)
                    fsync_path(copy)
            replaced = _put_in_place(copy, store, current)
            current = None  # closed by _put_in_place
    finally:
        if current is not None:
            current.close()
    return Restored(held, restored, replaced, leftovers)


def _put_in_place(copy: Path, store: Path, current: sqlite3.Connection | None) -> Path | None:
    """Move the store at ``store`` aside (closing ``current``) and rename ``copy`` over it;
    where the store was kept (None when there was none)."""
    try:
        replaced = _move_aside(store, current) if current is not None else None
        os.replace(copy, store)
        fsync_path(store.parent)
    except OSError as exc:  # the folder refused a rename: both files are named
        raise BackupFailedError(
            f"could not put the restored store in place at {store.absolute()} ({exc}): "
            f"it is whole in {copy}; the store there before, if any, is at its name or "
            f"at {store.name}.replaced-TIME beside it") from exc
    return replaced


def _refuse_orphan_log(store: Path) -> None:
    """A -wal file without its store: SQLite would read it into the restored one."""
    if not store.exists() and (log := Path(f"{store}-wal")).exists():
        raise BackupError(f"{log} is there without its store {store}: SQLite would read it "
                          "into the restored store; move it away first")


def _held_exclusively(store: Path) -> sqlite3.Connection:
    """A connection holding the store's exclusive lock; refused while another has it open."""
    conn = sqlite3.connect(store, isolation_level=None, timeout=0)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")  # the lock stays: the connection's locking mode keeps it
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise BackupError(f"cannot take the store {store.absolute()} ({exc}); nothing was "
                              "changed") from exc
        raise BackupError(
            f"the store {store.absolute()} is open in another program (a running back office, "
            "console, backup or command): stop them first (systemctl stop "
            "'appliance-backoffice@*' appliance-console appliance-pathology@*), and let a "
            "backup end (until `systemctl is-active appliance-store-backup` says inactive); "
            "nothing was changed") from exc
    except sqlite3.DatabaseError:  # no database, or a damaged one: no program has it open
        return conn
    return conn


def _refuse_replacing(current: sqlite3.Connection, store: Path, held: StoreContents,
                      force: bool) -> None:
    """A BackupError when the store at the target holds results (or cannot be read) and
    ``force`` was not given."""
    if force:
        return
    try:
        tables = frozenset(row[0] for row in current.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        there = (contents_of(lambda sql: current.execute(sql).fetchall(), tables)
                 if {"results", "schema_migrations"} <= tables else None)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the store {store.absolute()} cannot be read ({exc}); pass --force "
                          "to move it aside and restore the backup in its place") from exc
    if there is None or there.results == 0:
        return
    newer = (there.newest_received_at or "") > (held.newest_received_at or "")
    raise BackupError(
        f"the store {store.absolute()} holds {there.results} result(s), the newest received "
        f"{there.newest_received_at}{' (newer than the backup' + chr(39) + 's)' if newer else ''};"
        f" the backup holds {held.results}, the newest received {held.newest_received_at}. "
        "Pass --force to move that store aside (kept as NAME.replaced-TIME) and restore")


@contextmanager
def _prepared_copy_or_fail(backup: Path, store: Path) -> Iterator[Path]:
    """The backup copied into a hidden file beside ``store``, migrated, flushed, and locked
    until the block ends (a later restore leaves it alone while this one may still rename it);
    a BackupFailedError naming the store when it cannot be made (a full disk), nothing left of
    it and the store as it was."""
    from appliance.backoffice.storeerrors import StoreError  # noqa: PLC0415

    try:
        copy = _new_copy(store)
        with held_while_written(copy):
            _prepared(backup, copy)
            yield copy
    except (OSError, sqlite3.Error, StoreError) as exc:
        hint = full_disk_hint(store.parent)
        raise BackupFailedError(
            f"could not make the restored store beside {store.absolute()} ({exc}); nothing was "
            f"changed{'; ' + hint if hint else ''}") from exc


def _new_copy(store: Path) -> Path:
    """A new hidden owner-only file beside ``store`` (``.NAME.XXXXXXXX.restoring``)."""
    fd, name = tempfile.mkstemp(dir=store.parent, prefix=f".{temp_name_part(store.name)}.",
                                suffix=".restoring")
    os.close(fd)
    return Path(name)


def _prepared(backup: Path, copy: Path) -> None:
    """The backup copied into ``copy``, migrated, flushed; ``copy`` removed when that fails."""
    with no_leftovers(copy):
        os.chmod(copy, OWNER_ONLY)
        with closing(sqlite3.connect(f"{backup.absolute().as_uri()}?mode=ro&immutable=1",
                                     uri=True)) as source, \
                closing(sqlite3.connect(copy)) as target:
            source.backup(target)
            refuse_code(target, backup)  # before the migrations write to it
        migrate_file(copy)  # the pathology tables too
        refuse_unlike_fresh(copy, backup)
        _owned_as_its_folder(copy)
        fsync_path(copy)


def _owned_as_its_folder(copy: Path) -> None:
    """Run as root, give the copy to the owner of the store's folder: the workers run as that
    user (User=appliance) and could not open a store root made 0600 for itself."""
    if os.geteuid() == 0:
        folder = copy.parent.stat()
        os.chown(copy, folder.st_uid, folder.st_gid)


def _move_aside(store: Path, current: sqlite3.Connection) -> Path:
    """Keep the store as ``NAME.replaced-TIME``; returns the new name. Its log is folded in
    first where it can be, so the file kept is whole by itself and nothing is kept beside it;
    where it cannot be (a damaged store), its side files go with it, under its name. The store
    is linked to that name, not renamed, so its own name holds it until the restored copy
    replaces it in one rename: a restore killed between the two leaves the store in place."""
    folded = _log_folded(current)
    aside = _kept_aside(store)
    for end in SIDE_FILES:  # while still locked: no one opens it meanwhile
        side = Path(f"{store}{end}")
        if folded and end != "-journal":  # an emptied log, its index: nothing of the store
            side.unlink(missing_ok=True)
        elif side.exists():
            os.replace(side, f"{aside}{end}")
    current.close()  # SQLite deletes its log by the store's name: gone already
    return aside


def _log_folded(current: sqlite3.Connection) -> bool:
    """Fold the store's write-ahead log into it and empty the log; whether all of it was.
    Before, an emptied log (0 bytes) was kept as ``NAME.replaced-TIME-wal`` beside the store
    it had been folded into."""
    try:
        row = current.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == 0  # not busy; a store not in WAL mode: (0, -1, -1)


def _kept_aside(store: Path) -> Path:
    """The store linked to a new ``NAME.replaced-TIME`` (``-2``, ``-3``... after it where a
    restore in the same second took that name: never over a store kept before)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    count = 1
    while True:
        aside = store.with_name(f"{store.name}.replaced-{stamp}{f'-{count}' * (count > 1)}")
        count += 1
        if any(Path(f"{aside}{end}").exists() for end in SIDE_FILES):
            continue
        try:
            os.link(store, aside)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: renamed, as the side files are
            if aside.exists():
                continue
            os.replace(store, aside)
        return aside


def _restored_contents(store: Path) -> StoreContents:
    with closing(sqlite3.connect(f"{store.absolute().as_uri()}?mode=rw", uri=True)) as conn:
        conn.execute("PRAGMA query_only=ON")
        tables = frozenset(row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        return contents_of(lambda sql: conn.execute(sql).fetchall(), tables)
