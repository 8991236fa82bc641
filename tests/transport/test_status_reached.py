"""The link says a status reached the broker only on a PUBACK that takes it (reason code below
0x80, MQTT v5 spec 3.4.2.1) for a status built at or after the time asked about, and only
while connected: the kiosk screen's "staff have been told" rests on it (edge/staff.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from tests.transport.test_broker_silent_puback import _packet, _topic
from tests.transport.test_transport_mqtt import make_link, stop


class _StatusBroker:
    """CONNACK, SUBACK and PINGRESP; each status PUBLISH answered by a PUBACK with
    ``status_reason`` (0x87: not authorized, as an ACL refuses it)."""

    def __init__(self, status_reason: int) -> None:
        self.status_reason = status_reason
        self.statuses = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                connection, _ = self.server.accept()
                threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            _packet(connection)  # the CONNECT
            connection.sendall(b"\x20\x03\x00\x00\x00")  # MQTT v5 CONNACK, success
            while (packet := _packet(connection)) is not None:
                first, body = packet
                if first >> 4 == 8:  # SUBSCRIBE (one filter): SUBACK granting QoS 1
                    connection.sendall(bytes([0x90, 4]) + body[:2] + b"\x00\x01")
                elif first >> 4 == 12:  # PINGREQ
                    connection.sendall(b"\xd0\x00")
                elif first >> 4 == 3 and first & 0x06:  # a QoS 1 PUBLISH
                    at = 2 + len(_topic(body))
                    reason = self.status_reason if _topic(body).endswith("/status") else 0
                    self.statuses += _topic(body).endswith("/status")
                    connection.sendall(b"\x40\x03" + body[at : at + 2] + bytes([reason]))

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize(("reason", "reached"), [(0x00, True), (0x87, False)])
def test_a_status_counts_as_reached_only_when_the_broker_takes_it(
    tmp_path: Path, reason: int, reached: bool
) -> None:
    broker = _StatusBroker(reason)
    link = make_link(tmp_path, "127.0.0.1", broker.port, "told")
    before_s = time.monotonic()
    link.start()
    try:
        assert wait_until(lambda: link.connected and broker.statuses >= 1, 10)
        link.send_status()  # a second one: both answered before the check below
        assert wait_until(lambda: broker.statuses >= 2, 10)
        assert wait_until(lambda: link.status_reached_since(before_s), 2) is reached
        assert not link.status_reached_since(time.monotonic())  # none built since
    finally:
        stop(link)
        broker.close()
    assert not link.status_reached_since(before_s)  # not connected now
