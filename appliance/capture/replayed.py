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
"""

from __future__ import annotations

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
_DIGEST_INDEX = "CREATE INDEX IF NOT EXISTS measured_digest ON measured (digest)"


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
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        """Open the record; a damaged one is moved aside (its files are then measured again,
        under the same ids, so the back office keeps one result each)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _open_db(self.path)
        except RecordDamagedError as exc:
            damage = str(exc)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") not in _DAMAGED:
                raise  # not damage (permissions, a full disk): the caller names it
            damage = str(exc)
        aside = self.path.with_name(self.path.name + ".damaged")
        log.error("%s: the record of measured files is damaged (%s); moved to %s and "
                  "started afresh", self.path, damage, aside)
        self.path.replace(aside)
        return _open_db(self.path)

    def measured(self) -> dict[str, FileStamp]:
        """Every file whose result is committed, by name, as it was when it was read."""
        with self._lock:
            rows = self._db.execute("SELECT name, size_bytes, mtime_ns FROM measured").fetchall()
        stamps = (FileStamp(_listed_name(key), size, mtime) for key, size, mtime in rows)
        return {stamp.name: stamp for stamp in stamps}

    def record(self, stamps: Iterable[FileStamp],
               digests: Mapping[FileStamp, bytes] | None = None) -> None:
        """Mark files measured (their results are committed), each with its picture's digest
        where ``digests`` has it; a failed write is logged, not raised: the files are then
        measured again after a restart, under the same ids."""
        digests = digests or {}
        rows = [(_stored_name(s.name), s.size_bytes, s.mtime_ns, digests.get(s)) for s in stamps]
        try:
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO measured (name, size_bytes, "
                                     "mtime_ns, digest) VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            log.error("%s: cannot record %d measured file(s) (%s); they will be measured "
                      "again after a restart", self.path, len(rows), exc)

    def holds(self, stamp: FileStamp) -> bool:
        """Whether the file is recorded measured as it was in ``stamp``."""
        with self._lock:
            row = self._db.execute("SELECT size_bytes, mtime_ns FROM measured WHERE name = ?",
                                   (_stored_name(stamp.name),)).fetchone()
        return row is not None and tuple(row) == (stamp.size_bytes, stamp.mtime_ns)

    def holding_picture(self, digest: bytes) -> FileStamp | None:
        """A file recorded measured with this very picture (None: no such file)."""
        with self._lock:
            row = self._db.execute("SELECT name, size_bytes, mtime_ns FROM measured "
                                   "WHERE digest = ? LIMIT 1", (digest,)).fetchone()
        return None if row is None else FileStamp(_listed_name(row[0]), row[1], row[2])

    def prune(self, present_names: set[str]) -> int:
        """Forget files no longer in the folder (the record stays as small as the folder)."""
        with self._lock:
            gone = [(key,) for key in self._all_keys() if _listed_name(key) not in present_names]
            with self._db:
                self._db.executemany("DELETE FROM measured WHERE name = ?", gone)
        return len(gone)

    def _all_keys(self) -> list[str | bytes]:
        return [row[0] for row in self._db.execute("SELECT name FROM measured")]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


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
        db.execute(_DIGEST_INDEX)
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
