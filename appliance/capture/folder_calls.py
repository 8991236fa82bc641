"""File-system calls on a folder (its listing, its files' sizes and times, reading one), made on
a worker thread so that a folder that stops answering cannot stop the thread that asked.

A network share (NFS, SMB) whose server stops answering blocks every stat, listing and read of
it in the kernel, with a hard mount for ever. Made on the capture thread, such a call stopped
its beats: the watchdog was no longer fed and systemd killed and restarted the kiosk, again and
again. Here each call runs on one worker thread; the caller waits while the call makes progress
and gives up (``NoAnswerError``) once it has made none for ``answer_s``. The call itself
cannot be stopped (no thread blocked in the kernel can be): it stays on the worker until the
share answers, and every further call is refused at once meanwhile, so a hung share holds one
thread, never a growing pile. Calls only look at the folder, so the answer of one given up on
is simply dropped; the caller asks again once the folder answers.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from appliance.capture.replayed import FileStamp

T = TypeVar("T")

IDLE_S = 10.0  # a worker with nothing to do this long ends; the next call starts another
IMAGE_SUFFIXES = (".jpg", ".jpeg")
NOT_REGULAR = "not a regular file (a FIFO, a device, a socket or a folder)"
LINK_OUT = "a symbolic link to a file outside the watched folder (copy the capture in)"
SWAPPED_FOR_LINK = "replaced by a symbolic link as it was opened"
FOLDER_SWAPPED = "a link whose folder was replaced (by a link or a file) as it was opened"
# a capture is read once, under one name: its own where the folder lists it, else the first link
LINK_TO_CAPTURE = "a symbolic link to another capture of this folder, read under its own name"
SECOND_LINK = "a symbolic link to the file that an earlier link (in name order) reads"
_OPEN_NAME = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO: no wait
_OPEN_FOLDER = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


class CaptureRefusedError(Exception):
    """A file of the folder not to be read (a link out of it, a FIFO...); the message says why."""


class NoAnswerError(TimeoutError):
    """The folder gave no answer in time; the message says to what and for how long."""


class Progress:
    """A call's sign of life: a long listing of a slow share that goes on is no hang."""

    def __init__(self) -> None:
        self.at_s = time.monotonic()

    def made(self) -> None:
        """One more answer came (an entry listed, a file looked at)."""
        self.at_s = time.monotonic()


class _Call:
    """One call: what it asks (for messages), its work, and its outcome once done."""

    def __init__(self, what: str, work: Callable[[Progress], object]) -> None:
        self.what = what
        self.work = work
        self.progress = Progress()
        self.asked_s = self.progress.at_s
        self.done = threading.Event()
        self.value: object = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.value = self.work(self.progress)
        except Exception as exc:  # any error: handed to the caller, who raises it
            self.error = exc
        finally:
            self.done.set()

    def silent_s(self) -> float:
        return time.monotonic() - self.progress.at_s


class FolderCalls:
    """Runs one folder's calls on one worker thread, one at a time."""

    def __init__(self, answer_s: float) -> None:
        self.answer_s = answer_s
        self._changed = threading.Condition()
        self._asked: _Call | None = None  # the latest call, running or done
        self._next: _Call | None = None  # the call the worker is to run next
        self._worker: threading.Thread | None = None
        self._closing = False

    def run(self, what: str, work: Callable[[Progress], T]) -> T:
        """``work(progress)`` done on the worker; its error raised here. NoAnswerError when
        it makes no progress for ``answer_s``, or at once while an earlier call still hangs."""
        call = _Call(what, work)
        self._hand_over(call)
        while not call.done.wait(max(0.0, self.answer_s - call.silent_s())):
            if call.silent_s() >= self.answer_s:
                raise NoAnswerError(f"no answer to {what} for {self.answer_s:.0f} s")
        if call.error is not None:
            raise call.error
        return cast(T, call.value)

    def _hand_over(self, call: _Call) -> None:
        with self._changed:
            hung = self._asked
            if hung is not None and not hung.done.is_set():
                waited_s = time.monotonic() - hung.asked_s
                raise NoAnswerError(f"still no answer to {hung.what} ({waited_s:.0f} s)")
            self._asked = self._next = call
            self._closing = False
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="FolderCalls",
                                                daemon=True)
                self._worker.start()
            self._changed.notify()

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._next is not None or self._closing, IDLE_S)
                call, self._next = self._next, None
                if call is None:  # closed, or idle for IDLE_S
                    self._worker = None
                    return
            call.run()

    def close(self) -> None:
        """Let the worker end once it is done (a hung call first has to return)."""
        with self._changed:
            self._closing = True
            self._changed.notify()


@dataclass(frozen=True)
class JpegListing:
    """A folder's JPEGs to read, in name order, and those refused (name -> why)."""

    names: list[str]
    refused: dict[str, str]


