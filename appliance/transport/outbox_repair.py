"""Opening the outbox so that a damaged file never keeps a kiosk down, nor loses its rows.

A corrupt outbox (power cut on a bad SD card, a file truncated by hand) is repaired beside
itself: every row that can still be read (appliance/transport/outbox_salvage.py) is committed,
with its measurement id, age and confirmation marks (a kept result stays kept), into a fresh
outbox built as ``outbox.sqlite3.repairing``.
Rows that cannot be read are counted as dropped in it, and so are the ones the damaged outbox
had already counted (its ``dropped`` counter, where it can be read), so the device's
``dropped`` never goes down with a repair; so are the results the high-water mark beside the
outbox says it had committed past the damaged file (a copy in use, found unreadable and kept
apart, held them), which the renumbering past the mark would otherwise hide. Once complete
the copy is renamed ``outbox.sqlite3.repaired``; then the damaged file (with its WAL) is moved
aside (``outbox.sqlite3.corrupt-<unix time>``, kept for inspection) and the copy takes its place.

Each step leaves a state the next start finishes: a kill or power cut while building leaves
the damaged file in place (the build starts again); one after the copy is complete leaves
``.repaired``, which the next start puts in place first. Only a file in which an outbox can
be found, however damaged, is such a copy (appliance/transport/outbox_salvage.py): one of
garbage at that name never pushes a sound outbox aside; it is kept, as
``outbox.sqlite3.repaired.unreadable-<unix time>``, and said. A repair that cannot finish (no
room for the recovered rows) changes nothing; one that plainly cannot (less room than the damaged
file takes) is not begun, so a kiosk that systemd restarts every few seconds does not read and
write its whole outbox each time for nothing. So the outbox path never holds an empty outbox
while the rows are elsewhere, and a stale WAL never meets the new file.

A damaged file that cannot be moved aside (the filesystem refuses the rename: its permissions,
an immutable file, a full disk) is never deleted, cut or written over: it is put back whole
(its WAL with it, where that had moved), said once with its path and the reason, and the
complete copy is the outbox in use at its own name (``outbox.sqlite3.repaired``), keeping the
lost tally and high-water mark beside ``outbox.sqlite3``. The kiosk measures and sends from it,
and a later start that can move the damaged file puts the copy in place, its WAL folded in first.
A copy in use found damaged itself is repaired as any outbox is, one level down: its readable
rows go into a copy of the copy (``outbox.sqlite3.repaired.repaired`` once complete), which
takes its place while the damaged copy is moved aside (``outbox.sqlite3.repaired.corrupt-<unix
time>``), so a kiosk whose damaged file stays where it is does not lose its outbox to a second
fault; a start puts a copy's copy left by a repair cut short in the copy's place before anything
else, as that is where the copy's results are. One level only: where that copy cannot take its
place either, nothing is repaired over, the copy and its own copy stay as they are beside the
damaged outbox, and the start fails saying so (never that the kiosk goes on with a copy it
cannot use).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from appliance.diskspace import free_bytes, full_disk_hint
from appliance.filekind import kind_of_mode
from appliance.outfile import fsync_path
from appliance.transport.highwater import Mark, read_mark, shortfall
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxCorruptError, OutboxError
from appliance.transport.outbox_salvage import Salvaged, dropped_before, is_an_outbox, salvage

log = logging.getLogger(__name__)
_SIDE_FILES = ("", "-wal", "-shm")


def open_outbox(path: Path, *, rebuild: bool = False, **bounds: Any) -> Outbox:
    """The outbox at ``path``; a damaged one is replaced by a copy holding its readable rows.

    ``rebuild``: replace it even when it opens, as one found damaged while in use (a garbled
    row, a bad page) may: SQLite's quick check at opening does not read every record. Where the
    damaged file cannot be moved aside, it is kept as it is and the copy is the outbox in use,
    at its own name, until a later start can put it in place; a copy in use found damaged is
    repaired the same way, as its own outbox."""
    return _open(path, path, rebuild=rebuild, copies=1, bounds=bounds)


def _open(path: Path, beside: Path, *, rebuild: bool, copies: int,
          bounds: dict[str, Any]) -> Outbox:
    """The outbox at ``path`` (its lost tally and mark beside ``beside``), repaired where
    damaged; ``copies``: how many levels of copies may stand in for it where it cannot be
    moved aside (a copy's copy, when the copy is damaged too)."""
    built = path.with_name(path.name + ".repaired")
    if copies > 0:
        _finish_the_copys_repair(built)
    # a copy an earlier start left: a repair cut short once the copy was complete, or the copy
    # in use while the damaged outbox could not be moved aside; either way it goes in place
    # now where it can, and the journal says what happened, not which of the two it was
    if _a_copy_left(path, built):
        try:
            _put_in_place(path, built)
        except (OSError, sqlite3.Error) as exc:
            return _stand_in(path, built, exc, beside=beside, rebuild=rebuild, copies=copies,
                             bounds=bounds)
        log.warning("%s: the repaired copy %s an earlier start left takes its place now",
                    path, built)
    if rebuild and path.exists():
        log.error("%s: found damaged while in use; moving it aside and recovering what can be "
                  "read", path)
    else:
        try:
            return Outbox(path, beside=beside, **bounds)
        except OutboxCorruptError as exc:
            log.error("%s; moving it aside and recovering what can be read", exc)
    return _repair(path, built, beside=beside, copies=copies, bounds=bounds)


def _finish_the_copys_repair(copy: Path) -> None:
    """Put the copy's own repaired copy an earlier start left in the copy's place, before the
    copy goes anywhere: a repair of the copy cut short once the damaged copy had moved aside
    leaves its results in that copy alone, which the next start would otherwise never look at.
    Where the copy cannot move, the start says so as it opens the copy."""
    inner = copy.with_name(copy.name + ".repaired")
    if not _a_copy_left(copy, inner, say=False):  # anything else there: said as the copy opens
        return
    try:
        _put_in_place(copy, inner)
    except (OSError, sqlite3.Error) as exc:
        if os.path.lexists(copy):  # refused: said where the copy is opened
            return
        raise OutboxError(
            f"{inner}: the repaired copy of the copy in use holds its results, and it cannot "
            f"take the copy's place at {copy} ({exc}); it is kept as it is, and the kiosk "
            f"cannot start until the folder lets it move; each start tries again") from exc
    log.warning("%s: the repaired copy %s an earlier start left takes its place now",
                copy, inner)


def _a_copy_left(path: Path, built: Path, *, say: bool = True) -> bool:
    """Whether ``built`` is a copy an earlier start left: a file with an outbox in it, however
    damaged. A file in which none can be found (garbage) is kept under another name, said.
    Anything else there (a link, a folder, a pipe, an empty file: no repair leaves one) is
    left as it is, and the journal says what it is (``say``). Neither takes the outbox's place:
    a sound outbox is never pushed aside for what holds no result."""
    try:
        found = built.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISREG(found.st_mode) and found.st_size > 0:
        if is_an_outbox(built):
            return True
        _keep_apart(path, built)
        return False
    if not say:
        return False
    what = ("a link" if stat.S_ISLNK(found.st_mode) else
            "an empty file" if stat.S_ISREG(found.st_mode) else kind_of_mode(found.st_mode))
    log.error("%s is %s, not a repaired copy of the outbox: it is left as it is and never takes "
              "the place of %s, which is opened as it is", built, what, path)
    return False


def _keep_apart(path: Path, built: Path) -> None:
    """Move the file at ``built``, in which no outbox can be found, off the copy's name (its
    WAL and index with it): kept for inspection, never written over by a later copy."""
    aside = _unique_aside(built, "unreadable")
    try:
        _move_aside(built, aside)
    except OSError as exc:
        where = f"it cannot be moved off that name ({exc}), so it is left as it is"
    else:
        _sync_folder(built.parent)
        where = f"it is kept as {aside}"
    log.error("%s is a file in which no outbox can be found, not a repaired copy of the outbox: "
              "%s and never takes the place of %s, which is opened as it is", built, where, path)


def _repair(path: Path, built: Path, *, beside: Path, copies: int,
            bounds: dict[str, Any]) -> Outbox:
    """The readable rows of the damaged ``path`` in a copy, put in its place or, where it
    cannot be moved aside and a copy may stand in for it, the outbox in use at ``built``."""
    recovered, lost, earlier = build_repaired(path, built, beside=beside)[:3]
    try:
        _put_in_place(path, built)
    except (OSError, sqlite3.Error) as exc:
        if copies < 1:
            raise _kept_as_they_are(path, built, exc, beside) from exc
        _say_the_copy_stands_in(path, built, exc)
        placed = False
    else:
        placed = True
    log.error(
        "outbox %s recreated%s: %d result(s) recovered, %d unreadable (counted dropped, with the "
        "%d it had counted before)", path, "" if placed else f" as {built}", recovered, lost,
        earlier,
    )
    return Outbox(path if placed else built, beside=beside, **bounds)


def _stand_in(path: Path, built: Path, refused: OSError | sqlite3.Error, *, beside: Path,
              rebuild: bool, copies: int, bounds: dict[str, Any]) -> Outbox:
    """The copy ``built`` (repaired one level down where it is damaged too) as the outbox in
    use, the damaged ``path`` having refused to move aside; said once it is known to open,
    so that the journal never says the kiosk goes on with a copy it then cannot use."""
    if copies < 1:
        raise _kept_as_they_are(path, built, refused, beside)
    try:
        outbox = _open(built, beside, rebuild=rebuild, copies=copies - 1, bounds=bounds)
    except OutboxError:
        log.error("%s; it is kept as it is, with the results in it, beside its repaired copy %s, "
                  "which cannot be used either", _not_in_place(path, built, refused), built)
        raise
    _say_the_copy_stands_in(path, built, refused)
    return outbox


def _say_the_copy_stands_in(path: Path, built: Path, refused: OSError | sqlite3.Error) -> None:
    log.error("%s; it is kept as it is, with the results in it, and the kiosk goes on with its "
              "repaired copy %s, which takes its place at a later start that can %s",
              _not_in_place(path, built, refused), built,
              "fold its log in" if isinstance(refused, _LogNotFoldedError) else "move it")


def _not_in_place(path: Path, built: Path, refused: OSError | sqlite3.Error) -> str:
    """Why the damaged outbox at ``path`` stays where it is: the filesystem refused to move
    it, or the copy ``built`` cannot take its place yet (its log cannot be folded in)."""
    if isinstance(refused, _LogNotFoldedError):
        return (f"{path}: the repaired copy {built} cannot take the place of the damaged outbox "
                f"yet ({refused})")
    return f"{path}: the damaged outbox cannot be moved aside ({refused})"


def _kept_as_they_are(copy: Path, built: Path, refused: OSError | sqlite3.Error,
                      outbox: Path) -> OutboxError:
    """What a start says where the damaged copy in use cannot make way for its own copy."""
    return OutboxError(
        f"{copy}: the repaired copy in use (the damaged outbox {outbox} cannot be moved aside) "
        f"is damaged too, and it cannot be moved aside either for its own repaired copy {built} "
        f"to take its place ({refused}); one level of copies only: both are kept as they are, "
        f"as is the damaged outbox, with the results in them, and the kiosk cannot start until "
        f"the folder lets them move (its permissions, an immutable file, free space); each start "
        f"tries again"
    )


def build_repaired(
    path: Path, built: Path, *, beside: Path | None = None
) -> tuple[int, int, int, int]:
    """Write the readable rows of ``path`` into a fresh outbox at ``built``; counts of
    (recovered, unreadable, counted before, lost beyond the file). ``beside``: the outbox whose
    high-water mark it goes on from (a repaired copy's: the outbox it stands in for); what the
    mark says the outbox had committed past ``path`` is counted dropped too (a copy in use that
    held it, kept apart as unreadable). OutboxError, nothing changed, when it cannot (a folder
    where the copy goes, too: it is never written over)."""
    building = path.with_name(path.name + ".repairing")
    try:
        _remove(building)  # an earlier build cut short: it holds only copies
    except OSError as exc:  # a folder, say: nothing of ours
        raise _unfinished(path, exc) from exc
    _check_room(path)
    earlier = dropped_before(path)
    try:
        fresh = Outbox(building, side_files=False)
        try:
            found = salvage(path, fresh.add_recovered)
            # the rows are renumbered: the sequence goes on from the mark
            mark = read_mark(beside or path)
            beyond = _lost_beyond(path, beside or path, mark, found, earlier)
            fresh.add_recovered([], dropped=found.unreadable + earlier + beyond,
                                after_seq=mark.last_seq if mark else 0)
        finally:
            fresh.close()
        building.rename(built)
    except (OutboxError, OSError) as exc:
        with contextlib.suppress(OSError):
            _remove(building)
        raise _unfinished(path, exc) from exc
    _sync_folder(path.parent)
    return found.kept, found.unreadable, earlier, beyond


def _lost_beyond(path: Path, beside: Path, mark: Mark | None, found: Salvaged,
                 earlier: int) -> int:
    """How many results to count dropped because the high-water mark beside ``beside`` says
    the outbox had committed past the damaged ``path`` (said in the journal): those that
    waited, up to the commits the file lacks, and the dropped count it had. A copy in use
    while ``path`` could not move holds them; one found unreadable is kept apart, and its
    results are counted here, since the repair renumbers the rows past the mark, which then
    no longer shows the loss."""
    short = shortfall(mark, found.last_seq, found.unreadable + earlier)
    if mark is None or short is None or not sum(short):
        return 0
    unaccounted, counted = short
    log.error(
        "%s: the outbox had committed up to result #%d with %d waiting (its high-water mark "
        "%s.highwater), and the damaged file holds up to #%d: the rest are in none of the "
        "files a repair reads (a repaired copy that held them can no longer be read, the "
        "damage took them, or the file is older); %d result(s) are unaccounted for (counted "
        "dropped, with the %d it had counted beyond the file)", path, mark.last_seq,
        mark.waiting, beside, found.last_seq, unaccounted, counted,
    )
    return unaccounted + counted


def _unfinished(path: Path, exc: Exception) -> OutboxError:
    """What a start says where the repair of the damaged ``path`` stopped on ``exc``."""
    full = full_disk_hint(path)
    return OutboxError(
        f"{path}: the outbox is damaged and its repair could not finish ({exc}); it stays as "
        f"it is, its readable results in it, and the repair is tried again at the next start"
        f"{': ' + full if full else ''}"
    )


def _check_room(path: Path) -> None:
    """OutboxError when the disk has less room than the damaged file takes: the copy of its
    rows would not fit (it takes at most as much), and the repair waits for room."""
    needed = sum(
        path.with_name(path.name + suffix).stat().st_size
        for suffix in ("", "-wal")
        if path.with_name(path.name + suffix).exists()
    )
    free = free_bytes(path)
    if free is not None and free < needed:
        raise OutboxError(
            f"{path}: the outbox is damaged and its repair needs about {needed // 1024} KiB free "
            f"for the copy of its rows; the disk has {free // 1024} KiB: free some space; it "
            "stays as it is, its readable results in it, and the repair is tried again at the "
            "next start"
        )


def _put_in_place(path: Path, built: Path) -> None:
    """Move the damaged outbox aside and put ``built`` in its place; OSError or
    sqlite3.Error where the filesystem refuses (permissions, a full disk): the damaged file is
    then kept as it was, whole, and ``built`` stays where it is."""
    aside = swap_in(path, built)
    if aside is not None:
        log.warning("%s: the damaged outbox is kept as %s", path, aside)


def swap_in(path: Path, built: Path) -> Path | None:
    """Move the damaged outbox aside (WAL first) and put ``built`` in its place; the aside
    name (None when there was nothing at ``path``). OSError, with the damaged file put back
    as it was, when a move is refused."""
    _fold_wal(built)  # a copy in use has results in its own WAL, which would not follow it
    aside = _unique_aside(path)
    moved = _move_aside(path, aside)
    try:
        built.rename(path)
    except OSError:
        _put_back(path, aside, moved)
        raise
    _sync_folder(path.parent)
    return aside if moved else None


def _move_aside(path: Path, aside: Path) -> list[str]:
    """Move the file at ``path`` to ``aside``, its WAL first (it must never stay behind for the
    next file at ``path``) and its index; the suffixes moved. OSError, with every part put
    back, when a move is refused."""
    moved: list[str] = []
    try:
        for suffix in ("-wal", "-shm", ""):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.rename(aside.with_name(aside.name + suffix))
                moved.append(suffix)
    except OSError:
        _put_back(path, aside, moved)
        raise
    return moved


class _LogNotFoldedError(OSError):
    """The write-ahead log of a copy cannot be folded into it (a full disk, say): the copy
    cannot take the outbox's place yet, and nothing has moved."""


def _fold_wal(built: Path) -> None:
    """Move what the WAL of ``built`` holds into its file (the WAL then goes); _LogNotFoldedError
    where it cannot."""
    if not built.with_name(built.name + "-wal").exists():
        return
    try:
        db = sqlite3.connect(built)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()  # the last connection: SQLite removes the WAL and its index
    except sqlite3.Error as exc:
        full = full_disk_hint(built)
        raise _LogNotFoldedError(f"its write-ahead log cannot be folded into it ({exc})"
                            f"{': ' + full if full else ''}") from exc
    if built.with_name(built.name + "-wal").exists():
        raise _LogNotFoldedError("its write-ahead log could not be folded into it")


def _put_back(path: Path, aside: Path, moved: list[str]) -> None:
    """Move the parts of the file at ``path`` (a damaged outbox) already moved aside back
    beside it, so that it stays whole (its WAL with it); one that cannot be is said, with
    where it is."""
    for suffix in reversed(moved):
        target = path.with_name(path.name + suffix)
        try:
            if not target.exists():
                aside.with_name(aside.name + suffix).rename(target)
        except OSError as exc:
            log.error("%s: could not be moved back beside %s (%s); it stays as %s", target,
                      path, exc, aside.with_name(aside.name + suffix))


def _unique_aside(path: Path, what: str = "corrupt") -> Path:
    """``outbox.sqlite3.corrupt-<unix time>`` (``what``), with ``.2``, ``.3``... when that name
    is taken: a rename replaces what it lands on, and every damaged copy is kept."""
    stem = f"{path.name}.{what}-{int(time.time())}"
    aside, tries = path.with_name(stem), 1
    while any(aside.with_name(aside.name + suffix).exists() for suffix in _SIDE_FILES):
        tries += 1
        aside = path.with_name(f"{stem}.{tries}")
    return aside


def _remove(path: Path) -> None:
    for suffix in _SIDE_FILES:
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a power cut must not undo them)."""
    with contextlib.suppress(OSError):  # a folder that cannot be synced: the rename stands
        fsync_path(folder)
