"""What a restored SQLite store may hold: the product's own schema, nothing else.

A backup is a file anyone may have handed over, and SQLite keeps code in it: a trigger runs
on the workers' inserts (one on ``results`` that deletes or copies each row), a view or a
table of another program's stays in the store to be read or filled later. So a restore:

1. refuses a backup holding a trigger or a view (the appliance makes none) before anything
   runs on its copy, naming them (``refuse_code``);
2. once the copy is migrated, compares it with a store the same migrations made afresh
   (``refuse_unlike_fresh``): a table, an index or a column of the fresh store missing (a
   schema version that lies: the migrations skipped what the copy lacks, and the first ingest
   would fail), one the fresh store has not (another program's), or one defined otherwise (a
   CHECK that refuses every insert, a unique index on other columns) refuses it, naming them.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from appliance.backoffice.store_backup import BackupError
from appliance.logsafe import escape_controls

# made only by the migration that keys the slide results of an older store (jobstore.py)
KEPT_BY_MIGRATIONS = frozenset({("table", "pathology_slides_orphaned")})
SHOWN = 5  # names in a refusal
# each object's (type, name): a table's column names, and its definition as written
Schema = dict[tuple[str, str], tuple[frozenset[str], str]]


def refuse_code(conn: sqlite3.Connection, backup: Path) -> None:
    """A BackupError when the file open on ``conn`` holds triggers or views."""
    code = conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view') "
                        "ORDER BY type, name").fetchall()
    if code:
        raise BackupError(f"{backup} holds {_named(code)}, which the appliance never makes "
                          "and which would run in the restored store: no store is restored "
                          "from it; take a backup `store backup` wrote")


def refuse_unlike_fresh(copy: Path, backup: Path) -> None:
    """A BackupError when the migrated store at ``copy`` is not the product's schema."""
    with closing(sqlite3.connect(copy)) as conn:
        restored = _schema(conn)
    fresh = _fresh_schema()
    extra = sorted(set(restored) - set(fresh) - KEPT_BY_MIGRATIONS)
    missing = sorted(set(fresh) - set(restored), key=lambda kind_name: (
        kind_name[0] != "table", kind_name))  # a table first: its indexes go with it
    lacking = sorted(f"{name}.{column}" for (kind, name), (columns, _) in fresh.items()
                     if kind == "table" and (kind, name) in restored
                     for column in columns - restored[(kind, name)][0])
    unlike = sorted(key for key in set(fresh) & set(restored) if fresh[key][1] != restored[key][1])
    if extra:
        raise BackupError(f"{backup} holds {_named(extra)}, not the appliance's: no store "
                          "is restored from it; take a backup `store backup` wrote")
    if missing or lacking:
        shown = _named(missing) if missing else "column(s) " + _listed(lacking)
        raise BackupError(f"{backup} lacks {shown} of the store at its schema version (its "
                          "schema_migrations rows claim what its tables are not): no store is "
                          "restored from it; take another backup")
    if unlike:
        raise BackupError(f"{backup} holds {_named(unlike)} defined otherwise than the "
                          "appliance's (a constraint, a column's type, an index's columns): no "
                          "store is restored from it; take a backup `store backup` wrote")


def migrate_file(path: Path) -> None:
    """Bring the SQLite store at ``path`` (made if missing) to this release's schema: the back
    office's tables and the pathology server's."""
    from appliance.pathology.jobstore import PathologyStore  # noqa: PLC0415

    store = PathologyStore(f"sqlite:///{path}")
    try:
        store.migrate()
        store.migrate_pathology()
    finally:
        store.close()


def _fresh_schema() -> Schema:
    """The schema the migrations give an empty store (made in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="appliance-restore-") as folder:
        migrate_file(Path(folder) / "fresh.sqlite3")
        with closing(sqlite3.connect(Path(folder) / "fresh.sqlite3")) as conn:
            return _schema(conn)


def _schema(conn: sqlite3.Connection) -> Schema:
    """Each object but SQLite's own, as (type, name), with a table's column names and its
    definition as written (``_as_written``)."""
    objects = conn.execute("SELECT type, name, sql FROM sqlite_master "
                           "WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!'").fetchall()
    return {(kind, name): (frozenset(
        row[1] for row in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (name,))
    ) if kind == "table" else frozenset(), _as_written(sql)) for kind, name, sql in objects}


def _as_written(sql: str | None) -> str:
    """A definition as the migrations wrote it, whichever way SQLite kept it: a table renamed
    into place is kept quoted (``CREATE TABLE "pathology_slides"``), one made as it was kept
    without ``IF NOT EXISTS``; case and spacing never matter."""
    unquoted = re.sub(r'["`\[\]]', "", sql or "")
    return " ".join(unquoted.lower().split()).replace("if not exists ", "")


def _named(objects: list[tuple[str, str]]) -> str:
    return _listed([f"{kind} {name}" for kind, name in objects])


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(escape_controls(name) for name in names[:SHOWN]) + more
