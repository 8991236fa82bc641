"""One daemon per state folder (appliance/statelock.py): a second one is refused at start, and
the lock goes with its process, kill -9 included."""

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
import yaml

from appliance.statelock import StateDirError, StateLock, StateLockError

REPO = Path(__file__).resolve().parent.parent


def test_a_second_lock_on_one_state_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "state" / "edge.lock"
    first = StateLock(path, "appliance edge")
    with pytest.raises(StateLockError) as refused:
        StateLock(path, "appliance edge")
    assert f"another appliance edge (pid {os.getpid()}) already runs" in str(refused.value)
    assert str(tmp_path / "state") in str(refused.value)
    first.release()
    StateLock(path, "appliance edge").release()


def test_a_link_in_place_of_the_lock_file_is_refused_and_not_written_through(
    tmp_path: Path
) -> None:
    # the lock file was opened through a link: the file it points to was cut to the pid
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not the daemon's to overwrite\n")
    path = tmp_path / "state" / "edge.lock"
    path.parent.mkdir()
    path.symlink_to(elsewhere)
    with pytest.raises(StateLockError) as refused:
        StateLock(path, "appliance edge")
    assert str(refused.value) == (f"{path}: cannot create the lock file of appliance edge (a "
                                  "link, not followed; move it aside)")
    assert elsewhere.read_text() == "not the daemon's to overwrite\n"


def test_a_folder_that_cannot_be_locked_is_not_said_to_be_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without locks (NFS without its lock daemon) answers ENOLCK: nobody holds
    the folder, and the operator must not be sent looking for another daemon."""
    def no_locks(_fd: int, _operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(StateLockError) as refused:
        StateLock(tmp_path / "state" / "edge.lock", "appliance edge")
    assert "already runs" not in str(refused.value)
    assert "cannot lock" in str(refused.value)
    assert os.strerror(errno.ENOLCK) in str(refused.value)


def test_the_lock_goes_with_a_process_killed_with_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "edge.lock"
    ready = tmp_path / "ready"
    code = ("import sys, time; from pathlib import Path; from appliance.statelock import "
            f"StateLock; lock = StateLock(Path({str(path)!r}), 'x'); "
            f"Path({str(ready)!r}).touch(); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        for _ in range(400):
            if ready.exists():
                break
            time.sleep(0.05)
        assert ready.exists(), "the holder never took the lock"
        with pytest.raises(StateLockError, match=f"pid {holder.pid}"):
            StateLock(path, "x")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    StateLock(path, "x").release()  # no stale lock after kill -9


def test_a_second_edge_daemon_on_one_config_exits_1_and_says_why(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    state = tmp_path / "state"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "mqtt": {"port": 1},
                                      "screen": {"port": None}}))
    lock = StateLock(state / "edge.lock", "appliance edge")  # as a running daemon holds it
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE__")}
        done = subprocess.run([sys.executable, "-m", "appliance", "edge", "--config",
                               str(config)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    finally:
        lock.release()
    assert done.returncode == 1
    assert f"another appliance edge (pid {os.getpid()}) already runs with {state}" in done.stderr
    assert not (state / "outbox.sqlite3").exists()  # refused before it touched anything


@pytest.mark.parametrize(("state_dir", "named"), [
    ("afile", "{tmp}/afile is a file, not a folder"),
    ("afile/state", "{tmp}/afile is a file, not a folder"),
    ("/dev/null", "/dev/null is a character device, not a folder"),
    ("gone/state", "{tmp}/gone is a broken link"),
])
def test_a_state_dir_that_is_no_folder_is_named_as_such_not_as_a_lock_file_that_exists(
    tmp_path: Path, state_dir: str, named: str
) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(StateDirError) as refused:  # main: "cannot create the lock file of
        StateLock(tmp_path / state_dir / "edge.lock", "appliance edge")  # ... (File exists)"
    assert str(refused.value) == (f"state_dir: {named.format(tmp=tmp_path)}; "
                                  "set state_dir to a folder")


def test_an_edge_daemon_with_a_state_dir_that_is_a_file_exits_2_naming_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    (tmp_path / "state").write_text("not a folder")
    config.write_text(yaml.safe_dump({"state_dir": "state", "mqtt": {"port": 1},
                                      "screen": {"port": None}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE__")}
    done = subprocess.run([sys.executable, "-m", "appliance", "edge", "--config", str(config)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2  # a config error: systemd restarting it changes nothing
    assert f"state_dir: {tmp_path / 'state'} is a file, not a folder" in done.stderr


def test_a_back_office_worker_is_not_retired_while_it_runs_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from appliance.cli import main

    config = tmp_path / "office.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "mqtt": {"port": 1},
                                      "backoffice": {"client_id": "office-9"}}))
    lock = StateLock(tmp_path / "backoffice-office-9.lock", "back office office-9")
    try:
        assert main(["backoffice", "--config", str(config), "--retire"]) == 1
    finally:
        lock.release()
    assert "another back office office-9" in capsys.readouterr().err
