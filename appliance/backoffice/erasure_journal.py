"""The erasure journal: each erasure (``results erase``) and each release (``results release``,
which undoes part of one) as one JSON line in a file kept outside the store, so that a store
restored from a backup taken before them gets them again (erasure_reapply.py).

A line holds only what the erasure needs: its kind ("subject", "result" or "release"), the id
asked, its time by the back office's clock (the audit record's ``erased_at``, which the
"captured before the erasure" rule reads: erasure_clock.py) and the OS user; nothing of the
erased results. It is appended and flushed to the disk inside the store's transaction, before
its commit: an intent. A crash between the two leaves a line whose erasure the store lacks,
which ``results erasures --apply-journal`` or a restore applies; applying one twice changes
nothing (an erasure of that kind, id and time is in the store already).

A line is written whole in one ``write`` and flushed before the commit, so a last line without
its newline (torn by a power cut or a kill in that write) is an erasure that never committed:
the command that asked it ended without saying it was done. It is not applied, and said by
file and line wherever the journal is read; the next append cuts it off, saying so. Any other
line that is not one the product writes (garbage, a line cut in the middle of the file) is
refused by file and line, never skipped: a restore that skipped it would bring a person back.

The file is opened without following a link and judged by what was opened: a regular file,
owned by the user running the command, by root or by the owner of its folder (the store's user,
to whom root gives it), written by its owner alone, with no second name. Run as root, a journal
replaced by a link would have root append to, and cut the tail of, whatever file it names; one
others may write could lose a line, and a restore would bring that person back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import BinaryIO

from appliance import safejson
from appliance.backoffice.storetext import iso_utc
from appliance.logsafe import escape_controls

JOURNAL_NAME = "erasure-journal.jsonl"
KINDS = ("subject", "result", "release")
_MAX_LINE_BYTES = 4096  # a line is some 200 bytes: the ids are bounded (64 characters)
_CHUNK_BYTES = 1 << 20  # read at once where a line may be past the bound
_KEYS = {"kind", "id", "at", "by"}
OWNER_ONLY = 0o600
# how far a line's time may lie ahead of the reading host's clock: two hosts' clocks under NTP
# (the line is dated by the clock of the host that erased); as erasure_clock.MARGIN
FUTURE_SKEW = timedelta(minutes=5)


class JournalError(Exception):
    """A journal line that is not one the product writes, named by file and line."""


@dataclass(frozen=True)
class JournalEntry:
    """One erasure or release as the journal holds it: ``at`` is the store's ``erased_at``."""

    kind: str
    value: str
    at: str
    by: str
    line: int


@dataclass(frozen=True)
class Journal:
    """What a journal file holds: its whole lines, and the number of a torn last line (None:
    none), an erasure that never committed."""

    path: Path
    entries: list[JournalEntry]
    torn_line: int | None

    def torn_note(self) -> str | None:
        """The words that name a torn last line (None: none)."""
        if self.torn_line is None:
            return None
        return (f"{self.path}:{self.torn_line}: a torn last line (no newline), an erasure a "
                "crash cut before its commit: not applied; if a person's erasure was asked "
                "then, run it again")


def journal_path(journal: str | None, state_dir: str) -> Path:
    """The journal file: ``store.erasure_journal``, else ``erasure-journal.jsonl`` in
    ``state_dir``."""
    return Path(journal) if journal else Path(state_dir) / JOURNAL_NAME


