"""The record of which saved capture files have been measured, kept in ``state_dir``.

A folder source replays every JPEG it has not measured yet; this record is what lets it skip,
after a restart (SIGTERM, kill -9, a power cut), the files whose results are already in the
outbox. A file is recorded only once its result is committed to the outbox (the commit thread
calls ``record``; also once a full outbox refused it and counted it dropped: it was measured and
is lost, as one the outbox drops later), never when it is read: a kill between measuring and
committing measures the file again after the restart rather than never. The other window, a
kill between the outbox commit and this record's commit, also measures it again, but under the
same measurement id (``edge.pipeline.measurement_id_for`` derives it from the ``FileStamp``),
so the back office's store, which keeps one result per id, keeps one.

One row per file name with its size and modification time, so the record never holds more rows
than the folder holds files (rows whose file is gone are pruned when the folder is opened), and
a file counts as measured only while it still has that size and time: a file of the same name
in another folder (``camera.path`` changed) or saved over the old one is a new capture. Each
row also keeps its picture's digest (``picture_digest``; none in rows from before digests), so
that a picture measured under one name is known under another: a hard link to it, a copy of it,
the file renamed (``holding_picture``).

Every look reads a copy of the committed rows kept in memory (``_Rows``), and the file is
written through: a look at a damaged page (a power cut, a worn card) raised out of the capture
thread's read and ended it. A record a write finds damaged while running is moved aside, said
once naming it, and rebuilt from that copy, and the kiosk goes on: no file whose result was
committed is forgotten (it would be measured again after a restart), and none read but not
committed is recorded (it would be lost). Found at open, the damage is moved aside the same way
and the record starts afresh: its files are then measured again, under the same ids.

A damaged record that cannot be moved aside (a read-only folder, a full disk, a name the
filesystem refuses) is kept where it is, untouched: it may be all that is left of what was
measured, so it is never deleted or written over (a rebuild in its place would). That is said
once, naming the record and why, and the kiosk goes on with the record in memory: files whose
results are committed meanwhile are not measured again in this run, and after a restart are
measured again under the same ids, as after damage found at open. Each write tries the move
again; once it succeeds, the record is rebuilt from the rows in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")  # what the outbox also treats as damage
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS measured (name TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, digest BLOB)"
)
_INSERT = ("INSERT OR REPLACE INTO measured (name, size_bytes, mtime_ns, digest) "
           "VALUES (?, ?, ?, ?)")
_FILE_SUFFIXES = ("", "-wal", "-shm")  # the record, its write-ahead log and that log's index


class RecordDamagedError(Exception):
    """SQLite's check of the record found damage (the text says what it found)."""


@dataclass(frozen=True)
class FileStamp:
    """A saved capture file as it was read: its name in the folder, size and modification time."""

    name: str
    size_bytes: int
    mtime_ns: int

    @property
    def name_bytes(self) -> bytes:
        """The name as the folder holds it: bytes, which need not be UTF-8 (a share written
        by another system lists such a name with surrogate escapes, which UTF-8 cannot encode)."""
        return os.fsencode(self.name)


