"""Files written whole or not at all (appliance/outfile.py), and what is never replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.outfile import OutputError, replaced_when_complete, replacing_refusal
from tests.disk_helpers import folder_fsync_fails


def test_a_pipe_or_device_is_never_replaced(tmp_path: Path) -> None:
    """`console reference --out /dev/null` as root replaced the system's /dev/null with a
    regular file (a pipe stands in for the device here)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with (pytest.raises(OutputError, match=f"^{pipe}: not a regular file") as refused,
          replaced_when_complete(pipe) as temp):
        temp.write_text("never written")
    assert refused.value.filename == str(pipe)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert list(tmp_path.iterdir()) == [pipe]



def test_the_new_name_is_flushed_to_disk_once_it_is_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power cut just after an export returned could take its new name back: the rename is in
    the folder's entries, and only the file itself was flushed. Seen here: what each fsync
    flushed, and whether the target held the new text by then."""
    target = tmp_path / "results.csv"
    target.write_text("old\n")
    flushed: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        flushed.append((os.readlink(f"/proc/self/fd/{fd}"), target.read_text()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    with replaced_when_complete(target) as temp:
        temp.write_text("new\n")
    assert (str(tmp_path), "new\n") in flushed


def test_a_folder_that_cannot_be_flushed_is_an_error_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is whole under its name, but the command must not say it is safely kept."""
    target = tmp_path / "results.csv"
    folder_fsync_fails(monkeypatch)
    with (pytest.raises(OutputError, match=f"^{target}: written whole, but its folder could "
                        "not be flushed to disk \\(Input/output error\\)"),
          replaced_when_complete(target) as temp):
        temp.write_text("new\n")
    assert target.read_text() == "new\n"
    assert list(tmp_path.iterdir()) == [target]


def test_what_a_write_would_replace_is_refused_unless_forced(tmp_path: Path) -> None:
    """A file, or a link (even to nothing: the rename would replace the link), is named; a
    folder or a pipe is left to the write, which refuses it; --force lets all through."""
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("kept")
    untouched = [tmp_path / name for name in ("missing", "folder", "pipe")]
    assert replacing_refusal(untouched, force=False) is None
    assert replacing_refusal([*untouched, tmp_path / "dangling"], force=False) == (
        f"{tmp_path / 'dangling'} exists; pass --force to replace it")
    both = [tmp_path / "file", tmp_path / "dangling"]
    assert replacing_refusal(both, force=False) == (
        f"{tmp_path / 'file'} and 1 more of the files it would write exist; pass --force to "
        "replace them")
    assert replacing_refusal(both, force=True) is None

