"""The back-office store: results, dead letters and the fleet, in SQLite (WAL) or PostgreSQL.

Both backends run the same SQL (``?`` placeholders become ``%s`` for psycopg) and the same
versioned migrations, and both enforce the schema's foreign keys (SQLite: on every
connection, ``PRAGMA foreign_keys``). Every write of the ingest worker is one transaction
(``write_batch``, in store_writes.py), so a message is acknowledged to the broker only once
everything it changed is committed. Reads of results, dead letters and the fleet registry are
in store_reads.py, the console's queries in queries.py, the schema's versions and migrations in
store_schema.py.

Writers and servers open a store with ``open_store``, which migrates it. Read commands open it
with ``open_existing_store``: a read-only connection that never creates a file, a schema or a
table, and refuses a database whose schema is missing or older than this code, naming the
database and ``appliance store migrate`` (reads of an older schema would fail half-way on a
missing column).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from appliance.backoffice import storeerrors
from appliance.backoffice.erasure import ErasureWrites
from appliance.backoffice.erasure_release import ReleaseWrites
from appliance.backoffice.pgconnect import (
    CONNECT_TIMEOUT_S,
    SERVER_LIMITS,
    answered_within,
    postgres_connection,
    server_wait_s,
    was_cut,
)
from appliance.backoffice.queries import ConsoleQueries
from appliance.backoffice.retention import RetentionWrites
from appliance.backoffice.sqlitefile import (
    cannot_open,
    damaged,
    foreign_tables,
    missing_sqlite_file,
    not_a_file,
    read_mode,
)
from appliance.backoffice.store_reads import StoreReads
from appliance.backoffice.store_schema import SchemaVersions, schema_problem
from appliance.backoffice.store_writes import Batch, IngestWrites
from appliance.backoffice.storeerrors import (
    StoreError,
    cause_of,
    explained,
)
from appliance.backoffice.storeurl import (
    POSTGRES_SCHEMES,
    folder_not_a_folder,
    masked_url,
    missing_path,
    sqlite_path_shown,
    store_name,
    url_problem,
)
from appliance.diskspace import full_disk_hint

log = logging.getLogger(__name__)
__all__ = [  # Batch and StoreError live in store_writes.py and storeerrors.py; users of the
    # Store import them from here with it
    "Batch", "Store", "StoreError", "open_existing_store", "open_store",
]
# SQLite keeps foreign keys (a user's tokens and sessions) unenforced unless each connection
# asks, outside a transaction; PostgreSQL always enforces them
_SQLITE_FOREIGN_KEYS = "PRAGMA foreign_keys=ON"
# how long a SQLite statement waits for another connection's lock before SQLITE_BUSY
SQLITE_BUSY_TIMEOUT_MS = 30000
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# how long a new connection's set-up statements (the server's keepalives, read-only, the
# schema) may wait for the server: part of opening it, given the time the connection itself is
# given. A server that went silent right after the connection was made (hung between, a pooler
# whose server went away) held every open and every reconnect of a service for ever. A URL
# that sets its own connect_timeout gives its set-up that (0 or less: no bound, as libpq).
SET_UP_WITHIN_S = CONNECT_TIMEOUT_S
# how long ``answers`` waits for SELECT 1: one round trip on a server that answers; one that
# has not answered it in the time a new connection is given will not answer a request either.
# A URL that sets its own connect_timeout gives the check that, as the set-up (0 or less: no
# bound); before, the check waited 10 s whatever the URL said.
ANSWER_WITHIN_S = CONNECT_TIMEOUT_S
# how long a call that met a connection the server had closed waits for the server to take a
# new one: a maintenance restart (a fast shutdown, then the start) or a crash and its recovery
# keeps a server away for a second or two, and a call that met it in flight (the pathology
# server's housekeeping touches the store every 0.5 s) said an outage, ERROR and then "answers
# again", where nothing waited longer than the restart. Longer away, it is the outage as before.
RESTART_WAIT_S = 10.0
RESTART_POLL_S = 0.2  # between two tries of the reconnect while the server is away


class Store(ConsoleQueries, IngestWrites, ErasureWrites, ReleaseWrites, RetentionWrites,
            StoreReads, SchemaVersions):
    """One connection to the back-office database; not shared between threads.

    ``read_only``: the connection refuses every write (SQLite ``query_only``, PostgreSQL
    ``default_transaction_read_only``) and creates nothing, not even a missing file or schema.
    """

    def __init__(self, url: str, pg_schema: str | None = None, read_only: bool = False) -> None:
        self.url = url
        self.postgres = url.startswith(POSTGRES_SCHEMES)
        if (problem := url_problem(url)) is not None:
            raise StoreError(problem)
        self._pg_schema = pg_schema
        self.read_only = read_only
        self._held = False  # within writes_held: SQLite's transactions are its savepoints
        self._conn: Any = self._connect()

    def _connect(self) -> Any:
        return self._connect_postgres(self._pg_schema) if self.postgres else self._connect_sqlite()

    def answers(self) -> bool:
        """Whether the connection still answers: a PostgreSQL connection the server closed
        while it sat idle (a restart, an idle timeout) does not, as the next query would find
        out, nor one whose server has not answered within ANSWER_WITHIN_S (the URL's
        connect_timeout where it sets one; hung: the connection is cut); one round trip. A
        SQLite connection always does."""
        if not self.postgres:
            return True
        import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

        within = server_wait_s(self.url, ANSWER_WITHIN_S)
        try:
            with nullcontext() if within is None else self.answering_within(within):
                self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def reconnect(self) -> None:
        """Drop the connection and open a new one (after the database went away)."""
        with suppress(Exception):  # the old connection is broken; closing it may fail too
            self._conn.close()
        self._conn = self._connect()

    def closed_by_server(self, error: BaseException) -> bool:
        """Whether ``error`` is the PostgreSQL server having closed this connection (a
        restart or a crash since it was last used or while a call ran, an idle timeout, a
        network cut found by the keepalives), not ``answering_within`` cutting it: a new
        connection may take the call. psycopg says so of the connection, except where the
        server's FATAL met a pipelined write (storeerrors.session_ended): then the error
        says it. SQLite's never is."""
        return (self.postgres and isinstance(error, storeerrors.CONNECTION_LOST_ERRORS)
                and not was_cut(error)
                and (bool(self._conn.closed) or storeerrors.session_ended(error)))

    def reopened_after_close(self, error: BaseException,
                             abandon: threading.Event | None = None) -> bool:
        """Whether the call that failed with ``error`` may be made again at once on a new
        connection: the server had closed the one it was made on (``closed_by_server``) and a
        new one is open now, said at INFO (no outage: a restart between two calls, as a
        maintenance restart of a server used now and then is, delays nothing). A server that
        is still away (its restart not done) is waited for up to RESTART_WAIT_S, or until
        ``abandon`` is set: a call that met the restart itself is then no outage either.
        False: the error stands (the server stayed away, or the call failed for another
        reason)."""
        if not self.closed_by_server(error):
            return False
        began_s = time.monotonic()
        if (failed := self._reconnect_within(RESTART_WAIT_S, abandon)) is not None:
            log.debug("store reconnect failed: %s", failed)
            return False
        waited_s = time.monotonic() - began_s
        log.info("the %s had closed the connection (%s); reconnected%s", store_name(self.url),
                 explained(error), f", back {waited_s:.1f} s later" if waited_s >= 0.1 else "")
        return True

    def _reconnect_within(self, seconds: float, abandon: threading.Event | None
                          ) -> StoreError | None:
        """Reconnect, trying again every RESTART_POLL_S for ``seconds`` while the server is
        away (refused, shutting down, starting up); None once connected, else the last
        failure (the server stayed away, ``abandon`` was set, or it failed for another
        cause)."""
        deadline_s = time.monotonic() + seconds
        pause = abandon if abandon is not None else threading.Event()
        while True:
            try:
                self.reconnect()
            except StoreError as exc:
                if cause_of(exc) != "server away" or time.monotonic() >= deadline_s or \
                        pause.wait(RESTART_POLL_S):
                    return exc
                continue
            return None

    def _connect_sqlite(self) -> sqlite3.Connection:
        path = Path(self.url.removeprefix("sqlite:///"))
        if (problem := not_a_file(path)) is not None:  # SQLite would make PATH-journal beside
            raise StoreError(problem)
        if self.read_only:
            return self._connect_sqlite_read_only(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if (problem := foreign_tables(conn, path)) is not None:  # before WAL mode,
                conn.close()  # which changes the file
                raise StoreError(problem)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SQLITE_FOREIGN_KEYS)
        except (OSError, sqlite3.Error, UnicodeDecodeError) as exc:
            raise StoreError(cannot_open(path, exc)) from exc
        return conn

    @staticmethod
    def _connect_sqlite_read_only(path: Path) -> sqlite3.Connection:
        """An existing file only (``mode=rw`` never creates one), writes refused. Not
        ``mode=ro``: a read-only connection cannot remove the WAL files it made when it closes.
        A store whose folder cannot be written here is read as it is (``read_mode``)."""
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?{read_mode(path)}", uri=True,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            conn.execute(_SQLITE_FOREIGN_KEYS)
        except (OSError, sqlite3.Error, UnicodeDecodeError) as exc:
            raise StoreError(cannot_open(path, exc)) from exc
        return conn

    def _connect_postgres(self, pg_schema: str | None) -> Any:
        """A connection set up for this store; StoreError naming the database when the server
        fails the set-up's statements (it went away right after the connection was made, the
        role may not create the schema) or does not answer them within SET_UP_WITHIN_S (the
        URL's connect_timeout where it sets one):
        psycopg's own error came out of the command as a traceback."""
        import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

        conn = postgres_connection(self.url)
        within = server_wait_s(self.url, SET_UP_WITHIN_S)
        try:
            with nullcontext() if within is None else answered_within(conn, within):
                self._set_up(conn, pg_schema)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"cannot open the {store_name(self.url)}: {explained(exc)}"
                                 ) from exc
            raise
        return conn

    def _set_up(self, conn: Any, pg_schema: str | None) -> None:
        """The server's keepalives (pgconnect.SERVER_LIMITS); read only when asked; the tables
        looked for in ``pg_schema`` (made when missing)."""
        import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

        with suppress(psycopg.errors.UndefinedObject):  # a server older than one of them
            conn.execute(*SERVER_LIMITS)
        if self.read_only:
            conn.execute("SET default_transaction_read_only TO on")
        if pg_schema is not None:
            if not _SCHEMA_NAME.match(pg_schema):
                raise StoreError(f"PostgreSQL schema name {pg_schema!r}: use [a-z0-9_]")
            if not self.read_only:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {pg_schema}")
            conn.execute(f"SET search_path TO {pg_schema}")

    def answering_within(self, seconds: float, abandon: threading.Event | None = None
                         ) -> AbstractContextManager[None]:
        """For the block, a PostgreSQL server that has not answered after ``seconds``, or by
        the time ``abandon`` is set, has the connection cut (pgconnect.answered_within: an
        OperationalError, as when the server went away; ``reconnect`` makes a new one). SQLite
        never waits on a server: its busy timeout bounds the wait for another connection's
        lock."""
        if not self.postgres:
            return nullcontext()
        return answered_within(self._conn, seconds, abandon)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    @contextmanager
    def _transaction(self, lock_wait_ms: int | None = None) -> Iterator[Any]:
        """A transaction; ``lock_wait_ms``: how long SQLite waits for another connection's
        write lock to begin it (a write worth less than the wait), else SQLITE_BUSY_TIMEOUT_MS."""
        if self.postgres:  # within writes_held, psycopg makes it a savepoint
            with self._conn.transaction():
                yield self._conn.cursor()
            return
        cur = self._conn.cursor()
        if self._held:
            yield from _savepoint(cur)
            return
        if lock_wait_ms is not None:
            cur.execute(f"PRAGMA busy_timeout={int(lock_wait_ms)}")
        try:
            cur.execute("BEGIN IMMEDIATE")  # the write lock: the rest never waits for one
        finally:
            if lock_wait_ms is not None:
                cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    @contextmanager
    def writes_held(self) -> Iterator[None]:
        """For the block, this connection holds what each erasure, release and ingest batch
        takes first (SQLite: the write transaction; PostgreSQL: the dead-letter totals row,
        then the results table as an erasure locks it), so no other connection's erasure is
        half done and every other write waits for the block's end; the store's writes inside
        are savepoints of its transaction and commit with it, or with it not at all. Within
        one already, it is that one."""
        if self._held:
            yield
            return
        with self._transaction() as cur:
            self._add_to_letter_totals(cur, 0, 0)  # the lock order: the totals row first
            if self.postgres:
                cur.execute("LOCK TABLE results IN SHARE ROW EXCLUSIVE MODE")
            self._held = True
            try:
                yield
            finally:
                self._held = False

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.cursor()
        cur.execute(self._sql(sql), params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one SELECT (``?`` placeholders) for areas with their own tables."""
        return self._fetch(sql, params)

    def write(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement (``?`` placeholders) for each row, all in one transaction."""
        with self._transaction() as cur:
            for row in rows:
                cur.execute(self._sql(sql), row)

    def write_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """``write`` for a statement that returns rows (``RETURNING``): every row it returned,
        all in one transaction."""
        found: list[tuple[Any, ...]] = []
        with self._transaction() as cur:
            for row in rows:
                cur.execute(self._sql(sql), row)
                found += cur.fetchall()
        return found

    def drop_postgres_schema(self, pg_schema: str) -> None:
        """Remove a PostgreSQL schema and everything in it (tests and benchmarks clean up)."""
        if not self.postgres or not _SCHEMA_NAME.match(pg_schema):
            raise StoreError(f"cannot drop schema {pg_schema!r} of {masked_url(self.url)}")
        self._conn.execute(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _savepoint(cur: Any) -> Iterator[Any]:
    """A SQLite transaction inside writes_held's: a savepoint, undone alone on an error."""
    cur.execute("SAVEPOINT held")
    try:
        yield cur
    except BaseException:
        cur.execute("ROLLBACK TO held")
        cur.execute("RELEASE held")
        raise
    cur.execute("RELEASE held")


def open_store(url: str, pg_schema: str | None = None, create: bool = True) -> Store:
    """Open a store for writing and bring its schema up to date (``create``: a missing SQLite
    file is made; else it is an error, as for a read)."""
    if not create:
        _refuse_missing(url)
    store = Store(url, pg_schema)
    doing = "read the schema version of"
    try:
        # a writer takes the write lock at start even when nothing needs migrating, so one
        # that cannot write says so at once; an up-to-date store is not said to need migrating
        doing = "migrate" if store.pending_migrations() else "write to"
        store.migrate()
    except Exception as exc:
        store.close()
        raise StoreError(f"cannot {doing} the {store_name(url)}: {explained(exc)}") from exc
    return store


def open_existing_store(url: str, pg_schema: str | None = None) -> Store:
    """Open a store for reading: read-only, never created nor migrated (a typo in --store is an
    error, not a new empty database); a schema that is missing or older than this code is an
    error naming the database and the command that migrates it."""
    _refuse_missing(url)
    store = Store(url, pg_schema, read_only=True)
    try:
        problem = schema_problem(store)
    except Exception as exc:
        store.close()
        path = Path(url.removeprefix("sqlite:///"))
        if not store.postgres and damaged(exc):
            raise StoreError(cannot_open(path, exc)) from exc
        # a reader of a WAL store makes its -shm file: on a full disk SQLite says "disk I/O
        # error" of a store that is whole, so the disk is named, as a writer's error names it
        full = "" if store.postgres else full_disk_hint(path)
        raise StoreError(f"cannot read the {store_name(url)}: {explained(exc)}"
                         + (f"; {full}" if full else "")) from exc
    if problem is not None:
        store.close()
        raise StoreError(problem)
    return store


def _refuse_missing(url: str) -> None:
    """A StoreError when ``url`` names a SQLite file that does not exist, or none at all."""
    if (problem := missing_path(url) or folder_not_a_folder(url)) is not None:
        raise StoreError(problem)
    if (path := missing_sqlite_file(url)) is not None:
        if (problem := not_a_file(path)) is not None:
            raise StoreError(problem)
        raise StoreError(
            f"no store at {sqlite_path_shown(path)}: nothing was ever stored there (check "
            "--store or the config's store.url; `appliance store migrate`, `appliance demo` "
            "or `appliance backoffice` create it)"
        )
