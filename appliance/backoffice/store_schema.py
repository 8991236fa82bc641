"""The store's schema versions: the migrations a store has run, running the rest, and why a
store's version keeps a command from reading or writing it.

A mixin of ``Store``, as its reads (``store_reads.py``) and writes (``store_writes.py``) are.
Both backends run the same versioned migrations (``migrations.py``), their few differing types
filled in per backend. A store older than this code is refused by read commands, which never
migrate (``schema_problem``); one a newer appliance migrated is refused by whatever would
write past what that one keeps there (``newer_schema_problem``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.pgconnect import MIGRATE_HINT
from appliance.backoffice.store_connection import StoreConnection
from appliance.backoffice.storetext import iso_utc, letter_size_sql
from appliance.backoffice.storeurl import store_name

LATEST_VERSION = MIGRATIONS[-1][0]
_PG_TYPES = {
    "id": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION", "blob": "BYTEA",
    "payload_not_validated": "COALESCE((SELECT string_agg(key, ',' ORDER BY n) FROM "
    "json_array_elements_text(payload::json -> 'not_validated') WITH ORDINALITY AS nv(key, n)"
    "), '')", "letter_size": letter_size_sql(postgres=True),
}
_SQLITE_TYPES = {
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "blob": "BLOB",
    "payload_not_validated": "COALESCE((SELECT group_concat(value, ',') FROM "
    "(SELECT value FROM json_each(payload, '$.not_validated') ORDER BY key)), '')",
    "letter_size": letter_size_sql(postgres=False),
}


class SchemaVersions(StoreConnection):
    """The migrations of one store; ``Store`` provides the connection."""

    def pending_migrations(self) -> list[int]:
        """The versions of the migrations this store has not run (every one for an empty
        database); reads only (another program's write lock does not hold it up)."""
        if not self.has_table("schema_migrations"):
            return [version for version, _, _ in MIGRATIONS]
        done = {int(row[0]) for row in self._fetch("SELECT version FROM schema_migrations")}
        return [version for version, _, _ in MIGRATIONS if version not in done]

    def migrate(self, through: int | None = None) -> list[int]:
        """Apply the migrations this store has not run yet (those up to ``through`` where
        given: a restore makes a backup's schema version); returns their versions."""
        types = _PG_TYPES if self.postgres else _SQLITE_TYPES
        with self._transaction() as cur:
            self.lock_for_migration(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
            applied = []
            for version, description, ddl in MIGRATIONS:
                if version in done or (through is not None and version > through):
                    continue
                for statement in ddl.format(**types).split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute(
                    self._sql("INSERT INTO schema_migrations VALUES (?, ?, ?)"),
                    (version, description, iso_utc(datetime.now(UTC))),
                )
                applied.append(version)
        return applied

    def lock_for_migration(self, cur: Any) -> None:
        """Wait, inside this transaction, until no other connection changes the schema.
        PostgreSQL's CREATE ... IF NOT EXISTS is no guard against a concurrent one (the loser
        fails on pg_type's unique index); SQLite's BEGIN IMMEDIATE already serialises."""
        if self.postgres:
            cur.execute("SELECT pg_advisory_xact_lock(7270601)")

    def schema_version(self) -> int:
        """The newest migration this store has run (0 for an empty database)."""
        if not self.has_table("schema_migrations"):
            return 0
        rows = self._fetch("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def has_table(self, name: str) -> bool:
        """Whether the table exists (PostgreSQL: on the search path)."""
        if self.postgres:
            rows = self._fetch("SELECT to_regclass(?) IS NOT NULL", (name,))
        else:
            rows = self._fetch(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return bool(rows[0][0])


# what a newer appliance keeps in a store it migrated that this code must not write past:
# its account rules (for the console and the account commands), else whatever it added
ACCOUNT_RULES = ("keeps account rules there (disabled users, token expiry) that this one "
                 "cannot enforce")
NEWER_TABLES = "may keep tables and rules there that this one does not know"


def newer_schema_problem(store: SchemaVersions, who: str, refusal: str,
                         kept: str | None = None) -> str | None:
    """Why ``who`` (a console, a command that writes) must not change this store: a newer
    appliance migrated it and ``kept`` (ACCOUNT_RULES: a user's disabled_at, a token's expiry;
    NEWER_TABLES when not given) there, which this code cannot read, let alone enforce; None
    when it may. ``refusal``: what it does instead."""
    version = store.schema_version()
    if version <= LATEST_VERSION:
        return None
    return (f"{store_name(store.url)} is at schema version {version}, newer than this {who}'s "
            f"{LATEST_VERSION}: a newer appliance {kept or NEWER_TABLES}, so it {refusal}; run "
            "the appliance that migrated it")


def schema_problem(store: SchemaVersions) -> str | None:
    """Why a read command cannot read this store (no back-office tables, or an older schema
    than this code reads), or None when it can; read commands never migrate."""
    version = store.schema_version()
    where = store_name(store.url)
    if version == 0:
        return (f"{where} has no back-office tables: nothing was ever stored there, and read "
                f"commands create nothing (check --store or the config's store.url; "
                f"{MIGRATE_HINT} creates the tables, as `appliance backoffice` does)")
    if version < LATEST_VERSION:
        return (f"{where} is at schema version {version}; this appliance reads version "
                f"{LATEST_VERSION}. Read commands never change the database: run "
                f"{MIGRATE_HINT} first (or start `appliance backoffice`, which migrates)")
    return None
