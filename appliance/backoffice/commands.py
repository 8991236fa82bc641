"""Commands of the back office: ``backoffice``, ``fleet``, ``results query|export|...``
(``results erase|prune|erasures``:
results_removal.py)."""

# ruff: noqa: PLC0415  (handlers import their modules late so `appliance --help` starts fast)

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.configname import DEFAULT_CONFIG_FILE
from appliance.filekind import kind_of
from appliance.kioskname import chosen_kiosks, kiosk_of, site_id
from appliance.logsafe import escape_controls
from appliance.numbertext import whole_number
from appliance.outfile import replacing_refusal
from appliance.stdout import print_out

if TYPE_CHECKING:
    from appliance.backoffice.queries import ResultFilter
    from appliance.config import Config

CONFIG_HELP = "config file (default: ./config.yaml when present, else built-in defaults)"
# A worker joins the result group of the broker its config names, with a session that outlives
# it (docs/delivery.md): started from the built-in defaults in a folder without config.yaml, it
# would take a share of the results of whatever broker runs on 127.0.0.1:1883. So `backoffice`
# (and its --retire) needs a config file, as `edge` and `pathology serve` do.
BACKOFFICE_CONFIG_HELP = (f"config file ({DEFAULT_CONFIG_FILE}); needed: it names the broker "
                          "whose result group the worker joins (no built-in defaults here)")
MAX_DATABASE_INT = 2**63 - 1  # SQLite's INTEGER and PostgreSQL's BIGINT hold no more


def add_store_options(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    """``--config`` and ``--store`` (the store URL overrides the config's).

    ``nested``: the parser is a subcommand of a group that has these options too, so an option
    left out here keeps the group's value (``console --store X user add``) instead of None.
    """
    default = argparse.SUPPRESS if nested else None
    parser.add_argument("--config", help=CONFIG_HELP, default=default)
    parser.add_argument("--store", type=named_store, default=default,
                        help="store URL: sqlite:///PATH or postgresql://... (default: store.url "
                        "of the config, else SQLite in state_dir)")


def named_store(text: str) -> str:
    """argparse type: a ``--store`` URL, refused empty (a script's "$URL" unset): commands that
    fall back on the default store when none is given took '' for none."""
    if not text:
        raise argparse.ArgumentTypeError(
            "empty; name the store (sqlite:///PATH or postgresql://...), or leave --store out "
            "for the default one (a script's \"$VARIABLE\" left unset?)")
    return text


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (so --limit -1 or 0 is an error) that a
    database holds (a LIMIT beyond it is an error there, not 'no limit')."""
    try:
        value = whole_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number in ASCII digits") \
            from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 or more")
    if value > MAX_DATABASE_INT:
        raise argparse.ArgumentTypeError(f"{text}: must be at most {MAX_DATABASE_INT}")
    return value


def load_or_report(args: argparse.Namespace) -> Config | None:
    """The config of ``--config`` (see ``load_config_or_defaults``), or None after printing the
    error under the command's name."""
    from appliance.config import ConfigError, load_config_or_defaults  # pydantic: on use

    try:
        return load_config_or_defaults(args.config)
    except ConfigError as exc:
        print(f"{command_of(args)}: config error: {exc}", file=sys.stderr)
        return None


def command_of(args: argparse.Namespace) -> str:
    """The command as typed, without ``appliance`` ("results query"), for its refusals."""
    from appliance.cli import command_named

    return command_named(args).removeprefix("appliance ")


def store_url_of(args: argparse.Namespace) -> str | None:
    """The store URL from ``--store``, else from the config; None after printing a config error
    (of a ``--config`` given beside ``--store`` too: a file named is read, never passed over)."""
    from appliance.backoffice.storeurl import store_url_for

    if args.store is not None:
        return str(args.store) if args.config is None or load_or_report(args) else None
    config = load_or_report(args)
    return None if config is None else store_url_for(config.store.url, config.state_dir)


def open_for(args: argparse.Namespace, create: bool = False, writes: bool = False,
             newer_keeps: str | None = None) -> Any:
    """The store named by ``--store`` or the config, or None after printing why not.

    Read commands (the default) open it read-only: they never create, migrate or change it. A
    command that writes (``writes``) migrates it; one that may come first (``create``) may also
    create it. A store a newer appliance migrated is refused to both, unchanged, as the console
    refuses it (``newer_schema_problem``; ``newer_keeps``: what the newer one keeps there that
    this command would write past, when more is known than that the schema is newer): reads
    take it.
    """
    from appliance.backoffice.store import (
        StoreError,
        open_existing_store,
        open_store,
    )
    from appliance.backoffice.store_schema import newer_schema_problem

    url = store_url_of(args)
    if url is None:
        return None
    try:
        if create or writes:
            store = open_store(url, create=create)
            if (newer := newer_schema_problem(store, "appliance", "changes nothing",
                                              newer_keeps)):
                store.close()
                raise StoreError(newer)
            return store
        return open_existing_store(url)
    except StoreError as exc:
        print(f"{command_of(args)}: store error: {exc}", file=sys.stderr)
        return None


def with_store(args: argparse.Namespace, command: str, body: Callable[[Any], int],
               writes: bool = False) -> int:
    """Open the store (``open_for``), run ``body`` on it and close it. A store that fails on
    the way (its server went away, a damaged file) ends the command with one line naming the
    database and its error, exit 1; a file being written is left as it was, as it is when
    SIGTERM ends the command (cli.sigterm_ends_as_interrupt: exit 143)."""
    from appliance.backoffice import storeerrors
    from appliance.backoffice.storeerrors import explained
    from appliance.backoffice.storeurl import store_name

    store = open_for(args, writes=writes)
    if store is None:
        return 2
    try:
        return body(store)
    except storeerrors.STORE_ERRORS as exc:  # built here: SQLite loads no psycopg
        print(f"{command}: the {store_name(store.url)} failed: {explained(exc)}",
              file=sys.stderr)
        return 1
    finally:
        store.close()


def _backoffice(args: argparse.Namespace) -> int:
    from appliance.backoffice.service import run_backoffice, stop_on_signals
    from appliance.config import ConfigError, load_config

    try:  # a file, never the built-in defaults (BACKOFFICE_CONFIG_HELP says why)
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"backoffice: config error: {exc}", file=sys.stderr)
        return 2
    if args.retire:  # a one-shot command: stop signals end it as they end the others
        from appliance.cli import sigterm_ends_as_interrupt

        with sigterm_ends_as_interrupt():
            return _retire(config)
    stop = threading.Event()
    with stop_on_signals(stop):  # a Ctrl-C while the command started: its stop message now
        return 0 if stop.is_set() else run_backoffice(config, stop)


