"""Connections to PostgreSQL: every one the product opens (a store's, the demo's advisory lock,
``store migrate``'s look at the maintenance database) is made here, bounded in how long the
server may take to answer, and with TCP keepalives that find a server gone silent later.

A server that takes the TCP connection and then says nothing (a hung server, a proxy or a load
balancer with nothing behind it, a port forwarded to something that is not PostgreSQL) held
a read command for psycopg's default of 130 s an address, and ``appliance backoffice`` and
``appliance demo``, whose Ctrl-C only asks them to stop, as long. Now each connection gives
up after ``CONNECT_TIMEOUT_S`` with a StoreError naming the database and what to check.
A server that hangs later while its host stays up answers TCP's keepalives still: a caller
that must not wait on it for ever (the ingest writer's commit) bounds its statements with
``answered_within``. psycopg's warnings of a clean-up that failed after an error it raises
are said at DEBUG (``IgnoredErrorsAtDebug``): the caller says the error.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from appliance import interrupts
from appliance.backoffice.storeerrors import StoreError
from appliance.backoffice.storeurl import store_name
from appliance.logsafe import escape_controls

# how long the server may take to answer a new connection (TCP, TLS, the password exchange,
# the session's start), per address its host name has: one that answers does so in well under
# a second, busy or far away over TLS, so 10 s is ample for it and still an answer within
# seconds for whoever waits at a prompt. libpq's own connect_timeout, taken from the URL
# where it sets one.
CONNECT_TIMEOUT_S = 10
# a connection whose server went away without a word (its host powered off, the network
# between cut) is found dead by TCP instead of waited on: the kernel's defaults wait about
# 15 min for data the server never acknowledges and 2 h before it probes an idle connection,
# and a query whose answer never comes waits on an idle one. libpq's keepalives probe an idle
# connection after KEEPALIVE_IDLE_S, then every KEEPALIVE_INTERVAL_S, and tcp_user_timeout
# drops one that the server has not acknowledged anything of (data or probes) for
# DEAD_AFTER_S. A query that runs long on a server that answers is not cut: its kernel
# acknowledges both. The ingest worker and the pathology server then say the outage and
# reconnect (appliance/backoffice/outage.py); a command fails naming the database.
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_COUNT = 3
DEAD_AFTER_S = 60
_LIMITS = {  # libpq's names; a URL that sets one keeps its own
    "connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1,
    "keepalives_idle": KEEPALIVE_IDLE_S, "keepalives_interval": KEEPALIVE_INTERVAL_S,
    "keepalives_count": KEEPALIVE_COUNT, "tcp_user_timeout": DEAD_AFTER_S * 1000,
}
# the server's side of the same, for a store's session (Store asks for it as it opens): a
# client that vanished inside a transaction (its host powered off) keeps its locks until the
# server finds it dead by its own keepalives, after the system's 2 h by default, and peers
# writing the same rows wait behind it all that while. Settings any role may change for its
# session; a server too old to know one is used without them.
SERVER_LIMITS = (
    "SELECT set_config('tcp_keepalives_idle', %s, false), "
    "set_config('tcp_keepalives_interval', %s, false), "
    "set_config('tcp_keepalives_count', %s, false), set_config('tcp_user_timeout', %s, false)",
    (str(KEEPALIVE_IDLE_S), str(KEEPALIVE_INTERVAL_S), str(KEEPALIVE_COUNT),
     str(DEAD_AFTER_S * 1000)),
)
_ABANDON_LOOK_S = 0.1  # how often a block waiting on the server looks at its abandon event
_MISSING_DATABASE = re.compile(r'database ".*" does not exist')  # the server's FATAL text
MIGRATE_HINT = "`appliance store migrate` (with the same --store or --config)"
CUT = "the connection was cut"  # how answered_within's error ends (``was_cut``)
# psycopg's loggers (its transactions have one of their own) and how its warnings of a
# clean-up that failed after an error it raises begin
_PSYCOPG_LOGGERS = ("psycopg", "psycopg.transaction")
_IGNORED_ERROR = "error ignored "


class IgnoredErrorsAtDebug(logging.Filter):
    """psycopg's warnings of a clean-up that failed after an error it raises anyway ("error
    ignored terminating <psycopg.Pipeline [BAD]>: the connection is lost", when a restart or a
    crash meets a pipelined write) said at DEBUG (shown with -v): the error itself reaches
    the caller, which says it (a reconnect at INFO, an outage, a command's error), and the
    clean-up's failure only added a WARNING to the journal at each such restart."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True for a record to say; one of those warnings is made DEBUG first."""
        if record.levelno != logging.WARNING or not str(record.msg).startswith(_IGNORED_ERROR):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger().isEnabledFor(logging.DEBUG)


_IGNORED_AT_DEBUG = IgnoredErrorsAtDebug()


def connect(url: str, **options: Any) -> Any:
    """An autocommit psycopg connection to ``url`` with the limits above (``options``:
    libpq's own, such as ``application_name``); psycopg's error when it cannot be made."""
    import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

    for name in _PSYCOPG_LOGGERS:  # a logger adds a filter it has already only once
        logging.getLogger(name).addFilter(_IGNORED_AT_DEBUG)
    return psycopg.connect(url, autocommit=True, **{**_limits(url), **options})


def _limits(url: str) -> dict[str, Any]:
    """The limits above that the URL does not set itself."""
    from psycopg import Error  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        given = conninfo_to_dict(url)
    except Error:
        given = {}  # not a URL libpq reads: connecting says what is wrong with it
    defaults = {**_LIMITS, "application_name": program_name()}
    return {name: value for name, value in defaults.items() if name not in given}


def program_name() -> str:
    """``appliance COMMAND (pid N)``: the session's name in the server's ``pg_stat_activity``
    where the caller names none, so that a refusal listing the sessions connected to a store
    (``store restore``) says which program holds each. At most 63 bytes, PostgreSQL's limit."""
    words = []
    for word in sys.argv[1:3]:
        if not re.fullmatch(r"[a-z][a-z-]{0,15}", word):
            break
        words.append(word)
    return " ".join(["appliance", *words, f"(pid {os.getpid()})"])


def given_connect_timeout(url: str) -> int | None:
    """The ``connect_timeout`` the URL sets itself, in seconds (libpq's meaning: 0 or less
    waits for ever), or None where it sets none (or is not a URL libpq reads: connecting says
    what is wrong with it)."""
    from psycopg import Error  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        given = conninfo_to_dict(url).get("connect_timeout")
    except Error:
        return None
    try:
        return None if given is None else int(str(given))
    except ValueError:
        return None  # libpq refuses it as it connects


def server_wait_s(url: str, default_s: float) -> float | None:
    """How long the server may take to answer a statement that is part of opening or checking
    a connection (its set-up, the SELECT 1 that says it still answers): the time the
    connection itself is given, the URL's ``connect_timeout`` where it sets one (None for 0 or
    less: no bound, as libpq), else ``default_s``."""
    given = given_connect_timeout(url)
    if given is None:
        return default_s
    return float(given) if given > 0 else None


def postgres_connection(url: str, **options: Any) -> Any:
    """An autocommit connection to the PostgreSQL database ``url`` names (``options``: libpq's
    own, such as ``application_name``); StoreError naming the database when it cannot be made,
    or when a stop signal came while waiting for it (the command's stop event is set)."""
    import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

    try:
        with interrupts.waits_abandoned_on_stop():  # Ctrl-C of a service ends the wait too
            return connect(url, **options)
    except interrupts.WaitAbandonedError as exc:
        raise StoreError(f"stopped ({exc}) before the {store_name(url)} answered") from exc
    except psycopg.Error as exc:
        raise StoreError(cannot_connect(url, exc)) from exc
    except UnicodeEncodeError as exc:  # undecodable bytes of an argument ('\udcff')
        raise StoreError(f"cannot connect to the {escape_controls(store_name(url))}: "
                         "the URL holds text that is not UTF-8") from exc


def cannot_connect(url: str, exc: Exception) -> str:
    """Why a connection to ``url`` failed, with what to do where the error says neither."""
    return f"cannot connect to the {store_name(url)}: {exc}{_hint(exc)}"


def not_answering(exc: Exception) -> bool:
    """Whether the server took the connection but did not answer within the connect timeout
    (libpq and psycopg both say "timeout expired")."""
    return "timeout expired" in str(exc)


def _hint(exc: Exception) -> str:
    """What creates a database the server says it lacks (the store's own connection cannot:
    appliance/backoffice/pgdatabase.py), what to check of a server that does not answer, or ""
    for any other failure (libpq's text says it: refused, no such host, a wrong password)."""
    if not_answering(exc):
        return (" (the server took the connection but said nothing: check that PostgreSQL "
                "runs and answers at that host and port, not another service or a proxy with "
                "nothing behind it)")
    if says_database_missing(exc):
        return f"; {MIGRATE_HINT} creates it where the role may create databases (CREATEDB)"
    return ""


def says_database_missing(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the server saying the database named does not exist (its FATAL text:
    the session never began, so there is no SQLSTATE to go by)."""
    return exc is not None and _MISSING_DATABASE.search(str(exc)) is not None


@contextmanager
def answered_within(conn: Any, seconds: float,
                    abandon: threading.Event | None = None) -> Iterator[None]:
    """For the block, a server that has not answered ``conn``'s statements after ``seconds``
    has the connection cut, and the block's psycopg error becomes an OperationalError saying
    so: a server that hangs while its host stays up (a stalled disk, a stopped process) goes
    on acknowledging at the TCP level, so keepalives never find it. ``abandon`` (a service's
    stop event) cuts it at once when set: a stop need not wait out the deadline. The cut is a
    shutdown of the socket from a watching thread: libpq's state stays with the thread that
    uses it, which meets a closed connection and fails."""
    import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)

    fd, guard, why = conn.fileno(), threading.Lock(), []  # why: the cut's reason, once cut
    ended = threading.Event()  # the block's end: the fd may then be another socket's

    def shut(reason: str) -> None:
        with guard:
            if not ended.is_set():
                why.append(reason)
                with suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)

    def watch() -> None:
        deadline_s = time.monotonic() + seconds
        while not ended.wait(max(0.0, min(deadline_s - time.monotonic(),
                                          _ABANDON_LOOK_S if abandon is not None else seconds))):
            if abandon is not None and abandon.is_set():
                shut("stopped before the server answered")
                return
            if time.monotonic() >= deadline_s:
                shut(f"no answer from the server within {seconds:g} s")
                return

    threading.Thread(target=watch, name="AnsweredWithin", daemon=True).start()
    try:
        yield
    except psycopg.Error as exc:
        if not why:
            raise
        raise psycopg.OperationalError(f"{why[0]}: {CUT}") from exc
    finally:
        with guard:
            ended.set()


def was_cut(error: BaseException) -> bool:
    """Whether ``error`` is ``answered_within`` cutting a connection whose server had not
    answered in time (or at a stop), not the server closing it."""
    return str(error).endswith(f": {CUT}")
