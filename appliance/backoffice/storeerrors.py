"""What the back-office store raises: ``StoreError`` when it cannot be opened or used (its text
names the database and what to do), and the database drivers' own errors, met by a query or a
write when the database fails on the way (a full disk, a server that went away).
"""

from __future__ import annotations

import sqlite3


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
    is wider on purpose: there a missing table is waited out, never a reason to refuse data."""
    if isinstance(exc, sqlite3.Error):
        return _sqlite_primary_code(exc) in _SQLITE_OUTAGE_CODES
    return isinstance(exc, CONNECTION_LOST_ERRORS)


def held_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying another connection's lock outlasted the busy timeout."""
    return _sqlite_primary_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _sqlite_primary_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc`` (the low byte of its extended code); None for
    anything else, and for sqlite3's own errors that SQLite did not raise (a closed database)."""
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return None if code is None else int(code) & 0xFF


def explained(exc: BaseException) -> str:
    """``exc``'s text on one line, with what to do when SQLite says another connection's lock
    outlasted the busy timeout (its own text, "database is locked", says neither)."""
    text = " ".join(str(exc).split())
    if held_locked(exc):
        return (f"{text} (another program held it locked longer than the busy timeout: try "
                "again once that program is done)")
    return text


DATABASE_ERRORS = _database_errors()
CONNECTION_LOST_ERRORS = _connection_lost_errors()
# what a database that went away raises: its driver's error, or StoreError (no reconnect)
STORE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, StoreError)
