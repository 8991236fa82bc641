"""``appliance models repo|release|yank|deploy|halt|status|rollback``: the fleet's model updates.

Repository commands work on the folder alone; deploy, halt, status and rollback also talk to the
broker and the back-office store: from ``--config``, else ./config.yaml when present, else
built-in defaults, always with the APPLIANCE__ overrides (``--store`` names the store alone).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from appliance.backoffice.commands import add_store_options
from appliance.backoffice.report_history import HISTORY_ROWS, MAX_HISTORY_ROWS
from appliance.diskspace import full_disk_text
from appliance.kioskname import kiosk_list, kiosk_of, site_id
from appliance.logsafe import escape_controls
from appliance.passwordfile import ROLLOUT_LOGIN, add_login_password_option
from appliance.synthetic.arguments import finite_number, given, named_path, whole_number
from appliance.updates.defaults import DEFAULT_EXPIRY_S, MAX_CONNECTIONS, ROLES

MAX_DEVICES = 1_000_000
MAX_WAVE_WAIT_S = 7 * 86400

EXIT_ERROR = 2
EXIT_OFFLINE_KEYS_NEEDED = 3  # refresh: signed, but root or targets is past half its validity


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add the model-update commands to the ``models`` group."""
    models = groups["models"]
    repo = models.add_parser("repo", help="the TUF model repository: init, refresh, serve")
    sub = repo.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    init = sub.add_parser("init", help="create a repository with Ed25519 keys for every role")
    init.add_argument("dir", type=named_path, help="repository folder (created)")
    init.add_argument("--keys", action="append", default=[], metavar="ROLE=N",
                      help=f"keys for a role ({', '.join(ROLES)}); default 1 each")
    init.add_argument("--threshold", action="append", default=[], metavar="ROLE=N",
                      help="signatures a role needs; default 1 each")
    init.add_argument("--expiry-s", action="append", default=[], metavar="ROLE=S",
                      help="seconds a role's metadata stays valid (default: " + ", ".join(
                          _days(DEFAULT_EXPIRY_S[role], role) for role in ROLES)
                      + ")")
    init.set_defaults(handler=_repo_init)
    refresh = sub.add_parser("refresh", help="re-sign the timestamp (run it from a timer)")
    refresh.add_argument("dir", type=named_path, help="repository folder")
    refresh.set_defaults(handler=_repo_refresh)
    serve = sub.add_parser("serve", help="serve the repository's public/ folder over HTTP")
    serve.add_argument("dir", type=named_path, help="repository folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=whole_number(0, 65535), default=8470,
                       help="TCP port to listen on; 0: any free one")
    serve.add_argument("--max-connections", type=whole_number(1, 1000),
                       default=MAX_CONNECTIONS,
                       help="connections served at once; one more is answered 503 at once")
    serve.set_defaults(handler=_repo_serve, own_stop_signals=True)  # held until it serves
    _register_release(models)
    _register_fleet(models)


def _register_release(models: Any) -> None:
    release = models.add_parser("release", help="sign a model into the repository")
    release.add_argument("model", type=named_path, help="the ONNX model file")
    release.add_argument("--repo", type=named_path, required=True, help="repository folder")
    release.add_argument("--version", required=True, help="semantic version (the model's own)")
    release.add_argument("--vectors", type=named_path, default=None,
                         help="labelled feature table (CSV or Parquet) whose test rows become the "
                              "self-test; default: the rows the shipped grader was tested on")
    release.add_argument("--device-types", default="skin-kiosk", help="comma-separated")
    release.add_argument("--feature-schema", default=None, help="default: this version's")
    release.set_defaults(handler=_release)
    yank = models.add_parser("yank", help="withdraw a release: no kiosk installs it again, "
                             "those running it go back")
    yank.add_argument("name", help="model name")
    yank.add_argument("--version", required=True, help="the released version to withdraw")
    yank.add_argument("--repo", type=named_path, required=True, help="repository folder")
    yank.add_argument("--reason", default="", help="why, recorded (signed) with who and when")
    yank.set_defaults(handler=_yank)


def _register_fleet(models: Any) -> None:
    for name, text in (("deploy", "roll a release out: canaries, waves, automatic halt"),
                       ("rollback", "signed decision: go back (default: devices assigned it)")):
        _register_rollout(models.add_parser(name, help=text), name)
    _register_halt(models.add_parser("halt", help="halt the running rollout of a model now"))
    _register_status(models.add_parser("status", help="per device: running, targeted, state"))


