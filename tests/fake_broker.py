"""A scripted MQTT v5 broker on a socket, for faults a real mosquitto shows only by chance: a
broker that never answers a result, resets the connection at one, or holds a PUBACK back.

``FakeBroker`` answers CONNECT (CONNACK, success), SUBSCRIBE (QoS 1 for each filter) and
PINGREQ like a broker; what it does with a PUBLISH is its subclass's ``publish``. Each
connection runs in a thread of its own until the client or ``publish`` ends it.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class FakeBroker:
    """Answers everything but PUBLISH like a broker; ``publish`` decides the rest."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
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
            packet(connection)  # the CONNECT
            connection.sendall(b"\x20\x03\x00\x00\x00")  # MQTT v5 CONNACK, success
            while (read := packet(connection)) is not None:
                first, body = read
                if first >> 4 == 8:  # SUBSCRIBE: grant QoS 1 to each of its filters
                    granted = b"\x01" * filters(body)
                    connection.sendall(bytes([0x90, 3 + len(granted)]) + body[:2] + b"\x00"
                                       + granted)
                elif first >> 4 == 12:  # PINGREQ
                    connection.sendall(b"\xd0\x00")
                elif first >> 4 == 3 and not self.publish(connection, number, first, body):
                    return

    def publish(self, connection: socket.socket, number: int, first: int, body: bytes) -> bool:
        """A PUBLISH on connection ``number`` (its first byte and body); False ends the
        connection. This one answers a QoS 1 PUBLISH with PUBACK 0."""
        if first & 0x06:
            connection.sendall(puback(body, 0))
        return True

    def close(self) -> None:
        self.server.close()


def packet(connection: socket.socket) -> tuple[int, bytes] | None:
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


def topic(publish: bytes) -> str:
    """The topic a PUBLISH packet's body names."""
    return publish[2 : 2 + int.from_bytes(publish[:2], "big")].decode()


def puback(publish: bytes, reason: int) -> bytes:
    """The v5 PUBACK with ``reason`` for a QoS 1 PUBLISH's body (its packet id)."""
    at = 2 + len(topic(publish))
    return b"\x40\x03" + publish[at : at + 2] + bytes([reason])


def payload(publish: bytes) -> bytes:
    """A QoS 1 v5 PUBLISH's payload: what follows its packet id and properties."""
    length, at = varint(publish, 2 + len(topic(publish)) + 2)
    return publish[at + length :]


def varint(data: bytes, at: int) -> tuple[int, int]:
    """An MQTT variable byte integer at ``at``: its value and where it ends."""
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def filters(subscribe: bytes) -> int:
    """How many topic filters a v5 SUBSCRIBE names."""
    length, at = varint(subscribe, 2)
    at += length
    count = 0
    while at < len(subscribe):
        at += 2 + int.from_bytes(subscribe[at : at + 2], "big") + 1
        count += 1
    return count
