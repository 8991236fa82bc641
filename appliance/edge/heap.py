"""Keep freed frame-sized buffers in the process heap instead of handing them back to the OS.

One ``analyze`` call allocates and frees a few dozen 1-3 MB working images. With glibc's
default policy every such free ends up returned to the kernel (munmap, or a heap trim), and
the next frame's allocation faults the pages in again: about 1,700 page faults and 8-9 ms of
kernel time per frame, roughly a sixth of the measurement. Raising the mmap and trim
thresholds keeps those pages mapped and reused, frame after frame; the process then holds
on to its peak working set (tens of MB) instead of shrinking between frames.

Only glibc has ``mallopt``; elsewhere this does nothing. It is a setting of the whole process,
so programs call it at start-up (the edge daemon, ``appliance analyze``, the skin benchmarks);
the measurement itself never changes process state.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # larger blocks (none per frame) are still mmapped
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024  # free heap beyond this is returned to the OS

_done = False


def keep_frame_buffers() -> bool:
    """Set the process's malloc thresholds once (glibc); True when they are in effect."""
    global _done  # noqa: PLW0603 - a process-wide setting, applied once
    if _done:
        return True
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    return _done
