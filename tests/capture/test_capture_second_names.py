"""One picture in a watched folder is measured once, under one name, whatever other names it
gets there: a hard link, a copy, the file renamed, during a run or while the kiosk was off.
Each was measured again under a measurement id of its own (the id comes from the file's name,
size and time), so the back office stored the one customer twice."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path

import cv2
import pytest

from appliance.capture.folder import DirectorySource
from appliance.capture.replayed import ReplayRecord
from appliance.capture.sources import Frame
from appliance.synthetic.camera import textured_skin


def _save(path: Path, seed: int) -> None:
    ok, data = cv2.imencode(".jpg", textured_skin(seed)(0))
    assert ok
    path.write_bytes(data.tobytes())


def _opened(folder: Path, record: Path) -> DirectorySource:
    source = DirectorySource(str(folder), record)
    source.open()
    return source


def _read(source: DirectorySource, polls: int) -> list[Frame]:
    return [frame for frame in (source.read() for _ in range(polls)) if frame is not None]


def test_a_hard_link_a_copy_and_a_rename_during_a_run_are_not_measured_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    os.link(folder / "0001.jpg", folder / "0002.jpg")
    shutil.copyfile(folder / "0001.jpg", folder / "0003.jpg")  # a time of its own
    _save(folder / "0004.jpg", 4)
    source = _opened(folder, record)
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        measured = _read(source, 6)
        assert [frame.name for frame in measured] == ["0001.jpg", "0004.jpg"]
        (folder / "0004.jpg").rename(folder / "0005.jpg")  # before its result is committed
        assert _read(source, 4) == []
        source.record_measured([frame.stamp for frame in measured if frame.stamp is not None])
    source.close()
    for name, first in (("0002", "0001"), ("0003", "0001"), ("0005", "0004")):
        assert caplog.text.count(f"{name}.jpg: the same picture as {first}.jpg, read already") == 1
    # each second name is recorded measured with its picture's result: a restart reads none
    assert _read(_opened(folder, record), 4) == []
    assert set(ReplayRecord(record).measured()) == {"0001.jpg", "0002.jpg", "0003.jpg",
                                                    "0005.jpg"}


def test_a_second_name_made_while_the_kiosk_was_off_is_not_measured_after_the_restart(
    tmp_path: Path,
) -> None:
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    first = _opened(folder, record)
    [frame] = _read(first, 2)
    assert frame.stamp is not None
    first.record_measured([frame.stamp])
    first.close()
    os.link(folder / "0001.jpg", folder / "0007.jpg")
    shutil.copyfile(folder / "0001.jpg", folder / "0008.jpg")
    _save(folder / "0009.jpg", 9)  # a new capture is measured
    restarted = _opened(folder, record)
    assert [frame.name for frame in _read(restarted, 6)] == ["0009.jpg"]
    assert {"0007.jpg", "0008.jpg"} <= set(ReplayRecord(record).measured())


def test_a_record_from_before_digests_is_read_and_its_files_skipped(tmp_path: Path) -> None:
    folder, record = tmp_path / "frames", tmp_path / "replayed.sqlite3"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    _save(folder / "0002.jpg", 2)
    info = (folder / "0001.jpg").stat()
    with sqlite3.connect(record) as db:  # as the record was made before it kept digests
        db.execute("CREATE TABLE measured (name TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, "
                   "mtime_ns INTEGER NOT NULL)")
        db.execute("INSERT INTO measured VALUES ('0001.jpg', ?, ?)",
                   (info.st_size, info.st_mtime_ns))
    db.close()
    source = _opened(folder, record)
    assert [frame.name for frame in _read(source, 4)] == ["0002.jpg"]


def test_a_capture_renamed_while_the_kiosk_was_off_is_not_measured_again(
    tmp_path: Path,
) -> None:
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    first = _opened(folder, record)
    [frame] = _read(first, 2)
    assert frame.stamp is not None
    first.record_measured([frame.stamp])
    first.close()
    (folder / "0001.jpg").rename(folder / "customer-17.jpg")  # sorted by hand, say
    restarted = _opened(folder, record)
    assert _read(restarted, 4) == []
    restarted.close()
    _opened(folder, record).close()  # the next start forgets the name gone
    assert set(ReplayRecord(record).measured()) == {"customer-17.jpg"}


def test_the_second_names_of_a_picture_that_gave_no_result_are_read_again_now(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A picture the gate refused, or whose measurement failed, was not read: its second names
    waited, unmeasured, for a result that never came (until the next start)."""
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    os.link(folder / "0001.jpg", folder / "0002.jpg")
    shutil.copyfile(folder / "0001.jpg", folder / "0003.jpg")
    source = _opened(folder, record)
    [first] = _read(source, 4)
    assert first.name == "0001.jpg"
    assert first.stamp is not None
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        source.record_not_measured(first.stamp)  # the analysis thread: it gave no result
        [second] = _read(source, 4)
        assert second.name == "0002.jpg"
        assert second.stamp is not None
        assert _read(source, 4) == []  # 0003.jpg waits on 0002.jpg's result now
        source.record_measured([second.stamp])
    source.close()
    assert caplog.text.count("the same picture as 0001.jpg, which gave no result; read "
                             "again") == 2
    assert set(ReplayRecord(record).measured()) == {"0002.jpg", "0003.jpg"}
    assert _read(_opened(folder, record), 4) == []  # 0001.jpg: its picture is measured now


def test_a_file_whose_picture_gave_no_result_is_read_again_when_saved_again(
    tmp_path: Path,
) -> None:
    """Saved again with the same picture (touched), it was taken for a picture read already
    and waited on its own result, which never came."""
    folder = tmp_path / "frames"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    source = _opened(folder, tmp_path / "replayed.sqlite3")
    [first] = _read(source, 2)
    assert first.stamp is not None
    source.record_not_measured(first.stamp)
    later_ns = first.stamp.mtime_ns + 5_000_000_000
    os.utime(folder / "0001.jpg", ns=(later_ns, later_ns))
    [again] = _read(source, 4)
    assert again.name == "0001.jpg"
    assert again.stamp is not None
    assert again.stamp.mtime_ns == later_ns


def test_without_a_record_a_second_name_of_a_picture_that_gave_no_result_is_read_again(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    os.link(folder / "0001.jpg", folder / "0002.jpg")
    source = DirectorySource(str(folder))  # no state_dir: nothing recorded
    source.open()
    [first] = _read(source, 4)
    assert first.stamp is not None
    source.record_not_measured(first.stamp)
    assert [frame.name for frame in _read(source, 4)] == ["0002.jpg"]


def test_a_file_whose_result_the_outbox_did_not_keep_is_read_again_itself_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A commit the full disk refused: the file is still there, so its result is not lost; it
    was left unread until the next start (its second name was read in its place)."""
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    os.link(folder / "0001.jpg", folder / "0002.jpg")
    source = _opened(folder, record)
    [first] = _read(source, 4)
    assert first.stamp is not None
    with caplog.at_level(logging.INFO, logger="appliance.capture.folder"):
        source.record_not_kept(first.stamp)  # the commit thread: the outbox could not write
        [again] = _read(source, 4)
        assert again.stamp == first.stamp  # the same file: measured under the same id
        assert _read(source, 4) == []  # 0002.jpg waits on it again
        source.record_measured([again.stamp])
    source.close()
    assert "0001.jpg: its result was not kept (the outbox could not write); read again" in \
        caplog.text
    assert set(ReplayRecord(record).measured()) == {"0001.jpg", "0002.jpg"}
