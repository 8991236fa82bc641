"""The model repository folder's files, read and written so that what is there cannot hang,
flood or redirect a command: bounded reads of regular files only, atomic writes, lock files
opened without following links.

Whoever can write the served ``public/`` folder (or the repository folder) could put a pipe, a
link to a device or a link to another file where a file is expected; each is refused by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.boundedread import NotRegularFileError, TooLargeError, read_bounded
from appliance.filelock import LockBusyError, LockOpenError, exclusive_lock
from appliance.logsafe import escape_controls
from appliance.sidefile import SideFileError, open_side_file

log = logging.getLogger(__name__)

PUT_BACK = "put back the file this repository wrote (a backup)"
PUBLIC_MODE = 0o644  # public/ is served as it is, by a web server running as its own user


class RepositoryError(RuntimeError):
    """The repository folder cannot do what was asked; the text names the folder and why."""


def read_regular_file(path: Path, limit: int, fix: str = PUT_BACK) -> bytes:
    """The bytes of ``path``, a regular file (a link to one too) of at most ``limit`` bytes;
    RepositoryError naming it and ``fix`` otherwise (``read_bounded``)."""
    try:
        return read_bounded(path, limit)
    except NotRegularFileError:
        raise RepositoryError(f"{path}: not a regular file (a pipe, a device or a folder); "
                              f"{fix}") from None
    except TooLargeError:
        raise RepositoryError(f"{path}: more than {limit} bytes, far more than this repository "
                              f"writes there; {fix}") from None


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` by temp file, fsync and rename (never a half file), readable
    as ``mode`` says (the owner's alone unless said)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(exc, OSError) and exc.filename is None:  # a write or fsync (a full disk)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # names the file
        raise


def lock_file(path: Path, *, create: bool = True) -> Any:
    """``path``, a lock file of the repository, open for reading and writing, created when
    missing (without ``create``: open for reading only, to look at); RepositoryError when
    something else is there: a link followed would let a deploy, run as root, write its pid
    over whatever file the link names."""
    try:
        fd = open_side_file(path, create=create)
    except SideFileError:
        raise _not_a_lock_file(path) from None
    return os.fdopen(fd, "r+" if create else "r")


def _not_a_lock_file(path: Path) -> RepositoryError:
    """A link followed would let a deploy, run as root, write its pid over whatever file the
    link names; anything else there is no lock file either."""
    return RepositoryError(f"{path}: a link or something else where the repository keeps a "
                           f"lock file (written by whoever can write {path.parent}); remove "
                           "it: the commands make it again")


@contextlib.contextmanager
def held_alone(path: Path, busy: str, command: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (appliance/filelock.py: released by the kernel when
    the process ends, kill -9 included), recording this process's pid and ``command``;
    RepositoryError ``busy`` with the holder's pid and command when another process has it, or
    naming what is in the lock file's place."""
    try:
        lock = exclusive_lock(path, record_pid=True, command=command)
    except LockBusyError as exc:
        raise RepositoryError(f"{busy}{exc.holder or ' (pid ?)'}") from None
    except LockOpenError as exc:
        if isinstance(exc.__cause__, SideFileError):
            raise _not_a_lock_file(path) from None
        raise
    with lock:
        yield


def holds(stored: Path, data: bytes) -> bool:
    """Whether ``stored`` is already a regular file (no link) of exactly ``data``: a release
    done again keeps it; anything else there (a link, a file put in its place by whoever can
    write public/) is replaced, never published as the release."""
    try:
        fd = os.open(stored, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # none there, or a link
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return handle.read(len(data) + 1) == data


def make_readable_by_all(public: Path) -> int:
    """Give every regular file under ``public`` the mode the repository writes there now
    (PUBLIC_MODE): files written before that change stayed 0600, and a web server running as
    its own user answered 403 for them until they were rewritten. No link is followed (not
    ``public`` itself either), nothing else is touched, and a temp file (``.name.…``, a write
    stopped half-way) stays unpublished. Returns how many files it changed; one it may not
    change (another owner's) is logged as a warning naming it, and the rest go on."""
    changed = 0
    for folder, _, names, folder_fd in os.fwalk(public, follow_symlinks=False):
        for name in names:
            if not name.startswith("."):
                changed += _make_readable(Path(folder) / name, name, folder_fd)
    return changed


def _make_readable(path: Path, name: str, folder_fd: int) -> int:
    """1 when ``name`` in ``folder_fd`` was a regular file now given PUBLIC_MODE, else 0."""
    try:
        seen = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        if not stat.S_ISREG(seen.st_mode) or stat.S_IMODE(seen.st_mode) == PUBLIC_MODE:
            return 0  # a link, pipe or device is not opened at all
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
        try:
            if not os.path.samestat(seen, os.fstat(fd)):
                return 0  # replaced since it was looked at: not the file judged
            os.fchmod(fd, PUBLIC_MODE)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return 0  # removed since the folder was listed
    except OSError as exc:
        log.warning("%s", escape_controls(
            f"{path}: published but not readable by all ({exc.strerror}); a web server running "
            f"as its own user answers 403 for it: run `chmod {PUBLIC_MODE:o} {path}` as its "
            "owner"))
        return 0
    return 1