def _register_rollout(command: Any, name: str) -> None:
    """The arguments of ``models deploy`` and ``models rollback`` (``name``)."""
    command.add_argument("name", help="model name")
    if name == "deploy":
        command.add_argument("version", help="released version")
        command.add_argument("--canary", type=whole_number(0, MAX_DEVICES), default=1,
                             help="canary devices first (1); more than the rollout's devices "
                             "is refused")
        command.add_argument("--canary-results", type=whole_number(0, 10_000), default=0,
                             help="before any wave, wait for this many results of each canary "
                             "in the store classified by the release, captured after its "
                             "installed report, and halt on one classified otherwise (0: its "
                             "report alone; needs the back-office ingest running)")
    else:
        command.add_argument("--to", dest="version", required=True, help="released version")
    command.add_argument("--repo", type=named_path, required=True, help="repository folder")
    target = command.add_mutually_exclusive_group(required=name == "deploy")
    target.add_argument("--devices", type=_devices,
                        help="comma-separated device ids (SITE/ID where two sites have a "
                        "device of that id)")
    target.add_argument("--site", type=_site,
                        help="every known device of a site")
    target.add_argument("--all", action="store_true", help="every known device")
    command.add_argument("--wave", type=whole_number(1, MAX_DEVICES), default=10,
                         help="devices per wave (10)")
    command.add_argument("--timeout-s", type=finite_number(0, MAX_WAVE_WAIT_S, "seconds",
                                                           above_low=True), default=300.0,
                         help="wait per wave for installed and healthy reports, at most "
                         f"{MAX_WAVE_WAIT_S} s (300)")
    command.add_argument("--max-failures", type=whole_number(0, MAX_DEVICES), default=0,
                         help="halt once more devices than this failed (0)")
    add_store_options(command)
    add_login_password_option(command, ROLLOUT_LOGIN)
    command.set_defaults(handler=_deploy, decision=name if name == "rollback" else "deploy")


def _devices(text: str) -> str:
    """argparse type of --devices: given, and each kiosk of the list a DEVICE or SITE/DEVICE
    (appliance/kioskname.py), refused before the broker or a store is reached."""
    return kiosk_list(given("the devices as comma-separated ids")(text))


def _site(text: str) -> str:
    """argparse type of --site: given, and a site id (appliance/kioskname.py)."""
    return site_id(given("the site whose devices to take")(text))


def _register_halt(halt: Any) -> None:
    halt.add_argument("name", help="model name")
    halt.add_argument("--repo", type=named_path, required=True, help="repository folder")
    halt.add_argument("--reason", default="", help="why, recorded with who halted it")
    add_store_options(halt)
    add_login_password_option(halt, ROLLOUT_LOGIN)
    halt.set_defaults(handler=_halt)


def _register_status(status: Any) -> None:
    status.add_argument("--repo", type=named_path,
                        help="repository folder (needed, except with --history)")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("--all-devices", action="store_true",
                        help="also the kiosks on the broker prefix that run models this "
                        "repository never released (another repository's fleet)")
    status.add_argument("--history", metavar="DEVICE", type=kiosk_of,
                        help="the model reports the store holds of DEVICE (SITE/DEVICE where "
                        "two sites have one), newest first; needs no broker")
    status.add_argument("--limit", type=whole_number(1, MAX_HISTORY_ROWS),
                        default=HISTORY_ROWS, help=f"with --history: how many ({HISTORY_ROWS})")
    add_store_options(status)
    add_login_password_option(status, ROLLOUT_LOGIN)
    status.set_defaults(handler=_status)


def _days(seconds: int, role: str) -> str:
    """A role's default expiry in days, for --help ("root 365 days")."""
    days = seconds // 86400
    return f"{role} {days} day{'' if days == 1 else 's'}"


def _pairs(items: list[str], kind: type, what: str) -> dict[str, Any]:
    found = {}
    for item in items:
        role, _, value = item.partition("=")
        if role not in ROLES or not value:
            raise ValueError(f"{what} {item!r}: use ROLE=VALUE with ROLE one of {', '.join(ROLES)}")
        try:
            found[role] = kind(value)
        except ValueError:
            raise ValueError(f"{what} {item}: ROLE=VALUE needs a whole number as VALUE") from None
    return found


