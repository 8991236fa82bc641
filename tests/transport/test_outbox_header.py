"""An outbox of an earlier release, migrated (the indexes of its confirmation marks made after
its rows), its first page garbled, is repaired with every row and mark, through the first page
that stands in for the damaged one (appliance/transport/outbox_header.py), which names the
tables and the columns as ``migrate`` adds them (outbox_file.add_confirmation_columns), not
those indexes. A check: it passes on main 5f607534 too, and also with the indexes in that page
(the salvage reads the tables only), which would name pages that hold rows as theirs."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from appliance.synthetic import fleet
from appliance.transport.outbox_file import OUTBOX_SCHEMA
from appliance.transport.outbox_repair import open_outbox

PAGE_BYTES = 4096


def _earlier_release_outbox(path: Path, count: int) -> list[str]:
    """An outbox as a release before the confirmation marks made it, holding ``count``
    results; their ids."""
    rng = random.Random(3)
    results = [fleet.sample_result(rng, "lab", "k1", i) for i in range(count)]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA page_size={PAGE_BYTES}")
        db.execute("PRAGMA journal_mode=WAL")
        for statement in OUTBOX_SCHEMA:
            db.execute(statement)
        db.executemany(
            "INSERT INTO outbox (measurement_id, topic, payload, created_at_s) VALUES (?,?,?,?)",
            [(r.measurement_id, "appliance/lab/k1/result", r.to_json() + b" " * 800, 1.0)
             for r in results])
    finally:
        db.close()
    return [r.measurement_id for r in results]


def _marks(path: Path) -> dict[str, tuple[float | None, float | None]]:
    with sqlite3.connect(path) as db:
        return {str(row[0]): (row[1], row[2]) for row in db.execute(
            "SELECT measurement_id, confirmed_at_s, first_confirmed_at_s FROM outbox")}


def test_a_migrated_outbox_of_an_earlier_release_with_its_first_page_garbled_keeps_every_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    ids = _earlier_release_outbox(path, 300)
    outbox = open_outbox(path, keep_confirmed_s=48 * 3600.0)  # migrates: indexes after the rows
    outbox.remove_ids(ids[:100], confirmed_at_s=1_000.0)  # kept, confirmed
    outbox.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        roots = dict(db.execute("SELECT name, rootpage FROM sqlite_schema"))
    rows_at = roots["outbox"]
    assert roots["outbox_confirmed_at_s"] > rows_at + 10  # past the earlier release's rows
    before = _marks(path)
    with path.open("r+b") as db_file:
        db_file.write(random.Random(1).randbytes(PAGE_BYTES))  # header and schema garbled
    repaired = open_outbox(path, keep_confirmed_s=48 * 3600.0)
    assert _marks(path) == before
    assert repaired.depth() == 200
    assert repaired.kept_confirmed() == 100
    repaired.close()
