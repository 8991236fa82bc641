"""Reading an outbox whose first page is damaged, through a copy with that page rebuilt.

An SQLite file's first page holds its header (page size, page count) and the schema table that
says on which page each table starts. Garbage written over it makes the whole file "not a
database" although the pages holding the rows are intact. An outbox's tables are always made by
the same statements in the same order (``OUTBOX_SCHEMA``), so they start on the same pages in
every outbox of one page size: a fresh outbox's first page stands in for the damaged one. The
copy is tried with the damaged file's own schema first (only the header rebuilt), then with the
fresh schema too, for each page size the file could have (the one its header names first).
The rebuilt header counts the whole pages the file holds, so a file cut short (its header
still counting the pages it lost, which makes every read fail) gives up only the rows it lost.
The copy lives in a ``.outbox-rebuild-*`` folder beside the file, removed after; one left by a
run that was killed is removed by the next (one daemon per state folder: no one else uses it).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from appliance.transport.outbox_file import OUTBOX_SCHEMA, add_confirmation_columns

Found = TypeVar("Found")
HEADER_BYTES = 100
WORK_PREFIX = ".outbox-rebuild-"
PAGE_COUNT_AT = 28  # the header's "database size in pages" (big-endian, 4 bytes)
PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


def with_rebuilt_first_page(
    damaged: Path, read: Callable[[Path], Found | None]
) -> Found | None:
    """``read`` of a copy of ``damaged`` with its first page rebuilt; None when no try reads."""
    size = damaged.stat().st_size
    for stale in damaged.parent.glob(f"{WORK_PREFIX}*"):  # a copy left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=damaged.parent) as work:
        copy = Path(work) / damaged.name
        try:
            shutil.copyfile(damaged, copy)
            wal = damaged.with_name(damaged.name + "-wal")
            if wal.exists():
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            with damaged.open("rb") as handle:
                original = handle.read(max(PAGE_SIZES))  # the first page, whatever its size
        except OSError:  # e.g. no room for the copy: nothing more can be read
            return None
        for page_bytes in page_sizes(original, size):
            first_page = fresh_first_page(Path(work), page_bytes, size // page_bytes)
            for keep_schema in (True, False):
                rebuilt = first_page[:HEADER_BYTES] + original[HEADER_BYTES:page_bytes]
                _write_first_page(copy, rebuilt if keep_schema else first_page)
                found = read(copy)
                if found is not None:
                    return found
            _write_first_page(copy, original)
    return None


def page_sizes(original: bytes, file_bytes: int) -> list[int]:
    """The page sizes a file of ``file_bytes`` can have: the one its header names first (a
    file cut short, by a power cut or by hand, need not end on a page), then those that
    divide its size."""
    named = int.from_bytes(original[16:18], "big") if len(original) >= 18 else 0
    named = 65536 if named == 1 else named
    dividing = [size for size in PAGE_SIZES if file_bytes and file_bytes % size == 0]
    ordered = ([named] if named in PAGE_SIZES and file_bytes >= 2 * named else []) + dividing
    return list(dict.fromkeys(ordered))


def fresh_first_page(work: Path, page_bytes: int, page_count: int) -> bytes:
    """The first page of a new, empty outbox, its header saying ``page_count`` pages."""
    template = work / f"template-{page_bytes}.sqlite3"
    db = sqlite3.connect(template, isolation_level=None)
    try:
        db.execute(f"PRAGMA page_size={page_bytes}")
        db.execute("PRAGMA journal_mode=WAL")
        for statement in OUTBOX_SCHEMA:
            db.execute(statement)
        # the columns as the migration adds them, so a row's marks read; not its indexes of
        # them: each starts on the page the file ended at when the migration ran (in an outbox
        # of an earlier release, after its rows), which no template knows, so a first page
        # naming them would give them pages that hold rows. The salvage reads the tables only
        add_confirmation_columns(db)
    finally:
        db.close()
    page = bytearray(template.read_bytes()[:page_bytes])
    page[PAGE_COUNT_AT : PAGE_COUNT_AT + 4] = page_count.to_bytes(4, "big")
    return bytes(page)


def _write_first_page(copy: Path, page: bytes) -> None:
    for suffix in ("-shm",):  # a stale index of the WAL from the last try
        with contextlib.suppress(FileNotFoundError):
            copy.with_name(copy.name + suffix).unlink()
    with copy.open("r+b") as handle:
        handle.write(page)
