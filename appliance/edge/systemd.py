"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING) and journald logging.

The daemon speaks the documented NOTIFY_SOCKET datagram protocol itself, without blocking:
systemd-python's ``daemon.notify`` sends on a blocking socket while holding the GIL, so a
notify socket nobody reads (its queue full) would freeze the whole daemon. systemd-python is
optional and used for ``systemd.journal.JournalHandler`` only; without it (a developer laptop,
a container) the daemon logs plain lines to stderr.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from appliance import logsafe

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages when ``$NOTIFY_SOCKET`` is set; does nothing otherwise.

    A message the socket has no room for is dropped, never waited on: the sender is the
    supervisor, whose watchdog pings must not stop because the service manager is slow.
    """

    def __init__(self) -> None:
        self.socket_path = os.environ.get("NOTIFY_SOCKET")
        self._dropping = False  # the last message found the socket's queue full

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self.socket_path)

    def notify(self, message: str) -> None:
        """Send one message such as ``READY=1``; failures are logged, never raised."""
        if not self.socket_path:
            return
        try:
            self._send(self.socket_path, message)
        except BlockingIOError:
            if not self._dropping:
                log.warning(
                    "sd_notify: nobody reads %s (its queue is full); dropping %r and what "
                    "follows until it has room again",
                    self.socket_path,
                    message,
                )
            self._dropping = True
            return
        except OSError as exc:
            log.warning("sd_notify %r to %s failed: %s", message, self.socket_path, exc)
            return
        if self._dropping:
            log.info("sd_notify: %s takes messages again", self.socket_path)
        self._dropping = False

    @staticmethod
    def _send(path: str, message: str) -> None:
        address = "\0" + path[1:] if path.startswith("@") else path  # "@": abstract namespace
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), address)


def watchdog_interval_s() -> float | None:
    """Half of ``$WATCHDOG_USEC`` (how often to ping), or None when no watchdog is set."""
    raw = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not raw or (pid and pid != str(os.getpid())):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number; no watchdog pings", raw)
        return None
    return usec / 2e6 if usec > 0 else None


def under_journald() -> bool:
    """Whether stderr is connected to the journal (systemd sets ``$JOURNAL_STREAM``)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def setup_logging(verbose: bool = False, device_id: str | None = None) -> None:
    """Log to journald with structured fields under systemd, else plain lines to stderr."""
    level = logging.DEBUG if verbose else logging.INFO
    logsafe.install()
    root = logging.getLogger()
    root.setLevel(level)
    handler = _journal_handler(device_id) if under_journald() else None
    if handler is None:
        if root.handlers:
            return  # the CLI already logs to stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def _journal_handler(device_id: str | None) -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    extra = {"SYSLOG_IDENTIFIER": "appliance-edge"}
    if device_id:
        extra["DEVICE_ID"] = device_id
    handler: logging.Handler = JournalHandler(**extra)
    return handler
