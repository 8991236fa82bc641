"""A PostgreSQL server of the test's own, which the test may stop, kill and start again.

The suite's server (127.0.0.1:5432) is shared by everything else on the machine, so it is
never restarted: this is a cluster made with the installed server's own ``initdb`` in a
temporary folder, on a free port of 127.0.0.1 (its unix socket in that folder), trust auth.
PostgreSQL refuses to run as root, so under root its programs run as the ``postgres`` user,
whose folder the cluster's is. ``fsync`` is off: the tests kill the server, never the machine,
and a killed server's commits are in the kernel's page cache whatever fsync says.
``HeldCall`` holds one store call at its start while a test stops the server, so that the
call meets the restart in flight at a known point rather than by luck.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from appliance.edge.testing import wait_until
from appliance.transport.broker import free_port

START_WITHIN_S = 30


def server_bin() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


class PgCluster:
    """One private cluster: ``url()`` to reach it; ``stop``, ``kill`` and ``start`` to fail it."""

    def __init__(self, bindir: Path, folder: Path) -> None:
        self.bindir, self.folder = bindir, folder
        self.data = folder / "data"
        self.port = free_port()
        self._killed: list[int] = []
        self._server: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        """A store URL of this cluster's ``database``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """One of the server's programs, as the postgres user under root."""
        argv = _as_postgres([str(self.bindir / command[0]), *command[1:]])
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)

    def init(self) -> None:
        """Make the cluster (no server runs yet)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                  "--no-instructions")

    def start(self) -> None:
        """Start the server as a child of this process, waiting until it takes connections;
        after a kill, first until the killed server's processes have ended (its shared
        memory is in use until then). A child, so that a killed one is reaped at once: a
        zombie postmaster's pid still counts as a running server to the next start."""
        if not self.wait_gone(START_WITHIN_S):
            raise RuntimeError("the killed PostgreSQL's processes did not end")
        argv = [str(self.bindir / "postgres"), "-D", str(self.data), "-c",
                "listen_addresses=127.0.0.1", "-c", f"port={self.port}", "-c",
                f"unix_socket_directories={self.folder}", "-c", "fsync=off"]
        with (self.folder / "server.log").open("ab") as log:
            self._server = subprocess.Popen(_as_postgres(argv), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self._ready, START_WITHIN_S, poll_s=0.1):
            raise RuntimeError(f"the test's PostgreSQL did not start: {self.log_tail()}")

    def _ready(self) -> bool:
        """Whether the server takes connections; raises once it has ended instead."""
        if self._server is None or self._server.poll() is not None:
            raise RuntimeError(f"the test's PostgreSQL ended as it started: {self.log_tail()}")
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def running(self) -> bool:
        """Whether the server runs (a test that failed midway may have left it stopped)."""
        return self._server is not None and self._server.poll() is None

    def database(self) -> str:
        """A new database of the caller's own, started first where the server is not: its URL."""
        if not self.running():
            self.start()
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server as an administrator does (``fast``: sessions ended, ``immediate``:
        no checkpoint, recovery at the next start)."""
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data))
        if self._server is not None:
            self._server.wait(START_WITHIN_S)

    def kill(self) -> None:
        """kill -9 the postmaster (a crash: its backends leave when they notice)."""
        if self._server is None or self._server.poll() is not None:
            raise RuntimeError("no server runs to kill")
        self._killed = _children(self._server.pid)
        self._server.kill()
        self._server.wait(START_WITHIN_S)

    def wait_gone(self, timeout_s: float) -> bool:
        """Whether the killed server's processes, its backends too, have all ended within
        ``timeout_s`` (until then a backend may still answer its client)."""
        return wait_until(lambda: not any(_alive(pid) for pid in self._killed), timeout_s)

    def configure(self, setting: str, value: str) -> None:
        """Set ``setting`` in the server's own configuration (ALTER SYSTEM's file), for its
        next start, or at once where the server runs and the setting may change at a reload
        (``reload``). Not a ``-c`` at the start: those outrank every file, so a reload could
        not undo them."""
        auto = self.data / "postgresql.auto.conf"
        kept = [line for line in auto.read_text().splitlines()
                if not line.startswith(f"{setting} =")]
        auto.write_text("\n".join([*kept, f"{setting} = '{value}'"]) + "\n")

    def reload(self) -> None:
        """Have the running server read its configuration again (SIGHUP)."""
        self._run("pg_ctl", "reload", "-D", str(self.data))

    def sql(self, statement: str, database: str = "postgres") -> str:
        """One statement through psql, its output."""
        done = self._run("psql", "-XAtq", "-h", str(self.folder), "-p", str(self.port),
                         "-U", "postgres", "-d", database, "-c", statement)
        return done.stdout.strip()

    def crash_recoveries(self) -> int:
        """How many starts so far recovered from a crash (its log says so at each)."""
        log = self.folder / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count("database system was not properly shut down; automatic recovery")

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's log, for a failure's message."""
        log = self.folder / "server.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def close(self) -> None:
        """Stop the server whatever state it is in, and remove its folder."""
        if self.running():
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data),
                      check=False)
        if self._server is not None and self._server.poll() is None:
            self._server.kill()
            self._server.wait(START_WITHIN_S)
        shutil.rmtree(self.folder, ignore_errors=True)


class HeldCall:
    """A store's ``name`` call (a method of ``store_class``) held at its start once ``armed``,
    the first time after, until ``go``: the test stops the PostgreSQL server meanwhile, so the
    call meets the restart in flight, deterministically; ``failed`` holds what the held call
    raised, ``reconnects_failed`` counts the store's reconnects that found the server away."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store_class: type[Any],
                 name: str) -> None:
        self.armed, self.held, self.go = threading.Event(), threading.Event(), threading.Event()
        self.failed: list[BaseException] = []
        self.reconnects_failed = 0
        original, reconnect = getattr(store_class, name), store_class.reconnect

        def held_call(store: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.armed.is_set() or self.held.is_set():
                return original(store, *args, **kwargs)
            self.held.set()
            self.go.wait(60)
            try:
                return original(store, *args, **kwargs)
            except Exception as exc:
                self.failed.append(exc)
                raise

        def counted_reconnect(store: Any) -> None:
            try:
                reconnect(store)
            except Exception:
                self.reconnects_failed += 1
                raise

        monkeypatch.setattr(store_class, name, held_call)
        monkeypatch.setattr(store_class, "reconnect", counted_reconnect)

    def restart_under_it(self, cluster: PgCluster,
                         then: Callable[[], object] | None = None) -> None:
        """Arm, wait until the call is held, stop the server, let the call go on, and start
        the server once the call has failed and ``then`` holds (by default: a reconnect has
        found the server away); started again whatever failed."""
        self.armed.set()
        assert self.held.wait(60)
        cluster.stop("fast")
        try:
            self.go.set()
            assert wait_until(lambda: self.failed, 30)
            assert wait_until(then or (lambda: self.reconnects_failed), 30)
        finally:
            cluster.start()


def _as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the postgres user under root (PostgreSQL refuses root), as it is
    otherwise; setpriv execs it, so the process started is the program itself."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextmanager
def private_cluster() -> Iterator[PgCluster]:
    """A started private cluster for the ``with`` block, removed after; raises LookupError
    where no PostgreSQL server programs are installed."""
    bindir = server_bin()
    if bindir is None:
        raise LookupError("no PostgreSQL server programs in /usr/lib/postgresql/*/bin")
    folder = Path(tempfile.mkdtemp(prefix="appliance-pg-"))  # not under pytest's 0700 folders
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    cluster = PgCluster(bindir, folder)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.close()