def _retire(config: Config) -> int:
    from appliance.backoffice.ingest import (
        BrokerRefusedError,
        IngestError,
        default_client_id,
        retire_session,
    )
    from appliance.statelock import StateLock, StateLockError

    client_id = config.backoffice.client_id or default_client_id()
    try:  # a worker still running here with this client id would be knocked off the broker
        lock = StateLock(Path(config.state_dir) / f"backoffice-{client_id}.lock",
                         f"back office {client_id}",
                         "give this one its own backoffice.client_id")
    except StateLockError as exc:
        print(f"backoffice --retire: {exc}", file=sys.stderr)
        return 1
    try:
        retire_session(config)
    except BrokerRefusedError as exc:  # as the worker itself exits (EXIT_BROKER_REFUSED)
        print(f"backoffice --retire: {exc}", file=sys.stderr)
        return 3
    except IngestError as exc:
        print(f"backoffice --retire: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a TLS file that cannot be used: the message names it
        print(f"backoffice --retire: {exc}", file=sys.stderr)
        return 2
    finally:
        lock.release()
    print(f"ended the broker session of {client_id} at {config.mqtt.host}:{config.mqtt.port}: "
          "the broker no longer queues results for it (what it had queued, the kiosks send "
          "again, as no worker confirmed it); start it again only to rejoin the group. A client "
          f"still connected as {client_id} elsewhere was disconnected and reconnects with a "
          "new session: retire only a stopped worker's id")
    return 0


def _fleet(args: argparse.Namespace) -> int:
    from appliance.backoffice.fleet import fleet_json, fleet_table

    def show(store: Any) -> int:
        return print_out("fleet", fleet_json(store) if args.json else fleet_table(store))

    return with_store(args, "fleet", show)


def add_kiosk_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--site`` and ``--device`` (DEVICE or SITE/DEVICE): the kiosks whose ``what`` a
    command reads (``kiosk_filter``)."""
    parser.add_argument("--site", type=site_id, help=f"only {what} from this site")
    parser.add_argument("--device", type=kiosk_of, metavar="[SITE/]DEVICE",
                        help=f"only {what} from this device id (of any site), or from this "
                        "device of this site (SITE/DEVICE, as --site SITE --device DEVICE)")


def kiosk_filter(args: argparse.Namespace, command: str) -> ResultFilter | None:
    """The site and device id ``--site`` and ``--device`` select (``add_kiosk_options``;
    each None when not given), or None after printing, under the command's name, that they
    name two sites (nothing read)."""
    from appliance.backoffice.queries import ResultFilter

    try:
        site, device = chosen_kiosks(args.site, args.device)
    except ValueError:
        site, device = args.device
        print(escape_controls(f"{command}: --site {args.site} and --device {site}/{device} name "
                              f"two sites; give the site once (--device {site}/{device}, or "
                              f"--site {args.site} --device {device})"), file=sys.stderr)
        return None
    return ResultFilter(site=site, device_id=device)


def _selection(args: argparse.Namespace, command: str) -> ResultFilter | None:
    """The results ``--site``, ``--device`` (DEVICE or SITE/DEVICE) and ``--since`` select,
    or None after printing why they select none, under the command's name (nothing read)."""
    from appliance.backoffice.export import parse_since

    kiosks = kiosk_filter(args, command)
    if kiosks is None:
        return None
    try:
        since = parse_since(args.since) if args.since is not None else None
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return None
    return dataclasses.replace(kiosks, placed_from=since)


def _results_query(args: argparse.Namespace) -> int:
    from appliance.backoffice.export import query_table

    where = _selection(args, "results query")
    if where is None:
        return 2

    def show(store: Any) -> int:
        return print_out("results query", query_table(store, where, args.limit))

    return with_store(args, "results query", show)


PARQUET_NEEDS_A_FILE = ("--format parquet is binary, for a file: name it with --out (e.g. "
                        "results.parquet); standard output takes csv or jsonl")


def _export_out_problem(out: str, fmt: str, force: bool) -> str | None:
    """Why ``--out`` cannot be written (before the store is opened), or None."""
    if out == "":  # `--out "$FILE"` with FILE unset: Path("") would be the folder "."
        return (f"--out: empty file name; name the file to write (e.g. results.{fmt}, or - for "
                "standard output)")
    if out == "-":
        return PARQUET_NEEDS_A_FILE if fmt == "parquet" else None
    if kind_of(Path(out)) is None:  # a link to nothing is there; a path too long raises
        return _missing_folder(Path(out))
    # a file, or a link to nothing (or a loop), is replaced only when asked
    return _no_file_to_replace(out, fmt) or replacing_refusal([Path(out)], force)


def _no_file_to_replace(out: str, fmt: str) -> str | None:
    """Why what is at ``out`` is no file an export may replace, --force or not: a folder, a
    device, a pipe or a socket (the export replaces what --out names, never writes into it)."""
    shown = escape_controls(out)
    if Path(out).is_dir():
        return (f"--out {shown}: a folder; name the file to write "
                f"(e.g. {escape_controls(str(Path(out) / f'results.{fmt}'))})")
    if Path(out).exists() and not Path(out).is_file():
        return (f"--out {shown}: not a regular file (a device, a pipe or a socket), which an "
                "export would replace; name a file to write, or - for standard output")
    return None


def _missing_folder(out: Path) -> str | None:
    """Why the folder ``out`` goes in cannot take it (not there, or no folder), or None. An
    export makes no folders: a mistyped path would put the results where nobody looks."""
    folder = out.parent
    if folder.is_dir():
        return None
    shown = escape_controls(str(folder))
    if os.path.lexists(folder):
        return f"--out {escape_controls(str(out))}: {shown} is not a folder"
    return (f"--out {escape_controls(str(out))}: no folder {shown}; make it first, or name a "
            "file in a folder that exists")


def _results_export(args: argparse.Namespace) -> int:
    from appliance.backoffice.export import export_results, unknown_selection
    from appliance.backoffice.storeurl import store_name

    problem = _export_out_problem(args.out, args.format, args.force)
    if problem is not None:
        print(f"results export: {problem}", file=sys.stderr)
        return 2
    where = _selection(args, "results export")
    if where is None:
        return 2

    def export(store: Any) -> int:
        if unknown := unknown_selection(store, where):  # an empty file would say "none"
            print(escape_controls(f"results export: {unknown}; nothing written"),
                  file=sys.stderr)
            return 2
        try:
            count = export_results(store, args.format, args.out, where)
        except BrokenPipeError:
            raise  # the reader (e.g. `| head`) has seen enough; cli.main ends quietly
        except (ValueError, OSError) as exc:
            print(escape_controls(f"results export: failed: {exc}"), file=sys.stderr)
            return 1
        written = "standard output" if args.out == "-" else args.out
        print(escape_controls(f"exported {count} result(s) as {args.format} to {written} from "
                              f"the {store_name(store.url)}"), file=sys.stderr)
        return 0

    return with_store(args, "results export", export)


def _register_results(root: Any) -> None:
    results = root.add_parser("results", help="query and export stored results")
    sub = results.add_subparsers(dest="results_command", required=True, metavar="COMMAND")
    query = sub.add_parser("query", help="print the newest stored results and how many match")
    export = sub.add_parser("export", help="write stored results to csv, jsonl or parquet")
    for parser in (query, export):
        add_store_options(parser)
        add_kiosk_options(parser, "results")
        parser.add_argument("--since", metavar="TIME", help="only results captured at or after "
                            "this time, as the back office places each capture (not by a "
                            "kiosk's clock): ISO date or date-time, UTC unless it says "
                            "(2026-11-01, 2026-11-01T09:00:00Z)")
    query.add_argument("--limit", type=positive_int, default=50,
                       help="show the newest N rows (50)")
    query.set_defaults(handler=_results_query)
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv",
                        help="file format: csv, jsonl (one JSON object a line) or parquet (csv)")
    export.add_argument("--out", default="-",
                        help="output file; - for standard output, csv and jsonl only")
    export.add_argument("--force", action="store_true", help="replace an existing --out file")
    export.set_defaults(handler=_results_export)
    dead = sub.add_parser("dead-letters", help="messages the back office refused, newest first")
    add_store_options(dead)
    add_kiosk_options(dead, "letters")
    dead.add_argument("--limit", type=positive_int, default=20, help="at most this many (20)")
    dead.set_defaults(handler=_dead_letters)
    retry = sub.add_parser(
        "retry", help="store the dead-lettered results the back office would take now")
    add_store_options(retry)
    retry.add_argument("--dry-run", action="store_true",
                       help="only say how many would be stored; change nothing")
    retry.set_defaults(handler=_retry_dead_letters)
    from appliance.backoffice.results_removal import (
        register_audit,
        register_erase,
        register_prune,
        register_release,
    )

    register_erase(sub)
    register_release(sub)
    register_prune(sub)
    register_audit(sub)


