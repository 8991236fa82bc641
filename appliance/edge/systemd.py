"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING) and journald logging.

systemd-python is optional: under systemd the daemon uses ``systemd.daemon.notify`` and
``systemd.journal.JournalHandler``; without it (a developer laptop, a container) it speaks
the documented NOTIFY_SOCKET datagram protocol itself and logs plain lines to stderr.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from appliance import logsafe

log = logging.getLogger(__name__)


def _systemd_daemon() -> Any:
    try:
        from systemd import daemon  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    return daemon


class Notifier:
    """Sends sd_notify messages when ``$NOTIFY_SOCKET`` is set; does nothing otherwise."""

    def __init__(self) -> None:
        self.socket_path = os.environ.get("NOTIFY_SOCKET")
        self._daemon = _systemd_daemon()

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self.socket_path)

    def notify(self, message: str) -> None:
        """Send one message such as ``READY=1``; failures are logged, never raised."""
        if not self.socket_path:
            return
        try:
            if self._daemon is not None:
                self._daemon.notify(message)
            else:
                self._send(message)
        except OSError as exc:
            log.warning("sd_notify %r to %s failed: %s", message, self.socket_path, exc)

    def _send(self, message: str) -> None:
        assert self.socket_path is not None  # checked by notify()
        address = self.socket_path
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
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
