"""The store's queries for the console: filtered result pages, cohort sums, users and logins.

A mixin of ``Store`` (same connection, same SQL for SQLite and PostgreSQL), kept in its own
module so the ingest path in ``store.py`` stays small. Result pages use keyset pagination on
``(captured_at, measurement_id)``, newest first, so page N costs what page 1 costs; the indexes
behind each filter are migration 3 in ``schema.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from appliance.backoffice.schema import RESULT_COLUMNS, iso_utc
from appliance.transport.payloads import utc_now

ROLLOUT_COLUMNS = ("rollout_id", "model_name", "model_version", "decision", "scope", "canaries",
                   "state", "reason", "created_at", "updated_at")
PATHOLOGY_JOB_COLUMNS = ("job_id", "state", "owner", "reason", "takeovers", "submitted_at",
                         "accepted_at", "updated_at")
PATHOLOGY_SLIDE_COLUMNS = ("slide_index", "slide", "label", "score", "mean_probability",
                           "msi_tile_share", "tile_count", "in_distribution_share", "reason",
                           "error", "backend", "server", "stored_at", "heatmap_path", "cam_path")
ROLLOUT_DEVICE_COLUMNS = ("site", "device_id", "phase", "state", "reason", "running_version",
                          "updated_at")
# an API token's id: the start of its SHA-256 (64 bits: no two tokens share one in practice)
TOKEN_ID_CHARS = 16
TOKEN_ID = re.compile(f"^[0-9a-f]{{{TOKEN_ID_CHARS}}}$")
# PostgreSQL's clock as the fixed-width UTC text sessions keep (schema.iso_utc's format)
_PG_NOW_TEXT = ("to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")


@dataclass(frozen=True)
class ResultFilter:
    """Which results a page or an export shows; every field is optional."""

    site: str | None = None
    device_id: str | None = None
    captured_from: str | None = None  # stored-time text, inclusive
    captured_before: str | None = None  # stored-time text, exclusive
    label: str | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions and their parameters (values are always bound, never pasted)."""
        pairs = (
            ("site = ?", self.site),
            ("device_id = ?", self.device_id),
            ("captured_at >= ?", self.captured_from),
            ("captured_at < ?", self.captured_before),
            ("label = ?", self.label),
        )
        chosen = [(sql, value) for sql, value in pairs if value is not None]
        return [sql for sql, _ in chosen], [value for _, value in chosen]


@dataclass(frozen=True)
class Revoked:
    """What ending a console user's access took away: open sessions and API tokens."""

    sessions: int
    tokens: int


def token_id(token_sha256: str) -> str:
    """The id an API token is listed and revoked by: the start of its SHA-256 (not secret)."""
    return token_sha256[:TOKEN_ID_CHARS]


@dataclass(frozen=True)
class Login:
    """Who a session or token belongs to."""

    name: str
    role: str
    csrf: str = ""


def _checked(columns: Sequence[str]) -> str:
    unknown = set(columns) - set(RESULT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}")
    return ",".join(columns)


def _measured_values(features: Sequence[str]) -> tuple[str, list[str]]:
    """Each feature as a column that is NULL where the result names it in ``not_validated``
    (outside the validated range: not measured, so left out of every figure), and the LIKE
    patterns to bind."""
    cases, patterns = [], []
    for key in _checked(features).split(","):
        cases.append(f"CASE WHEN not_validated = '' THEN {key} WHEN ',' || not_validated "
                     f"|| ',' LIKE ? ESCAPE '!' THEN NULL ELSE {key} END AS {key}")
        patterns.append("%," + key.replace("_", "!_") + ",%")
    return ", ".join(cases), patterns


def _measured_sums(features: Sequence[str]) -> str:
    """COUNT, SUM and sum of squares of each ``_measured_values`` column (NULLs left out)."""
    return ", ".join(f"COUNT({f}), SUM({f}), SUM({f}*{f})" for f in _checked(features).split(","))


