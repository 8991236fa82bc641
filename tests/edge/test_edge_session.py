"""Measurement sessions: one result per contact of the scope with the skin."""

from __future__ import annotations

import numpy as np

from appliance.capture.quality import FrameQuality
from appliance.capture.sources import Frame
from appliance.edge.session import SessionTracker

PIXEL = np.zeros((2, 2, 3), dtype=np.uint8)
OK = FrameQuality("ok", (), {"focus": 1.0})
LIFTED = FrameQuality("no_contact", ("lifted",), {})
BLURRED = FrameQuality("blurred", ("blur",), {})


def feed(tracker: SessionTracker, verdicts: list[FrameQuality], still: bool = False) -> int:
    bursts = 0
    for i, quality in enumerate(verdicts):
        if tracker.feed(Frame(PIXEL, i, still=still), quality) is not None:
            bursts += 1
    return bursts


def test_one_burst_per_contact_however_long_the_scope_rests() -> None:
    tracker = SessionTracker(burst_frames=3, rearm_frames=2)
    assert feed(tracker, [BLURRED, OK, OK, OK] + [OK] * 20) == 1


def test_lifting_the_scope_allows_the_next_measurement() -> None:
    tracker = SessionTracker(burst_frames=3, rearm_frames=2)
    visit = [BLURRED, OK, OK, OK, OK, LIFTED, LIFTED]
    assert feed(tracker, visit * 4) == 4


def test_a_single_bad_frame_does_not_end_the_contact() -> None:
    tracker = SessionTracker(burst_frames=3, rearm_frames=2)
    assert feed(tracker, [OK, OK, OK, BLURRED, OK, OK, OK]) == 1


def test_an_interrupted_burst_starts_over() -> None:
    tracker = SessionTracker(burst_frames=3, rearm_frames=5)
    assert feed(tracker, [OK, OK, BLURRED, OK, OK]) == 0
    assert feed(tracker, [OK]) == 1


def test_cmd_measure_forces_another_burst_within_a_contact() -> None:
    tracker = SessionTracker(burst_frames=2, rearm_frames=3)
    assert feed(tracker, [OK, OK, OK, OK]) == 1
    tracker.request_measurement()
    burst = None
    for i in range(2):
        burst = tracker.feed(Frame(PIXEL, i), OK) or burst
    assert burst is not None
    assert burst.forced
    assert feed(tracker, [OK] * 4) == 0


def test_a_measurement_request_while_one_is_pending_changes_nothing_and_says_so() -> None:
    tracker = SessionTracker(burst_frames=2, rearm_frames=3)
    assert tracker.request_measurement()
    assert not tracker.request_measurement()  # the daemon says only the first
    assert feed(tracker, [OK, OK]) == 1  # the burst takes the request
    assert tracker.request_measurement()


def test_stills_are_each_their_own_session_when_they_pass() -> None:
    tracker = SessionTracker(burst_frames=5, rearm_frames=3)
    assert feed(tracker, [OK, OK, BLURRED, OK], still=True) == 3
