"""``store backup --keep N``: each backup under a name of its own, the oldest beyond N removed.

With one file replaced each night, a mistake found a day late (results pruned or erased by
error, a store damaged in a way its check passes) was in the only backup by then. With
``--keep N`` the name given (``backoffice.sqlite3``) becomes ``backoffice-TIME.sqlite3`` (UTC,
to the microsecond, so names sort by time), and once the new backup is in place the oldest
of that pattern beyond the N newest are removed, never the one just written (a clock set back
would name it older than the rest); other files in the folder are never touched.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_STAMP = r"\d{8}T\d{6}\.\d{6}Z"


def stamped(out: Path, now: datetime | None = None) -> Path:
    """``out`` with the UTC time between its stem and its suffix."""
    moment = (now or datetime.now(UTC)).strftime(STAMP_FORMAT)
    return out.with_name(f"{out.stem}-{moment}{out.suffix}")


def rotated(out: Path, keep: int, written: Path) -> list[Path]:
    """Remove the backups of ``out``'s pattern beyond the ``keep`` newest, ``written`` (the one
    just made) always among those kept, also where the clock was set back since others were
    named; those removed."""
    pattern = re.compile(rf"{re.escape(out.stem)}-{_STAMP}{re.escape(out.suffix)}")
    others = sorted((path for path in out.parent.iterdir() if path.name != written.name
                     and pattern.fullmatch(path.name) and path.is_file()), reverse=True)
    removed = others[keep - 1:]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
