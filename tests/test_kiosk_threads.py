"""The guard against kiosk pipeline threads left running (tests/kiosk_threads.py)."""

from __future__ import annotations

import threading

from tests.kiosk_threads import left_running, pipeline_threads


def test_a_capture_thread_still_running_is_named_and_one_that_ended_is_not() -> None:
    before = pipeline_threads()
    stop = threading.Event()
    capture = threading.Thread(target=stop.wait, name="CaptureRunner", daemon=True)
    other = threading.Thread(target=stop.wait, name="ConsoleServer", daemon=True)
    capture.start()
    other.start()
    try:
        assert left_running(before, wait_s=0.05) == ["CaptureRunner"]  # not other threads
    finally:
        stop.set()
    assert left_running(before, wait_s=5.0) == []  # waited for it to end
    capture.join()
    other.join()


def test_pipeline_threads_started_before_are_not_this_tests() -> None:
    stop = threading.Event()
    earlier = threading.Thread(target=stop.wait, name="AnalysisRunner", daemon=True)
    earlier.start()
    try:
        assert left_running(pipeline_threads(), wait_s=0.05) == []
    finally:
        stop.set()
        earlier.join()
