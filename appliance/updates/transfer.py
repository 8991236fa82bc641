"""One file's HTTP exchange with the model repository, bounded as a whole by one deadline.

A socket timeout bounds each wait for the next bytes only, so a server (or a host in between)
that sends a byte now and then, each within it, holds the kiosk's updater for as long as it
likes: TUF's slow retrieval attack. It can do so in the body and just as well in the status
line and headers, which the HTTP client reads before the fetcher sees any response. Here each
file's exchange (connecting, the request, the headers, the body) has ``deadline_s``: a timer
shuts the exchange's socket down when it passes, wherever the transfer waits then, and the
fetch fails as a slow retrieval (retried as a cut transfer).

A redirect is followed only to the host (scheme, name and port) the kiosk asked, at most
MAX_REDIRECTS times: urllib3 follows any redirect by default, so whoever answers for the
repository (its server, or anyone on the path of plain HTTP) had the kiosk send GETs to hosts
of its choosing, the kiosk's own loopback services or its local network among them, and the
kiosk's retained refusal told what came back (an HTTP status, "connection refused"). The
signed lengths and hashes were never at stake: the files are checked wherever they came from.

The socket is learnt through connection classes of our own (urllib3's documented
``ConnectionCls`` of a pool, and the pool classes a ``PoolManager`` keeps for its schemes); a
connection made or reused while a fetch runs hands its socket to that fetch's deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.url import Url, parse_url

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TransferCutError(tuf_errors.DownloadError):
    """The body's transfer broke off (the connection closed or reset before its end): a cut
    transfer, tried again as one. urllib3's own error escaped ngclient's fetch from the body,
    which wraps only the request, and a check whose metadata was cut so said nothing."""


class ExchangeDeadline:
    """Shuts down the sockets of one exchange when ``deadline_s`` has passed since start."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(deadline_s, self._expire)
        self._timer.daemon = True
        self._started = time.monotonic()
        self._timer.start()

    def remaining_s(self) -> float:
        """Seconds left before the deadline (0 once past)."""
        return max(0.0, self.deadline_s - (time.monotonic() - self._started))

    def watch(self, sock: socket.socket | None) -> None:
        """Cut ``sock`` at the deadline (at once when it has passed)."""
        if sock is None:
            return
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _cut(sock)

    def cancel(self) -> None:
        """The exchange ended: cut nothing more."""
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _cut(sock)


def _cut(sock: socket.socket) -> None:
    """End every wait on ``sock`` in the thread that reads it: the file descriptor is shut
    down, which a TLS socket's reads see too (its own ``shutdown`` would also unwrap it under
    the reader)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()  # .deadline: the ExchangeDeadline of this thread's request


def _watch_current(sock: socket.socket | None) -> None:
    deadline: ExchangeDeadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch_current(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_current(self.sock)  # a kept-alive connection; a new one connects within
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch_current(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_current(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineFetcher(Urllib3Fetcher):
    """ngclient's urllib3 fetcher with ``deadline_s`` on each file's whole exchange (above);
    a file that has not arrived whole by then fails as a slow retrieval. Each read of the
    body returns what has come (the parent's reads wait until a chunk is full)."""

    def __init__(self, socket_timeout: int, deadline_s: float, app_user_agent: str) -> None:
        super().__init__(socket_timeout=socket_timeout, app_user_agent=app_user_agent)
        self.deadline_s = deadline_s

    def _fetch(self, url: str) -> Iterator[bytes]:
        """The file at ``url`` in chunks (FetcherInterface's one method to implement)."""
        deadline = ExchangeDeadline(self.deadline_s)
        try:
            response = self._request(url, deadline)
        except BaseException:
            deadline.cancel()
            raise
        if response.status >= 400:
            deadline.cancel()
            response.close()
            raise tuf_errors.DownloadHTTPError(
                f"{url}: HTTP error {response.status}", response.status)
        return self._body(response, url, deadline)

    def _request(self, url: str, deadline: ExchangeDeadline) -> urllib3.BaseHTTPResponse:
        """Send the request and read the answer's headers, under ``deadline``, following
        redirects to the same host only (module docstring)."""
        asked, origin = url, _origin(parse_url(url))
        for _ in range(MAX_REDIRECTS + 1):
            response = self._request_once(url, deadline)
            if response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise tuf_errors.DownloadError(
                    f"{url}: HTTP {response.status}, a redirect naming no Location")
            url = urljoin(url, location)
            if _origin(parse_url(url)) != origin:
                raise tuf_errors.DownloadError(
                    f"{asked}: the server redirects to {url[:200]}, another host than the "
                    "kiosk asked; a kiosk fetches from updates.url's host only (point "
                    "updates.url at where the files are)")
        raise tuf_errors.DownloadError(f"{asked}: more than {MAX_REDIRECTS} redirects")

    def _request_once(self, url: str, deadline: ExchangeDeadline) -> urllib3.BaseHTTPResponse:
        """One request and its answer's headers, under ``deadline``; a redirect not followed."""
        address = parse_url(url)
        # the parent's proxy handling (tuf 6's Urllib3Fetcher keeps it in _proxy_env: renamed,
        # every fetch raises AttributeError); urllib3 2 keeps a manager's pool classes per
        # instance for this override (gone, tests/updates/test_updates_transfer.py fails)
        manager = self._proxy_env.get_pool_manager(address.scheme, address.host)
        manager.pool_classes_by_scheme = WATCHED_POOLS
        timeout = urllib3.Timeout(connect=min(self.socket_timeout, deadline.remaining_s()),
                                  read=self.socket_timeout)
        _current.deadline = deadline
        try:
            response = manager.request("GET", url, preload_content=False, timeout=timeout,
                                       redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if deadline.expired:
                raise self._too_slow(url, "answer's headers") from exc
            if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(
                    exc.reason, urllib3.exceptions.TimeoutError):
                raise tuf_errors.SlowRetrievalError(f"{url}: {exc.reason}") from exc
            raise
        finally:
            _current.deadline = None
        if deadline.expired:  # the headers read so far end where the cut came, as if whole
            response.close()
            raise self._too_slow(url, "answer's headers")
        return response

    def _body(self, response: urllib3.BaseHTTPResponse, url: str,
              deadline: ExchangeDeadline) -> Iterator[bytes]:
        """The body as it comes; refused once the deadline has cut it (a cut body without a
        Content-Length would otherwise end as if whole)."""
        try:
            while chunk := response.read1(self.chunk_size):
                yield chunk
            if deadline.expired:
                raise self._too_slow(url, "")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if deadline.expired:
                raise self._too_slow(url, "") from exc
            raise TransferCutError(f"{url}: cut before its end ({type(exc).__name__}: "
                                   f"{exc})") from exc
        finally:
            deadline.cancel()
            if deadline.expired:
                response.close()  # its connection was cut: not one to keep alive
            else:
                response.release_conn()

    def _too_slow(self, url: str, part: str) -> tuf_errors.SlowRetrievalError:
        return tuf_errors.SlowRetrievalError(
            f"{url}: {part + ' ' if part else ''}still arriving after {self.deadline_s:g} s "
            "(updates.download_deadline_s); a server or network this slow is refused")


def _origin(address: Url) -> tuple[str, str, int | None]:
    """The scheme, host and port of ``address``, a default port written out."""
    scheme = (address.scheme or "http").lower()
    return scheme, (address.host or "").lower(), address.port or _DEFAULT_PORTS.get(scheme)
