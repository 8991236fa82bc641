"""``console user add`` without --password-file asks for the password twice on a terminal,
echo off (one line of standard input without one), and reads no further than the longest
password a console user may have."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from appliance.console.auth import MAX_PASSWORD_CHARS

PASSWORD = "correct horse battery staple"


def _user_add(store: Path) -> list[str]:
    return [sys.executable, "-m", "appliance", "console", "user", "add", "bob", "--role",
            "viewer", "--store", f"sqlite:///{store}"]


def test_an_endless_password_line_on_standard_input_is_refused_having_read_little(
        tmp_path: Path) -> None:
    """With no terminal the password is read from standard input, where getpass read the line
    whole: 10 MB without a newline here, /dev/zero until memory ran out. Now it reads one
    buffer, refuses the line as too long, and stores nothing."""
    endless = tmp_path / "endless"
    endless.write_bytes(b"a" * 10_000_000)
    with endless.open("rb") as stdin:  # the child shares its offset: how far it read
        done = subprocess.run(_user_add(tmp_path / "console.sqlite3"), stdin=stdin,
                              capture_output=True, text=True, check=False, timeout=120,
                              start_new_session=True)  # no controlling terminal
        read_bytes = os.lseek(stdin.fileno(), 0, os.SEEK_CUR)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"console user add: password: longer than {MAX_PASSWORD_CHARS} characters; nothing "
        "was stored")
    assert read_bytes < 100_000
    assert not (tmp_path / "console.sqlite3").exists()


def test_a_password_piped_in_is_taken_and_a_line_not_text_refused(tmp_path: Path) -> None:
    """Undecodable bytes on standard input reached the password hasher as surrogates: a
    traceback. Now refused as not text, nothing stored."""
    piped = subprocess.run(_user_add(tmp_path / "ok.sqlite3"), input=f"{PASSWORD}\n" * 2,
                           capture_output=True, text=True, check=False, timeout=120,
                           start_new_session=True)
    assert piped.returncode == 0, piped.stderr
    assert "added console user bob (viewer)" in piped.stdout
    undecodable = b"\xff\xfe-and-enough-characters\n" * 2
    garbage = subprocess.run(_user_add(tmp_path / "bad.sqlite3"), input=undecodable,
                             capture_output=True, check=False, timeout=120,
                             start_new_session=True)
    assert garbage.returncode == 2
    assert b"password: not UTF-8 text" in garbage.stderr
    assert not (tmp_path / "bad.sqlite3").exists()


def test_one_password_line_piped_in_adds_the_user(tmp_path: Path) -> None:
    """``echo "$PW" | appliance console user add bob``: without a terminal standard input was
    read twice, for the password and 'again', so one line ended in 'no password given:
    standard input ended' though a password was given. One line is the password now (a
    typo is caught where it is typed blind, on a terminal)."""
    store = tmp_path / "console.sqlite3"
    piped = subprocess.run(_user_add(store), input=f"{PASSWORD}\n", capture_output=True,
                           text=True, check=False, timeout=120,
                           start_new_session=True)  # no controlling terminal
    assert piped.returncode == 0, piped.stderr
    assert "added console user bob (viewer)" in piped.stdout
    assert "again" not in piped.stderr
    done = subprocess.run([*_user_add(store)[:5], "list", "--store", f"sqlite:///{store}"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.stdout.splitlines()[1].split()[:2] == ["bob", "viewer"]


def _read_until(fd: int, wanted: bytes, seen: bytearray) -> None:
    """Read the terminal's output into ``seen`` until ``wanted`` is in it (or it ends)."""
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, f"waited a minute for {wanted!r}; got {bytes(seen)!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal (EIO)
            return
        if not chunk:
            return
        seen.extend(chunk)


def _on_a_terminal(store: Path, lines: list[bytes]) -> tuple[int, bytes]:
    """``console user add`` on a pseudo-terminal of its own, each line typed after a prompt:
    its exit status and what the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling one
        os.execv(sys.executable, _user_add(store))
    seen = bytearray()
    try:
        for prompt, line in zip((b"password: ", b"again: "), lines, strict=False):
            _read_until(fd, prompt, seen)
            os.write(fd, line)
        _read_until(fd, b"\x00never", seen)  # all it shows until it ends
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), bytes(seen)


def test_a_password_typed_on_the_terminal_is_not_shown_and_an_overlong_one_is_refused(
        tmp_path: Path) -> None:
    code, shown = _on_a_terminal(tmp_path / "ok.sqlite3", [f"{PASSWORD}\n".encode()] * 2)
    assert code == 0, shown
    assert b"added console user bob" in shown
    assert PASSWORD.encode() not in shown  # echo off
    overlong = b"x" * 300 + b"\n"
    code, shown = _on_a_terminal(tmp_path / "long.sqlite3", [overlong])
    assert code == 2, shown
    assert b"password: longer than 256 characters; nothing was stored" in shown
    assert b"again: " not in shown
    assert b"xxx" not in shown
    assert not (tmp_path / "long.sqlite3").exists()
