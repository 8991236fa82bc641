"""Saved captures (a folder source) in the analysis thread: each is a session of its own, read
once per run. One the quality gate refuses is never measured, and the journal says which file and
why (a live camera's refused frames are not said: most are); one read while measuring is paused
(the outbox cannot write) waits for measuring to resume instead of being passed over."""

from __future__ import annotations

import logging
import queue
import threading

import numpy as np
import pytest

from appliance.capture.quality import QualityGate
from appliance.capture.sources import Frame
from appliance.edge.pipeline import Accepted, AnalysisRunner, Identity
from appliance.edge.session import SessionTracker
from appliance.edge.testing import fixed_analyzer, wait_until
from appliance.synthetic.skin import synthetic_frame

GREY = np.full((960, 1280, 3), 128, np.uint8)  # a lit frame without colour: no skin in it


def _runner(frames: queue.Queue[Frame], results: queue.Queue[Accepted],
            paused: threading.Event | None = None) -> AnalysisRunner:
    return AnalysisRunner(
        frames, results, threading.Event(), gate=QualityGate(), sessions=SessionTracker(),
        analyzer=fixed_analyzer, classifier=lambda: None, identity=Identity("k1", "lab", "t/r"),
        um_per_px=10.0, limit=1, paused=paused,
    )


def test_a_saved_capture_the_gate_refuses_is_named_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frames: queue.Queue[Frame] = queue.Queue()
    results: queue.Queue[Accepted] = queue.Queue()
    runner = _runner(frames, results)
    frames.put(Frame(GREY, 1, name="live"))  # a live camera frame: refused without a word
    frames.put(Frame(GREY, 2, still=True, name="0001-grey.jpg"))
    frames.put(Frame(synthetic_frame(4, 0, "normal").image_rgb, 3, still=True, name="0002.jpg"))
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
    frames.put(Frame(synthetic_frame(4, 0, "normal").image_rgb, 1, still=True, name="0001.jpg"))
    runner.start()
    assert wait_until(frames.empty, 10)  # the analysis thread has taken the file
    paused.clear()  # the disk has room again
    accepted = results.get(timeout=30)
    assert accepted.result.features is not None
    runner.join(10)
    assert runner.frames_paused == 0