def jpeg_names(folder: Path, progress: Progress) -> JpegListing:
    """The folder's JPEGs in name order, without the links that leave the folder and what is
    no regular file: a kiosk runs as root, and a link named ``x.jpg`` to ``/etc/shadow`` was
    read; a FIFO blocks its reader until someone writes to it. Nor a second name of one
    capture: a link to a capture the folder lists (a tool's ``latest.jpg``) was measured as a
    second customer, once as itself and once as the link."""
    inside = os.path.realpath(folder)
    listed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            progress.made()
            if _wanted(entry.name):
                listed.append(entry)
    names, refused = [], {}
    first_links: dict[str, str] = {}  # a link's target -> the first link to it, in name order
    for entry in sorted(listed, key=lambda listed_entry: listed_entry.name):
        progress.made()
        why = _entry_refusal(entry, inside)
        if why is None and entry.is_symlink():
            first = first_links.setdefault(os.path.realpath(entry.path), entry.name)
            why = None if first == entry.name else SECOND_LINK
        if why is None:
            names.append(entry.name)
        else:
            refused[entry.name] = why
    return JpegListing(names, refused)


def refusal(folder: Path, name: str) -> str | None:
    """Why the file ``name`` in ``folder`` is not to be read now (None: it is to be read);
    asked again just before a read, as the file may have been replaced since the listing."""
    path = os.path.join(folder, name)
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None  # gone: the read says so
    if stat.S_ISLNK(mode):
        return _link_refusal(path, os.path.realpath(folder))
    return None if stat.S_ISREG(mode) else NOT_REGULAR


def open_capture(folder: Path, name: str) -> int:
    """A descriptor open on the capture ``name`` of ``folder``, or CaptureRefusedError.

    Checked by its name, then opened following no link and looked at again through the
    descriptor, so that a file swapped after the check for a link out of the folder (read as
    root) or for a FIFO (which blocks its reader) is never read; a link to a capture inside the
    folder is resolved, checked, and its target opened so.
    """
    why = refusal(folder, name)
    if why is not None:
        raise CaptureRefusedError(why)
    inside = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(folder, name))  # the name itself unless a link
    if os.path.commonpath([inside, target]) != inside or target == inside:  # swapped since
        raise CaptureRefusedError(LINK_OUT)
    fd = _open_beneath(inside, os.path.relpath(target, inside))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CaptureRefusedError(NOT_REGULAR)
    return fd


def _open_beneath(inside: str, relative: str) -> int:
    """Open the file ``relative`` to the folder ``inside`` one name at a time, following no
    link on the way (what openat2's RESOLVE_NO_SYMLINKS does; Python does not offer it)."""
    *folders, last = relative.split(os.sep)
    at = os.open(inside, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in folders:
            parent, at = at, -1
            try:
                at = os.open(part, _OPEN_FOLDER, dir_fd=parent)
            except OSError as exc:  # a link (or a file) where a folder was resolved just now
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise CaptureRefusedError(FOLDER_SWAPPED) from exc
                raise
            finally:
                os.close(parent)
        return os.open(last, _OPEN_NAME, dir_fd=at)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link put in since the check
            raise CaptureRefusedError(SWAPPED_FOR_LINK) from exc
        raise
    finally:
        if at != -1:
            os.close(at)


def _entry_refusal(entry: os.DirEntry[str], inside: str) -> str | None:
    """As ``refusal``, from the listing's own answer (no look at a regular file's inode)."""
    if entry.is_symlink():
        return _link_refusal(entry.path, inside)
    return None if entry.is_file(follow_symlinks=False) else NOT_REGULAR


def _link_refusal(path: str, inside: str) -> str | None:
    """A link is read only when it ends at a regular file inside the watched folder that the
    folder does not list as a capture of its own."""
    target = os.path.realpath(path)
    if os.path.commonpath([inside, target]) != inside or target == inside:
        return LINK_OUT
    if not os.path.isfile(target):
        return "a symbolic link to no regular file"
    in_folder = os.path.dirname(target) == inside
    return LINK_TO_CAPTURE if in_folder and _wanted(os.path.basename(target)) else None


def file_stamps(folder: Path, names: Iterable[str], progress: Progress) -> dict[str, FileStamp
                                                                             | None]:
    """Each file's size and modification time; None for a file gone since it was listed."""
    stamps: dict[str, FileStamp | None] = {}
    for name in names:
        try:
            info = os.stat(folder / name)
        except OSError:
            stamps[name] = None
        else:
            stamps[name] = FileStamp(name, info.st_size, info.st_mtime_ns)
        progress.made()
    return stamps


def _wanted(name: str) -> bool:
    """A JPEG by its name's suffix (as pathlib's: a name that starts with it has none)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_SUFFIXES