def append(path: Path, entry: JournalEntry) -> None:
    """Add ``entry`` as one line, flushed to the disk before this returns (owner-only, owned
    as its folder is); a torn last line is cut off first, said on stderr. JournalError for a
    journal that is no file of its own (journal_opened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, created = _opened_for_append(path)
    try:
        if created:
            owned_as_its_folder(fd, path)
        fcntl.flock(fd, fcntl.LOCK_EX)  # two erasures at once: one line each, whole
        _cut_torn_tail(fd, path)
        _written_whole(fd, _line_of(entry))
    finally:
        os.close(fd)
    if created:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _written_whole(fd: int, line: bytes) -> None:
    """``line`` appended and flushed to the disk, or, where the disk takes only part of it (a
    full disk, a file size limit: a short write, then the error), none of it: the file is cut
    back and the error raised, so the erasure does not commit. Left torn, the line would be
    an erasure that committed but that the next append cuts off as one that never did."""
    size = os.fstat(fd).st_size
    try:
        rest = memoryview(line)
        while rest:
            if not (taken := os.write(fd, rest)):
                raise OSError(errno.ENOSPC, "the disk took none of the line")
            rest = rest[taken:]
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
            os.fsync(fd)
        raise


def _opened_for_append(path: Path) -> tuple[int, bool]:
    """The journal opened to append (made, owner-only, where there is none), and whether it
    was made now."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        return journal_opened(path, flags), False
    except FileNotFoundError:
        pass
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, OWNER_ONLY), True
    except FileExistsError:  # another erasure made it meanwhile
        return journal_opened(path, flags), False


