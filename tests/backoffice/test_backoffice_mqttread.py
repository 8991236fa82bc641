"""The ingest paho client: small reads from one large read, PUBACKs queued a batch at a time."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.backoffice.mqttread import BufferedReadClient, BufferedSocket


def test_small_reads_come_from_one_large_read_and_pending_counts_the_rest() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    buffered = BufferedSocket(left)
    right.sendall(b"\x30\x05hello\x30\x02hi")
    assert buffered.recv(1) == b"\x30"
    assert buffered.pending() == 10
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(100) == b"\x30\x02hi"  # a short read, as a socket gives
    assert buffered.pending() == 0
    with pytest.raises(BlockingIOError):
        buffered.recv(1)  # nothing buffered, nothing on the wire: like the socket
    right.close()
    assert buffered.recv(1) == b""  # the peer closed
    assert buffered.fileno() == left.fileno()
    left.close()


def test_ack_many_queues_the_same_pubacks_ack_would_send_in_one_write() -> None:
    client = BufferedReadClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    queued: list[bytes] = []

    def capture(command: int, packet: bytes, mid: int, qos: int, info: object = None) -> None:
        queued.append(packet)

    client._packet_queue = capture  # type: ignore[method-assign,assignment]
    client.ack(7, 1)
    client.ack(300, 1)
    one_by_one = b"".join(queued)
    queued.clear()
    client.ack_many([7, 300])
    assert queued == [one_by_one]
    assert one_by_one == b"\x40\x02\x00\x07\x40\x02\x01\x2c"
