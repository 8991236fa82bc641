"""Say when a file could not be opened or written because its disk is full.

SQLite reports a file system that cannot take a write at open time as "disk I/O error" (it
cannot make its journal), and one that has no inode left for its ``-wal`` or ``-shm`` file as
"unable to open database file"; both send an operator to look for a failing disk or a wrong
path. Errors that name a file add ``full_disk_hint`` of it, which says so when the file system
holding it has next to no room left: too few free bytes, or too few free inodes (a disk filled
with many small files, ``df -i`` at 100 %, has bytes to spare but cannot make a new file).
``read_only_hint`` says the same of a file system mounted read-only (an SD card's ext4 is
remounted so after an error), where SQLite says only "unable to open database file".
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from pathlib import Path

FULL_BELOW_BYTES = 1 << 20  # under 1 MiB free to this user: the disk is taken as full
FULL_BELOW_INODES = 8  # fewer new files than SQLite makes beside a database and its side files


def _stats(path: Path) -> os.statvfs_result | None:
    """statvfs of the file system holding ``path`` (or its nearest existing folder); None
    when that cannot be read."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        return os.statvfs(probe)
    except OSError:
        return None


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user on the file system holding ``path`` (or its nearest existing
    folder); None when that cannot be read."""
    stats = _stats(path)
    return None if stats is None else stats.f_bavail * stats.f_frsize


def full_disk_hint(path: Path) -> str:
    """"the disk holding PATH is full (N KiB free): free some space", or the same of its
    inodes, when it is; else ""."""
    stats = _stats(path)
    if stats is None:
        return ""
    free = stats.f_bavail * stats.f_frsize
    if free < FULL_BELOW_BYTES:
        return f"the disk holding {path} is full ({free // 1024} KiB free): free some space"
    if stats.f_files and stats.f_favail < FULL_BELOW_INODES:  # f_files 0: no inode limit
        return (f"the disk holding {path} is full: {stats.f_favail} of its {stats.f_files} "
                "inodes free, too few to make a file (df -i): remove some files")
    return ""


def file_size_limit_hint(path: Path) -> str:
    """"PATH-wal is N bytes, at this process's file-size limit ..." when the largest file of the
    SQLite database at ``path`` (it, its ``-wal`` or ``-journal``) is within FULL_BELOW_BYTES
    (a quarter of a smaller limit) of the process's RLIMIT_FSIZE (systemd's ``LimitFSIZE=``,
    ``ulimit -f``); else "". A write past that limit fails with EFBIG ("File too large"),
    which SQLite reports only as "disk I/O error", while the disk has room: nothing else would
    say why."""
    limit_bytes, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit_bytes == resource.RLIM_INFINITY:
        return ""
    sizes = []
    for file in (path, *(path.with_name(path.name + side) for side in ("-wal", "-journal"))):
        with contextlib.suppress(OSError):  # not there (no -journal in WAL mode)
            sizes.append((file.stat().st_size, str(file)))
    if not sizes:
        return ""
    size_bytes, largest = max(sizes)
    if size_bytes + min(FULL_BELOW_BYTES, limit_bytes // 4) < limit_bytes:
        return ""
    return (f"{largest} is {size_bytes} bytes, at this process's file-size limit of "
            f"{limit_bytes} bytes (systemd's LimitFSIZE=, ulimit -f): raise or lift it")


def read_only_hint(path: Path) -> str:
    """"the file system holding PATH is mounted read-only (...)" when it is; else ""."""
    stats = _stats(path)
    if stats is None or not stats.f_flag & os.ST_RDONLY:
        return ""
    return (f"the file system holding {path} is mounted read-only (as after an error of its "
            "card or disk: check it, then remount it read-write or restart)")



def full_disk_text(exc: BaseException) -> str | None:
    """A full disk (ENOSPC, or EDQUOT: this user's quota) in words for a command's error line,
    "PATH: the disk is full (No space left on device): free some space, then run it again",
    not "[Errno 28] ..."; None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}the disk is full ({exc.strerror or exc}): free some space, then run it again"