def journal_opened(path: Path, flags: int = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
                   | os.O_NONBLOCK) -> int:
    """The journal's descriptor, opened with ``flags`` (a link is not followed; a FIFO is not
    waited on) and judged by what was opened; JournalError naming what it is where it is no
    journal of its own; FileNotFoundError where there is none."""
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise JournalError(_refusal(path, "a symbolic link (to "
                                        f"{escape_controls(os.readlink(path))})")) from exc
        raise JournalError(f"cannot open the erasure journal {path}: {exc}") from exc
    try:
        problem = _foreign(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    if problem is not None:
        os.close(fd)
        raise JournalError(_refusal(path, problem))
    os.set_blocking(fd, True)
    return fd


def _foreign(status: os.stat_result, path: Path) -> str | None:
    """What makes the opened journal no file of its own (None: it is one)."""
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    if status.st_nlink != 1:
        return f"a file with {status.st_nlink} names (a hard link)"
    owners = {os.geteuid(), 0, path.parent.stat().st_uid}
    if status.st_uid not in owners:
        return (f"owned by {_user(status.st_uid)}, not by the user running this, root or "
                "the owner of its folder")
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        writers = "everyone" if status.st_mode & stat.S_IWOTH else "its group"
        return f"writable by {writers} (mode {stat.S_IMODE(status.st_mode):04o})"
    return None


def _refusal(path: Path, problem: str) -> str:
    return (f"the erasure journal {path} is {problem}: refused, nothing was read from it or "
            "written to it; a journal is a regular file owned by the store's user, written by "
            "it alone (chmod 600): check that no line was changed, then put it right")


def _user(uid: int) -> str:
    """A user by name and uid, or by uid alone where it has no name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _line_of(entry: JournalEntry) -> bytes:
    data = {"kind": entry.kind, "id": entry.value, "at": entry.at, "by": entry.by}
    return (json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n").encode()


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Cut a last line without its newline (an erasure that never committed) off the file,
    found by reading back from the end a chunk at a time: a torn line of gigabytes is not
    read whole."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    keep = _after_last_newline(fd, size)
    os.ftruncate(fd, keep)
    torn_line = _newlines_before(fd, keep) + 1
    print(f"erasure journal: {path}:{torn_line}: cut off a torn last "
          "line (no newline), an erasure a crash cut before its commit", file=sys.stderr)


def _after_last_newline(fd: int, size: int) -> int:
    """The offset just after the last newline before ``size`` (0: none)."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK_BYTES)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _newlines_before(fd: int, offset: int) -> int:
    """How many newlines the file holds before ``offset``."""
    count = 0
    for start in range(0, offset, _CHUNK_BYTES):
        count += os.pread(fd, min(_CHUNK_BYTES, offset - start), start).count(b"\n")
    return count


def owned_as_its_folder(fd: int, path: Path) -> None:
    """Run as root, give the journal just made (``fd``, to be ``path``: also a copy a restore
    puts back, journal_copy.py) to the owner of its folder (the store's user)."""
    if os.geteuid() == 0:
        folder = path.parent.stat()
        os.fchown(fd, folder.st_uid, folder.st_gid)


def read_journal(path: Path, now: datetime | None = None) -> Journal:
    """The journal's entries, in order (none where there is no file); a JournalError naming
    the file and line of one that is not the product's. Read a line at a time, a line past
    the bound never whole: a journal of one line of gigabytes is refused (or, without its
    newline at the end, named as torn) in the memory of one chunk. A line dated more than
    FUTURE_SKEW after ``now`` (this host's clock) is refused: the product dates a line when
    it erases, so one from the future was written by hand or by a clock far ahead, and
    applied it would erase, until that date, every result of its subject to come."""
    latest = (now or datetime.now(UTC)) + FUTURE_SKEW
    try:
        fd = journal_opened(path)
    except FileNotFoundError:
        return Journal(path, [], None)
    entries: list[JournalEntry] = []
    try:
        with os.fdopen(fd, "rb") as file:
            for number, line in enumerate(iter(partial(file.readline, _MAX_LINE_BYTES + 1), b""),
                                          start=1):
                if not line.endswith(b"\n") and not _newline_further(file, line):
                    return Journal(path, entries, number)  # a torn last line
                entries.append(_entry(path, number, line.removesuffix(b"\n"), latest))
    except OSError as exc:
        raise JournalError(f"cannot read the erasure journal {path}: {exc}") from exc
    return Journal(path, entries, None)


def _newline_further(file: BinaryIO, start: bytes) -> bool:
    """Whether the line that begins with ``start`` (read up to the bound, no newline yet) ends
    with a newline further on, read and dropped a chunk at a time; False: at the file's end."""
    if len(start) <= _MAX_LINE_BYTES:
        return False  # readline stopped at the file's end
    while chunk := file.read(_CHUNK_BYTES):
        if (found := chunk.find(b"\n")) >= 0:
            file.seek(found + 1 - len(chunk), os.SEEK_CUR)
            return True
    return False


def _entry(path: Path, number: int, line: bytes, latest: datetime) -> JournalEntry:
    """Line ``number`` as an entry; a JournalError naming it where it is not one (one dated
    after ``latest`` included)."""
    problem = "over 4096 bytes" if len(line) > _MAX_LINE_BYTES else None
    data = None
    if problem is None:
        try:
            data = safejson.loads(line.decode("utf-8"))
        except safejson.JsonNestingError:  # 2,000 brackets fit the bound: a RecursionError
            problem = "not JSON: nested too deeply"
        except ValueError:
            problem = "not JSON"
    if problem is None:
        problem = _entry_problem(data) or _dated_after(data, latest)
    if problem is not None:
        shown = escape_controls(line[:60].decode("utf-8", "replace"))
        raise JournalError(
            f"{path}:{number}: not an erasure journal line ({problem}): {shown!r}; nothing "
            "was changed. Find what was erased there (appliance results erasures on the "
            "store, or an older copy of the journal), then mend or remove that line")
    assert isinstance(data, dict)
    # the store's form of the time (fixed-width UTC text, which sorts like the time: a
    # subject's result is judged against it): a line mended by hand in another offset, or
    # without the microseconds, names the same instant
    at = iso_utc(datetime.fromisoformat(data["at"]))
    return JournalEntry(data["kind"], data["id"], at, data["by"], number)


def _entry_problem(data: object) -> str | None:
    """Why ``data`` is no journal line (None: it is one)."""
    if not isinstance(data, dict) or set(data) != _KEYS:
        return f"not an object of {', '.join(sorted(_KEYS))}"
    if data["kind"] not in KINDS:
        return f"kind {str(data['kind'])[:20]!r} is none of {', '.join(KINDS)}"
    if not all(isinstance(data[key], str) and data[key] for key in ("id", "at", "by")):
        return "id, at and by are not all text"
    try:
        moment = datetime.fromisoformat(data["at"])
    except ValueError:
        return "at is not a time"
    if moment.tzinfo is None:
        return "at is not a UTC time"
    return None


def _dated_after(data: object, latest: datetime) -> str | None:
    """Why a journal line ``data`` is refused for its time: after ``latest`` (None: it is
    not)."""
    assert isinstance(data, dict)
    if datetime.fromisoformat(data["at"]) <= latest:
        return None
    return (f"at is in the future: more than {FUTURE_SKEW.total_seconds() / 60:.0f} min "
            f"after this host's clock, {iso_utc(latest - FUTURE_SKEW)}")
