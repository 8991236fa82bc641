"""The /metrics endpoints (the kiosk's, the pathology server's) against slow or hostile
clients: a bounded number of connections, silent ones cut off (appliance/metricshttp.py)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from appliance import metricshttp
from appliance.edge.metrics import MetricsServer
from appliance.metricshttp import Bounds, MetricsHTTPServer
from appliance.pathology.service_metrics import ServiceMetrics
from appliance.transport.broker import free_port
from tests.dripping import cut_off_while_dripping
from tests.slow_clients import answer_to, check_the_cap, status_of

BOUNDS = Bounds(max_connections=4, request_deadline_s=3.0)


@contextmanager
def edge_metrics() -> Iterator[int]:
    port = free_port()
    server = MetricsServer(port, lambda: {"appliance_edge_frames": 3.0}, BOUNDS)
    server.start()
    try:
        yield port
    finally:
        server.close()


@contextmanager
def pathology_metrics() -> Iterator[int]:
    port = free_port()
    metrics = ServiceMetrics(max_batch=8)
    metrics.serve(port, "127.0.0.1", BOUNDS)
    try:
        yield port
    finally:
        metrics.close()


SERVERS = pytest.mark.parametrize("serving", [edge_metrics, pathology_metrics],
                                  ids=["edge", "pathology"])


@SERVERS
def test_connections_past_the_cap_are_refused_at_once_and_threads_stay_bounded(
    serving: Callable[[], AbstractContextManager[int]], caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """prometheus-client's server waited for a request without any timeout, a thread a
    connection: a client that connected and sent nothing held its thread for good, and as
    many clients as connected held as many threads and file descriptors."""
    with serving() as port:
        check_the_cap(("127.0.0.1", port), f"http://127.0.0.1:{port}/metrics", 4, caplog)
    assert "Traceback" not in capsys.readouterr().err


@SERVERS
def test_a_request_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(
    serving: Callable[[], AbstractContextManager[int]],
) -> None:
    """Each byte well within the idle timeout: only the request deadline ends it."""
    with serving() as port:
        assert cut_off_while_dripping(  # within the drip (some 40 s), not after it
            ("127.0.0.1", port), b"GET /metrics HTTP/1.0\r\nX-Padding: " + b"a" * 200, 0.2)
        assert status_of(f"http://127.0.0.1:{port}/metrics") == 200


def test_a_scrape_in_time_still_reads_the_metrics() -> None:
    with edge_metrics() as port, socket.create_connection(("127.0.0.1", port)) as scrape:
        scrape.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        answer = answer_to(scrape)
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"\nappliance_edge_frames_total 3.0\n" in answer


def _scrape(address: tuple[str, int], host: str) -> bytes:
    """The status line a GET /metrics naming ``host`` gets."""
    with socket.create_connection(address) as scrape:
        scrape.sendall(f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        return answer_to(scrape).split(b"\r\n", 1)[0]


@SERVERS
def test_metrics_on_loopback_answer_an_address_or_localhost_not_another_name(
    serving: Callable[[], AbstractContextManager[int]],
) -> None:
    """A web page whose own name is pointed at 127.0.0.1 (DNS rebinding) read the metrics from
    the browser of anyone on the host: they answered any Host."""
    with serving() as port:
        address = ("127.0.0.1", port)
        assert _scrape(address, f"rebound.example:{port}") == b"HTTP/1.0 400 Bad Request"
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
            assert _scrape(address, host) == b"HTTP/1.0 200 OK", host


def test_metrics_bound_for_the_network_answer_the_name_a_remote_prometheus_gives() -> None:
    """A remote Prometheus names its target as configured (pathology-1.lab:9108); anyone on
    the network reaches such an endpoint anyway, so its name is not checked."""
    port = free_port()
    metrics = ServiceMetrics(max_batch=8)
    metrics.serve(port, "0.0.0.0", BOUNDS)
    try:
        assert _scrape(("127.0.0.1", port), f"pathology-1.lab:{port}") == b"HTTP/1.0 200 OK"
    finally:
        metrics.close()


@SERVERS
def test_a_stop_leaves_no_thread_of_the_server_running(
    serving: Callable[[], AbstractContextManager[int]],
) -> None:
    """The thread asking the serving loop to stop was left running after the serving thread
    had ended (9 stops in 10): the kiosk's end then found it and logged "metrics-http-stop
    still running after the stop; ending the process now" at nearly every stop (a soak's
    every run; benchmarks/soak.py)."""
    before = set(threading.enumerate())
    for _ in range(10):
        with serving():
            pass
        left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
        assert left == [], f"still running after the server's stop: {left}"


@SERVERS
def test_a_serving_thread_that_does_not_stop_is_said_in_one_line_and_the_stop_returns(
    serving: Callable[[], AbstractContextManager[int]], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A serving loop stuck (here in its service actions): the stop waits STOP_WAIT_S for it,
    says so in one line and returns, the port freed; it waited for it without end."""
    stuck, release = threading.Event(), threading.Event()

    def stuck_loop(_server: MetricsHTTPServer) -> None:
        stuck.set()
        release.wait(30)

    monkeypatch.setattr(MetricsHTTPServer, "service_actions", stuck_loop)
    monkeypatch.setattr(metricshttp, "STOP_WAIT_S", 0.2, raising=False)
    with caplog.at_level(logging.WARNING, logger="appliance.metricshttp"):
        served = serving()
        port = served.__enter__()
        assert stuck.wait(10), "the serving loop never looked at its service actions"
        stopping = threading.Thread(target=served.__exit__, args=(None, None, None),
                                    daemon=True)
        stopping.start()
        stopping.join(10)
        stopped = not stopping.is_alive()
        release.set()
    assert stopped, "the stop waited for the stuck serving thread"
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 1, said
    assert f":{port}: its serving thread" in said[0]
    assert "did not stop within" in said[0]
    with socket.create_server(("127.0.0.1", port)):
        pass  # the port is free
