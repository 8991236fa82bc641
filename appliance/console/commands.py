"""``appliance console``: run the web console; its users (``console user
add|list|remove|disable|enable``) and API tokens (``console token create|list|revoke``).

The server binds ``console.bind:console.port`` (loopback by default). Passwords come from a
file (``--password-file``, first line), are asked for twice on the terminal, or are one line
of standard input without one, never from the command line, where other users could read
them. Setting a user's password again, or removing the user, ends its sessions and revokes its
API tokens at once, and disabling it ends its sessions and holds its tokens back until it is
enabled: a running console asks the store on every request, so nothing of the old access lasts.
"""

# ruff: noqa: PLC0415  (handlers import FastAPI, argon2 and the store late: `--help` starts fast)

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from appliance.backoffice.commands import (
    add_store_options,
    load_or_report,
    open_for,
    with_store,
)
from appliance.console import TOKEN_DAYS_DEFAULT, TOKEN_DAYS_MAX
from appliance.logsafe import escape_controls
from appliance.numbertext import decimal_number
from appliance.passwordfile import password_from_file

T = TypeVar("T")
Handler = Callable[[argparse.Namespace], int]


def _serve(args: argparse.Namespace) -> int:
    """The console until Ctrl-C, SIGTERM or SIGHUP (its terminal closed), which stop it in
    order, exit 0, as they stop ``backoffice`` and ``pathology serve`` (also one that came while
    it started)."""
    from appliance.backoffice.journal_start import refusal_before_serving
    from appliance.backoffice.store import StoreError
    from appliance.backoffice.storeurl import store_url_for
    from appliance.console.server import serve
    from appliance.interrupts import stop_on_signals

    stop, received = threading.Event(), list[int]()
    with stop_on_signals(stop, logging.getLogger("appliance.console"), received):
        if stop.is_set():  # a stop signal while the command started
            return 0
        config = load_or_report(args)
        if config is None:
            return 2
        url = args.store or store_url_for(config.store.url, config.state_dir)
        try:
            # before it serves: no result the erasure journal says was erased
            if (refused := refusal_before_serving(url, config)) is not None:
                print(f"console: cannot start: {refused}", file=sys.stderr)
                return 2
            return serve(config.console, url, Path(config.pathology.results_dir),
                         _store_option(args), stop=stop, received=received,
                         topic_prefix=config.mqtt.topic_prefix)
        except StoreError as exc:
            print(f"console: store error: {exc}", file=sys.stderr)
            return 2


def _store_option(args: argparse.Namespace) -> str:
    """`` --store URL`` (its password masked) or `` --config F`` as given, for the commands
    the console suggests: without it they would act on the default store."""
    from appliance.backoffice.storeurl import masked_url

    if args.store:
        return f" --store {shlex.quote(masked_url(args.store))}"
    return f" --config {shlex.quote(args.config)}" if args.config else ""


def read_password(path: str | None) -> str:
    """The password from the first line of a file, asked twice on the terminal, or one line
    of standard input without one (read no further than auth.MAX_PASSWORD_CHARS:
    appliance/console/passwordprompt.py)."""
    from appliance.console.auth import MAX_PASSWORD_CHARS
    from appliance.console.passwordprompt import ask_new_password

    if path is not None:
        return password_from_file(Path(path), "--password-file")
    try:
        return ask_new_password(MAX_PASSWORD_CHARS)
    except EOFError:  # no terminal and nothing on standard input (a script, a pipe closed)
        raise ValueError("no password given: standard input ended; type it on a terminal, "
                         "or name a file whose first line is the password with "
                         "--password-file") from None


class _RefusedError(Exception):
    """A user or token action that could not be done; what to do is already on stderr."""


class _StoreFailedError(Exception):
    """The store failed during a user or token action (its server went away, a damaged file);
    said on stderr already."""


def _on_store(args: argparse.Namespace, what: str, action: Callable[[Any], T], *,
              writes: bool = False, create: bool = False) -> T:
    """``action`` on the store the arguments name; _RefusedError after saying why not (no
    store, or an AccessError: an unknown user, a bad password, ...), _StoreFailedError after
    naming the database that failed on the way (one line, as the back-office commands say it)."""
    from appliance.backoffice.store_schema import ACCOUNT_RULES
    from appliance.backoffice.storeerrors import STORE_ERRORS
    from appliance.backoffice.storeurl import store_name
    from appliance.console.auth import AccessError

    store = open_for(args, writes=writes, create=create, newer_keeps=ACCOUNT_RULES)
    if store is None:
        raise _RefusedError
    try:
        return action(store)
    except AccessError as exc:
        print(f"console {what}: {escape_controls(str(exc))}", file=sys.stderr)
        raise _RefusedError from exc
    except STORE_ERRORS as exc:
        print(f"console {what}: the {store_name(store.url)} failed: "
              f"{' '.join(str(exc).split())}", file=sys.stderr)
        raise _StoreFailedError from exc
    finally:
        store.close()


