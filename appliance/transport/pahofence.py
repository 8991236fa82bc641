"""The one place that reaches into paho's private names: the ingest client's chunked reads.

Every private name used here is listed in ``PAHO_PRIVATE_NAMES`` and marked ``# noqa: SLF001``
where it is used (reached through a name typed as paho's client, so ruff's SLF rule sees each
access and any new one elsewhere fails the lint); tests/transport/test_transport_pahofence.py
fails loudly when a paho release renames or removes one (paho-mqtt is pinned >=2,<3 for that
reason too). Upstream:
https://github.com/eclipse/paho.mqtt.python/blob/master/src/paho/mqtt/client.py

A paho client for the ingest hot path: chunked reads, and acks queued a batch at a time.

paho 2 reads each packet with several ``recv`` calls (1 byte of type, 1 byte at a time of
length, then the body) and one ``select`` per packet. At thousands of results per second every
such syscall gives up the GIL and waits to get it back from the batch writer thread, so the
network thread starves. Here one ``recv`` takes up to 256 KiB, paho's small reads are served
from that buffer, and ``pending()`` (the hook paho already uses for TLS) tells its loop that
more packets are waiting, so it reads them without another ``select`` wait. Plain TCP only;
TLS and websocket connections use paho unchanged. ``ack_many`` queues the PUBACKs of a
committed batch as one write (paho's ``ack`` queues, and wakes its loop, once per message); the
bytes on the wire are the same PUBACK packets ``ack`` would send.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

CHUNK_BYTES = 256 * 1024
PUBACK = 0x40  # MQTT 5 spec 3.4: fixed header; remaining length 2 = packet id, success
MAX_PACKETS_PER_READ = 1000
# paho.mqtt.client.Client internals this module relies on (no public API offers them):
# _create_socket (the socket factory to wrap), _sock (the connected socket) and
# _packet_queue (queue raw bytes for the network loop).
PAHO_PRIVATE_NAMES = ("_create_socket", "_sock", "_packet_queue")


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
        # paho has no hook for the socket it opens; wrapping its factory is the only way in.
        sock = mqtt.Client._create_socket(self)  # noqa: SLF001  (no public socket hook)
        return BufferedSocket(sock) if type(sock) is socket.socket else sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read every packet already buffered (paho itself reads one per select)."""
        rc = super().loop_read(max_packets)
        paho: mqtt.Client = self  # named as paho's client: private reads below are marked
        for _ in range(MAX_PACKETS_PER_READ):
            sock = paho._sock  # noqa: SLF001  (paho keeps the live socket only here)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if not sock.pending():
                break
            rc = super().loop_read(max_packets)
        return rc

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK these QoS 1 message ids with one queued write (needs manual_ack=True)."""
        if mids:
            wire = b"".join(struct.pack("!BBH", PUBACK, 2, mid) for mid in mids)
            paho: mqtt.Client = self
            # paho's public ack() queues one packet (and one wake-up) per message.
            paho._packet_queue(PUBACK, wire, mids[-1], 1)  # noqa: SLF001  (no batched ack API)
