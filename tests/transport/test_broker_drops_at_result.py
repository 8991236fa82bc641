"""A broker that drops the connection at each result it is sent, with no PUBACK the kiosk
reads: how mosquitto's ACL refusal of a result looks when the PUBACK 0x87 it writes is lost in
the reset of the connection it then closes (the kiosk's other packets still unread). The link
counted no refusal and said nothing of it; a streak of such drops was blamed on another client
with the kiosk's client id alone. Each such connection is now counted
(``LinkStats.dropped_unanswered``), said once from the second in a row, and the results stay
in the outbox until a broker takes them."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from tests.fake_broker import FakeBroker, topic
from tests.transport.test_transport_mqtt import make_link, stop

RESULTS = 3


class _DropsAtResults(FakeBroker):
    """A broker but for results: a result PUBLISH resets the connection (SO_LINGER 0) until
    ``take`` is set, then results get PUBACK 0."""

    def __init__(self) -> None:
        super().__init__()
        self.take = threading.Event()

    def publish(self, connection: socket.socket, number: int, first: int, body: bytes) -> bool:
        if topic(body) == "drops/result" and not self.take.is_set():
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False  # a reset: no PUBACK reaches the kiosk
        return super().publish(connection, number, first, body)


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