def _user_add(args: argparse.Namespace) -> int:
    from appliance.console.auth import AccessError, add_user, check_user_name

    try:
        check_user_name(args.name)  # before the password is typed twice for nothing
        password = read_password(args.password_file)
    except (AccessError, OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"console user add: {exc}", file=sys.stderr)
        return 2
    revoked, disabled = _on_store(args, "user add", lambda store: (add_user(
        store, args.name, args.role, password), store.enabled_user(args.name) is None),
        create=True)  # users come before any result
    if revoked is None:
        print(f"added console user {args.name} ({args.role})")
    else:
        print(f"updated console user {args.name} ({args.role}): {_revoked_text(revoked)}"
              + (f"; it is still disabled (console user enable {args.name} lets it log in)"
                 if disabled else ""))
    return 0


def _revoked_text(revoked: Any) -> str:
    """What ending a user's access took away, in words."""
    return (f"ended {revoked.sessions} open session(s), revoked {revoked.tokens} "
            "API token(s)")


def _user_list(args: argparse.Namespace) -> int:
    from appliance.backoffice.schema import second_text

    users = _on_store(args, "user list", lambda store: store.users())
    if not users:
        print("no console users yet (console user add NAME)")
        return 0
    header = ("USER", "ROLE", "CREATED", "SESSIONS", "API TOKENS", "STATE")
    cells = [(escape_controls(u.name), u.role, second_text(u.created_at), str(u.sessions),
              str(u.tokens), f"disabled {second_text(u.disabled_at)}" if u.disabled_at
              else "enabled") for u in users]
    _print_table([header, *cells])
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    from appliance.console.auth import remove_user

    revoked = _on_store(args, "user remove", lambda store: remove_user(store, args.name),
                        writes=True)
    print(f"removed console user {args.name}: {_revoked_text(revoked)}")
    return 0


def _user_disable(args: argparse.Namespace) -> int:
    from appliance.console.auth import disable_user

    held = _on_store(args, "user disable", lambda store: disable_user(store, args.name),
                     writes=True)
    print(f"disabled console user {args.name}: ended {held.sessions} open session(s); its "
          f"{held.tokens} API token(s) stop working until it is enabled")
    return 0