def _repo_init(args: argparse.Namespace) -> int:
    from appliance.updates.operations import RoleKeys, describe, init_repository  # noqa: PLC0415

    try:
        counts = _pairs(args.keys, int, "--keys")
        thresholds = _pairs(args.threshold, int, "--threshold")
        plan = {r: RoleKeys(counts.get(r, 1), thresholds.get(r, 1)) for r in ROLES}
        repo = init_repository(args.dir, plan, _pairs(args.expiry_s, int, "--expiry-s"))
    except (ValueError, RuntimeError, OSError) as exc:
        print(escape_controls(f"models repo init: {full_disk_text(exc) or exc}"), file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(describe(repo), indent=2))
    for line in ("", f"root keys: {repo.keys_dir / 'root'} -- move them offline now; they are "
                 "needed only to change the root (keys, thresholds).",
                 f"kiosks trust: {repo.metadata_dir / '1.root.json'} (updates.trusted_root)",
                 f"serve: {repo.dir / 'public'}"):
        print(escape_controls(line))  # the folder as given
    return 0


def _repo_refresh(args: argparse.Namespace) -> int:
    """Exit 0 signed; 3 signed, but root or targets needs its offline keys soon; 2 an error."""
    from appliance.updates.operations import (  # noqa: PLC0415
        offline_roles_expiring,
        refresh_timestamp,
    )
    from appliance.updates.repository import FileRepository  # noqa: PLC0415

    try:
        repo = FileRepository(args.dir)
        version = refresh_timestamp(repo)
        expiring = offline_roles_expiring(repo)
    except (ValueError, RuntimeError, OSError) as exc:
        print(escape_controls(f"models repo refresh: {full_disk_text(exc) or exc}"),
              file=sys.stderr)
        return EXIT_ERROR
    print(escape_controls(f"{args.dir}: timestamp version {version} signed"))
    for warning in expiring:
        print(escape_controls(f"models repo refresh: warning: {warning}"), file=sys.stderr)
    return EXIT_OFFLINE_KEYS_NEEDED if expiring else 0


def _repo_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C, SIGTERM or SIGHUP (its terminal closed), which stop it in order,
    exit 0, as they stop the console (also one that came while it started): under systemd
    a stop is then a stop, not a failed unit."""
    import logging  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from appliance.interrupts import stop_on_signals  # noqa: PLC0415
    from appliance.updates.serve import RepositoryServer  # noqa: PLC0415 - http.server, ssl

    stop = threading.Event()
    with stop_on_signals(stop, logging.getLogger("appliance.updates.serve")):
        if stop.is_set():  # a stop signal while the command started
            return 0
        try:
            server = RepositoryServer(args.dir / "public", args.host, args.port,
                                      max_connections=args.max_connections)
        except OSError as exc:  # no repository there, the address taken or unknown
            where = "" if isinstance(exc, FileNotFoundError) else f"{args.host}:{args.port}: "
            print(escape_controls(f"models repo serve: {where}{exc}"), file=sys.stderr)
            return EXIT_ERROR
        print(escape_controls(f"serving {args.dir / 'public'} on {server.url} (Ctrl-C stops)"),
              flush=True)
        threading.Thread(target=server.serve_forever, name="repo-serve", daemon=True).start()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            server.close()
    print(escape_controls(f"stopped serving {args.dir / 'public'}"), flush=True)
    return 0


def _release(args: argparse.Namespace) -> int:
    from appliance.updates.fleetops import run_release  # noqa: PLC0415

    return run_release(args)


def _yank(args: argparse.Namespace) -> int:
    from appliance.updates.fleetops import run_yank  # noqa: PLC0415

    return run_yank(args)


def _deploy(args: argparse.Namespace) -> int:
    from appliance.updates.fleetops import run_deploy  # noqa: PLC0415

    return run_deploy(args)


def _halt(args: argparse.Namespace) -> int:
    from appliance.updates.fleetops import run_halt  # noqa: PLC0415

    return run_halt(args)


def _status(args: argparse.Namespace) -> int:
    from appliance.updates.fleetops import run_status  # noqa: PLC0415

    return run_status(args)
