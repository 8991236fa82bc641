"""``appliance console``: run the web console; ``console user add`` and ``console token create``.

The server binds ``console.bind:console.port`` (loopback by default). Passwords come from a
file (``--password-file``, first line) or are asked for twice on the terminal, never from the
command line, where other users could read them.
"""

# ruff: noqa: PLC0415  (handlers import FastAPI, argon2 and the store late: `--help` starts fast)

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from appliance.backoffice.commands import add_store_options, load_or_report, open_for
from appliance.logsafe import escape_controls

MAX_PASSWORD_FILE_BYTES = 4096


def _serve(args: argparse.Namespace) -> int:
    from appliance.backoffice.store import StoreError, store_url_for
    from appliance.console.server import serve

    config = load_or_report(args.config)
    if config is None:
        return 2
    try:
        return serve(config.console, args.store or store_url_for(config.store.url,
                                                                 config.state_dir),
                     Path(config.pathology.results_dir))
    except StoreError as exc:
        print(f"store error: {exc}", file=sys.stderr)
        return 2


def read_password(path: str | None) -> str:
    """The password from the first line of a file, or asked twice on the terminal."""
    if path is not None:
        return _password_from_file(Path(path))
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _password_from_file(file: Path) -> str:
    """The first line of ``--password-file``; ValueError naming the option, the file, what is
    wrong and what to do (a folder, a missing or unreadable file, one not UTF-8 text)."""
    where = f"--password-file {escape_controls(str(file))}"
    if file.is_dir():
        raise ValueError(f"{where}: a folder; name the file whose first line is the password")
    try:
        if file.stat().st_size > MAX_PASSWORD_FILE_BYTES:
            raise ValueError(f"{where}: larger than {MAX_PASSWORD_FILE_BYTES} bytes; "
                             "not a password file")
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise ValueError(f"{where}: file not found; check the path") from exc
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it ({exc.strerror or exc}); check the file "
                         "and its permissions") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text (byte {exc.start}); save the password as "
                         "UTF-8 text") from exc
    return lines[0] if lines else ""


def _user_add(args: argparse.Namespace) -> int:
    from appliance.console.auth import AccessError, add_user

    try:
        password = read_password(args.password_file)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"console user add: {exc}", file=sys.stderr)
        return 2
    store = open_for(args, create=True)  # users come before the first result
    if store is None:
        return 2
    try:
        fresh = add_user(store, args.name, args.role, password)
    except AccessError as exc:
        print(f"console user add: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"{'added' if fresh else 'updated'} console user {args.name} ({args.role})")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from appliance.console.auth import AccessError, create_token

    store = open_for(args, writes=True)  # the user must exist: no new store
    if store is None:
        return 2
    try:
        token = create_token(store, args.name)
    except AccessError as exc:
        print(f"console token create: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(token)  # alone on stdout, for scripts; the hint goes to the person at the terminal
    print("send it as the header 'Authorization: Bearer TOKEN' (e.g. curl -H ...) to "
          "/api/v1/...; only its hash is kept, so copy it now", file=sys.stderr)
    return 0


def _reference(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from appliance.backoffice.cohort import REPORT_FEATURES
    from appliance.console.cohortview import feature_views, reference_table

    store = open_for(args)
    if store is None:
        return 2
    try:
        table = reference_table(feature_views(store.band_sums(REPORT_FEATURES)))
    finally:
        store.close()
    if not table:
        print("console reference: no age band has two results yet", file=sys.stderr)
        return 1
    document = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "what": "per age band: n, mean and SD of each feature (appliance cohort)",
                "bands": table}
    from appliance.outfile import replaced_when_complete

    try:
        with replaced_when_complete(Path(args.out)) as temp:  # a full disk keeps the old file
            temp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"console reference: {exc}", file=sys.stderr)
        return 1
    print(f"wrote reference ranges of {len(table) - 1} age band(s) to {args.out}")
    return 0


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``console``, ``console user add`` and ``console token create``."""
    console = root.add_parser("console", help="the back-office web console and HTTP API")
    add_store_options(console)
    console.set_defaults(handler=_serve)
    sub = console.add_subparsers(dest="console_command", metavar="COMMAND")
    user = sub.add_parser("user", help="console users").add_subparsers(
        dest="user_command", required=True, metavar="ACTION")
    add = user.add_parser("add", help="add a user, or set its password and role")
    add.add_argument("name", help="user name")
    add.add_argument("--role", choices=("viewer", "operator"), default="viewer",
                     help="viewer reads; operator also sees dead letters (viewer)")
    add.add_argument("--password-file", help="read the password from this file's first line "
                     "(default: ask on the terminal)")
    add_store_options(add, nested=True)
    add.set_defaults(handler=_user_add)
    token = sub.add_parser("token", help="API bearer tokens").add_subparsers(
        dest="token_command", required=True, metavar="ACTION")
    create = token.add_parser("create", help="print a new API token for a user")
    create.add_argument("name", help="the user the token acts as")
    add_store_options(create, nested=True)
    create.set_defaults(handler=_token_create)
    reference = sub.add_parser("reference", help="write the age-band reference ranges a kiosk "
                               "screen compares customers with (config screen.reference_file)")
    reference.add_argument("--out", required=True, help="JSON file to write")
    add_store_options(reference, nested=True)
    reference.set_defaults(handler=_reference)
