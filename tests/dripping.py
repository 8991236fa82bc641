"""A client that sends its request a byte at a time, for the servers' request deadlines."""

from __future__ import annotations

import socket


def cut_off_while_dripping(address: tuple[str, int], request: bytes, wait_s: float) -> bool:
    """Send ``request`` to ``address`` one byte at a time, each after ``wait_s`` of silence
    from the server; True once the server closed (or reset) the connection, False if the
    whole request went out without that."""
    with socket.create_connection(address) as dripping:
        dripping.settimeout(wait_s)
        for byte in request:
            try:
                dripping.send(bytes([byte]))
                if dripping.recv(1) == b"":
                    return True
            except TimeoutError:
                continue
            except OSError:  # reset: closed as well
                return True
    return False
