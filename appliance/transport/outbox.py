"""The durable outbox: every result is committed here (fsync) before anything publishes it.

SQLite in WAL mode. Inserts commit with ``synchronous=FULL``, so a result the daemon has
accepted survives SIGKILL and power loss. Rows are deleted only when the back office says it
has committed them (an end-to-end ack naming their ``measurement_id``; a broker's PUBACK is not
enough); deletes commit with ``synchronous=NORMAL``, because losing a delete to a power cut
only means a duplicate later (the back office de-duplicates on ``measurement_id``), never a loss.
The outbox is bounded by a row count and an age; what the policy drops is counted, persisted
and reported in the device status. With ``keep_confirmed_s`` a confirmed result is not deleted
but marked confirmed (appliance/transport/outbox_kept.py): kept for that long from its first
confirmation (a resend's ack does not start it anew), never sent again on its own, sent again
when the back office asks for what it confirmed since a time (a store restored from a backup),
and the first to go when room is needed; it counts in no bound of the
waiting results and never pushes one out; where less than ``keep_free_bytes`` is free on its
disk they all go (checked with the age limit, once a minute).
When a commit is refused (disk full, I/O error) the results it held are counted as lost in
``LostTally`` (appliance/transport/losttally.py), a file of 8 bytes beside the outbox that is
overwritten in place (no new block, so it takes the count on a full disk too, and the count
survives a restart before the disk has room again); where even that fails the count is kept in
memory and written with the next commit that succeeds, so ``dropped()`` never under-reports
(appliance/transport/outbox_losses.py).
A kiosk started on a full disk still sends what waits, and a new outbox a full disk cannot take
waits in memory, refusing writes, until its file can be made (appliance/transport/outbox_file.py).
An outbox that lost rows it had (cut to 0 bytes, deleted, replaced) is noticed by the high-water
mark beside it (appliance/transport/highwater.py): the loss is said once and counted as dropped.
Every write and read raises ``OutboxError`` (never a bare sqlite3 error), so a full disk cannot
kill the thread that writes. A file found damaged while in use (SQLite says "malformed" or "not
a database") raises ``OutboxCorruptError`` and sets ``damaged``: the daemon then holds what it
could not commit and restarts to repair the file (appliance/transport/outbox_repair.py), since a
repair renumbers the rows under the link; the counters (``dropped()``, ``depth()``) keep
answering from what was last read. A jump of the wall clock (NTP's first sync on a kiosk
without a battery-backed clock) moves the commit times of the waiting results with it, so the
age limit counts the time that really passed (appliance/transport/wallclock.py).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from appliance.diskspace import file_size_limit_hint, free_bytes, full_disk_hint
from appliance.transport import highwater, outbox_file, outbox_kept, wallclock
from appliance.transport.outbox_file import (
    OutboxCorruptError,
    OutboxError,
    OutboxFullError,
    OutboxMessage,
    OutboxWriteError,
    RecoveredRow,
    is_corrupt,
)
from appliance.transport.outbox_losses import OutboxLosses, count_dropped, read_dropped

log = logging.getLogger(__name__)

OutboxPolicy = Literal["drop_oldest", "refuse_new"]
KEEP_FREE_BYTES = 64 << 20  # room on the disk that kept confirmed results never take
WAITING = f"{outbox_file.CONFIRMED_COLUMN} IS NULL"  # a row the back office has not confirmed
NEVER_CONFIRMED = f"{WAITING} AND NOT {outbox_kept.ONCE_CONFIRMED}"  # nor ever did: it can be lost


class Outbox:
    """A bounded, durable FIFO of messages waiting for their PUBACK; safe across threads."""

    def __init__(
        self,
        path: Path,
        max_rows: int = 100_000,
        max_age_s: float = 30 * 86400.0,
        policy: OutboxPolicy = "drop_oldest",
        *,
        side_files: bool = True,  # False: a copy being built by a repair, not the outbox yet
        beside: Path | None = None,  # whose side files it keeps (a repaired copy: the outbox's)
        keep_confirmed_s: float = 0.0,  # how long a confirmed result is kept (0: deleted at once)
        keep_free_bytes: int = KEEP_FREE_BYTES,  # kept results go where less is free on the disk
    ) -> None:
        self.keep_free_bytes = keep_free_bytes
        self.path = path
        self.keep_confirmed_s = keep_confirmed_s
        self.beside = beside or path  # the outbox path its lost tally and mark sit beside
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.policy: OutboxPolicy = policy
        self._lock = threading.Lock()
        self.damaged: str | None = None  # why the file was found damaged while in use
        self.probe_error = ""  # why the last probe (``writable``) could not commit
        self._clock, self._boot = wallclock.JumpWatch(), wallclock.BootRows()
        self._unmade = ""  # why a new outbox's file is not made yet (a full disk)
        try:
            self._db, self._depth = outbox_file.open_checked(path)
        except (sqlite3.Error, OSError) as exc:
            full = full_disk_hint(path)
            if not (full and side_files and outbox_file.holds_nothing(path)):
                raise outbox_file.open_error(path, exc, full) from exc
            self._db = self._put_off(exc, full)
        self._losses = OutboxLosses(self.beside, side_files)
        self._kept = outbox_kept.count(self._db)  # confirmed results kept (as ``_depth``)
        if self._losses.found_lost_rows(self._db, self._depth):
            self.writable()  # counted, and the sequence going on from the mark, now if it can

    def _put_off(self, exc: Exception, full: str) -> sqlite3.Connection:
        """A new outbox on a full disk: an empty one in memory that answers reads and takes no
        write; every write first makes the file (``_made_locked``), and is refused until it can,
        so the kiosk starts with measuring paused, as it does with an outbox already there."""
        self._unmade = f"{self.path}: the outbox cannot be made yet ({exc}): {full}"
        log.warning("%s; nothing waits in it, and it is made once the disk has room (measuring "
                    "waits until then)", self._unmade)
        self._depth = 0
        return outbox_file.stand_in()

    def _made_locked(self) -> bool:
        """Whether the outbox file is made: now, where a full disk put it off (else ``probe_error``
        says why)."""
        if not self._unmade:
            return True
        try:
            db, depth = outbox_file.open_checked(self.path)
        except (sqlite3.Error, OSError, OutboxError) as exc:
            full = full_disk_hint(self.path)
            self.probe_error = f"{self.path}: the outbox cannot be made yet ({exc})"
            self.probe_error += f": {full}" if full else ""
            if isinstance(exc, OutboxCorruptError):
                self.damaged = str(exc)
            return False
        self._db.close()  # the empty stand-in: it never took a write
        self._db, self._depth, self._unmade = db, depth, ""
        log.warning("%s: the outbox is made now", self.path)
        return True

    def add_many(self, messages: Sequence[tuple[str, str, bytes]]) -> list[int]:
        """Commit (measurement_id, topic, payload) messages in one fsync'd transaction."""
        if not messages:
            return []
        now = wallclock.clock_now()
        with self._lock:
            self._require_made_locked("commit results")
            overflow = self._depth + len(messages) - self.max_rows
            if overflow > 0 and self.policy == "refuse_new":
                overflow -= self._drop_resent_locked(overflow)
            if overflow > 0 and self.policy == "refuse_new":
                count_dropped(self._db, len(messages))
                raise OutboxFullError(
                    f"{self.path}: outbox holds {self._depth} of {self.max_rows} results and its "
                    f"policy is refuse_new; {len(messages)} new result(s) dropped"
                )
            return self._insert_locked(messages, now, max(0, overflow))

    def _insert_locked(
        self, messages: Sequence[tuple[str, str, bytes]], now: wallclock.ClockReading,
        overflow: int,
    ) -> list[int]:
        now_s = now[0]
        with self._writing("FULL", "commit results"):
            self._follow_clock_jump_locked(now)
            unsaved = self._losses.fold(self._db)
            seqs = []
            for measurement_id, topic, payload in messages:
                cursor = self._db.execute(
                    "INSERT INTO outbox (measurement_id, topic, payload, created_at_s) "
                    "VALUES (?, ?, ?, ?)",
                    (measurement_id, topic, payload, now_s),
                )
                seqs.append(int(cursor.lastrowid or 0))
            dropped = self._drop_oldest_locked(overflow) if overflow else 0
        self._depth += len(messages) - dropped
        self._losses.folded(self._db, self._depth, unsaved)
        self._clock.seen(now)
        return seqs

    def _follow_clock_jump_locked(self, now: wallclock.ClockReading) -> None:
        """Move the commit times of the results this boot committed by a jump of the wall
        clock (in a write)."""
        jump_s, floor = self._clock.jump_s(now), self._boot.floor(self._db)
        if jump_s:
            moved = self._db.execute(
                "UPDATE outbox SET created_at_s = created_at_s + ? WHERE seq > ?", (jump_s, floor)
            ).rowcount
            log.warning("%s: the wall clock jumped by %+.0f s; the ages of %d waiting result(s) "
                        "follow it", self.path, jump_s, moved)

    def _record_mark_locked(self) -> None:
        """Overwrite the high-water mark with what is committed now (after a commit)."""
        self._losses.record_mark(self._db, self._depth)

    def count_lost(self, count: int) -> None:
        """Count results that never reached the file (a refused commit) as dropped."""
        with self._lock:
            self._losses.add(count)

    def writable(self) -> bool:
        """Whether a write commits now (and saves the lost count); for recovery probes."""
        with self._lock:
            if not self._made_locked():
                return False
            try:
                with self._writing("FULL", "commit a probe"):  # a damaged file: marked so
                    unsaved = self._losses.fold(self._db)
                    self._db.execute(
                        "INSERT OR REPLACE INTO counters (name, value) VALUES ('probe', 0)"
                    )
            except OutboxError as exc:
                self.probe_error = str(exc)
                return False
            self._losses.folded(self._db, self._depth, unsaved)
            self.probe_error = ""
            return True

    def add_recovered(
        self, rows: Sequence[RecoveredRow], dropped: int = 0, after_seq: int = 0
    ) -> int:
        """Commit rows salvaged from a damaged outbox, keeping their ids, ages and
        confirmations (a kept result stays kept, its window from its first confirmation), and
        count ``dropped`` (its unreadable rows and earlier count) in the same transaction;
        new results then take sequence numbers after ``after_seq`` (the damaged one's mark)."""
        with self._lock:
            self._require_made_locked("keep salvaged rows")
            with self._writing("FULL", "keep salvaged rows"):
                if after_seq:
                    highwater.raise_seq(self._db, after_seq)
                self._boot.floor(self._db)  # the salvaged rows count as this boot's: they follow
                self._db.executemany(
                    "INSERT INTO outbox (measurement_id, topic, payload, created_at_s, "
                    f"{outbox_file.CONFIRMED_COLUMN}, {outbox_file.FIRST_CONFIRMED_COLUMN}) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.message.measurement_id, r.message.topic, r.message.payload,
                      r.message.created_at_s, r.confirmed_at_s, r.first_confirmed_at_s)
                     for r in rows],
                )
                count_dropped(self._db, dropped)
            kept = sum(row.confirmed_at_s is not None for row in rows)
            self._depth += len(rows) - kept
            self._kept += kept
            self._record_mark_locked()
        return len(rows)

    def _require_made_locked(self, what: str) -> None:
        """OutboxWriteError when the outbox file is not made yet (nor can be now)."""
        if not self._made_locked():
            raise OutboxWriteError(f"{self.probe_error}; could not {what}")

    def _drop_resent_locked(self, count: int) -> int:
        """Make room for ``count`` new results from those waiting to be sent again (the back
        office confirmed them once), uncounted, before a ``refuse_new`` outbox refuses any; how
        many went. Only a write where there are some: a full outbox on a full disk is refused as
        full, as before."""
        with self._reading("read results sent again"):
            if not outbox_kept.any_resent(self._db):
                return 0
        with self._writing("NORMAL", "make room from results sent again"):
            resent = outbox_kept.drop_resent(self._db, count)
        self._depth -= resent
        return resent

    def _drop_oldest_locked(self, count: int) -> int:
        """Make room for ``count`` results: those waiting to be sent again go first, uncounted
        (the back office confirmed them once), then the oldest never confirmed, counted lost."""
        resent = outbox_kept.drop_resent(self._db, count)
        dropped = self._db.execute(
            f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE {NEVER_CONFIRMED} "
            "ORDER BY seq LIMIT ?)",
            (count - resent,),
        ).rowcount if count > resent else 0
        count_dropped(self._db, dropped)
        return resent + int(dropped)

    @contextlib.contextmanager
    def _writing(self, synchronous: str, what: str) -> Iterator[None]:
        """One write transaction (lock held); any sqlite error rolls back as OutboxWriteError."""
        try:
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback_locked()
            raise self._failed_locked(exc, what) from exc

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """One read (lock held); any sqlite error is an OutboxError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._failed_locked(exc, what) from exc

    def _failed_locked(self, exc: sqlite3.Error, what: str) -> OutboxError:
        """The error to raise for a failed statement; a damaged file is marked ``damaged``."""
        if is_corrupt(exc):
            self.damaged = f"{self.path}: the outbox file is damaged ({exc})"
            return OutboxCorruptError(f"{self.damaged}; could not {what}")
        limit = file_size_limit_hint(self.path)  # "disk I/O error" on a disk with room
        return OutboxWriteError(f"{self.path}: could not {what} ({exc})"
                                + (f": {limit}" if limit else ""))

    def _messages(self, rows: list[tuple[Any, ...]]) -> list[OutboxMessage]:
        """The rows as messages; a garbled one marks the file damaged (OutboxCorruptError):
        sent as it reads, it would be bytes no back office can take, resent until its age
        limit."""
        messages = [outbox_file.message_of(row) for row in rows]
        good = [message for message in messages if message is not None]
        if len(good) < len(messages):
            self.damaged = f"{self.path}: the outbox file is damaged (a garbled row)"
            raise OutboxCorruptError(f"{self.damaged}; could not read waiting results")
        return good

    def _rollback_locked(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction open: nothing to undo
            self._db.execute("ROLLBACK")

    def pending(self, after_seq: int = 0, limit: int = 1000) -> list[OutboxMessage]:
        """Messages with ``seq > after_seq``, oldest first."""
        return self._pending_where(f"seq > ? AND {WAITING}", (after_seq,), limit)

    def pending_elsewhere(self, topic: str, after_seq: int = 0,
                          limit: int = 1000) -> list[OutboxMessage]:
        """Messages with ``seq > after_seq`` on another topic than ``topic``, oldest first;
        the payloads of those on ``topic`` are not read (a full outbox is mostly them)."""
        return self._pending_where(f"seq > ? AND topic != ? AND {WAITING}", (after_seq, topic),
                                   limit)

    def _pending_where(self, where: str, args: tuple[int | str, ...],
                       limit: int) -> list[OutboxMessage]:
        with self._lock, self._reading("read waiting results"):
            rows = self._db.execute(
                "SELECT seq, measurement_id, topic, payload, created_at_s FROM outbox "
                f"WHERE {where} ORDER BY seq LIMIT ?",
                (*args, limit),
            ).fetchall()
        return self._messages(rows)

    def remove(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged messages; returns how many were still there."""
        batch = [(seq,) for seq in seqs]
        if not batch:
            return 0
        with self._lock:
            with self._writing("NORMAL", "remove acknowledged results"):
                before = self._db.total_changes
                self._db.executemany(f"DELETE FROM outbox WHERE seq = ? AND {WAITING}", batch)
                removed = self._db.total_changes - before
            self._depth -= removed
            self._record_mark_locked()
        return removed

    def remove_ids(self, measurement_ids: Iterable[str], *,
                   confirmed_at_s: float | None = None) -> list[int]:
        """The back office committed the messages of these measurement ids: they wait no
        more (deleted, or kept marked confirmed for ``keep_confirmed_s``); returns their seqs.
        ``confirmed_at_s``: the back office's time of its ack (Unix time, its clock), which a
        resend's time is on, whatever this kiosk's clock says (None: this kiosk's clock)."""
        ids = [(mid,) for mid in dict.fromkeys(measurement_ids)]
        if not ids:
            return []
        now_s = wallclock.clock_now()[0] if confirmed_at_s is None else confirmed_at_s
        with self._lock:
            with self._writing("NORMAL", "remove acknowledged results"):
                seqs = outbox_kept.confirm(self._db, ids, now_s if self.keep_confirmed_s else None)
                kept = len(seqs) if self.keep_confirmed_s else 0
                if self._kept + kept > self.max_rows:  # a scan: only when there are too many
                    kept -= outbox_kept.trim(self._db, self.max_rows)
            self._depth -= len(seqs)
            self._kept += kept
            self._record_mark_locked()
        return seqs

    def reopen_confirmed(self, since_s: float) -> list[int]:
        """Have the kept results the back office confirmed at or after ``since_s`` (its
        clock) wait again, to be sent again; returns their seqs, oldest first."""
        with self._lock:
            with self._writing("FULL", "reopen confirmed results"):
                seqs = outbox_kept.reopen(self._db, since_s)
            self._depth += len(seqs)
            self._kept -= len(seqs)
            self._record_mark_locked()
        return seqs

    def forget_confirmed(self, measurement_ids: Sequence[str]) -> int:
        """Delete the results of these measurement ids the back office confirmed (kept, or
        waiting to be sent again on request), in one fsync'd transaction: it erased them
        (appliance/transport/forget.py); returns how many went. One it never confirmed stays."""
        ids = list(dict.fromkeys(measurement_ids))
        if not ids:
            return 0
        with self._lock:
            with self._writing("FULL", "delete erased results"):
                kept, waiting = outbox_kept.forget(self._db, ids)
            self._depth -= waiting
            self._kept -= kept
            self._record_mark_locked()
        return kept + waiting

    def kept_confirmed(self) -> int:
        """How many confirmed results the outbox keeps, to send again on request."""
        return self._kept

    def relabel(self, changes: Sequence[tuple[int, str, bytes]]) -> int:
        """Give waiting messages (seq, new topic, new payload) a new topic and payload, each
        keeping its seq, measurement id and age; how many were still there."""
        if not changes:
            return 0
        with self._lock, self._writing("FULL", "relabel waiting results"):
            before = self._db.total_changes
            self._db.executemany("UPDATE outbox SET topic = ?, payload = ? WHERE seq = ?",
                                 [(topic, payload, seq) for seq, topic, payload in changes])
            return int(self._db.total_changes - before)

    def get(self, seqs: Sequence[int]) -> list[OutboxMessage]:
        """The messages with these seqs that are still stored, oldest first."""
        found: list[OutboxMessage] = []
        for start in range(0, len(seqs), 500):
            chunk = list(seqs[start : start + 500])
            marks = ",".join("?" * len(chunk))
            with self._lock, self._reading("read results to send again"):
                rows = self._db.execute(
                    "SELECT seq, measurement_id, topic, payload, created_at_s FROM outbox "
                    f"WHERE seq IN ({marks}) AND {WAITING}",
                    chunk,
                ).fetchall()
            found += self._messages(rows)
        return sorted(found, key=lambda message: message.seq)

    def oldest_age_s(self, now_s: float | None = None) -> float | None:
        """Seconds since the oldest waiting message the back office never confirmed was
        committed, the one the age limit takes first (None: none, or unreadable)."""
        try:
            with self._lock, self._reading("read the oldest result's age"):
                row = self._db.execute(
                    f"SELECT MIN(created_at_s) FROM outbox WHERE {NEVER_CONFIRMED}").fetchone()
        except OutboxError:
            return None
        if row is None or row[0] is None:
            return None
        return max(0.0, (time.time() if now_s is None else now_s) - float(row[0]))

    def expire(self, now_s: float | None = None) -> int:
        """Drop messages older than ``max_age_s`` (counted as dropped); returns how many.
        Kept confirmed results past ``keep_confirmed_s`` go too (not counted: delivered), and so
        do those waiting to be sent again on request: no age limit takes them, their window
        does (from their first confirmation), uncounted."""
        now = wallclock.clock_now()
        base_s = now[0] if now_s is None else now_s
        cutoff_s = base_s - self.max_age_s
        with self._lock:
            with self._writing("FULL", "expire old results"):
                self._follow_clock_jump_locked(now)
                removed = self._db.execute(
                    f"DELETE FROM outbox WHERE created_at_s < ? AND {NEVER_CONFIRMED}",
                    (cutoff_s,),
                ).rowcount
                if removed:
                    count_dropped(self._db, removed)
                resent = outbox_kept.expire_resent(self._db, base_s - self.keep_confirmed_s)
                aged = outbox_kept.expire(self._db, base_s - self.keep_confirmed_s)
                aged += self._make_room_locked(self._kept - aged)
            self._depth -= removed + resent
            self._kept -= aged
            self._record_mark_locked()
            self._clock.seen(now)
        return int(removed)

    def _make_room_locked(self, kept: int) -> int:
        """Delete the ``kept`` confirmed results (in a write) where less than
        ``keep_free_bytes`` is free on the outbox's disk: they are delivered, and the room is
        for results that wait; how many went."""
        free = free_bytes(self.path) if kept else None
        if free is None or free >= self.keep_free_bytes:
            return 0
        freed = outbox_kept.free(self._db)
        log.warning("%s: %d KiB free on its disk, less than the %d KiB kept for waiting results; "
                    "deleted the %d confirmed result(s) kept for a resend", self.path,
                    free // 1024, self.keep_free_bytes // 1024, freed)
        return freed

    def depth(self) -> int:
        """How many messages wait for the back office's acknowledgement."""
        return self._depth

    def dropped(self) -> int:
        """How many results were lost, ever: size/age policy (persisted) and refused commits."""
        with self._lock:
            saved = None  # unreadable: the last value read stands
            with contextlib.suppress(OutboxError), self._reading("read the dropped count"):
                saved = read_dropped(self._db)
            return self._losses.total(saved)

    def close(self) -> None:
        """Close the database (committed messages stay on disk)."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # a damaged file: nothing more to keep
                self._db.close()
            self._losses.close()
