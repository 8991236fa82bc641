"""A folder of saved captures across restarts and half-written files: each file read once."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from appliance.capture import folder as folder_source
from appliance.capture import replayed as replayed_record
from appliance.capture import saved_over
from appliance.capture.folder import DirectorySource
from appliance.capture.replayed import FileStamp, ReplayRecord
from appliance.capture.sources import Frame, SourceError
from appliance.edge.pipeline import measurement_id_for
from appliance.skin import frames  # read_frame_file patched here: the source imports it on use
from appliance.synthetic.camera import textured_skin


def _jpeg_bytes(seed: int) -> bytes:
    ok, data = cv2.imencode(".jpg", textured_skin(seed)(0))
    assert ok
    return data.tobytes()


def _read_until_frame(source: DirectorySource, reads: int) -> Frame | None:
    """Read up to ``reads`` times (each empty read waits one poll); the first frame, if any."""
    for _ in range(reads):
        frame = source.read()
        if frame is not None:
            return frame
    return None


def _opened(folder: Path, record: Path) -> DirectorySource:
    source = DirectorySource(str(folder), record)
    source.open()
    return source


def test_a_restarted_source_skips_files_whose_results_were_committed(tmp_path: Path) -> None:
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    for seed, name in enumerate(("0001.jpg", "0002.jpg", "0003.jpg")):
        (folder / name).write_bytes(_jpeg_bytes(seed))
    first = _opened(folder, record)
    frames = [first.read() for _ in range(3)]
    stamps = [f.stamp for f in frames if f is not None and f.stamp is not None]
    assert [s.name for s in stamps] == ["0001.jpg", "0002.jpg", "0003.jpg"]
    first.record_measured(stamps[:2])  # killed before the third result was committed
    first.close()

    (folder / "0001.jpg").unlink()  # gone from the folder: its row is forgotten
    restarted = _opened(folder, record)
    again = _read_until_frame(restarted, 3)
    assert again is not None
    assert again.name == "0003.jpg"  # read again: its result was never committed
    assert _read_until_frame(restarted, 3) is None
    assert set(ReplayRecord(record).measured()) == {"0002.jpg"}


def test_a_file_saved_over_a_measured_one_is_read_again_after_a_restart(tmp_path: Path) -> None:
    folder, record = tmp_path / "frames", tmp_path / "replayed.sqlite3"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(_jpeg_bytes(1))
    first = _opened(folder, record)
    frame = first.read()
    assert frame is not None
    assert frame.stamp is not None
    first.record_measured([frame.stamp])
    (folder / "0001.jpg").write_bytes(_jpeg_bytes(2))  # another capture under the same name
    restarted = _opened(folder, record)
    again = _read_until_frame(restarted, 3)
    assert again is not None
    assert again.stamp is not None
    assert again.stamp != frame.stamp


def test_a_half_written_file_is_read_once_it_is_complete(tmp_path: Path) -> None:
    data = _jpeg_bytes(4)
    (tmp_path / "0001.jpg").write_bytes(data[: len(data) // 2])  # the camera is still writing
    source = _opened(tmp_path, tmp_path / "replayed.sqlite3")
    assert source.read() is None
    (tmp_path / "0001.jpg").write_bytes(data)
    frame = _read_until_frame(source, 5)
    assert frame is not None
    assert frame.name == "0001.jpg"
    assert frame.stamp is not None
    assert frame.stamp.size_bytes == len(data)
    assert _read_until_frame(source, 3) is None  # read once only


def test_a_broken_file_is_tried_once_more_reported_once_and_read_when_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(DirectorySource, "SETTLE_S", 0.3)
    attempts: list[str] = []
    real_read = frames.read_frame_file

    def counting_read(open_file: Callable[[], int], name: str, *rest: Any) -> bytes:
        attempts.append(name)
        return real_read(open_file, name, *rest)

    monkeypatch.setattr(frames, "read_frame_file", counting_read)
    (tmp_path / "0001.jpg").write_bytes(b"\xff\xd8 truncated for good")
    source = _opened(tmp_path, tmp_path / "replayed.sqlite3")
    with caplog.at_level(logging.INFO, logger=folder_source.__name__):
        assert _read_until_frame(source, 10) is None  # ~2 s of polls, settle is 0.3 s
    assert len(attempts) == 2  # the first read, then once after it stayed unchanged
    reported = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(reported) == 1
    assert "0001.jpg" in reported[0].getMessage()
    (tmp_path / "0001.jpg").write_bytes(_jpeg_bytes(5))
    frame = _read_until_frame(source, 5)
    assert frame is not None
    assert frame.name == "0001.jpg"


def test_a_file_that_grows_while_it_is_read_is_read_again_as_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _jpeg_bytes(6)
    path = tmp_path / "0001.jpg"
    path.write_bytes(data)
    real_read = frames.read_frame_file
    calls: list[str] = []

    def read_while_the_camera_writes(open_file: Callable[[], int], name: str, *rest: Any) -> bytes:
        calls.append(name)
        data = real_read(open_file, name, *rest)
        if len(calls) == 1:
            with path.open("ab") as out:  # the camera's writer adds its last bytes meanwhile
                out.write(b"\0" * 16)
        return data

    monkeypatch.setattr(frames, "read_frame_file", read_while_the_camera_writes)
    source = _opened(tmp_path, tmp_path / "replayed.sqlite3")
    assert source.read() is None  # its stamp would not be the file's final one
    frame = _read_until_frame(source, 5)
    assert frame is not None
    assert frame.stamp is not None
    assert frame.stamp.size_bytes == len(data) + 16  # the id derives from the finished file


def test_a_damaged_record_is_moved_aside_and_one_that_cannot_be_made_is_named(
    tmp_path: Path,
) -> None:
    (tmp_path / "0001.jpg").write_bytes(_jpeg_bytes(7))
    record = tmp_path / "state" / "replayed.sqlite3"
    record.parent.mkdir()
    record.write_bytes(b"not a database, a power cut's leftovers" * 200)
    source = _opened(tmp_path, record)
    assert record.with_name("replayed.sqlite3.damaged").exists()
    assert _read_until_frame(source, 3) is not None  # read again: the back office dedupes it
    blocked = tmp_path / "0001.jpg" / "replayed.sqlite3"  # its folder would be a file
    with pytest.raises(SourceError, match=r"0001\.jpg/replayed\.sqlite3.*state_dir"):
        DirectorySource(str(tmp_path), blocked).open()


def test_a_record_damaged_in_a_page_its_index_does_not_reach_is_moved_aside_at_open(
    tmp_path: Path,
) -> None:
    """Opening the record counted its rows, which reads only its smallest index: a damaged
    page of the table itself (a power cut, a worn card) opened as sound, then failed the
    source's open at every try, "cannot open the record of measured files": the folder was
    offline for good."""
    (tmp_path / "0001.jpg").write_bytes(_jpeg_bytes(7))
    record = tmp_path / "state" / "replayed.sqlite3"
    _damage_a_table_page(record)
    source = _opened(tmp_path, record)
    assert record.with_name("replayed.sqlite3.damaged").exists()
    assert _read_until_frame(source, 3) is not None  # read again: the back office dedupes it


def _damage_a_table_page(record: Path) -> None:
    """A record of 3,000 earlier files with one leaf page of its table overwritten."""
    kept = ReplayRecord(record)
    kept.record([FileStamp(f"earlier-{i:05d}-{'x' * 40}.jpg", 1000 + i, i) for i in range(3000)])
    kept.close()
    db = sqlite3.connect(record)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    leaves = db.execute("SELECT pageno FROM dbstat WHERE name = 'measured' AND "
                        "pagetype = 'leaf' ORDER BY pageno").fetchall()
    page_bytes = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with record.open("r+b") as out:
        out.seek((leaves[len(leaves) // 2][0] - 1) * page_bytes)
        out.write(b"\xa5" * page_bytes)


def test_a_record_damaged_while_running_is_rebuilt_and_no_file_is_measured_twice_or_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Damage found while the kiosk ran (not at open) raised out of the source's read (its
    look for the picture under another name): the capture thread ended and the daemon exited
    1. Now the record is moved aside, said once, and rebuilt from the rows the run holds. A
    restart then reads only what was never committed: the files committed before and after
    the damage are not measured again (nor a copy of one: the digests are kept), and the one
    read but not committed is, not lost."""
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    for seed, name in enumerate(("0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg", "0005.jpg")):
        (folder / name).write_bytes(_jpeg_bytes(seed))
    source = _opened(folder, record)
    before = [_read_until_frame(source, 3) for _ in range(2)]
    source.record_measured([frame.stamp for frame in before if frame and frame.stamp])
    _damage_every_page_past_the_first(record)
    with caplog.at_level(logging.ERROR, logger="appliance.capture.replayed"):
        after = [_read_until_frame(source, 3) for _ in range(2)]  # raised here
        source.record_measured([after[0].stamp] if after[0] and after[0].stamp else [])
        source.close()  # killed before 0004.jpg's result was committed
    assert [frame.name for frame in [*before, *after] if frame] == [
        "0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1
    assert said[0].startswith(f"{record}: the record of measured files was found damaged "
                              "while running (database disk image is malformed); moved to "
                              f"{record}.damaged and rebuilt from the 2 files it held")
    (folder / "0006.jpg").write_bytes((folder / "0001.jpg").read_bytes())  # a copy

    restarted = _opened(folder, record)
    again = [_read_until_frame(restarted, 3) for _ in range(3)]
    assert [frame.name for frame in again if frame] == ["0004.jpg", "0005.jpg"]
    # the copy recorded with its picture's result (0004.jpg's is not committed yet)
    assert set(ReplayRecord(record).measured()) == {"0001.jpg", "0002.jpg", "0003.jpg",
                                                    "0006.jpg"}


def test_a_damaged_record_that_cannot_be_rebuilt_at_once_is_rebuilt_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A rebuild the disk refuses is logged, not raised; the next write rebuilds the record
    with every row held before the damage (the file written then is not lost either)."""
    path = tmp_path / "replayed.sqlite3"
    record = ReplayRecord(path)
    first, lost, later = (FileStamp(f"000{i}.jpg", 1000 + i, i) for i in (1, 2, 3))
    record.record([first], {first: b"picture-1"})
    _damage_every_page_past_the_first(path)
    real_open = replayed_record._open_db  # noqa: SLF001 - the one call the disk refuses
    refused: list[Path] = []

    def full_disk_once(db_path: Path) -> sqlite3.Connection:
        if not refused:
            refused.append(db_path)
            raise sqlite3.OperationalError("database or disk is full")
        return real_open(db_path)

    monkeypatch.setattr(replayed_record, "_open_db", full_disk_once)
    with caplog.at_level(logging.ERROR, logger="appliance.capture.replayed"):
        record.record([lost])
        assert not record.holds(lost)  # measured again after a restart, as the log says
        record.record([later])
    record.close()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "found damaged while running" in said[0]
    assert said[1] == (f"{path}: cannot record 1 measured file(s) (database or disk is full); "
                       "they will be measured again after a restart")
    monkeypatch.undo()
    reopened = ReplayRecord(path)
    assert set(reopened.measured()) == {"0001.jpg", "0003.jpg"}
    assert reopened.holding_picture(b"picture-1") == first


def _damage_every_page_past_the_first(record: Path) -> None:
    """Overwrite the record past its header while it is open (a worn card)."""
    db = sqlite3.connect(record)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_bytes = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    size_bytes = record.stat().st_size
    with record.open("r+b") as out:
        out.seek(page_bytes)
        out.write(b"\xa5" * (size_bytes - page_bytes))


def test_a_folder_that_lists_empty_for_a_while_is_not_read_again_when_its_files_return(
    tmp_path: Path,
) -> None:
    """An unmounted share lists empty: the files read before it went are not read again."""
    folder, share_away = tmp_path / "frames", tmp_path / "away"
    folder.mkdir()
    share_away.mkdir()
    names = [f"{number:04d}.jpg" for number in range(70)]  # more than the record's slack of 64
    for number, name in enumerate(names):  # each its own picture, as captures are
        (folder / name).write_bytes(_jpeg_bytes(700 + number))
    source = _opened(folder, tmp_path / "replayed.sqlite3")
    read = [source.read() for _ in names]
    assert [f.name for f in read if f is not None] == names
    for name in names:  # the share is unmounted: its mount point lists empty
        (folder / name).rename(share_away / name)
    assert source.read() is None
    for name in names:  # mounted again: the same files, the same sizes and times
        (share_away / name).rename(folder / name)
    assert _read_until_frame(source, 3) is None


def test_a_file_whose_name_is_not_utf8_is_measured_once_and_skipped_after_a_restart(
    tmp_path: Path,
) -> None:
    """A Latin-1 name (a share written by another system) lists with surrogate escapes."""
    folder, record = tmp_path / "frames", tmp_path / "state" / "replayed.sqlite3"
    folder.mkdir()
    latin1 = os.path.join(os.fsencode(folder), b"caf\xe9-0001.jpg")
    with open(latin1, "wb") as out:
        out.write(_jpeg_bytes(8))
    first = _opened(folder, record)
    frame = _read_until_frame(first, 3)
    assert frame is not None
    assert frame.stamp is not None
    measured_id = measurement_id_for("kiosk-a", frame)
    assert measured_id == measurement_id_for("kiosk-a", Frame(frame.rgb, 2, stamp=frame.stamp))
    first.record_measured([frame.stamp])
    first.close()
    assert set(ReplayRecord(record).measured()) == {frame.stamp.name}
    restarted = _opened(folder, record)
    assert _read_until_frame(restarted, 3) is None  # measured: not read again


def _count_listings(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    listed: list[Path] = []
    real_scandir = os.scandir

    def counting_scandir(path: Path) -> Iterator[os.DirEntry[str]]:
        listed.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    return listed


def test_a_quiet_folder_is_not_listed_at_every_poll_and_a_new_file_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing a folder of years of captures five times a second took a share of a core."""
    monkeypatch.setattr(folder_source, "RELIST_S", 600.0)  # a slow machine's polls stay within it
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(_jpeg_bytes(9))
    an_hour_ago = time.time() - 3600
    os.utime(folder, (an_hour_ago, an_hour_ago))  # nothing changed in it for an hour
    listed = _count_listings(monkeypatch)
    source = _opened(folder, tmp_path / "replayed.sqlite3")
    assert _read_until_frame(source, 3) is not None
    before = len(listed)
    assert _read_until_frame(source, 5) is None  # five polls of a quiet folder
    assert len(listed) == before  # not listed again
    (folder / "0002.jpg").write_bytes(_jpeg_bytes(10))  # the folder changed: listed next poll
    frame = _read_until_frame(source, 2)
    assert frame is not None
    assert frame.name == "0002.jpg"


def test_a_file_hidden_by_a_coarse_folder_time_is_read_within_relist_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two changes in one tick of the folder's time look like one: the folder is listed again
    every RELIST_S whatever its time says."""
    monkeypatch.setattr(folder_source, "RELIST_S", 0.5)
    folder = tmp_path / "frames"
    folder.mkdir()
    an_hour_ago = time.time() - 3600
    os.utime(folder, (an_hour_ago, an_hour_ago))
    source = _opened(folder, tmp_path / "replayed.sqlite3")
    assert source.read() is None
    (folder / "0001.jpg").write_bytes(_jpeg_bytes(10))
    os.utime(folder, (an_hour_ago, an_hour_ago))  # as if in the tick of the last listing
    frame = _read_until_frame(source, 10)  # ten polls: 2 s
    assert frame is not None
    assert frame.name == "0001.jpg"


def _save_over(path: Path, data: bytes) -> None:
    """Write a new picture into the same file, as a tool that always saves one name does: the
    folder's listing and modification time stay as they were."""
    with path.open("r+b") as out:
        out.truncate(0)
        out.write(data)


def test_a_file_saved_over_in_place_is_read_again_once_per_new_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A microscope tool that always writes capture.jpg: each new picture was measured only
    after a daemon restart."""
    monkeypatch.setattr(folder_source, "RELIST_S", 600.0)  # nothing but the file itself tells
    folder, record = tmp_path / "frames", tmp_path / "replayed.sqlite3"
    folder.mkdir()
    capture = folder / "capture.jpg"
    capture.write_bytes(_jpeg_bytes(11))
    first = _opened(folder, record)
    measured = first.read()
    assert measured is not None
    assert measured.stamp is not None
    first.record_measured([measured.stamp])  # measured by the run before this one
    an_hour_ago = time.time() - 3600
    os.utime(folder, (an_hour_ago, an_hour_ago))
    source = _opened(folder, record)
    assert _read_until_frame(source, 3) is None
    picture = _jpeg_bytes(12)
    _save_over(capture, picture[: len(picture) // 2])  # the tool is still writing
    os.utime(folder, (an_hour_ago, an_hour_ago))
    assert _read_until_frame(source, 3) is None  # never the half-written picture
    _save_over(capture, picture)
    os.utime(folder, (an_hour_ago, an_hour_ago))
    again = _read_until_frame(source, 5)
    assert again is not None
    assert again.stamp is not None
    assert again.stamp.size_bytes == len(picture)
    assert measurement_id_for("kiosk-a", again) != measurement_id_for("kiosk-a", measured)
    assert _read_until_frame(source, 3) is None  # once per new picture
    _save_over(capture, _jpeg_bytes(13))
    third = _read_until_frame(source, 5)
    assert third is not None
    assert third.name == "capture.jpg"
    assert not (third.rgb == again.rgb).all()


def test_a_file_touched_without_a_new_picture_is_not_measured_again(tmp_path: Path) -> None:
    """A file copied over with the same picture (or touched) moves only its time."""
    (tmp_path / "capture.jpg").write_bytes(_jpeg_bytes(14))
    source = _opened(tmp_path, tmp_path / "replayed.sqlite3")
    assert source.read() is not None
    an_hour_later = time.time() + 3600
    os.utime(tmp_path / "capture.jpg", (an_hour_later, an_hour_later))
    assert _read_until_frame(source, 5) is None


def _touched(path: Path) -> None:
    an_hour_later = time.time() + 3600
    os.utime(path, (an_hour_later, an_hour_later))


def test_a_file_touched_after_its_result_was_committed_is_not_measured_after_a_restart(
    tmp_path: Path,
) -> None:
    # its new size and time were not recorded: after a restart the file no longer matched
    # the record and was measured once more, under a new measurement id
    folder, record = tmp_path / "frames", tmp_path / "replayed.sqlite3"
    folder.mkdir()
    (folder / "capture.jpg").write_bytes(_jpeg_bytes(17))
    source = _opened(folder, record)
    measured = source.read()
    assert measured is not None
    assert measured.stamp is not None
    source.record_measured([measured.stamp])  # its result is committed
    _touched(folder / "capture.jpg")
    assert _read_until_frame(source, 5) is None  # read again: the same picture
    source.close()
    restarted = _opened(folder, record)
    assert _read_until_frame(restarted, 3) is None
    restarted.close()


def test_a_file_touched_before_its_result_was_committed_is_recorded_once_it_is(
    tmp_path: Path,
) -> None:
    folder, record = tmp_path / "frames", tmp_path / "replayed.sqlite3"
    folder.mkdir()
    (folder / "capture.jpg").write_bytes(_jpeg_bytes(18))
    source = _opened(folder, record)
    measured = source.read()
    assert measured is not None
    assert measured.stamp is not None
    _touched(folder / "capture.jpg")
    assert _read_until_frame(source, 5) is None  # the same picture, its result not yet in
    source.close()
    killed = _opened(folder, record)  # killed before that result was committed
    again = _read_until_frame(killed, 3)
    assert again is not None  # measured again rather than never
    assert again.stamp is not None
    _touched(folder / "capture.jpg")
    assert _read_until_frame(killed, 5) is None
    killed.record_measured([again.stamp])  # now it is committed
    killed.close()
    restarted = _opened(folder, record)
    assert _read_until_frame(restarted, 3) is None
    restarted.close()


def test_an_old_file_saved_over_is_read_again_within_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the newest files are looked at every poll; the others each within SWEEP_S."""
    monkeypatch.setattr(saved_over, "HOT_FILES", 1)
    monkeypatch.setattr(saved_over, "SWEEP_S", 1.0)
    monkeypatch.setattr(folder_source, "RELIST_S", 600.0)
    names = [f"{number:04d}.jpg" for number in range(10)]
    for age_s, name in zip(range(len(names), 0, -1), names, strict=True):
        (tmp_path / name).write_bytes(_jpeg_bytes(150 + age_s))  # each its own picture
        os.utime(tmp_path / name, (time.time() - age_s, time.time() - age_s))
    source = _opened(tmp_path, tmp_path / "replayed.sqlite3")
    assert [f.name for f in (source.read() for _ in names) if f is not None] == names
    _save_over(tmp_path / "0000.jpg", _jpeg_bytes(16))  # the oldest: not among the hot ones
    again = _read_until_frame(source, 10)  # ten polls: 2 s, two sweeps
    assert again is not None
    assert again.name == "0000.jpg"


def _refused_move(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rename refused, as a read-only folder refuses it (root is not refused by modes)."""
    def refuse(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(source), None, str(target))

    monkeypatch.setattr(os, "replace", refuse)


def test_a_damaged_record_that_cannot_be_moved_aside_is_kept_and_the_kiosk_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, a move aside the filesystem refused was logged as a failed write, and the next
    write rebuilt the record in its place: the damaged copy was deleted. Now it stays as it
    was, said once with why, the files are recorded in memory meanwhile, and a later write
    that can move it does, then rebuilds the record with every file held."""
    path = tmp_path / "replayed.sqlite3"
    record = ReplayRecord(path)
    first, second, third, fourth = (FileStamp(f"000{i}.jpg", 1000 + i, i) for i in range(1, 5))
    record.record([first], {first: b"picture-1"})
    _damage_every_page_past_the_first(path)
    damaged = path.read_bytes()
    with monkeypatch.context() as refused, caplog.at_level(logging.WARNING,
                                                           logger="appliance.capture.replayed"):
        _refused_move(refused)
        record.record([second])
        record.record([third])
        assert path.read_bytes() == damaged  # before: deleted by the second write's rebuild
        assert record.holds(second)  # not measured again in this run
        assert record.holds(third)
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{path}: the record of measured files was found damaged while running "
                    "(database disk image is malformed) and cannot be moved aside ([Errno 13] "
                    f"Permission denied: '{path}' -> '{path}.damaged'); kept as it is, and "
                    "the files measured are recorded in memory only until it can be: after a "
                    "restart before then they are measured again, under the same ids"]
    record.record([fourth])  # the folder writable again
    record.close()
    assert path.with_name("replayed.sqlite3.damaged").read_bytes() == damaged
    reopened = ReplayRecord(path)
    assert set(reopened.measured()) == {"0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"}
    assert reopened.holding_picture(b"picture-1") == first


def test_a_record_found_damaged_at_open_that_cannot_be_moved_aside_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, the refused move ended the record's open, and with it the folder source's."""
    path = tmp_path / "replayed.sqlite3"
    damaged = b"not a database, a power cut's leftovers" * 200
    path.write_bytes(damaged)
    _refused_move(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="appliance.capture.replayed"):
        record = ReplayRecord(path)
        stamp = FileStamp("0001.jpg", 1000, 1)
        record.record([stamp])
        record.prune({"0001.jpg"})
        record.close()
    assert record.holds(stamp)
    assert path.read_bytes() == damaged
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"{path}: the record of measured files is damaged (file is not a "
                           "database) and cannot be moved aside ([Errno 13] Permission denied")
