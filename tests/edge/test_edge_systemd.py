"""systemd integration without systemd: sd_notify datagrams, watchdog interval, log handler."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.edge.systemd import Notifier, setup_logging, watchdog_interval_s


def test_notify_speaks_the_datagram_protocol_without_systemd_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        notifier = Notifier()
        notifier.notify("READY=1")
        notifier.notify("STATUS=camera online")
        assert sock.recv(100) == b"READY=1"
        assert sock.recv(100) == b"STATUS=camera online"


_UNREAD_SOCKET = """
import logging, socket, sys
from appliance.edge.systemd import Notifier
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
path = sys.argv[1]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unread:
    unread.bind(path)
    notifier = Notifier()
    for number in range(200):
        notifier.notify(f"STATUS=busy {number}")
    while True:
        try:
            unread.recv(100, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    notifier.notify("READY=1")
    print("received", unread.recv(100).decode())
"""


def test_a_notify_socket_nobody_reads_drops_messages_instead_of_blocking(
    tmp_path: Path,
) -> None:
    """A full notify queue used to block the supervisor for ever (systemd-python froze the
    whole process, GIL held); now each message it has no room for is dropped, logged once."""
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "unread.sock")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    run = subprocess.run(
        [sys.executable, "-c", _UNREAD_SOCKET, env["NOTIFY_SOCKET"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "received READY=1"
    assert run.stderr.count("nobody reads") == 1
    assert "takes messages again" in run.stderr


def test_notify_is_silent_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.notify("READY=1")  # nothing to send to, nothing raised


def test_a_vanished_notify_socket_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    Notifier().notify("WATCHDOG=1")
    assert "gone.sock" in caplog.text


def test_watchdog_pings_at_half_the_systemd_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    monkeypatch.delenv("WATCHDOG_PID")
    assert watchdog_interval_s() is None


def test_logs_go_to_the_journal_under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = pytest.importorskip("systemd.journal")
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    try:
        setup_logging(False, "kiosk-9")
        handlers = logging.getLogger().handlers
        assert len(handlers) == 1
        assert isinstance(handlers[0], journal.JournalHandler)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
