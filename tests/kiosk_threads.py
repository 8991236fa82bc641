"""The kiosk pipeline threads a test must not leave running. A daemon run in a thread whose
stop did not reach its capture or analysis thread leaves that thread working on in the pytest
process (its xdist worker) until the process ends: the resend test's capture thread once
blurred a single frame for hours of CPU, long after its test had passed."""

from __future__ import annotations

import threading
import time

# the threads of a kiosk's pipeline (appliance/capture/supervisor.py, appliance/edge/) that
# work on frames or results while they run; a stopped daemon ends them within seconds
PIPELINE_THREADS = frozenset({"CaptureRunner", "AnalysisRunner", "ResultCommitter"})


def pipeline_threads() -> set[threading.Thread]:
    """The kiosk pipeline threads alive now."""
    return {t for t in threading.enumerate() if t.name in PIPELINE_THREADS}


def left_running(before: set[threading.Thread], wait_s: float) -> list[str]:
    """Names of the pipeline threads started since ``before`` that are still alive after
    waiting up to ``wait_s`` for them to end (a stopping daemon joins them in ~1-4 s)."""
    started = pipeline_threads() - before
    deadline_s = time.monotonic() + wait_s
    for thread in started:
        thread.join(max(0.0, deadline_s - time.monotonic()))
    return sorted(t.name for t in started if t.is_alive())
