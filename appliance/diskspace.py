"""Say when a file could not be opened or written because its disk is full.

SQLite reports a file system that cannot take a write at open time as "disk I/O error" (it
cannot make its journal), which sends an operator to look for a failing disk. Errors that name a
file add ``full_disk_hint`` of it, which says so when the file system holding it has next to no
room left.
"""

from __future__ import annotations

import os
from pathlib import Path

FULL_BELOW_BYTES = 1 << 20  # under 1 MiB free to this user: the disk is taken as full


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user on the file system holding ``path`` (or its nearest existing
    folder); None when that cannot be read."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        stats = os.statvfs(probe)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def full_disk_hint(path: Path) -> str:
    """"the disk holding PATH is full (N KiB free): free some space" when it is, else ""."""
    free = free_bytes(path)
    if free is None or free >= FULL_BELOW_BYTES:
        return ""
    return f"the disk holding {path} is full ({free // 1024} KiB free): free some space"
