"""A broker that drops the connection at each result it is sent, with no PUBACK the kiosk
reads: how mosquitto's ACL refusal of a result looks when the PUBACK 0x87 it writes is lost in
the reset of the connection it then closes (the kiosk's other packets still unread). The link
counted no refusal and said nothing of it; a streak of such drops was blamed on another client
with the kiosk's client id alone. Each such connection is now counted
(``LinkStats.dropped_unanswered``), said once from the second in a row, and the results stay
in the outbox until a broker takes them."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from tests.transport.test_broker_silent_puback import _packet, _topic
from tests.transport.test_transport_mqtt import make_link, stop

RESULTS = 3


class _DropsAtResults:
    """CONNACK, SUBACK and PUBACKs for all but results; a result PUBLISH resets the connection
    (SO_LINGER 0) until ``take`` is set, then results get PUBACK 0."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.take = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                connection, _ = self.server.accept()
                self.connections += 1
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
                    if _topic(body) == "drops/result" and not self.take.is_set():
                        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
                        return  # a reset: no PUBACK reaches the kiosk
                    connection.sendall(b"\x40\x02" + body[at : at + 2])  # PUBACK 0

    def close(self) -> None:
        self.server.close()


def test_connections_dropped_at_each_result_are_counted_and_said_as_a_likely_acl_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = _DropsAtResults()
    link = make_link(tmp_path, "127.0.0.1", broker.port, "drops", reconnect_initial_s=0.05,
                     reconnect_cap_s=0.1)
    link.outbox.add_many([(f"m{i}", "drops/result", b"{}") for i in range(RESULTS)])
    with caplog.at_level(logging.WARNING, logger="appliance.transport"):
        link.start()
        try:
            assert wait_until(lambda: link.stats.dropped_unanswered >= 4, 15), link.stats
            assert link.outbox.depth() == RESULTS  # nothing lost, nothing taken
            broker.take.set()  # the ACL mended: the same results go through, no restart
            assert wait_until(lambda: link.stats.broker_acked >= RESULTS, 15), link.stats
        finally:
            stop(link)
            broker.close()
    assert link.stats.rejected == 0  # no PUBACK refused anything: the drops alone tell
    said = [r.getMessage() for r in caplog.records if "none answered" in r.getMessage()]
    assert len(said) == 1, said
    assert "connections in a row with result(s) in flight" in said[0]
    assert "check the broker ACL for this device" in said[0]
    streak = [r.getMessage() for r in caplog.records if "times in a row" in r.getMessage()]
    assert streak
    assert "its ACL may refuse this device's results" in streak[0]
    assert link.outbox.depth() == RESULTS  # taken by the broker, not yet confirmed by an ack
