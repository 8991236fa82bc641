"""One process at a time on a file or a folder (appliance/filelock.py): a second lock is refused
at once naming the holder, the three failures are told apart, and kill -9 frees the lock."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.filelock import (
    LockBusyError,
    LockOpenError,
    LockUnsupportedError,
    exclusive_lock,
)

REPO = Path(__file__).resolve().parent.parent


def test_a_second_lock_on_a_file_is_refused_naming_the_pid_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "made" / "demo.lock"
    with exclusive_lock(path, record_pid=True):
        with pytest.raises(LockBusyError) as refused:
            exclusive_lock(path)
        assert refused.value.holder == f" (pid {os.getpid()})"
    assert path.read_text() == f"{os.getpid()}\n"  # the file stays, naming the last holder
    exclusive_lock(path).release()


def test_a_lock_file_names_the_command_that_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "rollout.lock"
    with exclusive_lock(path, record_pid=True, command="`appliance models halt`"):
        with pytest.raises(LockBusyError) as refused:
            exclusive_lock(path)
        assert refused.value.holder == f" (pid {os.getpid()}: `appliance models halt`)"
    assert path.read_text() == f"{os.getpid()} `appliance models halt`\n"


def test_a_lock_file_without_a_pid_names_no_holder(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with exclusive_lock(path), pytest.raises(LockBusyError) as refused:
        exclusive_lock(path)
    assert refused.value.holder == ""


def test_a_folder_is_locked_itself_and_nothing_is_left_in_it(tmp_path: Path) -> None:
    out = tmp_path / "out" / "deeper"
    with exclusive_lock(out, folder=True) as lock:
        assert lock.fd is not None
        with pytest.raises(LockBusyError):
            exclusive_lock(out, folder=True)
    assert list(out.iterdir()) == []
    exclusive_lock(out, folder=True).release()


def test_a_lock_that_cannot_be_made_is_not_said_to_be_held(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "a-file" / "demo.lock"
    with pytest.raises(LockOpenError) as refused:
        exclusive_lock(path)
    assert str(refused.value) == f"{path}: {os.strerror(errno.EEXIST)}"  # mkdir's answer
    assert not isinstance(refused.value, LockBusyError)


def test_a_file_system_without_locks_is_not_said_to_be_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(_fd: int, _operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(LockUnsupportedError) as refused:
        exclusive_lock(tmp_path / "x.lock")
    assert refused.value.strerror == os.strerror(errno.ENOLCK)


def test_the_lock_goes_with_a_process_killed_with_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    ready = tmp_path / "ready"
    code = ("import time; from pathlib import Path; from appliance.filelock import "
            f"exclusive_lock; lock = exclusive_lock(Path({str(path)!r}), record_pid=True); "
            f"Path({str(ready)!r}).touch(); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        for _ in range(600):
            if ready.exists() or holder.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), "the holder never took the lock"
        with pytest.raises(LockBusyError, match=f"pid {holder.pid}"):
            exclusive_lock(path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    exclusive_lock(path).release()  # no stale lock after kill -9
