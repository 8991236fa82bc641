"""--password-file read as an attacker or a careless operator hands it over: a FIFO no program
writes to is refused at once (it waited for ever), and the mode judged is that of the file
read, not of one swapped for it after a look."""

from __future__ import annotations

import os
import pathlib
import threading
from pathlib import Path
from typing import Any

import pytest

from appliance import passwordfile
from appliance.backoffice.store import open_store
from appliance.cli import main
from appliance.console.auth import verify_password
from appliance.passwordfile import login_password, password_from_file

HANG_BOUND_S = 60.0  # a bound on a hang, not a speed: the refusal comes without waiting


def test_a_fifo_no_program_writes_to_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "rollout.password"
    os.mkfifo(fifo, 0o600)
    reader, outcome = _reading(fifo)
    reader.join(HANG_BOUND_S)
    hung = reader.is_alive()
    if hung:  # let the waiting open go: a writer that comes and goes ends it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(HANG_BOUND_S)
    assert not hung, "reading a FIFO no program writes to waited for a writer"
    assert outcome == [f"--password-file {fifo}: a FIFO that no program writes to; name the "
                       "file whose first line is the password"]


def _reading(fifo: Path) -> tuple[threading.Thread, list[str]]:
    """A thread reading ``fifo`` as ``--password-file``, and what it got or was told."""
    outcome: list[str] = []

    def read() -> None:
        try:
            outcome.append(f"read {login_password(str(fifo), 'rollout')!r}")
        except ValueError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, outcome


def _fifo_with_a_writer(tmp_path: Path) -> tuple[Path, int]:
    """A FIFO and the descriptor of a writer holding it open (opened beside a reader of the
    test's own, closed again, as a FIFO's writer opens only once a reader has)."""
    fifo = tmp_path / "rollout.password"
    os.mkfifo(fifo, 0o600)
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fifo, os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    finally:
        os.close(holder)


def test_a_fifo_whose_writer_never_writes_is_given_up_on_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program that held the FIFO open and never wrote hung the command for ever; it is
    given FIFO_WAIT_S (shortened here: the refusal, not the wait, is what is tested)."""
    monkeypatch.setattr(passwordfile, "FIFO_WAIT_S", 0.2, raising=False)
    fifo, writer = _fifo_with_a_writer(tmp_path)
    try:
        reader, outcome = _reading(fifo)
        reader.join(HANG_BOUND_S)
        hung = reader.is_alive()
    finally:
        os.close(writer)  # a hung read ends: its writer went
    reader.join(HANG_BOUND_S)
    assert not hung, "reading a FIFO whose writer never writes waited for ever"
    assert outcome == [f"--password-file {fifo}: a FIFO whose writer holds it open and sent "
                       "nothing within 0.2 s; have the program write the password and close "
                       "it, or name a file whose first line is the password"]


def test_a_fifo_whose_writer_writes_while_it_is_waited_on_gives_its_first_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound leaves a writer that is slow to write (``pass show`` asking for a
    passphrase) its time: it writes only once the reader waits for it."""
    waiting = threading.Event()
    real_wait = getattr(passwordfile, "_wait_readable", None)

    def wait_readable(fd: int, timeout_s: float) -> bool:
        waiting.set()
        assert real_wait is not None
        return bool(real_wait(fd, timeout_s))

    monkeypatch.setattr(passwordfile, "_wait_readable", wait_readable, raising=False)
    fifo, writer = _fifo_with_a_writer(tmp_path)
    try:
        reader, outcome = _reading(fifo)
        waiting.wait(HANG_BOUND_S)
        os.write(writer, b"written-late\nsecond line\n")
    finally:
        os.close(writer)
    reader.join(HANG_BOUND_S)
    assert outcome == ["read 'written-late'"]
    assert waiting.is_set()


