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
    raised for a missing table too."""
    try:
        import psycopg  # noqa: PLC0415 - the backoffice extra; SQLite needs none
    except ImportError:
        return ()
    return (psycopg.OperationalError,)


DATABASE_ERRORS = _database_errors()
CONNECTION_LOST_ERRORS = _connection_lost_errors()
# what a database that went away raises: its driver's error, or StoreError (no reconnect)
STORE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, StoreError)
