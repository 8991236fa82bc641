"""Commands of the back office: ``backoffice``, ``fleet``, ``results query|export``."""

# ruff: noqa: PLC0415  (handlers import their modules late so `appliance --help` starts fast)

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from appliance.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "config.yaml"


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--store`` (the store URL overrides the config's)."""
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config file (config.yaml)")
    parser.add_argument("--store", help="store URL: sqlite:///PATH or postgresql://... "
                        "(default: store.url of the config, else SQLite in state_dir)")


def load_or_report(path: str) -> Config | None:
    """The config, or None after printing the error."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def open_for(args: argparse.Namespace) -> Any:
    """The store named by ``--store`` or the config, or None after printing why not."""
    from appliance.backoffice.store import StoreError, open_store, store_url_for

    config = load_or_report(args.config)
    if config is None:
        return None
    try:
        return open_store(args.store or store_url_for(config.store.url, config.state_dir))
    except StoreError as exc:
        print(f"store error: {exc}", file=sys.stderr)
        return None


def _backoffice(args: argparse.Namespace) -> int:
    from appliance.backoffice.service import install_stop_signals, run_backoffice

    config = load_or_report(args.config)
    if config is None:
        return 2
    stop = threading.Event()
    install_stop_signals(stop)
    return run_backoffice(config, stop)


def _fleet(args: argparse.Namespace) -> int:
    from appliance.backoffice.fleet import fleet_json, fleet_table

    store = open_for(args)
    if store is None:
        return 2
    try:
        print(fleet_json(store) if args.json else fleet_table(store))
    finally:
        store.close()
    return 0


def _since_and_store(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """``(since, store)`` for a results command, or None after printing why not."""
    from appliance.backoffice.export import parse_since

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return None
    store = open_for(args)
    return None if store is None else (since, store)


def _results_query(args: argparse.Namespace) -> int:
    from appliance.backoffice.export import query_table

    opened = _since_and_store(args)
    if opened is None:
        return 2
    since, store = opened
    try:
        print(query_table(store, args.device, since, args.limit))
    finally:
        store.close()
    return 0


def _results_export(args: argparse.Namespace) -> int:
    from appliance.backoffice.export import export_results

    opened = _since_and_store(args)
    if opened is None:
        return 2
    since, store = opened
    try:
        count = export_results(store, args.format, args.out, args.device, since)
    except (ValueError, OSError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"exported {count} result(s) as {args.format} to {args.out}", file=sys.stderr)
    return 0


def _register_results(root: Any) -> None:
    results = root.add_parser("results", help="query and export stored results")
    sub = results.add_subparsers(dest="results_command", required=True, metavar="COMMAND")
    query = sub.add_parser("query", help="print stored results, oldest first")
    export = sub.add_parser("export", help="write stored results to csv, jsonl or parquet")
    for parser in (query, export):
        add_store_options(parser)
        parser.add_argument("--device", help="only this device id")
        parser.add_argument("--since", help="only results captured at or after this UTC time")
    query.add_argument("--limit", type=int, default=50, help="at most this many rows (50)")
    query.set_defaults(handler=_results_query)
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    export.add_argument("--out", default="-", help="output file (- = stdout, not for parquet)")
    export.set_defaults(handler=_results_export)
    dead = sub.add_parser("dead-letters", help="messages the back office refused, newest first")
    add_store_options(dead)
    dead.add_argument("--limit", type=int, default=20, help="at most this many (20)")
    dead.set_defaults(handler=_dead_letters)


def _dead_letters(args: argparse.Namespace) -> int:
    from appliance.backoffice.export import dead_letter_table

    store = open_for(args)
    if store is None:
        return 2
    try:
        print(dead_letter_table(store, args.limit))
    finally:
        store.close()
    return 0


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``backoffice``, ``fleet`` and ``results`` to the command line."""
    backoffice = root.add_parser("backoffice", help="ingest results and fleet status to the store")
    backoffice.add_argument("--config", default=DEFAULT_CONFIG, help="config file (config.yaml)")
    backoffice.set_defaults(handler=_backoffice)
    fleet = root.add_parser("fleet", help="list the kiosks: online/offline, last seen, versions")
    add_store_options(fleet)
    fleet.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fleet.set_defaults(handler=_fleet)
    _register_results(root)
