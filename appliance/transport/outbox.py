"""The durable outbox: every result is committed here (fsync) before anything publishes it.

SQLite in WAL mode. Inserts commit with ``synchronous=FULL``, so a result the daemon has
accepted survives SIGKILL and power loss. Rows are deleted only when the broker's PUBACK
arrives; deletes commit with ``synchronous=NORMAL``, because losing a delete to a power cut
only means a duplicate later (the back office de-duplicates on ``measurement_id``), never a loss.
The outbox is bounded by a row count and an age; what the policy drops is counted, persisted
and reported in the device status.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

OutboxPolicy = Literal["drop_oldest", "refuse_new"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "measurement_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, "
    "created_at_s REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped', 0)",
)


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or written; the message names the file."""


class OutboxFullError(OutboxError):
    """The outbox is at its row limit and its policy is ``refuse_new``."""


@dataclass(frozen=True)
class OutboxMessage:
    """One stored message, in commit order (``seq``)."""

    seq: int
    measurement_id: str
    topic: str
    payload: bytes
    created_at_s: float


class Outbox:
    """A bounded, durable FIFO of messages waiting for their PUBACK; safe across threads."""

    def __init__(
        self,
        path: Path,
        max_rows: int = 100_000,
        max_age_s: float = 30 * 86400.0,
        policy: OutboxPolicy = "drop_oldest",
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.policy: OutboxPolicy = policy
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(
                f"{path}: cannot open the outbox ({exc}); if the file is corrupt, move it aside "
                "(its unsent results are in it) and restart"
            ) from exc

    def add_many(self, messages: Sequence[tuple[str, str, bytes]]) -> list[int]:
        """Commit (measurement_id, topic, payload) messages in one fsync'd transaction."""
        if not messages:
            return []
        now_s = time.time()
        with self._lock:
            overflow = self._depth + len(messages) - self.max_rows
            if overflow > 0 and self.policy == "refuse_new":
                self._count_dropped_locked(len(messages))
                raise OutboxFullError(
                    f"{self.path}: outbox holds {self._depth} of {self.max_rows} results and its "
                    f"policy is refuse_new; {len(messages)} new result(s) dropped"
                )
            return self._insert_locked(messages, now_s, max(0, overflow))

    def _insert_locked(
        self, messages: Sequence[tuple[str, str, bytes]], now_s: float, overflow: int
    ) -> list[int]:
        try:
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            seqs = []
            for measurement_id, topic, payload in messages:
                cursor = self._db.execute(
                    "INSERT INTO outbox (measurement_id, topic, payload, created_at_s) "
                    "VALUES (?, ?, ?, ?)",
                    (measurement_id, topic, payload, now_s),
                )
                seqs.append(int(cursor.lastrowid or 0))
            dropped = self._drop_oldest_locked(overflow) if overflow else 0
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback_locked()
            raise OutboxError(f"{self.path}: could not commit results ({exc})") from exc
        self._depth += len(messages) - dropped
        return seqs

    def _drop_oldest_locked(self, count: int) -> int:
        dropped = self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
            (count,),
        ).rowcount
        self._count_dropped_locked(dropped)
        return int(dropped)

    def _rollback_locked(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction open: nothing to undo
            self._db.execute("ROLLBACK")

    def _count_dropped_locked(self, count: int) -> None:
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (count,))

    def pending(self, after_seq: int = 0, limit: int = 1000) -> list[OutboxMessage]:
        """Messages with ``seq > after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, measurement_id, topic, payload, created_at_s FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxMessage(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), r[4]) for r in rows]

    def remove(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged messages; returns how many were still there."""
        batch = [(seq,) for seq in seqs]
        if not batch:
            return 0
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", batch)
            removed = self._db.total_changes - before
            self._db.execute("COMMIT")
            self._depth -= removed
        return removed

    def expire(self, now_s: float | None = None) -> int:
        """Drop messages older than ``max_age_s`` (counted as dropped); returns how many."""
        cutoff_s = (time.time() if now_s is None else now_s) - self.max_age_s
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            removed = self._db.execute(
                "DELETE FROM outbox WHERE created_at_s < ?", (cutoff_s,)
            ).rowcount
            if removed:
                self._count_dropped_locked(removed)
            self._db.execute("COMMIT")
            self._depth -= removed
        return int(removed)

    def depth(self) -> int:
        """How many messages wait for their PUBACK."""
        return self._depth

    def dropped(self) -> int:
        """How many messages the size/age policy has dropped, ever (persisted)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database (committed messages stay on disk)."""
        with self._lock:
            self._db.close()
