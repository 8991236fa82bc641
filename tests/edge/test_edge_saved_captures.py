"""Saved captures (a folder source) in the analysis thread: each is a session of its own, read
once per run. One the quality gate refuses is never measured, and the journal says which file and
why (a live camera's refused frames are not said: most are); one read while measuring is paused
(the outbox cannot write) waits for measuring to resume instead of being passed over. A saved
capture that gives no result (refused, or its measurement failed) is told to the folder source,
so that a second name of the same picture is measured then; one whose result a refused commit
dropped is told too (the file is read again), and not counted lost; one whose result a full
outbox refused (refuse_new) was measured, and is not told."""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.capture.folder import DirectorySource
from appliance.capture.quality import QualityGate
from appliance.capture.replayed import FileStamp
from appliance.capture.sources import Frame
from appliance.edge.committer import ResultCommitter
from appliance.edge.measure import Analyzer, Measurement
from appliance.edge.pipeline import Accepted, AnalysisRunner, Identity
from appliance.edge.session import SessionTracker
from appliance.edge.testing import fixed_analyzer, wait_until
from appliance.synthetic import fleet as fleetsim
from appliance.transport.outbox import Outbox
from tests.skin_frames import generated

GREY = np.full((960, 1280, 3), 128, np.uint8)  # a lit frame without colour: no skin in it


def _runner(frames: queue.Queue[Frame], results: queue.Queue[Accepted],
            paused: threading.Event | None = None, *, analyzer: Analyzer = fixed_analyzer,
            on_not_measured: Callable[[FileStamp], None] | None = None,
            limit: int = 1) -> AnalysisRunner:
    return AnalysisRunner(
        frames, results, threading.Event(), gate=QualityGate(), sessions=SessionTracker(),
        analyzer=analyzer, classifier=lambda: None, identity=Identity("k1", "lab", "t/r"),
        um_per_px=10.0, limit=limit, paused=paused, on_not_measured=on_not_measured,
    )


def test_a_saved_capture_the_gate_refuses_is_named_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frames: queue.Queue[Frame] = queue.Queue()
    results: queue.Queue[Accepted] = queue.Queue()
    runner = _runner(frames, results)
    frames.put(Frame(GREY, 1, name="live"))  # a live camera frame: refused without a word
    frames.put(Frame(GREY, 2, still=True, name="0001-grey.jpg"))
    frames.put(Frame(generated(4, 0, "normal").image_rgb, 3, still=True, name="0002.jpg"))
    with caplog.at_level(logging.INFO, logger="appliance.edge.pipeline"):
        runner.start()
        assert results.get(timeout=30).result.measurement_id
        runner.join(10)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1
    assert "0001-grey.jpg" in said[0]
    assert "not measured" in said[0]
    assert "no_contact" in said[0]
    assert "carries no colour" in said[0]  # the gate's reason, in its words


def test_a_saved_capture_read_while_measuring_is_paused_is_measured_once_it_resumes() -> None:
    """The folder source reads each file once per run: passed over, it waited for a restart."""
    frames: queue.Queue[Frame] = queue.Queue()
    results: queue.Queue[Accepted] = queue.Queue()
    paused = threading.Event()
    paused.set()  # a full disk: the outbox cannot keep a result
    runner = _runner(frames, results, paused)
    frames.put(Frame(generated(4, 0, "normal").image_rgb, 1, still=True, name="0001.jpg"))
    runner.start()
    assert wait_until(frames.empty, 10)  # the analysis thread has taken the file
    paused.clear()  # the disk has room again
    accepted = results.get(timeout=30)
    assert accepted.result.features is not None
    runner.join(10)
    assert runner.frames_paused == 0


def test_a_saved_capture_the_gate_refuses_is_told_to_its_source() -> None:
    frames: queue.Queue[Frame] = queue.Queue()
    results: queue.Queue[Accepted] = queue.Queue()
    told: list[FileStamp] = []
    runner = _runner(frames, results, on_not_measured=told.append)
    grey = FileStamp("0001-grey.jpg", 1, 2)
    frames.put(Frame(GREY, 1, still=True, name=grey.name, stamp=grey))
    frames.put(Frame(generated(4, 0, "normal").image_rgb, 2, still=True, name="0002.jpg",
                     stamp=FileStamp("0002.jpg", 3, 4)))
    runner.start()
    assert results.get(timeout=30).stamp == FileStamp("0002.jpg", 3, 4)
    runner.join(10)
    assert told == [grey]


