"""The folder source reads only regular files of the watched folder: a link named like a
capture that leads out of the folder (to /etc/shadow, read as root) and a FIFO are refused, each
named once in the journal; a link to a file inside the folder is read, once: a link to a capture
the folder lists is not read (the capture is, under its own name). Nor is a capture swapped for
one of them between the source's last look and its read."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np
import pytest

from appliance.capture import folder as folder_source
from appliance.capture import folder_calls
from appliance.capture.folder import DirectorySource
from appliance.skin import frames  # read_frame_file patched here: the source imports it on use

if TYPE_CHECKING:
    from appliance.capture.folder_calls import JpegListing, Progress


def _save_jpeg(path: Path, value: int) -> None:
    assert cv2.imwrite(str(path), np.full((960, 1280, 3), value, dtype=np.uint8))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The file behind every descriptor the source reads a capture from, as the kernel names it
    (so a link followed shows as its target)."""
    seen: list[Path] = []
    read_frame_file = frames.read_frame_file

    def opened_as(open_file: Callable[[], int]) -> Callable[[], int]:
        def opening() -> int:
            fd = open_file()
            seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
            return fd
        return opening

    monkeypatch.setattr(frames, "read_frame_file", lambda open_file, name, *rest:
                        read_frame_file(opened_as(open_file), name, *rest))
    return seen


def _read_names(source: DirectorySource, polls: int) -> list[str]:
    read = [source.read() for _ in range(polls)]
    return [frame.name for frame in read if frame is not None]


def test_links_out_of_the_folder_and_fifos_are_refused_and_named_once(
    tmp_path: Path, reads: list[Path], caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    _save_jpeg(tmp_path / "secret.jpg", 99)  # readable, a valid picture: only a link leads there
    _save_jpeg(folder / "0001.jpg", 10)
    (folder / "0002.jpg").symlink_to(tmp_path / "secret.jpg")
    (folder / "0003.jpg").symlink_to(Path("..") / "secret.jpg")
    os.mkfifo(folder / "0004.jpg")
    (folder / "0005.jpg").symlink_to("0001.jpg")  # a second name of 0001.jpg: not read
    (folder / "0006.jpg").mkdir()
    source = DirectorySource(str(folder))
    source.open()
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        assert _read_names(source, 4) == ["0001.jpg"]
        _save_jpeg(folder / "0007.jpg", 70)  # the folder changes: listed again
        assert _read_names(source, 3) == ["0007.jpg"]
    source.close()
    assert reads == [folder / "0001.jpg", folder / "0007.jpg"]
    for name in ("0002.jpg", "0003.jpg"):
        assert caplog.text.count(f"{name}: a symbolic link to a file outside the watched") == 1
    for name in ("0004.jpg", "0006.jpg"):
        assert caplog.text.count(f"{name}: not a regular file") == 1


def test_a_capture_with_a_second_name_by_a_link_is_measured_once(
    tmp_path: Path, reads: list[Path], caplog: pytest.LogCaptureFixture,
) -> None:
    """A tool that keeps ``latest.jpg`` pointing at its newest capture, a chain of links, two
    links to one file in a subfolder: each capture is read once, under one name; a capture
    reached only through links is read through the first of them."""
    folder = tmp_path / "captures"
    (folder / "sub").mkdir(parents=True)
    _save_jpeg(folder / "0001.jpg", 10)
    _save_jpeg(folder / "sub" / "kept.jpg", 40)
    (folder / "latest.jpg").symlink_to("0001.jpg")
    (folder / "chain.jpg").symlink_to("latest.jpg")  # -> latest.jpg -> 0001.jpg
    (folder / "a-kept.jpg").symlink_to(Path("sub") / "kept.jpg")
    (folder / "b-kept.jpg").symlink_to(folder / "sub" / "kept.jpg")
    source = DirectorySource(str(folder))
    source.open()
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        assert _read_pictures(source, 5) == {"0001.jpg": 10, "a-kept.jpg": 40}
        _save_jpeg(folder / "0002.jpg", 20)
        (folder / "latest.jpg").unlink()
        (folder / "latest.jpg").symlink_to("0002.jpg")  # the tool's next capture
        assert _read_pictures(source, 3) == {"0002.jpg": 20}
    source.close()
    assert reads == [folder / "0001.jpg", folder / "sub" / "kept.jpg", folder / "0002.jpg"]
    for name in ("latest.jpg", "chain.jpg"):
        assert caplog.text.count(f"{name}: a symbolic link to another capture of this") == 1
    assert caplog.text.count("b-kept.jpg: a symbolic link to the file that an earlier") == 1


def test_a_capture_replaced_by_a_link_after_the_listing_is_not_read(
    tmp_path: Path, reads: list[Path], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    _save_jpeg(tmp_path / "secret.jpg", 99)
    _save_jpeg(folder / "0001.jpg", 10)
    listed = folder_source.jpeg_names

    def listed_then_swapped(where: Path, progress: Progress) -> JpegListing:
        listing = listed(where, progress)
        if (folder / "0001.jpg").is_file() and not (folder / "0001.jpg").is_symlink():
            (folder / "0001.jpg").unlink()
            (folder / "0001.jpg").symlink_to(tmp_path / "secret.jpg")
        return listing

    monkeypatch.setattr(folder_source, "jpeg_names", listed_then_swapped)
    source = DirectorySource(str(folder))
    source.open()
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        assert _read_names(source, 3) == []
    source.close()
    assert reads == []
    assert caplog.text.count("0001.jpg: a symbolic link to a file outside the watched") == 1


def _read_pictures(source: DirectorySource, polls: int) -> dict[str, int]:
    """The captures read in ``polls`` polls: name -> the grey value saved in it."""
    read = [source.read() for _ in range(polls)]
    return {frame.name: int(frame.rgb.mean().round()) for frame in read if frame is not None}


def _same_size_and_time(capture: Path, target: Path) -> None:
    """Pad the smaller JPEG with zeros (read as the same picture) and give both one time."""
    size_bytes = max(capture.stat().st_size, target.stat().st_size)
    for path in (capture, target):
        with path.open("ab") as out:
            out.write(b"\0" * (size_bytes - path.stat().st_size))
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))