class ReplayRecord:
    """The measured files of one folder, in a small SQLite file committed with fsync."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # the damage of a record that could not be moved aside, which stays where it is
        self._damage_kept: str | None = None
        self._db: sqlite3.Connection | None = self._connect()
        self._rows = _Rows(self._db)

    def _connect(self) -> sqlite3.Connection | None:
        """Open the record; a damaged one is moved aside (its files are then measured again,
        under the same ids, so the back office keeps one result each). None: it could not
        be, and stays (the record is kept in memory)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _open_db(self.path)
        except RecordDamagedError as exc:
            damage = str(exc)
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise  # not damage (permissions, a full disk): the caller names it
            damage = str(exc)
        aside = self._set_aside(damage, "is damaged")
        if aside is None:
            return None
        log.error("%s: the record of measured files is damaged (%s); moved to %s and "
                  "started afresh", self.path, damage, aside)
        return _open_db(self.path)

    def measured(self) -> dict[str, FileStamp]:
        """Every file whose result is committed, by name, as it was when it was read."""
        with self._lock:
            return dict(self._rows.stamps)

    def record(self, stamps: Iterable[FileStamp],
               digests: Mapping[FileStamp, bytes] | None = None) -> None:
        """Mark files measured (their results are committed), each with its picture's digest
        where ``digests`` has it; a failed write is logged, not raised: the files are then
        measured again after a restart, under the same ids."""
        digests = digests or {}
        rows = [(s, digests.get(s)) for s in stamps]
        try:
            with self._lock:
                self._write(_INSERT, [_stored_row(stamp, digest) for stamp, digest in rows])
                for stamp, digest in rows:
                    self._rows.put(stamp, digest)
        except (sqlite3.Error, OSError, RecordDamagedError) as exc:
            log.error("%s: cannot record %d measured file(s) (%s); they will be measured "
                      "again after a restart", self.path, len(rows), exc)

    def holds(self, stamp: FileStamp) -> bool:
        """Whether the file is recorded measured as it was in ``stamp``."""
        with self._lock:
            return self._rows.stamps.get(stamp.name) == stamp

    def holding_picture(self, digest: bytes) -> FileStamp | None:
        """A file recorded measured with this very picture (None: no such file)."""
        with self._lock:
            return self._rows.holding(digest)

    def prune(self, present_names: set[str]) -> int:
        """Forget files no longer in the folder (the record stays as small as the folder)."""
        with self._lock:
            gone = [name for name in self._rows.stamps if name not in present_names]
            self._write("DELETE FROM measured WHERE name = ?",
                        [(_stored_name(name),) for name in gone])
            for name in gone:
                self._rows.drop(name)
        return len(gone)

    def _write(self, statement: str, rows: list[tuple[object, ...]]) -> None:
        """``statement`` for each of ``rows``, in one transaction (lock held). A record found
        damaged is moved aside, said once naming it, and rebuilt from the rows in memory,
        then written; other errors are raised (so is damage the rebuilt file shows too). One
        that cannot be moved aside stays, and the rows are kept in memory only (returns)."""
        if self._db is not None:
            try:
                with self._db:
                    self._db.executemany(statement, rows)
                return
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                damage = str(exc)
            self._close()
            aside = self._set_aside(damage, "was found damaged while running")
            if aside is None:
                return
            log.error("%s: the record of measured files was found damaged while running (%s); "
                      "moved to %s and rebuilt from the %d files it held", self.path, damage,
                      aside, len(self._rows.stamps))
        elif self._damage_kept is not None:  # not moved aside yet: never rebuilt over it
            aside = self._set_aside(self._damage_kept, "is damaged")
            if aside is None:
                return
            log.warning("%s: the damaged record of measured files is moved to %s at last and "
                        "rebuilt from the %d files held in memory", self.path, aside,
                        len(self._rows.stamps))
        self._db = self._rebuilt()  # also after a rebuild that failed: none is open then
        with self._db:
            self._db.executemany(statement, rows)

    def _rebuilt(self) -> sqlite3.Connection:
        """A new record at ``path`` holding the rows in memory (lock held)."""
        for suffix in _FILE_SUFFIXES:  # a rebuild that failed before may have left them
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        db = _open_db(self.path)
        try:
            with db:
                db.executemany(_INSERT, self._rows.stored())
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, damage: str, found: str) -> Path | None:
        """Move the damaged record aside (``_move_aside``); None where the filesystem refuses:
        it stays where it is, untouched, and that is said once (the module's docstring)."""
        try:
            aside = self._move_aside()
        except OSError as exc:
            if self._damage_kept is None:
                log.error("%s: the record of measured files %s (%s) and cannot be moved aside "
                          "(%s); kept as it is, and the files measured are recorded in memory "
                          "only until it can be: after a restart before then they are "
                          "measured again, under the same ids", self.path, found, damage, exc)
            self._damage_kept = damage
            return None
        self._damage_kept = None
        return aside

    def _move_aside(self) -> Path:
        """Move the record (its write-ahead log and index too: left behind, a new record
        would take them for its own) to ``NAME.damaged``, replacing an earlier one."""
        aside = self.path.with_name(self.path.name + ".damaged")
        for suffix in _FILE_SUFFIXES:
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                source.replace(aside.with_name(aside.name + suffix))
        return aside

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):  # a damaged file may fail its checkpoint
                self._db.close()
            self._db = None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._close()


