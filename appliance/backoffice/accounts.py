"""Console users, API tokens and login sessions in the store (the console's access).

A mixin of ``Store`` through ``ConsoleQueries`` (same connection, same SQL for SQLite and
PostgreSQL). Only hashes are kept (appliance/console/auth.py makes them). Sessions are
timed on the store's clock: PostgreSQL's, shared by consoles on several hosts, or this host's
for SQLite. Ending a user's access (a new password, removal) ends its sessions and revokes
its API tokens in the same transaction; disabling a user ends its sessions and holds its
API tokens back until it is enabled. API tokens expire on the same clock (a token made
before expiry existed, migration 8, has none) and their last use is written at most once every
LAST_USE_EVERY_S, so a busy API client does not write on every request. A token expired for
EXPIRED_TOKEN_KEPT_DAYS is forgotten when a token is made, when a console starts and by a
running console once an hour (console/db.py), so the lists do not grow without end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.backoffice.keyset import Keyset
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store_connection import StoreConnection
from appliance.console import EXPIRED_TOKEN_KEPT_DAYS
from appliance.transport.payloads import utc_now

# an API token's id: the start of its SHA-256 (64 bits: no two tokens share one in practice)
TOKEN_ID_CHARS = 16
TOKEN_ID = re.compile(f"^[0-9a-f]{{{TOKEN_ID_CHARS}}}\\Z")
# the tokens page's order, oldest first: by creation, then by id (unique in practice)
TOKEN_KEYS = Keyset(("t.created_at", f"substr(t.token_sha256, 1, {TOKEN_ID_CHARS})"),
                    descending=False)
# a token's last use is written again only this long after the last write
LAST_USE_EVERY_S = 60.0
# how long an API request waits for another program's write lock on a SQLite store to write its
# token's last use (bookkeeping: not worth holding the answer for the 30 s busy timeout)
LAST_USE_LOCK_WAIT_MS = 500
# open sessions a user keeps (browsers, devices); a further login ends the oldest
MAX_SESSIONS_PER_USER = 16
# PostgreSQL's clock as the fixed-width UTC text sessions keep (schema.iso_utc's format)
_PG_NOW_TEXT = ("to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")


@dataclass(frozen=True)
class Revoked:
    """What ending a console user's access took away: open sessions and API tokens."""

    sessions: int
    tokens: int


def token_id(token_sha256: str) -> str:
    """The id an API token is listed and revoked by: the start of its SHA-256 (not secret)."""
    return token_sha256[:TOKEN_ID_CHARS]


def _token_row(row: tuple[Any, ...]) -> TokenRow:
    """A token's row (``_token_select``'s columns) as listed: its id, never its hash."""
    expired = row[4] is not None and row[4] <= row[6]
    return TokenRow(token_id(row[0]), row[1], row[2], row[3], row[4], row[5], expired,
                    row[7] is not None)


class LastOperatorError(ValueError):
    """The change would leave no enabled operator; the text says what to do."""


@dataclass(frozen=True)
class UserRow:
    """A console user as listed: its open sessions, API tokens and since when it is disabled
    (None: enabled)."""

    name: str
    role: str
    created_at: str
    sessions: int
    tokens: int
    disabled_at: str | None


@dataclass(frozen=True)
class TokenRow:
    """An API token as listed (never the token itself): its id, user, label and times
    (``expires_at`` None: made before tokens expired; ``last_used_at`` None: never used);
    ``user_disabled``: held back while its user is disabled."""

    token_id: str
    name: str
    label: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    expired: bool
    user_disabled: bool = False


@dataclass(frozen=True)
class Login:
    """Who a session or token belongs to."""

    name: str
    role: str
    csrf: str = ""


