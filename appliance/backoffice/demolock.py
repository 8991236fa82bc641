"""One ``appliance demo`` at a time on a store: a second one is refused at once.

Every demo names its kiosks the same (``demo/kiosk-demo-1`` ...), so two demos on one store
(both on ./state by default) mixed their results, and the first one's closing fleet table
showed the other's kiosks as online. While a demo runs it holds the store's demo lock, which
the system drops when the demo ends, kill -9 included, so none is left stuck:

- SQLite: an exclusive ``flock`` on ``demo.lock`` beside the store's file
  (appliance/filelock.py). The kernel drops it with the process; the file stays, holding the
  pid of the last demo that took it, which a refusal names.
- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) in the database itself,
  held on a connection of its own, whose key is taken from a fixed name and the schema the
  store's tables are in (demos on two schemas of one database keep apart stores). The server
  drops it when that session ends: a demo that exits or is killed closes its connection. The
  session's ``application_name`` carries the demo's pid and host, which a refusal names. A
  lock file would not do: demos started in two folders (or on two hosts) have two.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from appliance.backoffice.pgconnect import postgres_connection
from appliance.backoffice.storeerrors import StoreError, explained
from appliance.backoffice.storeurl import POSTGRES_SCHEMES, store_name
from appliance.filelock import LockBusyError, LockOpenError, LockUnsupportedError, exclusive_lock

LOCK_NAME = "demo.lock"
ADVISORY_LOCK_NAME = "appliance demo"  # with the schema, what the advisory lock's key is from
_APPLICATION = "appliance demo"  # the lock session's application_name: this, then (pid N ...)
_APPLICATION_NAME_BYTES = 63  # PostgreSQL cuts a longer application_name (NAMEDATALEN - 1)
_REMEDY = ("the two would mix their kiosks and results; wait for it to end, or run this one "
           "with --throwaway, or give it another --store or --config")


class DemoLockError(RuntimeError):
    """Another demo runs on the store, or its lock cannot be taken; the text says what to do."""


@contextmanager
def demo_lock(store_url: str) -> Iterator[None]:
    """Hold the demo lock of ``store_url`` for the ``with`` block; DemoLockError when another
    demo holds it, StoreError when a PostgreSQL store cannot be reached. A URL of neither
    kind takes none: the store refuses it before anything starts."""
    if store_url.startswith(POSTGRES_SCHEMES):
        with _database_lock(store_url):
            yield
    elif store_url.startswith("sqlite:///"):
        with _file_lock(lock_path(store_url)):
            yield
    else:
        yield


def lock_path(sqlite_url: str) -> Path:
    """The demo lock file of a SQLite store: beside the store's file."""
    return Path(sqlite_url.removeprefix("sqlite:///")).parent / LOCK_NAME


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold the demo lock file at ``path``; DemoLockError when another demo holds it."""
    try:
        lock = exclusive_lock(path, record_pid=True)
    except LockOpenError as exc:
        raise DemoLockError(f"cannot make or open the lock file {path} ({exc.strerror}); "
                            "give a writable --store or --config, or run it with --throwaway"
                            ) from exc
    except LockBusyError as exc:
        raise DemoLockError(f"another demo{exc.holder} runs on this store now ({path} is "
                            f"locked): {_REMEDY}") from exc
    except LockUnsupportedError as exc:
        raise DemoLockError(f"cannot lock {path} ({exc.strerror}); give a --store on a "
                            "local disk, or run it with --throwaway") from exc
    with lock:
        yield


@contextmanager
def _database_lock(store_url: str) -> Iterator[None]:
    """Hold the demo's advisory lock in the PostgreSQL store ``store_url`` on a connection of
    its own, closed (the lock with it) on the way out."""
    conn = postgres_connection(store_url, application_name=_application_name())
    try:
        key = _taken(conn, store_url)
        try:
            yield
        finally:
            _unlock(conn, key)
    finally:
        conn.close()


def _taken(conn: Any, store_url: str) -> int:
    """Take the demo's advisory lock of the connection's schema; its key. DemoLockError when
    another demo holds it; StoreError naming the database when the server fails the queries
    (it went away right after the connection was made, a pooler refused them)."""
    import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

    try:
        schema = str(conn.execute("SELECT current_schema()").fetchone()[0] or "")
        key = advisory_key(schema)
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            return key
        holder = _holder(conn, key)
    except psycopg.Error as exc:
        raise StoreError(f"cannot take the demo's lock in the {store_name(store_url)}: "
                         f"{explained(exc)}") from exc
    raise DemoLockError(
        f"another demo{holder} runs on this store now (the {store_name(store_url)}, schema "
        f"{schema or '(none)'}, holds its lock): {_REMEDY}")


def _unlock(conn: Any, key: int) -> None:
    """Drop the advisory lock ``key`` at once (a closed session's locks go a moment later, when
    the server has ended it); nothing to drop when the server went away with the session."""
    import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

    with suppress(psycopg.Error):
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def advisory_key(schema: str) -> int:
    """The demo's advisory lock key on ``schema``: the first 8 bytes of the SHA-256 of the
    fixed name and the schema, as the signed 64-bit number PostgreSQL takes."""
    digest = hashlib.sha256(f"{ADVISORY_LOCK_NAME}\0{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _application_name() -> str:
    """``appliance demo (pid N on HOST)``, without the host where it would be cut."""
    name = f"{_APPLICATION} (pid {os.getpid()} on {socket.gethostname()})"
    if len(name.encode()) > _APPLICATION_NAME_BYTES:
        return f"{_APPLICATION} (pid {os.getpid()})"
    return name


def _holder(conn: Any, key: int) -> str:
    """`` (pid N on HOST)`` of the demo whose session holds the advisory lock ``key``, '' when
    it has gone meanwhile or names no demo. A bigint key shows in pg_locks as its high and low
    32 bits (classid, objid) with objsubid 1."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s",
        (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()
    name = str(row[0]) if row is not None and row[0] is not None else ""
    return name.removeprefix(_APPLICATION) if name.startswith(f"{_APPLICATION} (") else ""
