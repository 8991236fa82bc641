"""``store backup --keep N``: each backup under a name of its own, the oldest beyond N removed.

With one file replaced each night, a mistake found a day late (results pruned or erased by
error, a store damaged in a way its check passes) was in the only backup by then. With
``--keep N`` the name given (``backoffice.sqlite3``) becomes ``backoffice-TIME.sqlite3`` (UTC,
to the microsecond, so names sort by time), and once the new backup is in place the oldest
of that pattern beyond the N newest are removed, never the one just written (a clock set back
would name it older than the rest); other files in the folder are never touched. The backup
of a PostgreSQL store is a pg_dump archive, not a SQLite file: under ``--keep`` its name ends
in ``.dump`` whatever ``--out``'s suffix (``backoffice-TIME.dump`` from the nightly unit's
``backoffice.sqlite3``, ``kind_suffixed``), and the rotation counts both suffixes as one
pattern, so the ``backoffice-TIME.sqlite3`` archives an older appliance wrote are rotated out
with the rest. The erasure journal's copy beside an archive (``ARCHIVE.erasure-journal.jsonl``,
journal_copy.py) goes with it.

A backup killed on the way (kill -9, the unit's timeout, out of memory) leaves its hidden
temporary beside ``--out``: a whole or partial copy of the store, personal data that no
erasure reaches. Each backup holds a lock (``flock``) on its temporary while it writes it, and
the next backup to the same name (or pattern) removes the temporaries of that name that no
process holds and that were last written over a minute before (``dead_temporaries_removed``).
A restore holds its copy of the backup (``.NAME.XXXXXXXX.restoring`` beside the store) the same
way until it takes the store's name, and the next restore to that store removes the copies
killed ones left (``dead_restorings_removed``).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from appliance.backoffice.erasure_journal import JOURNAL_NAME
from appliance.outfile import temp_name_part

JOURNAL_COPY_END = f".{JOURNAL_NAME}"  # the erasure journal's copy beside an archive
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
DUMP_SUFFIX = ".dump"  # a PostgreSQL store's backup under --keep
_STAMP = r"\d{8}T\d{6}\.\d{6}Z"
_MKSTEMP = r"[a-z0-9_]{8}"  # tempfile's random part
SETTLED_S = 60.0  # a temporary not written for this long, and not held, is a killed one's


def stamped(out: Path, now: datetime | None = None) -> Path:
    """``out`` with the UTC time between its stem and its suffix."""
    moment = (now or datetime.now(UTC)).strftime(STAMP_FORMAT)
    return out.with_name(f"{out.stem}-{moment}{out.suffix}")


def kind_suffixed(out: Path, postgres: bool) -> Path:
    """The name ``--keep`` stamps for a backup to ``out``: a PostgreSQL store's (a pg_dump
    archive) with the suffix ``.dump``, a SQLite store's as given."""
    return out.with_name(f"{out.stem}{DUMP_SUFFIX}") if postgres else out


def journal_copy_of(archive: Path) -> Path:
    """The erasure journal's copy that ``store backup`` writes beside ``archive``
    (journal_copy.py), removed with it."""
    return archive.with_name(f"{archive.name}{JOURNAL_COPY_END}")


def rotated(out: Path, keep: int, written: Path) -> list[Path]:
    """Remove the backups of ``out``'s pattern beyond the ``keep`` newest, ``written`` (the one
    just made) always among those kept, also where the clock was set back since others were
    named; those removed. The pattern takes ``out``'s suffix and ``written``'s (``.dump`` for
    a PostgreSQL store's): the stamps, of one width, order them whatever their suffix."""
    suffixes = "|".join(re.escape(suffix) for suffix in sorted({out.suffix, written.suffix}))
    pattern = re.compile(rf"{re.escape(out.stem)}-({_STAMP})(?:{suffixes})")
    stamps = {path: found.group(1) for path in out.parent.iterdir()
              if path.name != written.name and (found := pattern.fullmatch(path.name))
              and path.is_file()}
    others = sorted(stamps, key=lambda path: (stamps[path], path.name), reverse=True)
    removed = others[keep - 1:]
    for path in removed:
        path.unlink(missing_ok=True)
        journal_copy_of(path).unlink(missing_ok=True)
    return removed


@contextmanager
def held_while_written(temp: Path) -> Iterator[None]:
    """Hold a lock on the temporary ``temp`` while the block writes it: a later backup leaves
    it alone (``dead_temporaries_removed``)."""
    fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def dead_temporaries_removed(out: Path, keep: bool) -> list[Path]:
    """Remove the temporaries killed backups to ``out`` (with ``keep``: to its pattern's
    names) left, of an archive or of its journal copy, no process holding them; those
    removed."""
    name = (rf"{re.escape(out.stem)}-{_STAMP}{re.escape(out.suffix)}" if keep
            else re.escape(out.name))
    ends = (rf"\.{_MKSTEMP}\.tmp{re.escape(out.suffix)}",
            rf"{re.escape(JOURNAL_COPY_END)}\.{_MKSTEMP}\.tmp\.jsonl")
    return _dead_removed(out.parent, re.compile(rf"\.{name}(?:{'|'.join(ends)})"))


def dead_restorings_removed(store: Path) -> list[Path]:
    """Remove the copies killed restores to ``store`` left beside it (``.NAME.XXXXXXXX.restoring``),
    no process holding them; those removed."""
    name = re.escape(temp_name_part(store.name))
    return _dead_removed(store.parent, re.compile(rf"\.{name}\.{_MKSTEMP}\.restoring"))


def _dead_removed(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the files in ``folder`` whose names ``pattern`` matches and that are dead, with
    the SQLite side files their writers left; those removed."""
    removed = []
    for path in folder.iterdir():
        if pattern.fullmatch(path.name) and path.is_file() and _dead(path):
            for end in ("-journal", "-wal", "-shm", ""):  # the file last: found again if killed
                Path(f"{path}{end}").unlink(missing_ok=True)
            removed.append(path)
    return removed


def _dead(temp: Path) -> bool:
    """Whether ``temp`` settled over a minute ago and no process holds its lock."""
    if time.time() - temp.stat().st_mtime < SETTLED_S:
        return False
    fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
