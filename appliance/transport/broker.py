"""A private mosquitto on a free port, for ``appliance demo`` and for tests that stop a broker
or need one that asks for a password."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 10.0


class BrokerError(RuntimeError):
    """mosquitto could not be found or started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class PrivateBroker:
    """mosquitto with a temp config and persistence folder; start, stop and restart it at will.

    The port stays the same across restarts, and persistence keeps sessions and queued QoS 1
    messages across a clean stop, like a production broker would.
    """

    def __init__(
        self, port: int | None = None, workdir: Path | None = None,
        passwords: Mapping[str, str] | None = None, acl: str | None = None,
    ) -> None:
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
            None,
        )
        if binary is None:
            raise BrokerError("mosquitto not found: install it (apt-get install mosquitto)")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="appliance-broker-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._acl_path = self.workdir / "acl" if acl is not None else None
        self._write_config(passwords)
        if acl is not None:
            self.set_acl(acl)

    def _write_config(self, passwords: Mapping[str, str] | None) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "mosquitto.conf").write_text(
            f"listener {self.port} {self.host}\n"
            f"{self._access(passwords)}"
            # Started as root, mosquitto drops to user "mosquitto", which cannot write the temp
            # folder: no log, no persistence, sessions lost on restart. Not root: ignored.
            "user root\n"
            "persistence true\n"
            f"persistence_location {self.workdir / 'data'}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    def _access(self, passwords: Mapping[str, str] | None) -> str:
        """Anyone may connect, or (``passwords``: user -> password) only those users; with an
        ACL, each may use only the topics it names."""
        acl = f"acl_file {self._acl_path}\n" if self._acl_path else ""
        if passwords is None:
            return f"allow_anonymous true\n{acl}"
        password_file = self.workdir / "passwd"
        password_file.write_text("")
        for user, password in passwords.items():
            subprocess.run(["mosquitto_passwd", "-b", str(password_file), user, password],
                           check=True, stdout=subprocess.DEVNULL)
        return f"allow_anonymous false\npassword_file {password_file}\n{acl}"

    def set_acl(self, text: str) -> None:
        """Write the broker's ACL file (mosquitto's acl_file syntax) and, when running, make
        mosquitto read it again (SIGHUP), as an operator mending an ACL does."""
        if self._acl_path is None:
            raise BrokerError("this broker was started without an ACL (PrivateBroker(acl=...))")
        self._acl_path.write_text(text)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start mosquitto and wait until it accepts connections."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.workdir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise BrokerError(f"mosquitto exited at start on port {self.port}: {log[-500:]}")
            if port_open(self.host, self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} in time")

    def stop(self, kill: bool = False) -> None:
        """Stop mosquitto (SIGTERM saves its persistence; kill=True loses the unsaved part)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            if kill:
                self._proc.kill()
            else:
                self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        """Stop the broker and remove its temp folder."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> PrivateBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
