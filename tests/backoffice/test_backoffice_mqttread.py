"""The chunked socket under paho: small reads served from one large read, EOF kept."""

from __future__ import annotations

import socket

import pytest

from appliance.backoffice.mqttread import BufferedSocket


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
