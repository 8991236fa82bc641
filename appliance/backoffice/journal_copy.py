"""The erasure journal kept with the backups: ``store backup`` writes a copy of it beside each
archive, and ``store restore`` takes the newest journal there is.

A restore applies again the erasures the backup lacks from the erasure journal
(erasure_reapply.py), which lives on the store's disk: a lost disk took it with the store,
and the nightly unit copied only the store. So each backup writes, once its archive is whole,
the journal as it is then beside it, ``ARCHIVE.erasure-journal.jsonl`` (the archive's time
stamp in its name; owner-only, written to a hidden temporary, flushed and renamed, as the
archive), and ``--keep`` removes it with its archive (backup_rotation.py). It is taken after
the archive, so it holds every erasure the archive holds and those committed while it was
written, which a restore applies.

A restore uses the live journal where there is one (it is never older than a copy: lines are
only appended), else the newest copy in the backup's folder, says which, and puts that copy
back as the live journal once it is applied, so the next erasure appends to it rather than
to a new file that lacks its lines. The lines the newest copy holds and a live journal lacks
(one started again after a lost disk) are applied too, before the live one's, and said.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.backoffice.backup_rotation import (
    JOURNAL_COPY_END,
    held_while_written,
    journal_copy_of,
)
from appliance.backoffice.erasure_journal import (
    OWNER_ONLY,
    Journal,
    owned_as_its_folder,
    read_journal,
)
from appliance.outfile import fsync_path, replaced_when_complete, temp_name_part


def copy_written(journal: Path, archive: Path) -> int | None:
    """Copy the journal beside ``archive`` (owner-only, whole or not at all); its lines, or
    None where there is no journal yet (no erasure was ever recorded): then none is written."""
    data = _read_locked(journal)
    if data is None:
        return None
    with replaced_when_complete(journal_copy_of(archive), mode=OWNER_ONLY) as temp, \
            held_while_written(temp):
        temp.write_bytes(data)
    return data.count(b"\n")


def _read_locked(journal: Path) -> bytes | None:
    """The journal's bytes, read under a shared lock, so not in the middle of an erasure's
    line (erasure_journal.append writes it under an exclusive one); None: no journal."""
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ChosenJournal:
    """The journal a restore applies, and the lines that say which it is."""

    journal: Journal
    said: list[str]
    live: Path  # the config's journal
    copied: bool  # a copy beside the backup, the live journal being absent

    def put_back(self) -> str:
        """Put the copy used back as the live journal (owner-only, owned as its folder); the
        line that says so, or why it was not."""
        live = self.live
        if not live.parent.is_dir():
            return (f"Note: the erasure journal's folder {live.parent} is not there: put "
                    f"{self.journal.path} back as {live} before the next erasure")
        try:
            if not _linked_whole(self.journal.path.read_bytes(), live):
                return f"Note: {live} was made meanwhile; {self.journal.path} not put back"
        except OSError as exc:
            return (f"Note: could not put {self.journal.path} back as the erasure journal "
                    f"{live} ({exc}): copy it there (owner-only) before the next erasure")
        return f"put the copy back as the erasure journal {live}, where the next erasure goes"


def _linked_whole(data: bytes, path: Path) -> bool:
    """Write ``data`` to a hidden temporary beside ``path``, flushed, and link it in as
    ``path`` only where nothing is there (an erasure that made the journal meanwhile is never
    written over); whether it was. The folder is flushed too."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{temp_name_part(path.name)}.",
                                suffix=".tmp")  # owner-only from its start
    try:
        with os.fdopen(fd, "wb") as temp:
            owned_as_its_folder(temp.fileno(), path)
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        try:
            os.link(name, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(name)
    fsync_path(path.parent)
    return True


def chosen_journal(live: Path, backup: Path) -> ChosenJournal:
    """The journal a restore of ``backup`` applies: ``live`` where it is there, else the
    newest copy beside ``backup``; JournalError for a damaged line of the one chosen or of a
    copy (by file and line)."""
    copies = [read_journal(path) for path in copies_beside(backup)]
    newest = max(copies, key=_newness, default=None)
    if live.exists():
        journal = read_journal(live)
        said = f"the erasure journal used: the live one, {live}"
        return _with_lacking(journal, newest, said)
    if newest is None:
        said = (f"the erasure journal used: none; no {live} and no copy of it beside the "
                "backup (no erasure was recorded, or the journal was lost with its disk)")
        return ChosenJournal(read_journal(live), [said], live, copied=False)
    return ChosenJournal(newest, [
        f"the erasure journal used: the copy {newest.path}, the newest beside the backup (no "
        f"live one at {live})"], live, copied=True)


def copies_beside(backup: Path) -> list[Path]:
    """The journal copies in ``backup``'s folder (hidden temporaries left out)."""
    ending = re.compile(rf"[^.].*{re.escape(JOURNAL_COPY_END)}")
    try:
        names = list(backup.parent.iterdir())
    except OSError:  # no folder, or one this user may not list: no copy to be found
        return []
    return [path for path in names if ending.fullmatch(path.name) and path.is_file()]


def _newness(journal: Journal) -> tuple[int, str, str]:
    """A copy taken later holds every line of an earlier one and more: the most lines, then
    the latest last line, then the name (its time stamp), is the newest."""
    last = journal.entries[-1].at if journal.entries else ""
    return (len(journal.entries), last, journal.path.name)


def _with_lacking(live: Journal, newest: Journal | None, said: str) -> ChosenJournal:
    """The live journal, with the lines the newest copy holds and it lacks put before its own
    (a journal started again after a lost disk: those erasures are applied too)."""
    held = {(entry.kind, entry.value, entry.at) for entry in live.entries}
    lacking = [] if newest is None else [
        entry for entry in newest.entries if (entry.kind, entry.value, entry.at) not in held]
    if not lacking:
        return ChosenJournal(live, [said], live.path, copied=False)
    assert newest is not None
    return ChosenJournal(
        Journal(live.path, [*lacking, *live.entries], live.torn_line),
        [f"{said}, and {len(lacking)} line(s) it lacks from its copy {newest.path} (a journal "
         "started again, after a lost disk?), applied before its own"], live.path, copied=False)
