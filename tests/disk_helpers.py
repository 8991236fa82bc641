"""A small real disk for storage-fault tests: a tmpfs (root can mount one; a kiosk's small SD
card in miniature), a filler that takes it to ENOSPC, folders whose flush fails, and a file the
filesystem will not rename."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def small_tmpfs(mount: Path, size: str = "4m", inodes: int | None = None) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (and at most ``inodes`` files and folders, its own root one
    of them) on the new folder ``mount``, unmounted after."""
    mount.mkdir()
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                          capture_output=True, check=False)
    assert done.returncode == 0, f"cannot mount a tmpfs (needs root): {done.stderr!r}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk says ENOSPC."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: nothing left over to flush at close
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno != errno.ENOSPC:  # a full disk is the point; anything else is a fault
                raise
    return filler


def fill_inodes(disk: Path) -> Path:
    """Make empty files in a new folder until the disk says ENOSPC (no inode left); the folder."""
    folder = disk / "many-files"
    folder.mkdir()
    count = 0
    try:
        while True:
            (folder / str(count)).touch()
            count += 1
    except OSError as exc:
        if exc.errno != errno.ENOSPC:  # a disk out of inodes is the point; anything else is a fault
            raise
    return folder


def folder_fsync_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every fsync of a folder fail as a failing disk does (EIO); files flush as usual."""
    real_fsync = os.fsync

    def failing_on_folders(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_on_folders)


def refuse_moving(monkeypatch: pytest.MonkeyPatch, path: Path, error: int = errno.EACCES) -> None:
    """Make the filesystem refuse to rename ``path`` (its permissions, an immutable file, a full
    disk...: ``error``) from now on; every other rename goes through."""
    rename = os.rename

    def refused(source: Any, target: Any, **kwargs: Any) -> None:
        if os.fspath(source) == str(path):
            raise OSError(error, os.strerror(error), str(source))
        rename(source, target, **kwargs)

    monkeypatch.setattr(os, "rename", refused)
