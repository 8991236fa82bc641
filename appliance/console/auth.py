"""Console access: argon2 password hashes, API tokens, login sessions and CSRF tokens.

Only hashes are kept: argon2id for passwords (argon2-cffi's defaults, RFC 9106), SHA-256 for
API tokens and session ids (random 256-bit secrets, so a fast hash is enough). A page form
carries its session's CSRF token and a forged or missing one is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.backoffice import storeerrors
from appliance.backoffice.accounts import LastOperatorError, Login, Revoked, TokenRow, token_id
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Store
from appliance.console import TOKEN_DAYS_DEFAULT, TOKEN_DAYS_MAX
from appliance.logsafe import shorten

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator")
# \Z, not $: $ also matches before a new line that ends the text
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
TOKEN_LABEL = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9 _.@:/-]{0,63})?\Z")  # what it is for
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 256
_HASHER = PasswordHasher()
# each check fills _HASHER.memory_cost (64 MiB by argon2-cffi's defaults) and anyone can start
# one: without a bound, the server's 40 worker threads checking at once took 2.6 GiB
PASSWORD_CHECKS_AT_ONCE = 4
# verifying against a real hash keeps an unknown user as slow as a wrong password: an argon2id
# hash of "not a password of anyone" made with _HASHER's parameters (a test holds them equal),
# written out so that a process loading this module (every console command) does not spend a
# slow hash and 64 MiB making it
_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$9DuaKL52+JdqLrgH+0lyVw"
               "$Z6k0KazdxM0yMPp3+xx5G1YbzmixmuvmmvecXwf/3GU")


@dataclass(frozen=True)
class NewToken:
    """An API token just made: the token itself (shown once), its id and when it expires."""

    token: str
    token_id: str
    expires_at: str


class AccessError(ValueError):
    """A user name, role or password that cannot be used; the text says why."""


@dataclass(frozen=True)
class NewSession:
    """A login session just opened: the cookie value and its CSRF token."""

    cookie: str
    csrf: str
    login: Login


def digest(secret: str) -> str:
    """SHA-256 hex of a token or session id (what the store keeps)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_user_name(name: str) -> None:
    """Refuse a user name the store would not take (before a password is asked for it)."""
    if not USER_NAME.match(name):
        raise AccessError(f"user name {name!r}: use 1 to 64 of the ASCII letters A-Z a-z, "
                          "digits 0-9 and _ . @ -, starting with a letter or digit")


def check_user(name: str, role: str, password: str) -> None:
    """Refuse a bad user name, unknown role or too short/long password."""
    check_user_name(name)
    if role not in ROLES:
        raise AccessError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccessError(
            f"password: {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters, "
            f"got {len(password)}"
        )


def add_user(store: Store, name: str, role: str, password: str) -> Revoked | None:
    """Add a console user (None), or set its password and role: that ends its sessions and
    revokes its API tokens, so whoever held the old password keeps nothing (what it took)."""
    check_user(name, role, password)
    try:
        return store.put_user(name, password_hash(password), role, iso_utc(datetime.now(UTC)))
    except LastOperatorError as exc:
        raise AccessError(str(exc)) from exc


def password_hash(password: str) -> str:
    """The argon2id hash the store keeps of a password (slow and 64 MiB by design)."""
    return _HASHER.hash(password)


def create_token(store: Store, name: str, days: float = TOKEN_DAYS_DEFAULT,
                 label: str = "") -> NewToken:
    """A new API bearer token for an existing user, valid ``days`` (at most TOKEN_DAYS_MAX);
    only its hash is kept."""
    if not 0 < days <= TOKEN_DAYS_MAX:
        raise AccessError(f"token lifetime {days:g} days: more than 0 and at most "
                          f"{TOKEN_DAYS_MAX} days")
    if not TOKEN_LABEL.match(label):
        raise AccessError(f"token label {label!r}: up to 64 of the ASCII letters A-Z a-z, "
                          "digits 0-9, spaces and _ . @ : / -, starting with a letter or digit")
    if store.user(name) is None:
        raise AccessError(f"no console user {name!r}: add it first (console user add)")
    if store.enabled_user(name) is None:
        raise AccessError(f"console user {name!r} is disabled: enable it first (console user "
                          "enable)")
    token = secrets.token_urlsafe(32)
    expires_at = store.add_token(digest(token), name, label, days * 86400.0)
    return NewToken(token, token_id_of(token), expires_at)


def remove_user(store: Store, name: str) -> Revoked:
    """Remove a console user, ending its sessions and revoking its API tokens at once."""
    return _user_stopped(name, store.remove_user)


def disable_user(store: Store, name: str) -> Revoked:
    """Disable a console user: it cannot log in, its sessions end and its API tokens stop
    working at once (kept for ``enable_user``); the sessions ended and tokens held back."""
    return _user_stopped(name, store.disable_user)


def _user_stopped(name: str, stop: Callable[[str], Revoked | None]) -> Revoked:
    """``stop`` (the store's remove or disable) of the user ``name``, its refusals as
    AccessError: the last enabled operator, or no such user."""
    try:
        stopped = stop(name)
    except LastOperatorError as exc:
        raise AccessError(str(exc)) from exc
    if stopped is None:
        raise AccessError(f"no console user {name!r} (console user list shows them)")
    return stopped


def enable_user(store: Store, name: str) -> None:
    """Let a disabled console user log in again; its API tokens work again."""
    if not store.enable_user(name):
        raise AccessError(f"no console user {name!r} (console user list shows them)")


