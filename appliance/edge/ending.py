"""Ending the edge process once its daemon has stopped, even while a thread of it still runs.

The daemon's stop is bounded: it joins each worker for a second or so and returns, and a worker
may still be inside a library then (the analysis measuring a frame in OpenCV or ONNX Runtime, a
camera read that hangs). Leaving such a thread to the interpreter's finalisation aborts the
process: CPython before 3.14 ends a daemon thread that asks for the GIL back during
finalisation with ``pthread_exit()``, which unwinds the thread's stack; there the C++ guard that
released the GIL for the library call takes it back in a destructor, which may not throw, and
the unwinding through it calls ``std::terminate``: "terminate called without an active
exception", SIGABRT, exit -6, after "edge daemon stopped" was logged. So the process does not
finalise while such a thread lives: it flushes its logs and ends at once with its exit code.
Nothing committed is lost by that: each outbox commit is a SQLite transaction, in the file once
``add_many`` returned, and one still in flight is wholly in it or not at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)


def lingering_threads() -> list[str]:
    """Names of the threads, other than the main one, still alive."""
    main = threading.main_thread()
    return [thread.name for thread in threading.enumerate()
            if thread is not main and thread.is_alive()]


def exit_code_after_stop(code: int) -> int:
    """``code`` when only the main thread is left; else end the process now with ``code``
    (logs and standard streams flushed first), before finalisation can abort it."""
    lingering = lingering_threads()
    if not lingering:
        return code
    log.warning("%s still running after the stop; ending the process now with exit %d",
                ", ".join(lingering), code)
    try:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: the process started with that descriptor closed
                with contextlib.suppress(OSError, ValueError):  # a reader gone, a closed file
                    stream.flush()
    finally:  # whatever the flushing met, the process must not reach finalisation
        os._exit(code)
