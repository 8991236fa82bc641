"""The folder source reads only regular files of the watched folder: a link named like a
capture that leads out of the folder (to /etc/shadow, read as root) and a FIFO are refused, each
named once in the journal; a link to a capture inside the folder is read."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from appliance.capture import folder as folder_source
from appliance.capture.folder import DirectorySource
from appliance.skin import frames  # load_frame is patched here: the source imports it on use

if TYPE_CHECKING:
    from appliance.capture.folder_calls import JpegListing, Progress


def _save_jpeg(path: Path, value: int) -> None:
    assert cv2.imwrite(str(path), np.full((960, 1280, 3), value, dtype=np.uint8))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path the source hands to load_frame."""
    seen: list[Path] = []
    load_frame = frames.load_frame
    monkeypatch.setattr(frames, "load_frame",
                        lambda path: seen.append(Path(path)) or load_frame(path))
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
    (folder / "0005.jpg").symlink_to("0001.jpg")  # inside the folder: read
    (folder / "0006.jpg").mkdir()
    source = DirectorySource(str(folder))
    source.open()
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        assert _read_names(source, 4) == ["0001.jpg", "0005.jpg"]
        _save_jpeg(folder / "0007.jpg", 70)  # the folder changes: listed again
        assert _read_names(source, 3) == ["0007.jpg"]
    source.close()
    assert all(path.parent == folder and path.name in {"0001.jpg", "0005.jpg", "0007.jpg"}
               for path in reads)
    for name in ("0002.jpg", "0003.jpg"):
        assert caplog.text.count(f"{name}: a symbolic link to a file outside the watched") == 1
    for name in ("0004.jpg", "0006.jpg"):
        assert caplog.text.count(f"{name}: not a regular file") == 1


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
