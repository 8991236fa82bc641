"""A small pool of store connections for the console's request threads.

A ``Store`` is one connection and is not shared between threads at once; FastAPI runs the
console's handlers in a thread pool, so each request borrows a store and gives it back.
A connection the store failed on is reopened before it is lent again; one that saw only the
handler's own error (a 404, say) goes back to the pool as it is. The pool also forgets API
tokens that expired long ago (accounts.forget_expired_tokens): at start, and then at most once
every FORGET_TOKENS_EVERY_S, on the store the next request borrows, so a console that runs for
months does not keep (and list) them until a token is made.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator

from appliance.backoffice import storeerrors
from appliance.backoffice.store import Store, StoreError, open_store
from appliance.backoffice.store_schema import ACCOUNT_RULES, newer_schema_problem
from appliance.backoffice.storeerrors import is_outage
from appliance.pathology.jobstore import open_pathology_store

log = logging.getLogger(__name__)
FORGET_TOKENS_EVERY_S = 3600.0  # one small DELETE an hour; the tokens are kept 30 days anyway


class StoreBusyError(RuntimeError):
    """No store connection came free in time (the console is overloaded)."""


class StoreUnreachableError(StoreError):
    """No store connection could be opened, or one that failed could not be reopened (the
    database went away): the 503 page, as for a busy console. A StoreError, so the console's
    few handlers that must still answer something true catch it with the store's other
    failures (appliance/backoffice/storeerrors.py's STORE_ERRORS)."""


class StorePool:
    """Up to ``size`` open stores on one URL; the schema is migrated once, at start.
    ``clock``: the monotonic seconds that time the forgetting of expired tokens."""

    def __init__(self, url: str, size: int = 4, pg_schema: str | None = None,
                 wait_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        first = open_store(url, pg_schema)  # migrates (console tables and indexes included)
        try:
            if (newer := newer_schema_problem(first, "console", "does not serve it",
                                              ACCOUNT_RULES)):
                raise StoreError(newer)
            first.forget_expired_tokens()
            # the pathology server's tables, created as it creates them, so its jobs page reads
            open_pathology_store(url, pg_schema).close()
        except BaseException:
            first.close()
            raise
        self.url, self.pg_schema, self.wait_s = url, pg_schema, wait_s
        self._clock = clock
        self._tokens_forgotten_at = clock()
        self._forgetting = threading.Lock()  # one request forgets them, the others go on
        # restarts found so far, and for each open store the count when it was opened
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._opened_in: weakref.WeakKeyDictionary[Store, int] = weakref.WeakKeyDictionary()
        self._opened(first)
        self._idle: queue.LifoQueue[Store | None] = queue.LifoQueue()
        self._idle.put(first)
        for _ in range(size - 1):
            self._idle.put(None)  # a slot: connected on first use

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        """Borrow a store for one request (its connection checked first: ``_answering``).
        StoreUnreachableError when none can be reached: no connection opens, or the one lent
        failed under the request (the server went away), reopened or not. Any other error
        raised in the block is raised as it is, the connection given back to the pool (reopened
        first when the store failed: ``_store_failed``)."""
        try:
            slot = self._idle.get(timeout=self.wait_s)
        except queue.Empty as exc:
            raise StoreBusyError(f"no free store connection within {self.wait_s:.0f} s") from exc
        try:
            lent = (self._answering(slot) if slot
                    else self._opened(Store(self.url, self.pg_schema)))
        except StoreError as exc:
            self._idle.put(None)
            raise StoreUnreachableError(str(exc)) from exc
        given_back: Store | None = lent
        try:
            self._forget_expired_tokens_when_due(lent)
            yield lent
        except Exception as exc:
            if not self._store_failed(lent, exc):
                raise  # the handler's own error: the connection is as good as it was
            if not self._reopened(lent, exc):
                given_back = None  # a slot again: connected on its next use
                raise StoreUnreachableError(f"the store connection failed ({exc}) and could "
                                            "not be reopened") from exc
            if is_outage(exc):  # the server went away, a lock outlasted the busy timeout
                raise StoreUnreachableError(f"the store connection failed ({exc}); reopened "
                                            "for the next request") from exc
            raise
        finally:
            self._idle.put(given_back)

    @staticmethod
    def _store_failed(store: Store, exc: Exception) -> bool:
        """Whether ``exc`` is the store failing, so its connection is reopened: a StoreError,
        the database unusable just now or gone away (``is_outage``), or a driver error after
        which the connection no longer answers. A bug in a statement (a missing table) leaves
        a connection that answers."""
        if isinstance(exc, StoreError) or is_outage(exc):
            return True
        return isinstance(exc, storeerrors.DATABASE_ERRORS) and not store.answers()

    def _forget_expired_tokens_when_due(self, store: Store) -> None:
        """Forget long-expired API tokens on ``store`` when FORGET_TOKENS_EVERY_S have passed
        since the last time; a store that fails at it is logged and tried again an hour later
        (the request goes on: its own queries meet what failed, if it lasts)."""
        if not self._tokens_due() or not self._forgetting.acquire(blocking=False):
            return
        try:
            if not self._tokens_due():  # another request forgot them while this one came
                return
            self._tokens_forgotten_at = self._clock()
            store.forget_expired_tokens()
        except storeerrors.STORE_ERRORS as exc:
            log.warning("expired API tokens not forgotten this hour: %s", exc)
        finally:
            self._forgetting.release()

    def _tokens_due(self) -> bool:
        return self._clock() - self._tokens_forgotten_at >= FORGET_TOKENS_EVERY_S

    def _answering(self, store: Store) -> Store:
        """A pooled store whose connection answers: one the server closed while it sat idle is
        reopened before it is lent (else that request would fail). StoreError when it cannot
        be. A restart closes every pooled connection: the first one found closed is said at
        WARNING, those opened before it was reopened (closed by the same restart) at DEBUG."""
        if store.answers():
            return store
        if self._restart_found(store):
            log.warning("store connection closed while idle (the database restarted?); "
                        "reopening it and the pool's others as they are lent")
        else:
            log.debug("another store connection closed by the same restart; reopening it")
        store.reconnect()
        self._opened(store)
        return store

    def _restart_found(self, store: Store) -> bool:
        """Whether ``store``, found closed, is the first connection closed by its restart
        (opened since the latest restart found): then that restart counts as found."""
        with self._generation_lock:
            first = self._opened_in.get(store, self._generation) == self._generation
            if first:
                self._generation += 1
        return first

    def _opened(self, store: Store) -> Store:
        """Note that ``store`` was (re)opened now, on the server as it is since the latest
        restart found (``_answering``)."""
        with self._generation_lock:
            self._opened_in[store] = self._generation
        return store

    def _reopened(self, store: Store, error: Exception) -> bool:
        """Reopen a store whose connection failed under a request; False (closed) when it
        cannot be. One the server closed under it (a restart met in flight) waits for the
        server as Store.reopened_after_close does, said at INFO, and counts as the restart
        found (``_restart_found``): the request's 503 is the one WARNING the restart gets.
        Before, "not reopened yet" at WARNING where the server was still starting, and
        "closed while idle" at WARNING again for the next pooled connection it had closed."""
        if store.closed_by_server(error):
            self._restart_found(store)
            if store.reopened_after_close(error):
                self._opened(store)
                return True
        try:
            store.reconnect()
        except StoreError as exc:
            log.warning("store connection not reopened yet: %s", exc)
            with contextlib.suppress(Exception):
                store.close()
            return False
        self._opened(store)
        return True

    def close(self) -> None:
        """Close every open connection."""
        while True:
            try:
                slot = self._idle.get_nowait()
            except queue.Empty:
                return
            if slot is not None:
                with contextlib.suppress(Exception):
                    slot.close()


def anyone_can_log_in(pool: StorePool) -> bool:
    """Whether the store has an enabled console user: without one, the console says at start
    and on its login page which ``console user add`` to run."""
    with pool.store() as store:
        return any(user.disabled_at is None for user in store.users())
