"""The checks a SQLite store file gets before and as it is opened: what is at the path (a file,
nothing yet, or a folder, a device, a pipe), how a read command opens it, whether it is another
application's database, and why an open failed (a damaged file, a full disk, a folder that
cannot be written here). Each answers with the text of the problem, for ``StoreError``
(appliance/backoffice/store.py).
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from appliance.backoffice.migrations import MIGRATIONS
from appliance.diskspace import full_disk_hint
from appliance.filekind import LINK_LOOP, kind_of
from appliance.logsafe import escape_controls

# the tables this appliance makes: the back office's migrations, their marker, and the
# pathology server's (appliance/pathology/jobstore.py), which may be the first in a store
OWN_TABLES = frozenset(
    re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", "".join(m[2] for m in MIGRATIONS))
) | {"schema_migrations", "pathology_jobs", "pathology_slides"}
DAMAGED_HINT = ("the file is damaged or is no SQLite database: restore the store from a backup "
                "(appliance store restore BACKUP --force), or name another (--store, the "
                "config's store.url)")


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist yet, else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return None if path.is_file() else path


def sqlite_file_problem(url: str) -> str | None:
    """Why the SQLite file a store URL names can be no store (a folder, a device, a pipe), or
    None (a file, nothing yet, or not SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    return not_a_file(Path(url.removeprefix("sqlite:///")))


def not_a_file(path: Path) -> str | None:
    """Why ``path``, which is there, can be no SQLite store file (a folder, a device, a pipe),
    or None (a file, or nothing yet)."""
    if path.is_dir():
        return (f"{path} is a folder, not a store file: name the SQLite file in it "
                f"(sqlite:///{path / 'backoffice.sqlite3'}, say)")
    if path.exists() and not path.is_file():
        return (f"{path} is not a regular file (a device, a pipe or a socket), so no store "
                "file: name the SQLite file of the store (sqlite:///PATH)")
    if kind_of(path) == LINK_LOOP:
        return f"{path} is {LINK_LOOP}, so no store file: fix the link or name another file"
    return None


def read_mode(path: Path) -> str:
    """How a read command opens a SQLite file. SQLite reads a WAL database only where it can
    make the shared index (``-shm``) beside it, or where a writer made one; a store in a folder
    that cannot be written here (read-only media, a copy or snapshot, another user's folder)
    with no writer's WAL beside it is read as the file is (``immutable=1``: no index, no
    locks). A writer that starts meanwhile may make such a read fail; it never harms the file."""
    if os.access(path.parent, os.W_OK) or Path(f"{path}-wal").exists():
        return "mode=rw"
    return "mode=ro&immutable=1"


def foreign_tables(conn: sqlite3.Connection, path: Path) -> str | None:
    """Why the SQLite file open on ``conn`` is no back-office store: it holds tables, none of
    them the appliance's (another application's database named by mistake, which migrating
    would fill with the back office's tables); None when it is empty or holds ours."""
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name")]
    ours = OWN_TABLES.intersection(names)
    if "schema_migrations" in names:  # the marker, unless another tool's of the same name
        marked = conn.execute("SELECT COUNT(*) FROM pragma_table_info('schema_migrations') "
                              "WHERE name IN ('description', 'applied_at')").fetchone()[0]
        ours = ours if marked == 2 else ours - {"schema_migrations"}
    if not names or ours:
        return None
    shown = ", ".join(escape_controls(name) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (f"SQLite store {path.absolute()} holds another application's tables: "
            f"{shown}{more}, and none of the back office's; nothing was changed. Name "
            "the back office's store file (--store, the config's store.url)")


def damaged(exc: BaseException) -> bool:
    """Whether SQLite's error says the file itself is bad (not what is around it): "file is not
    a database", "malformed", or schema text that is no UTF-8 (Python's decode error)."""
    return isinstance(exc, UnicodeDecodeError) or (
        isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError))


def cannot_open(path: Path, exc: BaseException) -> str:
    """Why the SQLite file ``path`` could not be opened, and what to check."""
    # psycopg loads with storeerrors: `config check` reads this module without opening a store
    from appliance.backoffice.storeerrors import explained, held_locked  # noqa: PLC0415

    if damaged(exc):
        reason = "its schema is no UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc
        return f"cannot open SQLite store {path.absolute()}: {reason}; {DAMAGED_HINT}"
    if held_locked(exc):  # nothing wrong with the path: another program keeps the file
        return f"cannot open SQLite store {path.absolute()}: {explained(exc)}"
    return f"cannot open SQLite store {path.absolute()}: {exc}; {_folder_hint(path)}"


def _folder_hint(path: Path) -> str:
    """What to check when a SQLite file could not be opened."""
    if full := full_disk_hint(path):  # SQLite says "disk I/O error"
        return full
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return (f"its folder {path.parent} cannot be written here (a read-only file system, or "
                "another user's folder): run as the user that writes the store")
    return "check the path"
