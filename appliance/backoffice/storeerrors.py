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


DATABASE_ERRORS = _database_errors()
# what a database that went away raises: its driver's error, or StoreError (no reconnect)
STORE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, StoreError)
