"""The link says a status reached the broker only on a PUBACK that takes it (reason code below
0x80, MQTT v5 spec 3.4.2.1) for a status built at or after the time asked about, and only
while connected: the kiosk screen's "staff have been told" rests on it (edge/staff.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from tests.fake_broker import FakeBroker, puback, topic
from tests.transport.test_transport_mqtt import make_link, stop


class _StatusBroker(FakeBroker):
    """A broker whose PUBACK to each status carries ``status_reason`` (0x87: not authorized,
    as an ACL refuses it)."""

    def __init__(self, status_reason: int) -> None:
        super().__init__()
        self.status_reason = status_reason
        self.statuses = 0

    def publish(self, connection: socket.socket, number: int, first: int, body: bytes) -> bool:
        if first & 0x06:  # QoS 1
            is_status = topic(body).endswith("/status")
            self.statuses += is_status
            connection.sendall(puback(body, self.status_reason if is_status else 0))
        return True


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