def letter_judge() -> Callable[[str, bytes], list[tuple[Any, ...]]]:
    """What a kept letter's topic and payload make today: the result rows the ingest worker
    would store (none while it is still refused); ``results retry`` and ``release``."""
    from appliance.backoffice.triage import Inbound, Triage

    triages: dict[str, Triage] = {}

    def judge(topic: str, payload: bytes) -> list[tuple[Any, ...]]:
        prefix = topic.rsplit("/", 3)[0]  # {prefix}/{site}/{device}/result, as received
        if prefix not in triages:  # the letters it would make are not kept: no size to cut at,
            # and no warning: a letter still refused is no new dead letter
            triages[prefix] = Triage(prefix, 0, log_dead_letters=False)
        batch, _ = triages[prefix].sort([Inbound(topic, payload, 0, 1, False)])
        return [] if batch.dead_letters else batch.results

    return judge


def _retry_dead_letters(args: argparse.Namespace) -> int:
    judge = letter_judge()

    def retry(store: Any) -> int:
        taken, refused = store.retry_dead_letters(judge, dry_run=args.dry_run)
        verb = "would store" if args.dry_run else "stored"
        print(f"{verb} {taken} result(s) from the dead letters; {refused} dead-lettered "
              "result(s) are still refused (appliance results dead-letters shows why)")
        return 0

    return with_store(args, "results retry", retry, writes=not args.dry_run)


