"""Writing a file the user named so that a full disk never leaves part of it under that name.

An export or a report figure is written to a hidden temporary file beside the target (same
folder, so the rename cannot cross filesystems), flushed to disk (fsync) and only then renamed
over the target: the name holds the old file or the whole new one. The folder is flushed after
the rename too, so a power cut after the command returned cannot take the new name back (the
rename lives in the folder's entries, which the file's own fsync does not write). When the write
fails, the temporary file is removed and the OSError names the target and says that it was left
as it was.

A command refuses, before any work, to write over a file that is already there unless it was
given ``--force`` (``replacing_refusal``): a second run with the same ``--out`` would otherwise
lose the first one's output without a word.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from appliance.logsafe import escape_controls

log = logging.getLogger(__name__)

TEMP_NAME_PART_BYTES = 200  # of the target's name in its temporary's: NAME_MAX is 255 bytes


def temp_name_part(name: str) -> str:
    """The start of a target's file name that its hidden temporary carries: the whole name
    would make a temporary too long to create beside a target of up to 255 bytes."""
    return os.fsdecode(os.fsencode(name)[:TEMP_NAME_PART_BYTES])


def replacing_refusal(paths: Iterable[Path], force: bool) -> str | None:
    """Why a command must not write ``paths`` without --force: the files among them already
    there (a link counts; a folder, pipe or device is left to the write, which refuses it), or
    None when none is, or with ``force``."""
    if force:
        return None
    there = [path for path in paths if path.is_symlink() or path.is_file()]
    if not there:
        return None
    first = escape_controls(str(there[0]))
    if len(there) == 1:
        return f"{first} exists; pass --force to replace it"
    return (f"{first} and {len(there) - 1} more of the files it would write exist; pass "
            "--force to replace them")


class OutputError(OSError):
    """A user-named output that could not be written; ``filename`` is it, ``strerror`` says why
    and whether the old file is still there."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


@contextmanager
def replaced_when_complete(path: Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary path to write to; renamed over ``path`` once the block ends without error.

    ``mode``: the permissions the temporary has from its start (a backup's owner-only 0600),
    never wider meanwhile, so no reader opens it while it is written; by default as open()
    would create it.

    The temporary keeps the target's suffix, so writers that pick a format by suffix (matplotlib)
    write the target's format. OSError (a full disk, an unwritable folder) comes back naming
    ``path``; any error removes the temporary file. A ``path`` that is a device, a pipe or a
    socket is refused before anything is written: the rename would replace it.
    """
    if path.exists() and not (path.is_file() or path.is_dir()):  # /dev/null would become a file
        raise OutputError(errno.EINVAL, "not a regular file (a device, a pipe or a socket), "
                          "which the file written would replace; left as it is", str(path))
    temp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{temp_name_part(path.name)}.",
                                    suffix=f".tmp{path.suffix}")
        os.close(fd)
        temp = Path(name)
        # mkstemp made it 0600; by default as open() would create it
        os.chmod(temp, 0o666 & ~_umask() if mode is None else mode)
        yield temp
        fsync_path(temp)
        os.replace(temp, path)
    except OSError as exc:
        _remove(temp)
        kept = "left as it was" if path.exists() else "not written"
        reason = f"could not write it ({exc.strerror or exc}); {kept}"
        raise OutputError(exc.errno, reason, str(path)) from exc
    except BaseException:
        _remove(temp)
        raise
    flush_folder_of(path)


def flush_folder_of(path: Path) -> None:
    """Flush the rename that put ``path`` in place; an OSError names ``path``, which holds the
    whole new file but may not survive a power cut."""
    try:
        fsync_path(path.parent)
    except OSError as exc:
        raise OutputError(exc.errno, f"written whole, but its folder could not be flushed to "
                          f"disk ({exc.strerror or exc}): a power cut may lose the new file",
                          str(path)) from exc


def created_afresh(temp: Path) -> BinaryIO:
    """The temporary file ``temp`` of a fixed name, made new, empty and open for writing.

    Whatever is at that name is removed first: the temporary a killed write left, or a FIFO put
    in its place, which an ordinary open for writing waited on for ever (the kiosk screen's
    thread stopped there for good); the latter is said in the log. O_EXCL then makes sure the
    file opened is the one this call made, never one put there since, nor a link's target.
    OSError when it cannot be made (a folder in its place, a full disk).
    """
    with contextlib.suppress(FileNotFoundError):
        mode = temp.lstat().st_mode
        temp.unlink()
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            log.warning("%s: a FIFO, socket or device was in the place of this temporary file; "
                        "removed it, and wrote the file afresh", escape_controls(str(temp)))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    return os.fdopen(fd, "wb")


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (renames, removals), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(temp: Path | None) -> None:
    if temp is not None:
        temp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