def test_a_fifo_whose_writer_stops_half_way_is_given_up_on_saying_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwordfile, "FIFO_WAIT_S", 0.2, raising=False)
    fifo, writer = _fifo_with_a_writer(tmp_path)
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader to write to, reading none
    try:
        os.write(writer, b"half-a-pass")
        reader, outcome = _reading(fifo)
        reader.join(HANG_BOUND_S)
        hung = reader.is_alive()
    finally:
        os.close(writer)
        os.close(holder)
    reader.join(HANG_BOUND_S)
    assert not hung, "reading a FIFO whose writer stopped writing waited for ever"
    assert outcome == [f"--password-file {fifo}: a FIFO whose writer sent 11 byte(s) and did "
                       "not close it within 0.2 s; have the program write the password and "
                       "close it, or name a file whose first line is the password"]


def test_a_pipe_with_its_writer_gives_its_first_line(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"from-a-pipe\n")
    os.close(write_end)
    try:
        assert login_password(f"/proc/self/fd/{read_end}", "rollout") == "from-a-pipe"
    finally:
        os.close(read_end)


def _swap_on_open(monkeypatch: pytest.MonkeyPatch, path: Path, replacement: Path) -> None:
    """Put ``replacement`` in ``path``'s place just before ``path`` is opened, however it is
    opened (a path's own ``open`` or ``os.open``): the moment after any look at it."""
    swapped: list[bool] = []

    def swap(target: Any) -> None:
        if not swapped and os.fspath(target) == str(path):
            swapped.append(True)
            os.replace(replacement, path)

    real_os_open, real_path_open = os.open, pathlib.Path.open

    def os_open(target: Any, *args: Any, **kwargs: Any) -> int:
        swap(target)
        return real_os_open(target, *args, **kwargs)

    def path_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        swap(self)
        return real_path_open(self, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(pathlib.Path, "open", path_open)


def test_a_file_swapped_for_one_everyone_may_read_after_a_look_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "rollout.password"
    private.write_text("owners-only\n")
    private.chmod(0o600)
    shared = tmp_path / "shared.password"
    shared.write_text("everyones\n")
    shared.chmod(0o644)
    _swap_on_open(monkeypatch, private, shared)
    with pytest.raises(ValueError, match=r"everyone may read it \(mode 0644\)"):
        login_password(str(private), "rollout")



@pytest.mark.parametrize("inside", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_a_password_is_its_whole_first_line_whatever_characters_it_holds(
        tmp_path: Path, inside: str) -> None:
    password = f"before{inside}after"
    file = tmp_path / "user.password"
    file.write_bytes(f"{password}\r\nthe second line\n".encode())
    assert password_from_file(file, "--password-file") == password
    file.chmod(0o600)
    assert login_password(str(file), "rollout") == password


def test_a_console_user_s_password_holding_a_line_separator_is_kept_whole(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    password = "correct horse\u2028battery staple"
    file = tmp_path / "carol.password"
    file.write_text(password + "\n", encoding="utf-8")
    assert main(["console", "user", "add", "carol", "--password-file", str(file),
                 "--store", url]) == 0
    store = open_store(url)
    try:
        assert verify_password(store, "carol", password) is not None
        assert verify_password(store, "carol", "correct horse") is None
    finally:
        store.close()


def test_a_file_saved_with_a_byte_order_mark_is_refused_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Notepad's "UTF-8 with BOM" put U+FEFF before the password: sent to the broker, which
    refused a login "check the password", or kept as a console user's, which no one can type."""
    file = tmp_path / "rollout.password"
    file.write_bytes(b"\xef\xbb\xbfsecret-token\r\n")
    file.chmod(0o600)
    with pytest.raises(ValueError, match=r"starts with a byte order mark \(U\+FEFF"):
        login_password(str(file), "rollout")
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    file.write_bytes(b"\xef\xbb\xbfa long enough secret\n")
    assert main(["console", "user", "add", "carol", "--password-file", str(file),
                 "--store", url]) == 2
    assert "save it as UTF-8 without one" in capsys.readouterr().err