class _Rows:
    """The record's rows as committed, in memory: what every look reads, and what a record
    found damaged while running is rebuilt from."""

    def __init__(self, db: sqlite3.Connection | None) -> None:
        """The rows of ``db``; none without one (a damaged record kept where it is)."""
        self.stamps: dict[str, FileStamp] = {}  # by the name the folder lists
        self._digests: dict[str, bytes | None] = {}
        self._names_of: dict[bytes, dict[str, None]] = {}  # digest -> names (in order)
        if db is None:
            return
        for key, size, mtime, digest in db.execute(
                "SELECT name, size_bytes, mtime_ns, digest FROM measured"):
            self.put(FileStamp(_listed_name(key), size, mtime), digest)

    def put(self, stamp: FileStamp, digest: bytes | None) -> None:
        """The file recorded as ``stamp`` (replacing a row of its name)."""
        self.drop(stamp.name)
        self.stamps[stamp.name] = stamp
        self._digests[stamp.name] = digest
        if digest is not None:
            self._names_of.setdefault(digest, {})[stamp.name] = None

    def drop(self, name: str) -> None:
        """Forget the file of this name, if recorded."""
        self.stamps.pop(name, None)
        digest = self._digests.pop(name, None)
        if digest is not None:
            names = self._names_of[digest]
            del names[name]
            if not names:
                del self._names_of[digest]

    def holding(self, digest: bytes) -> FileStamp | None:
        """A file recorded with this picture."""
        names = self._names_of.get(digest)
        return self.stamps[next(iter(names))] if names else None

    def stored(self) -> list[tuple[object, ...]]:
        """Every row as the file keeps it."""
        return [_stored_row(stamp, self._digests[name]) for name, stamp in self.stamps.items()]


def _stored_row(stamp: FileStamp, digest: bytes | None) -> tuple[object, ...]:
    return (_stored_name(stamp.name), stamp.size_bytes, stamp.mtime_ns, digest)


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    return getattr(exc, "sqlite_errorname", "") in _DAMAGED


def _stored_name(name: str) -> str | bytes:
    """A file name as the record keeps it: text, or the name's bytes where it is not UTF-8
    (SQLite text cannot hold surrogate escapes; the column keeps such a name as a blob)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def _listed_name(stored: str | bytes) -> str:
    """The name as the folder lists it, from what the record keeps."""
    return os.fsdecode(stored) if isinstance(stored, bytes) else stored


def _open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        _check_whole(db)
        columns = {row[1] for row in db.execute("PRAGMA table_info(measured)")}
        if "digest" not in columns:  # a record from before digests: its rows have none
            db.execute("ALTER TABLE measured ADD COLUMN digest BLOB")
        db.commit()
    except BaseException:
        db.close()
        raise
    return db


def _check_whole(db: sqlite3.Connection) -> None:
    """RecordDamagedError unless every page of the record reads as sound. Counting its rows
    read only the smallest index, so a damaged page of the table itself opened as sound and
    then failed every read of the folder source's open: the folder stayed offline for good."""
    found = [str(row[0]) for row in db.execute("PRAGMA quick_check(3)")]
    if found != ["ok"]:
        raise RecordDamagedError("; ".join(found))