class ConsoleAccounts(StoreConnection):
    """Console users, their API tokens and login sessions, mixed into ``Store``."""

    def put_user(self, name: str, password_hash: str, role: str, now: str) -> Revoked | None:
        """Add a console user (None) or replace its password and role, which ends the user's
        open sessions and revokes its API tokens (what was taken away)."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT role, disabled_at FROM console_users WHERE name = ?"),
                        (name,))
            found = cur.fetchone()
            fresh = found is None
            if found and found[0] == "operator" and found[1] is None and role != "operator":
                self._keep_an_operator(cur, name, "made a viewer")
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
            self._keep_an_operator(cur, name, "removed")
            revoked = self._revoke_access(cur, name)
            cur.execute(self._sql("DELETE FROM console_users WHERE name = ?"), (name,))
            return revoked if cur.rowcount else None

    def disable_user(self, name: str) -> Revoked | None:
        """Disable a console user (None when there is none): its sessions end and its API
        tokens stop working, both at once; the tokens are kept, for ``enable_user``. What was
        taken: the sessions ended and the tokens held back."""
        with self._transaction() as cur:
            self._keep_an_operator(cur, name, "disabled")
            now = iso_utc(self._session_clock(cur))
            cur.execute(self._sql("UPDATE console_users SET disabled_at = COALESCE(disabled_at, "
                                  "?) WHERE name = ?"), (now, name))
            if not cur.rowcount:
                return None
            cur.execute(self._sql("DELETE FROM console_sessions WHERE name = ?"), (name,))
            sessions = cur.rowcount
            cur.execute(self._sql("SELECT COUNT(*) FROM console_tokens WHERE name = ?"), (name,))
            return Revoked(sessions, int(cur.fetchone()[0]))

    def enable_user(self, name: str) -> bool:
        """Let a disabled user log in again (its API tokens work again); False when there is
        no such user."""
        with self._transaction() as cur:
            cur.execute(self._sql("UPDATE console_users SET disabled_at = NULL WHERE name = ?"),
                        (name,))
            return bool(cur.rowcount)

    def _keep_an_operator(self, cur: Any, name: str, change: str) -> None:
        """Refuse (LastOperatorError) to take ``name`` out of the enabled operators when it is
        the last one. The operators' rows stay locked to the end of the transaction
        (PostgreSQL: FOR UPDATE; SQLite's BEGIN IMMEDIATE holds the whole store), so two such
        changes at once cannot both pass."""
        lock = " FOR UPDATE" if self.postgres else ""
        cur.execute("SELECT name FROM console_users WHERE role = 'operator' "
                    f"AND disabled_at IS NULL{lock}")
        if {row[0] for row in cur.fetchall()} == {name}:
            raise LastOperatorError(
                f"user {name!r} is the last enabled operator and cannot be {change}: add or "
                "enable another operator first")

    def change_password(self, name: str, password_hash: str, keep_session_sha256: str
                        ) -> Revoked:
        """Set a user's password from its own session: its other sessions end and its API
        tokens are revoked; the session it was changed from stays."""
        with self._transaction() as cur:
            cur.execute(self._sql("UPDATE console_users SET password_hash = ? WHERE name = ?"),
                        (password_hash, name))
            return self._revoke_access(cur, name, keep_session_sha256)

    def _revoke_access(self, cur: Any, name: str, keep_session_sha256: str = "") -> Revoked:
        """End every session of ``name`` (but the one kept) and revoke its API tokens, inside
        a transaction."""
        cur.execute(self._sql("DELETE FROM console_sessions WHERE name = ? "
                              "AND session_sha256 <> ?"), (name, keep_session_sha256))
        sessions = cur.rowcount
        cur.execute(self._sql("DELETE FROM console_tokens WHERE name = ?"), (name,))
        return Revoked(sessions, cur.rowcount)

    def users(self) -> list[UserRow]:
        """Every console user with its open sessions, API tokens and state, by name."""
        now, params = self._session_now()
        rows = self._fetch(
            "SELECT u.name, u.role, u.created_at, "
            "(SELECT COUNT(*) FROM console_sessions s WHERE s.name = u.name "
            f"AND s.expires_at > {now}), "
            "(SELECT COUNT(*) FROM console_tokens t WHERE t.name = u.name), u.disabled_at "
            "FROM console_users u ORDER BY u.name", params)
        return [UserRow(r[0], r[1], r[2], int(r[3]), int(r[4]), r[5]) for r in rows]

    def user(self, name: str) -> tuple[str, str] | None:
        """The password hash and role of a console user, disabled or not, or None."""
        rows = self._fetch(
            "SELECT password_hash, role FROM console_users WHERE name = ?", (name,)
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def enabled_user(self, name: str) -> tuple[str, str] | None:
        """The password hash and role of a console user who may log in, or None (no such
        user, or a disabled one)."""
        rows = self._fetch("SELECT password_hash, role FROM console_users WHERE name = ? "
                           "AND disabled_at IS NULL", (name,))
        return (rows[0][0], rows[0][1]) if rows else None

    def add_token(self, token_sha256: str, name: str, label: str, lifetime_s: float) -> str:
        """Keep the hash of a new API token of user ``name`` that expires ``lifetime_s`` from
        now on the store's clock; when it expires."""
        with self._transaction() as cur:
            now = self._session_clock(cur)
            self._forget_expired_tokens(cur, now)
            expires_at = iso_utc(now + timedelta(seconds=lifetime_s))
            cur.execute(
                self._sql("INSERT INTO console_tokens (token_sha256, name, label, created_at, "
                          "expires_at) VALUES (?, ?, ?, ?, ?)"),
                (token_sha256, name, label, iso_utc(now), expires_at),
            )
        return expires_at

    def forget_expired_tokens(self) -> None:
        """Forget the API tokens expired EXPIRED_TOKEN_KEPT_DAYS ago or more (a console
        start, then hourly)."""
        with self._transaction() as cur:
            self._forget_expired_tokens(cur, self._session_clock(cur))

    def _forget_expired_tokens(self, cur: Any, now: datetime) -> None:
        long_ago = iso_utc(now - timedelta(days=EXPIRED_TOKEN_KEPT_DAYS))
        cur.execute(self._sql("DELETE FROM console_tokens WHERE expires_at <= ?"), (long_ago,))

    def tokens(self, name: str | None = None) -> list[TokenRow]:
        """API tokens (of user ``name``, else all), oldest first; expiry judged on the store's
        clock."""
        now, params = self._session_now()
        where, more = ("WHERE t.name = ? ", [name]) if name else ("", [])
        rows = self._fetch(f"{self._token_select(now)} {where}"
                           "ORDER BY t.created_at, t.token_sha256", [*params, *more])
        return [_token_row(row) for row in rows]

    def token_page(self, name: str | None, limit: int, after: tuple[str, str] | None = None,
                   before: tuple[str, str] | None = None) -> list[TokenRow]:
        """Up to ``limit`` API tokens (of user ``name``, else all) oldest first: the first
        after the ``after`` key (created at, token id), or the last before the ``before``
        key, or the first of all; one keyset page of the tokens page, in that order."""
        now, params = self._session_now()
        rows = TOKEN_KEYS.page(lambda sql, more: self._fetch(sql, [*params, *more]),
                               self._token_select(now),
                               (["t.name = ?"], [name]) if name else ([], []), limit,
                               onward=after, back=before)
        return [_token_row(row) for row in rows]

    def count_tokens(self, name: str | None = None) -> int:
        """How many API tokens there are (of user ``name``, else all)."""
        where, params = (" WHERE name = ?", [name]) if name else ("", [])
        return int(self._fetch(f"SELECT COUNT(*) FROM console_tokens{where}", params)[0][0])

    @staticmethod
    def _token_select(now: str) -> str:
        """The SELECT of a token's row with its user (expiry judged against ``now``)."""
        return ("SELECT t.token_sha256, t.name, t.label, t.created_at, t.expires_at, "
                f"t.last_used_at, {now}, u.disabled_at FROM console_tokens t "
                "LEFT JOIN console_users u ON u.name = t.name")

    def revoke_token(self, token_id_text: str, owner: str | None = None) -> str | None:
        """Revoke the API token with this id (``owner``: only if it is that user's); its user,
        or None when there is no such token."""
        if not TOKEN_ID.match(token_id_text):
            raise ValueError(f"token id {token_id_text!r}: {TOKEN_ID_CHARS} hex digits expected")
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT token_sha256, name FROM console_tokens "
                                  "WHERE token_sha256 LIKE ?"), (token_id_text + "%",))
            found = [row for row in cur.fetchall() if owner is None or row[1] == owner]
            for token_sha256, _ in found:
                cur.execute(self._sql("DELETE FROM console_tokens WHERE token_sha256 = ?"),
                            (token_sha256,))
        return str(found[0][1]) if found else None

    def token_login(self, token_sha256: str) -> tuple[Login, str | None] | None:
        """Whose unexpired API token this is, and the store's time now when its last use is
        due to be written (``record_token_use``), else None; None for an unknown or expired
        token, or a disabled user's, alike."""
        now, params = self._session_now()
        rows = self._fetch(
            f"SELECT u.name, u.role, t.last_used_at, {now} FROM console_tokens t "
            "JOIN console_users u ON u.name = t.name WHERE t.token_sha256 = ? "
            f"AND (t.expires_at IS NULL OR t.expires_at > {now}) AND u.disabled_at IS NULL",
            [*params, token_sha256, *params])
        if not rows:
            return None
        name, role, last_used_at, now_text = rows[0]
        due = last_used_at is None or last_used_at <= _earlier(now_text, LAST_USE_EVERY_S)
        return Login(name, role), now_text if due else None

    def record_token_use(self, token_sha256: str, used_at: str) -> None:
        """Write an API token's last use (unless another request wrote one since); SQLite
        waits at most LAST_USE_LOCK_WAIT_MS for another program's write lock."""
        with self._transaction(LAST_USE_LOCK_WAIT_MS) as cur:
            cur.execute(self._sql(
                "UPDATE console_tokens SET last_used_at = ? WHERE token_sha256 = ? "
                "AND (last_used_at IS NULL OR last_used_at <= ?)"),
                (used_at, token_sha256, _earlier(used_at, LAST_USE_EVERY_S)))

    def add_session(self, session_sha256: str, name: str, csrf: str, lifetime_s: float,
                    *, end_others: bool = False, replaces: str | None = None) -> None:
        """Keep a new login session of ``lifetime_s`` (and forget expired ones), both timed on
        the store's clock. The user keeps at most MAX_SESSIONS_PER_USER: its oldest end
        (``end_others``: all the others), so logins cannot grow the table without end.
        ``replaces``: the session the logging-in browser held (its cookie's hash), whoever's
        it was, ended with it, as the new cookie takes its place in that browser."""
        keep_others = 0 if end_others else MAX_SESSIONS_PER_USER - 1
        with self._transaction() as cur:
            now = self._session_clock(cur)
            cur.execute(self._sql("DELETE FROM console_sessions WHERE expires_at < ?"),
                        (iso_utc(now),))
            if replaces is not None:
                cur.execute(self._sql("DELETE FROM console_sessions WHERE session_sha256 = ?"),
                            (replaces,))
            cur.execute(self._sql(
                "DELETE FROM console_sessions WHERE name = ? AND session_sha256 NOT IN "
                "(SELECT session_sha256 FROM console_sessions WHERE name = ? "
                "ORDER BY expires_at DESC, session_sha256 LIMIT ?)"), (name, name, keep_others))
            cur.execute(
                self._sql("INSERT INTO console_sessions (session_sha256, name, csrf, expires_at) "
                          "VALUES (?, ?, ?, ?)"),
                (session_sha256, name, csrf, iso_utc(now + timedelta(seconds=lifetime_s))),
            )

    def session_login(self, session_sha256: str) -> Login | None:
        """Whose unexpired session this is (with its CSRF token), or None (a disabled user's
        too); expiry is judged on the store's clock."""
        now, params = self._session_now()
        rows = self._fetch(
            "SELECT u.name, u.role, s.csrf FROM console_sessions s JOIN console_users u "
            f"ON u.name = s.name WHERE s.session_sha256 = ? AND s.expires_at > {now} "
            "AND u.disabled_at IS NULL",
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


def _earlier(moment_text: str, seconds: float) -> str:
    """The stored-time text ``seconds`` before ``moment_text`` (schema.iso_utc's format)."""
    return iso_utc(datetime.fromisoformat(moment_text) - timedelta(seconds=seconds))