def test_a_capture_swapped_for_a_link_right_after_its_check_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The source looks at the name just before the read (os.lstat); the swap comes right after
    that look, before the file is opened: the link is noticed, its target never read. The
    capture was saved with the target's size and time, as one who knows them would: the file
    read then passes for the one listed."""
    folder = tmp_path / "captures"
    folder.mkdir()
    _save_jpeg(tmp_path / "secret.jpg", 99)
    _save_jpeg(folder / "0001.jpg", 10)
    _save_jpeg(folder / "0002.jpg", 20)
    _same_size_and_time(folder / "0001.jpg", tmp_path / "secret.jpg")
    capture, lstat = str(folder / "0001.jpg"), os.lstat
    swapped: list[str] = []

    def looked_at_then_swapped(path: str | os.PathLike[str], **kwargs: Any) -> os.stat_result:
        looked = lstat(path, **kwargs)
        if os.fspath(path) == capture and not swapped:
            swapped.append(capture)
            os.unlink(capture)
            os.symlink(tmp_path / "secret.jpg", capture)
        return looked

    monkeypatch.setattr(os, "lstat", looked_at_then_swapped)
    source = DirectorySource(str(folder))
    source.open()
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        assert _read_pictures(source, 3) == {"0002.jpg": 20}
    source.close()
    assert swapped == [capture]
    assert caplog.text.count("0001.jpg: a symbolic link to a file outside the watched") == 1


def _link_out(folder: Path) -> None:
    (folder / "0001.jpg").unlink()
    (folder / "0001.jpg").symlink_to(folder.parent / "outside" / "0001.jpg")


def _fifo(folder: Path) -> None:
    (folder / "0001.jpg").unlink()
    os.mkfifo(folder / "0001.jpg")  # no writer: a blocking open or read would wait for ever


def _folder_link_out(folder: Path) -> None:
    (folder / "sub").rename(folder / "sub-was")
    (folder / "sub").symlink_to(folder.parent / "outside")


class _Swap(NamedTuple):
    opened: str  # the file opened (relative to the folder) when the swap comes
    swap: Callable[[Path], None]
    read: dict[str, int]  # the captures read then: name -> grey value
    journal: str  # the refusal named once


@pytest.mark.parametrize("case", [
    _Swap("0001.jpg", _link_out, {"0002.jpg": 20, "0003.jpg": 30},
          "0001.jpg: replaced by a symbolic link as it was opened"),
    _Swap("0001.jpg", _fifo, {"0002.jpg": 20, "0003.jpg": 30}, "0001.jpg: not a regular file"),
    _Swap("sub/0002.jpg", _folder_link_out, {"0001.jpg": 10, "0003.jpg": 30},
          "0002.jpg: a link whose folder was replaced (by a link or a file) as it was opened"),
], ids=["link-out", "fifo", "folder-on-the-way"])
def test_a_capture_swapped_after_every_check_before_its_open_is_never_read_and_never_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    reads: list[Path], case: _Swap,
) -> None:
    """The last moment there is: the name looked at, a link resolved and found inside the
    folder, then the file (or a folder on the way to a link's target) swapped for a link out or
    a FIFO before it is opened. Opened following no link, looked at through the descriptor."""
    folder, outside = tmp_path / "captures", tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    for name in ("0001.jpg", "0002.jpg"):
        _save_jpeg(outside / name, 99)  # readable, valid pictures: only a link leads there
    _save_jpeg(folder / "0001.jpg", 10)
    _save_jpeg(folder / "sub" / "0002.jpg", 20)
    (folder / "0002.jpg").symlink_to(Path("sub") / "0002.jpg")  # inside the folder: read
    _save_jpeg(folder / "0003.jpg", 30)
    open_beneath = folder_calls._open_beneath  # noqa: SLF001 - the moment to swap at

    def swapped_then_opened(inside: str, relative: str) -> int:
        if relative == case.opened and not (folder / "sub-was").exists():
            case.swap(folder)
            (folder / "sub-was").mkdir(exist_ok=True)  # swapped once
        return open_beneath(inside, relative)

    monkeypatch.setattr(folder_calls, "_open_beneath", swapped_then_opened)
    source = DirectorySource(str(folder), answer_s=3.0)  # a FIFO that blocked: SourceError
    source.open()
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        assert _read_pictures(source, 5) == case.read
    source.close()
    assert (folder / "sub-was").exists()  # it was swapped
    assert all(path.is_relative_to(folder) for path in reads)
    assert caplog.text.count(case.journal) == 1