def _dead_letters(args: argparse.Namespace) -> int:
    from appliance.backoffice.export import dead_letter_table
    from appliance.backoffice.queries import LetterFilter

    kiosks = kiosk_filter(args, "results dead-letters")
    if kiosks is None:
        return 2
    of = None
    if kiosks.site is not None or kiosks.device_id is not None:
        config = load_or_report(args)  # a kiosk's topics are under the fleet's prefix
        if config is None:
            return 2
        of = LetterFilter(config.mqtt.topic_prefix, kiosks.site, kiosks.device_id)

    def show(store: Any) -> int:
        return print_out("results dead-letters", dead_letter_table(store, args.limit, of))

    return with_store(args, "results dead-letters", show)


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``backoffice``, ``fleet`` and ``results`` to the command line."""
    backoffice = root.add_parser("backoffice", help="ingest results and fleet status to the store")
    backoffice.add_argument("--config", default=DEFAULT_CONFIG_FILE, help=BACKOFFICE_CONFIG_HELP)
    backoffice.add_argument(
        "--retire", action="store_true",
        help="take this worker out of service: end its broker session (its client id), so "
        "the broker stops queuing a share of the results for it; then exit")
    backoffice.set_defaults(handler=_backoffice, own_stop_signals=True)  # held until it is ready
    fleet = root.add_parser("fleet", help="list the kiosks: online/offline, last seen, versions")
    add_store_options(fleet)
    fleet.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fleet.set_defaults(handler=_fleet)
    from appliance.backoffice.fleet_resend import register as register_resend

    register_resend(fleet)
    _register_results(root)