class ConsoleQueries:
    """Read queries and login bookkeeping of the console, mixed into ``Store``."""

    postgres: bool
    if TYPE_CHECKING:

        def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
        def _sql(self, text: str) -> str: ...
        def _transaction(self) -> AbstractContextManager[Any]: ...

        _conn: Any

    def page_results(
        self,
        columns: Sequence[str],
        where: ResultFilter,
        before: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[tuple[Any, ...]]:
        """Newest-first results matching ``where``, older than the ``before`` keyset cursor."""
        conditions, params = where.where()
        if before is not None:
            conditions.append("(captured_at, measurement_id) < (?, ?)")
            params.extend(before)
        sql = f"SELECT {_checked(columns)} FROM results"
        sql += f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql += " ORDER BY captured_at DESC, measurement_id DESC LIMIT ?"
        return self._fetch(sql, [*params, int(limit)])

    def result_row(self, measurement_id: str) -> dict[str, Any] | None:
        """One stored result by its measurement id, every column, or None."""
        rows = self._fetch(
            f"SELECT {','.join(RESULT_COLUMNS)} FROM results WHERE measurement_id = ?",
            (measurement_id,),
        )
        return dict(zip(RESULT_COLUMNS, rows[0], strict=True)) if rows else None

    def result_payloads(self, measurement_ids: Sequence[str]) -> dict[str, str]:
        """The stored payloads (the result's JSON) of these results, by measurement id."""
        if not measurement_ids:
            return {}
        marks = ",".join("?" * len(measurement_ids))
        rows = self._fetch(f"SELECT measurement_id, payload FROM results "
                           f"WHERE measurement_id IN ({marks})", list(measurement_ids))
        return {row[0]: row[1] for row in rows}

    def band_sums(self, features: Sequence[str]) -> list[tuple[Any, ...]]:
        """Per age band: count, then each feature's count, sum and sum of squares over the
        results where it was measured (inside the validated range)."""
        values, patterns = _measured_values(features)
        return self._fetch(
            f"SELECT age_band, COUNT(*), {_measured_sums(features)} "
            f"FROM (SELECT age_band, {values} FROM results "
            "WHERE age_band IS NOT NULL) measured GROUP BY age_band",
            patterns,
        )

    def repeat_sums(self, features: Sequence[str], limit: int) -> list[tuple[Any, ...]]:
        """Subjects measured more than once (most first): id, count, devices, then each
        feature's count, sum and sum of squares where it was measured."""
        values, patterns = _measured_values(features)
        return self._fetch(
            f"SELECT subject_id, COUNT(*), COUNT(DISTINCT device_id), {_measured_sums(features)} "
            f"FROM (SELECT subject_id, device_id, {values} FROM results "
            "WHERE subject_id IS NOT NULL) measured GROUP BY subject_id HAVING COUNT(*) > 1 "
            "ORDER BY COUNT(*) DESC, subject_id LIMIT ?",
            [*patterns, int(limit)],
        )

    # -- model rollouts (tables of appliance/updates/rollout.py) --------------------------

    def rollout_rows(self, limit: int = 100, rollout_id: str | None = None
                     ) -> list[dict[str, Any]]:
        """The newest model rollouts (or the one named), each with its devices per state."""
        where, params = ("WHERE rollout_id = ? ", [rollout_id]) if rollout_id else ("", [])
        rows = self._fetch(
            f"SELECT {','.join(ROLLOUT_COLUMNS)} FROM rollouts {where}"
            "ORDER BY created_at DESC LIMIT ?", [*params, int(limit)],
        )
        out = [dict(zip(ROLLOUT_COLUMNS, row, strict=True)) for row in rows]
        counts: dict[str, dict[str, int]] = {r["rollout_id"]: {} for r in out}
        if counts:
            marks = ",".join("?" * len(counts))
            for key, state, count in self._fetch(
                "SELECT rollout_id, state, COUNT(*) FROM rollout_devices "
                f"WHERE rollout_id IN ({marks}) GROUP BY rollout_id, state", list(counts)
            ):
                counts[key][state] = int(count)
        return [{**r, "devices": counts[r["rollout_id"]]} for r in out]

    def rollout_devices(self, rollout_id: str) -> list[dict[str, Any]]:
        """Where each device of one rollout stands, by phase (canary first) and device."""
        rows = self._fetch(
            f"SELECT {','.join(ROLLOUT_DEVICE_COLUMNS)} FROM rollout_devices "
            "WHERE rollout_id = ? ORDER BY phase, site, device_id",
            (rollout_id,),
        )
        return [dict(zip(ROLLOUT_DEVICE_COLUMNS, row, strict=True)) for row in rows]

    # -- pathology jobs (tables of appliance/pathology/jobstore.py) -----------------------

    def pathology_job_rows(self, limit: int = 100, job_id: str | None = None
                           ) -> list[dict[str, Any]]:
        """The newest pathology jobs (or the one named), each with its stored slide count."""
        where, params = ("WHERE j.job_id = ? ", [job_id]) if job_id else ("", [])
        rows = self._fetch(
            f"SELECT {','.join('j.' + c for c in PATHOLOGY_JOB_COLUMNS)}, "
            "(SELECT COUNT(*) FROM pathology_slides s WHERE s.job_id = j.job_id) "
            f"FROM pathology_jobs j {where}ORDER BY j.accepted_at DESC LIMIT ?",
            [*params, int(limit)],
        )
        return [{**dict(zip(PATHOLOGY_JOB_COLUMNS, row[:-1], strict=True)),
                 "slides_stored": int(row[-1])} for row in rows]

    def pathology_slide_rows(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored slide results (label, score, tiles, in-distribution share, reason)."""
        rows = self._fetch(
            f"SELECT {','.join(PATHOLOGY_SLIDE_COLUMNS)} FROM pathology_slides "
            "WHERE job_id = ? ORDER BY slide_index", (job_id,),
        )
        return [dict(zip(PATHOLOGY_SLIDE_COLUMNS, row, strict=True)) for row in rows]

    def pathology_picture_path(self, job_id: str, slide_index: int, column: str) -> str | None:
        """The heatmap or CAM path stored with one slide ('' when none), None if no such slide."""
        if column not in ("heatmap_path", "cam_path"):
            raise ValueError(f"{column!r} is no picture column of pathology_slides")
        rows = self._fetch(
            f"SELECT {column} FROM pathology_slides WHERE job_id = ? AND slide_index = ?",
            (job_id, int(slide_index)),
        )
        return str(rows[0][0]) if rows else None

    # -- console users, API tokens and login sessions ------------------------------------

    def put_user(self, name: str, password_hash: str, role: str, now: str) -> Revoked | None:
        """Add a console user (None) or replace its password and role, which ends the user's
        open sessions and revokes its API tokens (what was taken away)."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT 1 FROM console_users WHERE name = ?"), (name,))
            fresh = cur.fetchone() is None
            cur.execute(
                self._sql(
                    "INSERT INTO console_users (name, password_hash, role, created_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                    "password_hash = excluded.password_hash, role = excluded.role"
                ),
                (name, password_hash, role, now),
            )
            return None if fresh else self._revoke_access(cur, name)

    def remove_user(self, name: str) -> Revoked | None:
        """Remove a console user with its sessions and API tokens; None when there is none."""
        with self._transaction() as cur:
            revoked = self._revoke_access(cur, name)
            cur.execute(self._sql("DELETE FROM console_users WHERE name = ?"), (name,))
            return revoked if cur.rowcount else None

    def _revoke_access(self, cur: Any, name: str) -> Revoked:
        """End every session of ``name`` and revoke its API tokens, inside a transaction."""
        cur.execute(self._sql("DELETE FROM console_sessions WHERE name = ?"), (name,))
        sessions = cur.rowcount
        cur.execute(self._sql("DELETE FROM console_tokens WHERE name = ?"), (name,))
        return Revoked(sessions, cur.rowcount)

    def users(self) -> list[tuple[str, str, str, int, int]]:
        """Every console user: name, role, created, open sessions and API tokens, by name."""
        now, params = self._session_now()
        rows = self._fetch(
            "SELECT u.name, u.role, u.created_at, "
            "(SELECT COUNT(*) FROM console_sessions s WHERE s.name = u.name "
            f"AND s.expires_at > {now}), "
            "(SELECT COUNT(*) FROM console_tokens t WHERE t.name = u.name) "
            "FROM console_users u ORDER BY u.name", params)
        return [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]

    def user(self, name: str) -> tuple[str, str] | None:
        """The password hash and role of a console user, or None."""
        rows = self._fetch(
            "SELECT password_hash, role FROM console_users WHERE name = ?", (name,)
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def add_token(self, token_sha256: str, name: str, now: str) -> None:
        """Keep the hash of a new API token of user ``name``."""
        with self._transaction() as cur:
            cur.execute(
                self._sql("INSERT INTO console_tokens (token_sha256, name, created_at) "
                          "VALUES (?, ?, ?)"),
                (token_sha256, name, now),
            )

    def tokens(self, name: str | None = None) -> list[tuple[str, str, str]]:
        """API tokens (of user ``name``, else all): token id, user and created, oldest first."""
        where, params = ("WHERE name = ? ", [name]) if name else ("", [])
        rows = self._fetch(f"SELECT token_sha256, name, created_at FROM console_tokens {where}"
                           "ORDER BY created_at, token_sha256", params)
        return [(token_id(row[0]), row[1], row[2]) for row in rows]

    def revoke_token(self, token_id_text: str) -> str | None:
        """Revoke the API token with this id; its user, or None when there is no such token."""
        if not TOKEN_ID.match(token_id_text):
            raise ValueError(f"token id {token_id_text!r}: {TOKEN_ID_CHARS} hex digits expected")
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT token_sha256, name FROM console_tokens "
                                  "WHERE token_sha256 LIKE ?"), (token_id_text + "%",))
            found = cur.fetchall()
            for token_sha256, _ in found:
                cur.execute(self._sql("DELETE FROM console_tokens WHERE token_sha256 = ?"),
                            (token_sha256,))
        return str(found[0][1]) if found else None

    def token_login(self, token_sha256: str) -> Login | None:
        """Whose API token this is, or None."""
        rows = self._fetch(
            "SELECT u.name, u.role FROM console_tokens t JOIN console_users u "
            "ON u.name = t.name WHERE t.token_sha256 = ?",
            (token_sha256,),
        )
        return Login(rows[0][0], rows[0][1]) if rows else None

    def add_session(self, session_sha256: str, name: str, csrf: str, lifetime_s: float,
                    *, end_others: bool = False) -> int:
        """Keep a new login session of ``lifetime_s`` (and forget expired ones), both timed on
        the store's clock; ``end_others`` ends the user's other sessions. How many it ended."""
        with self._transaction() as cur:
            now = self._session_clock(cur)
            cur.execute(self._sql("DELETE FROM console_sessions WHERE expires_at < ?"),
                        (iso_utc(now),))
            ended = 0
            if end_others:
                cur.execute(self._sql("DELETE FROM console_sessions WHERE name = ?"), (name,))
                ended = cur.rowcount
            cur.execute(
                self._sql("INSERT INTO console_sessions (session_sha256, name, csrf, expires_at) "
                          "VALUES (?, ?, ?, ?)"),
                (session_sha256, name, csrf, iso_utc(now + timedelta(seconds=lifetime_s))),
            )
        return ended

    def session_login(self, session_sha256: str) -> Login | None:
        """Whose unexpired session this is (with its CSRF token), or None; expiry is judged
        on the store's clock."""
        now, params = self._session_now()
        rows = self._fetch(
            "SELECT u.name, u.role, s.csrf FROM console_sessions s JOIN console_users u "
            f"ON u.name = s.name WHERE s.session_sha256 = ? AND s.expires_at > {now}",
            [session_sha256, *params])
        return Login(rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def _session_now(self) -> tuple[str, list[str]]:
        """Now on the sessions' clock as SQL: PostgreSQL's expression, or a bound parameter
        (this host's clock, SQLite) and its value."""
        return (_PG_NOW_TEXT, []) if self.postgres else ("?", [iso_utc(utc_now())])

    def _session_clock(self, cur: Any) -> datetime:
        """Now on the clock sessions run on: the PostgreSQL server's, shared by every console
        host (a host whose clock runs ahead or behind would end sessions early or keep them
        late), or this host's for SQLite (one host)."""
        if not self.postgres:
            return utc_now()
        cur.execute("SELECT clock_timestamp()")
        moment: datetime = cur.fetchone()[0]
        return moment

    def end_session(self, session_sha256: str) -> None:
        """Forget a login session (logout)."""
        with self._transaction() as cur:
            cur.execute(
                self._sql("DELETE FROM console_sessions WHERE session_sha256 = ?"),
                (session_sha256,),
            )
