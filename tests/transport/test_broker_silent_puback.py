"""A broker that takes the kiosk's connection, its subscriptions and its pings, but never
answers a result it is sent (a stuck broker, or a proxy whose far side is gone): the results
stayed in flight for good on that connection, the window full, nothing sent again and nothing
said. The link now connects again once no PUBACK has come for ``puback_timeout_s``."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from tests.transport.test_transport_mqtt import make_link, stop

RESULTS = 5


class _AnswersAllButResults:
    """CONNACK, SUBACK and PINGRESP like a broker; a PUBLISH is read and never answered."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.results: list[tuple[int, bool]] = []  # (connection, DUP flag) of each result
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                connection, _ = self.server.accept()
                self.connections += 1
                threading.Thread(target=self._serve, args=(connection, self.connections),
                                 daemon=True).start()

    def _serve(self, connection: socket.socket, number: int) -> None:
        with connection, contextlib.suppress(OSError):
            _packet(connection)  # the CONNECT
            connection.sendall(b"\x20\x03\x00\x00\x00")  # MQTT v5 CONNACK, success
            while (packet := _packet(connection)) is not None:
                first, body = packet
                if first >> 4 == 8:  # SUBSCRIBE (one filter): SUBACK granting QoS 1
                    connection.sendall(bytes([0x90, 4]) + body[:2] + b"\x00\x01")
                elif first >> 4 == 12:  # PINGREQ
                    connection.sendall(b"\xd0\x00")
                elif first >> 4 == 3 and _topic(body) == "silent/result":  # never answered
                    self.results.append((number, bool(first & 0x08)))

    def close(self) -> None:
        self.server.close()


def _topic(publish: bytes) -> str:
    """The topic a PUBLISH packet's body names."""
    return publish[2 : 2 + int.from_bytes(publish[:2], "big")].decode()


def _packet(connection: socket.socket) -> tuple[int, bytes] | None:
    """One MQTT packet: its first byte and its body (None: the connection ended)."""
    first = connection.recv(1)
    if not first:
        return None
    length, shift = 0, 0
    while True:
        byte = connection.recv(1)
        if not byte:
            return None
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return first[0], body


def _later(broker: _AnswersAllButResults) -> list[bool]:
    """The DUP flags of the results sent on a connection after the first."""
    return [dup for number, dup in broker.results if number > 1]


def test_results_a_broker_never_answers_are_sent_again_on_a_new_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = _AnswersAllButResults()
    link = make_link(tmp_path, "127.0.0.1", broker.port, "silent", puback_timeout_s=1.0,
                     reconnect_initial_s=0.1, reconnect_cap_s=0.5)
    link.outbox.add_many([(f"m{i}", "silent/result", b"{}") for i in range(RESULTS)])
    with caplog.at_level(logging.WARNING, logger="appliance.transport.mqtt"):
        link.start()
        try:
            assert wait_until(lambda: len(_later(broker)) >= RESULTS, 15), broker.results
        finally:
            stop(link)
            broker.close()
    assert broker.connections >= 2
    assert all(_later(broker)[:RESULTS])  # sent again as duplicates (DUP): the same results
    assert link.outbox.depth() == RESULTS  # nothing confirmed: all still kept
    assert any(f"no PUBACK from the broker 127.0.0.1:{broker.port} in " in r.getMessage()
               and f"for {RESULTS} result(s) in flight; reconnecting" in r.getMessage()
               for r in caplog.records)