def _user_enable(args: argparse.Namespace) -> int:
    from appliance.console.auth import enable_user

    _on_store(args, "user enable", lambda store: enable_user(store, args.name), writes=True)
    print(f"enabled console user {args.name}: it can log in, and its API tokens work again")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from appliance.backoffice.schema import second_text
    from appliance.console.auth import create_token

    made = _on_store(args, "token create", lambda store: create_token(  # the user must exist:
        store, args.name, args.days, args.label or ""), writes=True)   # no new store
    print(made.token)  # alone on stdout, for scripts; the hint goes to the person at the terminal
    print("send it as the header 'Authorization: Bearer TOKEN' (e.g. curl -H ...) to "
          "/api/v1/...; only its hash is kept, so copy it now. It expires at "
          f"{second_text(made.expires_at)}. Its id is {made.token_id} (console token list, "
          "console token revoke ID)", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from appliance.backoffice.schema import second_text
    from appliance.console.auth import token_expiry_text, token_owner_text

    tokens, known = _on_store(args, "token list", lambda store: (
        store.tokens(args.user), args.user is None or store.user(args.user) is not None))
    if not known:  # a mistyped name is no user without tokens
        print(f"console token list: no console user {args.user!r} "
              "(console user list shows them)", file=sys.stderr)
        return 2
    if not tokens:
        print("no API tokens" + (f" of {escape_controls(args.user)}" if args.user else ""))
        return 0
    cells = [(t.token_id, escape_controls(token_owner_text(t)), escape_controls(t.label) or "-",
              second_text(t.created_at), token_expiry_text(t, second_text),
              second_text(t.last_used_at) if t.last_used_at else "never") for t in tokens]
    _print_table([("ID", "USER", "LABEL", "CREATED", "EXPIRES", "LAST USED"), *cells])
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from appliance.console.auth import revoke_token

    owner = _on_store(args, "token revoke", lambda store: revoke_token(store, args.id),
                      writes=True)
    print(f"revoked API token {args.id} of {owner}")
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    from appliance.texttable import aligned

    print("\n".join(aligned(rows)))


def _reference(args: argparse.Namespace) -> int:
    from appliance.backoffice.agebands import REPORT_FEATURES
    from appliance.console.cohortview import feature_views, reference_table
    from appliance.outfile import replacing_refusal

    if refusal := replacing_refusal([Path(args.out)], args.force):  # before the store is read
        print(f"console reference: {refusal}", file=sys.stderr)
        return 2

    def write(store: Any) -> int:
        views = feature_views(store.band_sums(REPORT_FEATURES))
        table = reference_table(views)
        with_results = {band.band: None for view in views for band in view.bands if band.n}
        return _write_reference(args.out, table, [b for b in with_results if b in table],
                                [b for b in with_results if b not in table])

    return with_store(args, "console reference", write)


def _write_reference(out: str, table: dict[str, Any], bands: list[str],
                     left_out: list[str]) -> int:
    """Replace ``out`` with the reference ranges, whole or not at all (a full disk keeps the
    old file): 0, or 1 after saying why not (no band to write, the file cannot be written).
    ``bands``: those written, youngest first; ``left_out``: those whose results are too few to
    give a range."""
    import json
    from datetime import UTC, datetime

    from appliance.outfile import replaced_when_complete

    if not table:
        print("console reference: no age band has two results yet", file=sys.stderr)
        return 1
    document = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "what": "per age band: n, mean and SD of each feature (appliance cohort)",
                "bands": table}
    try:
        with replaced_when_complete(Path(out)) as temp:
            temp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"console reference: {exc}", file=sys.stderr)
        return 1
    print(f"wrote reference ranges of {len(bands)} age band(s) ({', '.join(bands)}) to {out}")
    if left_out:
        print(f"left out, with fewer than two results: {', '.join(left_out)} (a kiosk compares "
              "a customer of such a band with the bands written, pooled)")
    return 0


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``console``, its ``user`` and ``token`` actions and ``console reference``."""
    console = root.add_parser("console", help="the back-office web console and HTTP API")
    add_store_options(console)
    console.set_defaults(handler=_serve, own_stop_signals=True)  # held until _serve takes them
    sub = console.add_subparsers(dest="console_command", metavar="COMMAND")
    _register_users(sub)
    _register_tokens(sub)
    _register_reference(sub)


def _register_users(sub: Any) -> None:
    """``console user add|list|remove|disable|enable``."""
    user = sub.add_parser("user", help="console users").add_subparsers(
        dest="user_command", required=True, metavar="ACTION")
    add = _action(user, "add", _user_add, "add a user, or set its password and role")
    add.add_argument("name", help="user name: 1 to 64 ASCII letters, digits and _ . @ -")
    add.add_argument("--role", choices=("viewer", "operator"), default="viewer",
                     help="viewer reads; operator also sees dead letters (viewer)")
    add.add_argument("--password-file", help="read the password from this file's first line "
                     "(default: ask on the terminal)")
    _action(user, "list", _user_list, "every user: role, open sessions, API tokens, state")
    remove = _action(user, "remove", _user_remove,
                     "remove a user: its sessions end and its API tokens are revoked at once")
    remove.add_argument("name", help="user name")
    disable = _action(user, "disable", _user_disable, "stop a user at once (it cannot log "
                      "in, its sessions end, its API tokens stop working) and keep it")
    disable.add_argument("name", help="user name")
    enable = _action(user, "enable", _user_enable,
                     "let a disabled user log in again (its API tokens work again)")
    enable.add_argument("name", help="user name")


def _register_tokens(sub: Any) -> None:
    """``console token create|list|revoke``."""
    token = sub.add_parser("token", help="API bearer tokens").add_subparsers(
        dest="token_command", required=True, metavar="ACTION")
    create = _action(token, "create", _token_create, "print a new API token for a user")
    create.add_argument("name", help="the user the token acts as")
    create.add_argument("--days", type=_token_days, default=TOKEN_DAYS_DEFAULT,
                        help=f"how long it works, in days (default {TOKEN_DAYS_DEFAULT}, at "
                        f"most {TOKEN_DAYS_MAX})")
    create.add_argument("--label", help="what it is for, shown in the lists "
                        "(up to 64 ASCII letters, digits, spaces and _ . @ : / -)")
    listed = _action(token, "list", _token_list,
                     "API tokens: id, user, label, created, expires, last used (expired ones "
                     "for 30 days)")
    listed.add_argument("--user", help="only this user's tokens")
    revoke = _action(token, "revoke", _token_revoke, "revoke an API token at once")
    revoke.add_argument("id", help="the token's id (console token list)")


def _register_reference(sub: Any) -> None:
    """``console reference``: the age-band reference ranges file."""
    reference = sub.add_parser("reference", help="write the age-band reference ranges a kiosk "
                               "screen compares customers with (config screen.reference_file)")
    reference.add_argument("--out", required=True, help="JSON file to write")
    reference.add_argument("--force", action="store_true", help="replace an existing --out file")
    add_store_options(reference, nested=True)
    reference.set_defaults(handler=_reference, own_stop_signals=False)


def _token_days(text: str) -> float:
    """``--days``: a number of days, more than 0 and at most TOKEN_DAYS_MAX."""
    try:
        days = decimal_number(text)
    except ValueError:
        days = math.nan
    if not 0 < days <= TOKEN_DAYS_MAX:  # NaN included
        raise argparse.ArgumentTypeError(
            f"{escape_controls(text)!r}: a number of days in ASCII digits, more than 0 and at most "
            f"{TOKEN_DAYS_MAX}")
    return days


def _action(group: Any, name: str, handler: Handler, summary: str) -> Any:
    """A ``console user`` or ``console token`` action with the store options; exit 2 when
    it is refused, 1 when the store failed on the way."""
    action = group.add_parser(name, help=summary)
    add_store_options(action, nested=True)

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except _RefusedError:
            return 2
        except _StoreFailedError:
            return 1

    action.set_defaults(handler=run, own_stop_signals=False)  # SIGTERM ends it as Ctrl-C
    return action
