"""The paho fence: the private names it needs still exist; chunked reads; batched PUBACKs."""

from __future__ import annotations

import inspect
import socket

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.transport.pahofence import PAHO_PRIVATE_NAMES, BufferedReadClient, BufferedSocket


def test_every_paho_private_name_the_fence_uses_still_exists_with_its_signature() -> None:
    """Fails loudly when a paho release renames or reshapes what pahofence reaches into."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    missing = [name for name in PAHO_PRIVATE_NAMES if not hasattr(client, name)]
    assert not missing, f"paho-mqtt {mqtt.__version__} lacks {missing}: update pahofence.py"
    queue_params = list(inspect.signature(client._packet_queue).parameters)  # noqa: SLF001
    assert queue_params[:4] == ["command", "packet", "mid", "qos"], queue_params
    assert client._sock is None  # noqa: SLF001  (paho's socket slot, None until connected)
    assert callable(client._create_socket)  # noqa: SLF001


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

    # The test swaps paho's private packet queue to see the exact bytes ack_many queues.
    client._packet_queue = capture  # type: ignore[method-assign,assignment]  # noqa: SLF001
    client.ack(7, 1)
    client.ack(300, 1)
    one_by_one = b"".join(queued)
    queued.clear()
    client.ack_many([7, 300])
    assert queued == [one_by_one]
    assert one_by_one == b"\x40\x02\x00\x07\x40\x02\x01\x2c"
