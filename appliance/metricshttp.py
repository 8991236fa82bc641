"""The /metrics HTTP server of the edge daemon, the back-office worker and the pathology server:
prometheus-client's exposition (its WSGI app) on a threaded server bounded against slow or hostile
clients.

prometheus-client's own ``start_http_server`` gives each connection a thread that waits for
its request without any timeout: a client that connected and sent nothing, or a byte now and
then, held its thread for good, and as many clients as connected held as many threads and
file descriptors (the pathology server's metrics may listen on the network). Here a scrape's
request must arrive whole within ``request_deadline_s``, every read and write waits at most
``idle_timeout_s``, and at most ``max_connections`` are served at once; one more is answered
503 at once (appliance/httpbounds.py). Prometheus scrapes one target once per interval, so a
few places are plenty.

Bound to loopback (the kiosk's always, the pathology server's by default), it answers only a
request that names it by an IP address or ``localhost`` (or names no host), as the console does
(appliance/console/hostnames.py): a web page whose own name its owner points at 127.0.0.1 (DNS
rebinding) would otherwise read the metrics from the browser of anyone on the host, while a
scraper on the host names an address or localhost. Bound for the network, it answers any
name: a remote Prometheus sends the target's name as it was configured (a DNS name, an alias),
and anyone on the network reaches the endpoint itself anyway (it has no login).

Stopped, the server's serving thread is waited for at most STOP_WAIT_S; one still running then
(its loop stuck) is said in the log, left to end with the process, and the port freed anyway.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from appliance.console.hostnames import host_refusal
from appliance.httpbounds import REQUEST_DEADLINE_S, BoundedThreadingMixIn, RequestDeadlineMixIn

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 8
STOP_WAIT_S = 5.0
IDLE_TIMEOUT_S = 30.0  # Prometheus gives up on a scrape after 10 s by default
OTHER_HOST_REFUSED = b"metrics on loopback answer to an IP address or localhost only\n"


class MetricsHTTPServer(BoundedThreadingMixIn, WSGIServer):
    """A thread a connection, at most ``max_connections`` of them."""

    max_connections = MAX_CONNECTIONS


class _QuietHandler(RequestDeadlineMixIn, WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a scrape every few seconds would fill the journal."""


@dataclass(frozen=True)
class Bounds:
    """What one client may hold of the server (tests shorten them)."""

    max_connections: int = MAX_CONNECTIONS
    request_deadline_s: float = REQUEST_DEADLINE_S
    idle_timeout_s: float = IDLE_TIMEOUT_S


DEFAULT_BOUNDS = Bounds()


def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int, bounds: Bounds = DEFAULT_BOUNDS,
    thread_name: str = "metrics-http",
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` on ``host:port`` from a daemon thread (as prometheus-client's
    ``start_http_server`` returns them); OSError when the address cannot be had."""
    # the address's own family, so an IPv6 address binds too
    family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                             flags=socket.AI_PASSIVE)[0]
    server_class = type("MetricsHTTPServer", (MetricsHTTPServer,),
                        {"address_family": family, "max_connections": bounds.max_connections})
    handler_class = type("MetricsHandler", (_QuietHandler,),
                         {"timeout": bounds.idle_timeout_s,
                          "request_deadline_s": bounds.request_deadline_s})
    app = make_wsgi_app(registry)
    if ipaddress.ip_address(address[0]).is_loopback:
        app = _own_names_only(app)
    httpd: WSGIServer = make_server(str(address[0]), port, app, server_class, handler_class)
    thread = threading.Thread(target=httpd.serve_forever, name=thread_name, daemon=True)
    thread.start()
    return httpd, thread


def stop_metrics_server(httpd: WSGIServer, thread: threading.Thread) -> None:
    """Stop serving and free the port, waiting at most STOP_WAIT_S for the serving thread:
    ``shutdown`` itself would wait for it without end, so it is asked from a thread of its
    own. A serving thread still running then is said in the log, in one line. Once the serving
    thread has ended, the asking thread is waited for too: it returns as soon as the serving
    loop has said it stopped, and one left alive would be a thread still running after the
    daemon's stop (appliance/edge/ending.py: a warning and an exit without finalisation at
    nearly every kiosk stop with its metrics on)."""
    stopper = threading.Thread(target=httpd.shutdown, name=f"{thread.name}-stop", daemon=True)
    stopper.start()
    thread.join(STOP_WAIT_S)
    if thread.is_alive():
        host, port = httpd.server_address[:2]
        log.warning("metrics HTTP server on %s:%s: its serving thread %s did not stop within "
                    "%.0f s; left running, the port freed", host, port, thread.name,
                    STOP_WAIT_S)
    else:
        stopper.join(STOP_WAIT_S)
    httpd.server_close()


def _own_names_only(app: WSGIApplication) -> WSGIApplication:
    """``app`` for requests that name an IP address, localhost or no host; 400 for others."""

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if host_refusal(environ.get("HTTP_HOST"), frozenset()) is None:
            return app(environ, start_response)
        start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8"),
                                           ("Content-Length", str(len(OTHER_HOST_REFUSED)))])
        return [OTHER_HOST_REFUSED]

    return guarded


# name -> (type, help) of every value a program reports; counter names end in _total on the
# wire (prometheus-client adds it to the family name given here)
Catalogue = dict[str, tuple[str, str]]


class ReadCollector(Collector):
    """Turns a program's current values into metric families at each scrape, so no value is
    copied on the hot path and none can drift from what the program reports elsewhere."""

    def __init__(self, catalogue: Catalogue, read: Callable[[], dict[str, float]]) -> None:
        self._catalogue, self._read = catalogue, read

    def collect(self) -> Iterator[Metric]:
        """One family per value the program reports (each one named in the catalogue)."""
        for name, value in self._read().items():
            kind, help_text = self._catalogue[name]
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=value)


class LoopbackMetrics:
    """Serves ``/metrics`` on 127.0.0.1 from a read function, on a background thread."""

    def __init__(self, port: int, catalogue: Catalogue, read: Callable[[], dict[str, float]],
                 bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ReadCollector(catalogue, read))
        self.port = port
        self._bounds = bounds
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving; OSError when the port cannot be had."""
        self._server, self._thread = start_metrics_server(
            self.registry, "127.0.0.1", self.port, self._bounds)
        log.info("metrics on http://127.0.0.1:%d/metrics", self.port)

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None and self._thread is not None:
            stop_metrics_server(self._server, self._thread)
