"""What the back-office store raises: ``StoreError`` when it cannot be opened or used (its text
names the database and what to do), and the database drivers' own errors, met by a query or a
write when the database fails on the way (a full disk, a server that went away).

The tuples of the drivers' errors (DATABASE_ERRORS, STORE_ERRORS, CONNECTION_LOST_ERRORS,
VALUE_REFUSED_ERRORS) are built on first use, not at import: psycopg is imported then (~0.1
CPU-s), so a SQLite command that meets no error never loads it. Each is the same tuple
whenever and wherever it is read; ``from ... import STORE_ERRORS`` builds it at once, so a
module that must not load psycopg at import reads ``storeerrors.STORE_ERRORS`` in its
``except`` (evaluated only when an exception reaches it).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING


class StoreError(RuntimeError):
    """The store could not be opened or used; the text names it and what to do."""


def _database_errors() -> tuple[type[Exception], ...]:
    """What SQLite and (where installed) psycopg raise when a query or write fails."""
    try:
        import psycopg  # noqa: PLC0415 - the backoffice extra; SQLite needs none
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def _connection_lost_errors() -> tuple[type[Exception], ...]:
    """What psycopg raises when the server failed under a query (it went away, was restarted,
    cancelled it), not a mistake in the SQL. SQLite's OperationalError is not one: it is
    raised for a missing table too (``is_outage`` tells SQLite's by its error code)."""
    try:
        import psycopg  # noqa: PLC0415 - the backoffice extra; SQLite needs none
    except ImportError:
        return ()
    return (psycopg.OperationalError,)


# SQLite's primary result codes (the low byte of sqlite_errorcode) that say the database could
# not be used just now: another connection's lock outlasted the busy timeout (BUSY, LOCKED), the
# disk failed or is full (IOERR, FULL), a file it needs could not be opened (CANTOPEN). A missing
# table or bad SQL is SQLITE_ERROR: a bug, not one of these.
_SQLITE_OUTAGE_CODES = {
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
}


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is the database failing under a statement (a lock held too long, a full
    or failing disk, a PostgreSQL server gone away) rather than a mistake in the statement:
    worth answering "try again shortly", not a bug. The ingest worker's batcher.is_transient
    is wider on purpose: there a missing table or a read-only server is waited out, never a
    reason to refuse data."""
    if isinstance(exc, sqlite3.Error):
        return _sqlite_primary_code(exc) in _SQLITE_OUTAGE_CODES
    return isinstance(exc, _errors("CONNECTION_LOST_ERRORS"))


# SQLite's primary result codes that refuse a write for the values it carries: a constraint
# (a foreign or primary key, NOT NULL), a value too large, a type or a bound parameter it cannot
# take. The same write fails each time it is tried; other writes pass.
_SQLITE_REFUSAL_CODES = {
    sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH,
    sqlite3.SQLITE_RANGE,
}


def refused_for_its_values(exc: BaseException) -> bool:
    """Whether a write failed for the values it carries, not for the store: text the driver
    cannot encode (a lone surrogate, a file name's undecodable byte), text PostgreSQL's
    ``text`` cannot hold (NUL), a number out of range, a key or constraint it breaks
    (PostgreSQL's SQLSTATE classes 22 and 23, psycopg's DataError and IntegrityError; SQLite's
    _SQLITE_REFUSAL_CODES). Trying it again cannot help, so it is not an outage. Everything
    else a write meets is waited out as one: a server gone or hung, a lock, a full disk, and a
    store that refuses every write alike (a read-only PostgreSQL server, as a standby is
    after a failover until it is promoted or the connection is made again to the new
    primary; a role without the right; a missing table), which may be set right while the
    writes wait, and whose failing every job at once would lose them."""
    if isinstance(exc, ValueError | TypeError | OverflowError):  # the driver's, before sending
        return True
    if isinstance(exc, sqlite3.Error):
        return isinstance(exc, sqlite3.IntegrityError) or \
            _sqlite_primary_code(exc) in _SQLITE_REFUSAL_CODES
    return isinstance(exc, _errors("VALUE_REFUSED_ERRORS"))


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL ending this transaction to break a deadlock (SQLSTATE
    40P01): nothing of it was done, and the same transaction may pass when tried again."""
    return getattr(exc, "sqlstate", None) == "40P01"


def held_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying another connection's lock outlasted the busy timeout."""
    return _sqlite_primary_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _sqlite_primary_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc`` (the low byte of its extended code); None for
    anything else, and for sqlite3's own errors that SQLite did not raise (a closed database)."""
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return None if code is None else int(code) & 0xFF


# PostgreSQL's SQLSTATEs of a server that is away or takes no work for now: class 08 (the
# connection failed), 57P01-57P05 (shut down, crashed, starting up or recovering, an idle
# timeout); one cause with the errors that carry none (a connection refused, closed or cut)
_SERVER_AWAY_STATES = {"57P01", "57P02", "57P03", "57P04", "57P05"}


# the SQLSTATEs of a FATAL with which PostgreSQL ends a session it had taken: shut down (a
# restart, an administrator's pg_terminate_backend, the postmaster gone: a crash), a crash of
# another server process, an idle timeout, its database dropped
_SESSION_ENDED_STATES = {"57P01", "57P02", "57P04", "57P05"}


def session_ended(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised in place of (its cause or context, as
    ``raise ... from`` and ``except`` chain them), is PostgreSQL ending the session: the server
    closes the connection after that FATAL whatever the driver says of it yet. psycopg's
    pipelined ``executemany`` (store_writes.py) met by a restart or a crash raises "cannot exit
    pipeline mode while busy" in the server's AdminShutdown's place when libpq has read the
    FATAL but not yet the connection's end: the connection then reads as open."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        state = getattr(error, "sqlstate", None)
        if isinstance(error, _errors("CONNECTION_LOST_ERRORS")) and state is not None and (
                state in _SESSION_ENDED_STATES or state[:2] == "08"):
            return True
        error = error.__cause__ or error.__context__
    return False


def cause_of(exc: BaseException) -> str:
    """The kind of failure ``exc`` is, for telling when an outage's cause changes: the server
    away (refused, closed, cut, starting up; a StoreError, a failed reconnect, counts by its
    driver's error), else PostgreSQL's SQLSTATE (a read-only server's 25006, a full disk's
    53100), SQLite's primary result code, or the error's class."""
    if isinstance(exc, StoreError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, sqlite3.Error):
        return f"sqlite {_sqlite_primary_code(exc)}"
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, StoreError) or (
            state is None and isinstance(exc, _errors("DATABASE_ERRORS"))):
        return "server away"
    if state is None:
        return type(exc).__name__
    return "server away" if state[:2] == "08" or state in _SERVER_AWAY_STATES else state


def explained(exc: BaseException) -> str:
    """``exc``'s text on one line, with what to do when SQLite says another connection's lock
    outlasted the busy timeout (its own text, "database is locked", says neither)."""
    text = " ".join(str(exc).split())
    if held_locked(exc):
        return (f"{text} (another program held it locked longer than the busy timeout: try "
                "again once that program is done)")
    return text


def _value_refused_errors() -> tuple[type[Exception], ...]:
    """What psycopg raises when PostgreSQL refuses a statement for the values it carries."""
    try:
        import psycopg  # noqa: PLC0415 - the backoffice extra; SQLite needs none
    except ImportError:
        return ()
    return (psycopg.DataError, psycopg.IntegrityError)


_BUILT: dict[str, tuple[type[Exception], ...]] = {}


def _errors(name: str) -> tuple[type[Exception], ...]:
    """One of the error tuples, all four built together the first time one is asked for."""
    if not _BUILT:
        database = _database_errors()
        _BUILT.update(
            DATABASE_ERRORS=database,
            VALUE_REFUSED_ERRORS=_value_refused_errors(),
            CONNECTION_LOST_ERRORS=_connection_lost_errors(),
            # what a database that went away raises: its driver's error, or StoreError (no
            # reconnect)
            STORE_ERRORS=(*database, StoreError),
        )
    return _BUILT[name]


def __getattr__(name: str) -> tuple[type[Exception], ...]:
    """The error tuples, read as module attributes (PEP 562), built on the first read."""
    if name in {"DATABASE_ERRORS", "VALUE_REFUSED_ERRORS", "CONNECTION_LOST_ERRORS",
                "STORE_ERRORS"}:
        value = _errors(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    DATABASE_ERRORS: tuple[type[Exception], ...]
    VALUE_REFUSED_ERRORS: tuple[type[Exception], ...]
    CONNECTION_LOST_ERRORS: tuple[type[Exception], ...]
    STORE_ERRORS: tuple[type[Exception], ...]
