"""A folder on a network share that stops answering: the source fails naming the folder within
its answer time, one thread waits for the share, and it reads again once the share answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest

from appliance.capture.folder import DirectorySource
from appliance.capture.folder_calls import FolderCalls, Progress
from appliance.capture.sources import Frame, SourceError
from appliance.edge.testing import wait_until
from appliance.synthetic.camera import textured_skin
from tests.hung_share import HungShare


def _save(path: Path, seed: int) -> None:
    assert cv2.imwrite(str(path), textured_skin(seed)(0)[..., ::-1])


def _outcome_within(call: Callable[[], object], seconds: float) -> object:
    """What ``call`` returned or raised, run on a thread; fails the test if it is still blocked
    after ``seconds`` (its thread is then left waiting for the share)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # any error: the outcome under test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return outcome[0]


def _opened(source: DirectorySource) -> bool:
    try:
        source.open()
    except SourceError:
        return False
    return True


def test_a_folder_that_stops_answering_fails_the_source_and_is_read_again_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung share blocked the capture thread in a stat for ever, so the watchdog killed the
    kiosk again and again."""
    folder = tmp_path / "share"
    folder.mkdir()
    _save(folder / "0001.jpg", 1)
    share = HungShare(folder, monkeypatch)
    # an answer time with room for a decode on a busy machine (the read is one call)
    source = DirectorySource(str(folder), tmp_path / "state" / "replayed.sqlite3", answer_s=1.0)
    source.open()
    assert source.read() is not None
    share.hang()
    try:
        failed = _outcome_within(source.read, 10.0)
        assert isinstance(failed, SourceError)
        assert f"{folder}: no answer to a look at the folder" in str(failed)
        source.close()
        for _ in range(5):  # the capture thread opens it again and again meanwhile
            refused = _outcome_within(source.open, 10.0)
            assert isinstance(refused, SourceError)
            assert f"{folder}: still no answer to a look at the folder" in str(refused)
        assert share.blocked == 1  # one thread waits for the share, not one per attempt
    finally:
        share.answer()
    _save(folder / "0002.jpg", 2)
    assert wait_until(lambda: _opened(source), 5.0)
    frames = [source.read() for _ in range(3)]
    assert [f.name for f in frames if isinstance(f, Frame)] == ["0002.jpg"]
    assert share.blocked_most == 1


def test_a_slow_call_that_goes_on_is_no_hang_and_its_error_reaches_the_caller() -> None:
    """A listing of a big folder on a slow share takes long, entry by entry: not offline."""
    calls = FolderCalls(answer_s=1.0)

    def slow_listing(progress: Progress) -> list[str]:
        names = []
        for number in range(8):  # 2.4 s in all, never 1 s without an entry
            time.sleep(0.3)
            names.append(f"{number:04d}.jpg")
            progress.made()
        return names

    def refused(progress: Progress) -> None:
        raise PermissionError("share: permission denied")

    assert len(calls.run("a listing of the folder", slow_listing)) == 8
    with pytest.raises(PermissionError, match="permission denied"):
        calls.run("a look at the folder", refused)
    calls.close()
