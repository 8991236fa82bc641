"""A paho client that reads the broker's stream in large chunks (the ingest hot path).

paho 2 reads each packet with several ``recv`` calls (1 byte of type, 1 byte at a time of
length, then the body) and one ``select`` per packet. At thousands of results per second every
such syscall gives up the GIL and waits to get it back from the batch writer thread, so the
network thread starves. Here one ``recv`` takes up to 256 KiB, paho's small reads are served
from that buffer, and ``pending()`` (the hook paho already uses for TLS) tells its loop that
more packets are waiting, so it reads them without another ``select`` wait. Plain TCP only;
TLS and websocket connections use paho unchanged.
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

CHUNK_BYTES = 256 * 1024
MAX_PACKETS_PER_READ = 1000


class BufferedSocket:
    """A TCP socket whose ``recv`` is served from one large read."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; raises BlockingIOError like the socket when none are there."""
        if not self._buffer:
            data = self._sock.recv(CHUNK_BYTES)
            if not data:
                return b""
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]  # bytearray drops its head without copying the rest
        return out

    def pending(self) -> int:
        """Bytes read from the socket that paho has not taken yet."""
        return len(self._buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedReadClient(mqtt.Client):
    """paho's client with chunked reads on plain TCP connections."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return BufferedSocket(sock) if type(sock) is socket.socket else sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read every packet already buffered (paho itself reads one per select)."""
        rc = super().loop_read(max_packets)
        for _ in range(MAX_PACKETS_PER_READ):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if not sock.pending():
                break
            rc = super().loop_read(max_packets)
        return rc
