"""Paths that are no readable image file: each refusal says what the path is, once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.skin import frames
from appliance.skin.frames import FrameError, load_frame
from tests.skin_frames import generated


def test_a_symlink_loop_is_called_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    with pytest.raises(FrameError, match=r"a\.jpg: symlink loop"):
        load_frame(tmp_path / "a.jpg")


def test_a_broken_symlink_is_called_one(tmp_path: Path) -> None:
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with pytest.raises(FrameError, match=r"gone\.jpg: broken symlink"):
        load_frame(tmp_path / "gone.jpg")


def test_a_named_pipe_is_refused_without_blocking_on_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(FrameError, match=r"pipe\.jpg: a named pipe \(FIFO\), not an image file"):
        load_frame(tmp_path / "pipe.jpg")


def test_a_character_device_is_refused_as_one() -> None:
    with pytest.raises(FrameError, match=r"^/dev/zero: a character device"):
        load_frame("/dev/zero")


def test_an_unreadable_file_says_permission_denied_naming_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(b"\xff\xd8 a frame the test runner (often root) could read")
    read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:  # what a non-root user meets on a mode 000 file
        if path.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert main(["analyze", str(locked)]) == 1
    err = capsys.readouterr().err
    assert f"analyze: {locked}: permission denied" in err
    assert err.count("locked.jpg") == 1
    assert "Errno" not in err


def test_a_name_with_a_terminal_escape_is_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "ctl\x1b[31mred.jpg"
    hostile.write_text("not an image")
    assert main(["analyze", str(hostile)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "ctl\\x1b[31mred.jpg: not an image" in err


def test_a_name_with_undecodable_bytes_is_printed_not_crashed_on(tmp_path: Path) -> None:
    hostile = os.fsencode(tmp_path) + b"/bad\xff.jpg"
    with open(hostile, "wb") as stream:  # a frame the table prints a row for
        stream.write(generated(21, 0, "normal").jpeg)
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "analyze", os.fsdecode(hostile)],
        capture_output=True, text=True, encoding="utf-8", timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"}, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("bad\\xff.jpg ")  # the byte, as \xNN


def test_a_file_that_grows_past_the_bound_as_it_is_read_is_refused_after_reading_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its size, looked at through the descriptor, was within the bound; a writer adds more
    while it is read: the read stops one byte past the bound and the file is refused."""
    monkeypatch.setattr(frames, "MAX_FRAME_BYTES", 3 * 1024 * 1024)
    path = tmp_path / "growing.jpg"
    path.write_bytes(b"\xff\xd8" + b"\0" * (2 * 1024 * 1024))
    chunks_read: list[int] = []

    def written_to_meanwhile() -> None:
        chunks_read.append(len(chunks_read))
        if len(chunks_read) <= 3:  # 3 MiB more in all: an unbounded read would end at 5 MiB
            with path.open("ab") as out:
                out.write(b"\0" * (1024 * 1024))

    with pytest.raises(FrameError, match=r"growing\.jpg: grew past 3145728 bytes as it was read"):
        frames.read_frame_file(lambda: os.open(path, os.O_RDONLY), "growing.jpg",
                               written_to_meanwhile)
    assert len(chunks_read) == 4  # 1 MiB chunks, then the one byte past the bound