def test_a_second_name_of_a_capture_whose_measurement_failed_is_measured_in_the_same_run(
    tmp_path: Path,
) -> None:
    """It waited, unmeasured, for the first name's result, which never came."""
    folder = tmp_path / "frames"
    folder.mkdir()
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(generated(4, 0, "normal").image_rgb,
                                                 cv2.COLOR_RGB2BGR))
    assert ok
    (folder / "0001.jpg").write_bytes(data.tobytes())
    os.link(folder / "0001.jpg", folder / "0002.jpg")
    calls: list[str] = []

    def fails_once(rgb: np.ndarray, um_per_px: float) -> Measurement:
        calls.append("measured")
        if len(calls) == 1:
            raise RuntimeError("the analysis ran out of memory")
        return fixed_analyzer(rgb, um_per_px)

    source = DirectorySource(str(folder), tmp_path / "replayed.sqlite3")
    source.open()
    frames: queue.Queue[Frame] = queue.Queue()
    results: queue.Queue[Accepted] = queue.Queue()
    runner = _runner(frames, results, analyzer=fails_once,
                     on_not_measured=source.record_not_measured)
    runner.start()
    for _ in range(50):  # the capture thread's reads, while the analysis thread works
        frame = source.read()
        if frame is not None:
            frames.put(frame)
        if runner.finished.is_set():
            break
    accepted = results.get(timeout=30)
    runner.join(10)
    source.close()
    assert accepted.stamp is not None
    assert accepted.stamp.name == "0002.jpg"
    assert len(calls) == 2



@pytest.mark.parametrize("fault", ["full, refuse_new", "cannot write"])
def test_a_saved_capture_whose_commit_the_outbox_refused_is_told_to_its_source(
    tmp_path: Path, fault: str,
) -> None:
    """Not one a full outbox refused: it was measured, and is recorded measured with its other
    names (they would be refused and counted dropped in turn)."""
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_rows=1, policy="refuse_new")
    if fault == "cannot write":
        outbox.max_rows = 10  # room, but every write fails, as an I/O error makes it
        outbox.close()
    else:
        outbox.add_many([("waiting-1", "t/r", b"{}")])
    results: queue.Queue[Accepted] = queue.Queue()
    stop, told, recorded = threading.Event(), list[FileStamp](), list[list[FileStamp]]()
    committer = ResultCommitter(results, outbox, stop, wake_link=lambda: None,
                                on_committed=recorded.append, on_dropped=told.append)
    saved, live = FileStamp("0001.jpg", 1, 2), None
    for index, stamp in enumerate([saved, live]):
        result = fleetsim.sample_result(random.Random(index), "lab", "k1", index)
        results.put(Accepted(result, None, "t/r", stamp))
    stop.set()
    committer.start()
    committer.join(10)
    assert committer.refused == 2
    # the live frame's result is no file's: never told
    assert told == ([] if fault == "full, refuse_new" else [saved])
    assert recorded == ([[saved]] if fault == "full, refuse_new" else [])


def test_a_saved_captures_result_a_refused_commit_dropped_is_not_counted_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Its file is measured again (once the outbox can write, or at the next start for one
    held for a repair that failed): counted dropped, it reached the back office all the same."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.close()  # every write fails, as an I/O error makes it
    results: queue.Queue[Accepted] = queue.Queue()
    stop = threading.Event()
    committer = ResultCommitter(results, outbox, stop, wake_link=lambda: None)
    saved, live = FileStamp("0001.jpg", 1, 2), None
    group = [Accepted(fleetsim.sample_result(random.Random(index), "lab", "k1", index), None,
                      "t/r", stamp) for index, stamp in enumerate([saved, live])]
    for accepted in group:
        results.put(accepted)
    stop.set()
    with caplog.at_level(logging.ERROR, logger="appliance.edge.committer"):
        committer.start()
        committer.join(10)
        committer.held = list(group)  # as a damaged outbox holds them for its repair
        assert committer.drop_held(RuntimeError("no repair")) == 1  # the live frame's only
    assert committer.refused == 4
    assert outbox.dropped() == 1
    said = [r.getMessage() for r in caplog.records]
    saved_id, live_id = (accepted.result.measurement_id for accepted in group)
    not_kept = [line for line in said if saved_id in line]
    assert len(not_kept) == 2
    assert not_kept[0].startswith(f"measurement {saved_id} not kept (")
    assert not_kept[0].endswith("); its saved file is measured again once the outbox can write")
    assert not_kept[1] == (f"measurement {saved_id} not kept (no repair); its saved file is "
                           "measured again at the next start")
    dropped = [line for line in said if live_id in line]
    assert len(dropped) == 2
    assert dropped[0].startswith(f"measurement {live_id} dropped: ")
    assert dropped[1] == f"measurement {live_id} dropped: no repair"