def revoke_token(store: Store, token_id_text: str) -> str:
    """Revoke one API token by its id (console token list); whose it was."""
    try:
        owner = store.revoke_token(token_id_text)
    except ValueError as exc:
        raise AccessError(f"{exc} (console token list shows them)") from exc
    if owner is None:
        raise AccessError(f"no API token {token_id_text} (console token list shows them)")
    return owner


def token_id_of(token: str) -> str:
    """The id ``console token list`` shows for this token."""
    return token_id(digest(token))


def token_owner_text(token: TokenRow) -> str:
    """A listed token's user, ``NAME (disabled)`` while the user is disabled (the token is
    refused until it is enabled)."""
    return f"{token.name} (disabled)" if token.user_disabled else token.name


def token_expiry_text(token: TokenRow, when: Callable[[str], str]) -> str:
    """A listed token's expiry in words: its time as ``when`` writes it (the tokens page's
    tables, the command's lines), ``expired TIME``, or ``no expiry`` (a token made before
    tokens expired)."""
    if token.expires_at is None:
        return "no expiry"
    shown = when(token.expires_at)
    return f"expired {shown}" if token.expired else shown


def verify_password(store: Store, name: str, password: str) -> Login | None:
    """The user's login when the password is right, else None (same cost either way)."""
    return check_password(known_user(store, name), name, password)


def known_user(store: Store, name: str) -> tuple[str, str] | None:
    """The stored password hash and role of ``name`` (None: no such user, or a disabled one,
    whose login is then refused as a wrong password is, after the same slow hash)."""
    return store.enabled_user(name) if USER_NAME.match(name) else None


def check_password(found: tuple[str, str] | None, name: str, password: str) -> Login | None:
    """``verify_password`` on a user already looked up: the slow hash needs no store (anyone
    can start one, so it must not hold a connection the console's pages need)."""
    stored_hash, role = found if found else (_DUMMY_HASH, "")
    try:
        _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return Login(name, role) if found else None


def open_session(store: Store, login: Login, hours: float, *,
                 end_others: bool = False, replaced_cookie: str | None = None) -> NewSession:
    """Start a login session (``end_others``: and end the user's other sessions; and the
    session of ``replaced_cookie``, the one the logging-in browser held, which the new
    cookie replaces there: left open, it stayed valid for whoever had copied it, unseen
    in that browser); the cookie value is returned once and kept only as a hash."""
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.add_session(digest(cookie), login.name, csrf, hours * 3600,  # on the store's clock
                      end_others=end_others,
                      replaces=digest(replaced_cookie) if replaced_cookie else None)
    return NewSession(cookie, csrf, Login(login.name, login.role, csrf))


def session_login(store: Store, cookie: str | None) -> Login | None:
    """Who holds this session cookie, or None (unknown, expired or malformed)."""
    if not cookie or len(cookie) > 128:
        return None
    return store.session_login(digest(cookie))


def bearer_login(store: Store, authorization: str | None) -> Login | None:
    """Whose ``Authorization: Bearer TOKEN`` this is, or None (unknown, expired or malformed
    alike). Its last use is written when due; a store that cannot write it (a full disk)
    is logged and the token still works."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token or len(token) > 128:
        return None
    token_sha256 = digest(token.strip())
    found = store.token_login(token_sha256)
    if found is None:
        return None
    login, use_due_at = found
    if use_due_at is not None:
        try:
            store.record_token_use(token_sha256, use_due_at)
        except storeerrors.DATABASE_ERRORS as exc:
            _last_uses.failed(f"API token {token_id(token_sha256)} of {shorten(login.name, 64)}",
                              exc)
        else:
            _last_uses.written()
    return login


class _LastUseWrites:
    """Whether the last uses of API tokens can be written: a store that cannot (a full disk)
    is said once, not on every API request, until one is written again."""

    def __init__(self) -> None:
        self._failing = False
        self._lock = threading.Lock()  # requests are answered on several threads

    def failed(self, whose: str, error: BaseException) -> None:
        """A last use was not written."""
        with self._lock:
            if self._failing:
                return
            self._failing = True
        log.warning("%s: its last use was not recorded: %s; tokens keep working, and this is "
                    "said again only after a last use has been written", whose, error)

    def written(self) -> None:
        """A last use was written."""
        with self._lock:
            if not self._failing:
                return
            self._failing = False
        log.info("API tokens' last uses are recorded again")


_last_uses = _LastUseWrites()


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token (or a session's mark) with the one a form or
    link sent, as bytes: hmac.compare_digest raises TypeError for a str holding any non-ASCII
    character, so a form sent with ``csrf=é`` was a 500 (and a traceback in the log) where a
    forged token is a 403."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"),
                               given.encode("utf-8", "surrogatepass"))


def session_mark(csrf: str, said: str) -> str:
    """A session's mark of what one of its forms did (a token revoked, a password changed),
    keyed with its CSRF token, which only its own pages hold: the page the form redirects to
    says ``said`` only with this mark (``marked``), so a link made elsewhere cannot have it
    say so."""
    return hmac.new(csrf.encode(), said.encode(), "sha256").hexdigest()[:32]


def marked(csrf: str, said: str, mark: str | None) -> bool:
    """Whether ``mark`` is the session's mark of ``said`` (session_mark)."""
    return same_token(session_mark(csrf, said), mark)
