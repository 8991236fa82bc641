"""``appliance demo``: broker, back office and edge daemons on this machine (README's command)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from typing import Any

from appliance.backoffice.commands import named_store
from appliance.synthetic.arguments import finite_number, whole_number

# Each simulated kiosk is a whole edge daemon process (Python, OpenCV, ONNX Runtime: about
# 150 MB and a busy core while it measures); more than this only starves the machine.
MAX_DEMO_DEVICES = 32
# Each edge measures its customers one after another: a visit is 16 frames at 15 fps (1.07 s)
# and a result took about 1.2 s on a shared 2-core machine, an edge to a core. The demo plans
# 1.8 s a result for an edge with a core of its own; edges beyond the cores share them, so each
# takes longer in proportion. More than fit --timeout-s only ran until it and failed. Exact
# (a fraction, not 1.8 in binary): the --timeout-s a refusal names then fits the --count it names.
SECONDS_PER_RESULT = Fraction(9, 5)
MAX_TIMEOUT_S = 86_400.0


def demo_cores() -> int:
    """The CPU cores this process may run on (the demo's edges share them)."""
    return len(os.sched_getaffinity(0))


def seconds_per_result(devices: int, cores: int) -> Fraction:
    """How long each of ``devices`` edges on ``cores`` cores takes a result: SECONDS_PER_RESULT
    for an edge with a core to itself, longer in proportion for edges that share them."""
    return SECONDS_PER_RESULT * max(Fraction(1), Fraction(devices, cores))


def fitting_count(devices: int, timeout_s: float, cores: int) -> int:
    """The most results per edge that ``devices`` edges on ``cores`` cores make within
    ``timeout_s``."""
    return math.floor(Fraction(timeout_s) / seconds_per_result(devices, cores))


# what fits the longest --timeout-s with one edge (the bound of the number itself)
MAX_DEMO_COUNT = fitting_count(1, MAX_TIMEOUT_S, 1)


def _count_refusal(args: argparse.Namespace) -> str | None:
    """Why ``--count`` cannot fit ``--timeout-s`` with ``--devices`` edges here (None: it fits),
    with what would."""
    cores = demo_cores()
    fits = fitting_count(args.devices, args.timeout_s, cores)
    if args.count <= fits:
        return None
    needed_s = math.ceil(args.count * seconds_per_result(args.devices, cores))
    raise_to = f"raise --timeout-s to {needed_s}" if needed_s <= MAX_TIMEOUT_S else ""
    fewer = (f"give --count {fits} or less" if fits >= 1
             else "not even one result a kiosk fits: give fewer --devices")
    return (f"demo: --count {args.count} with --devices {args.devices} on {cores} core(s) "
            f"needs about {needed_s} s, more than --timeout-s {args.timeout_s:g}: {fewer}"
            + (f", or {raise_to}" if raise_to else ""))


def _throwaway_refusal(args: argparse.Namespace) -> str | None:
    """Why ``--throwaway`` cannot go with ``--store`` or ``--config``: it keeps the results in
    a temporary store of its own, and the demo ran on it, the store named left untouched and
    unsaid (a PostgreSQL store to be tried was never tried)."""
    named = [option for option, value in (("--store", args.store), ("--config", args.config))
             if value is not None]
    if not args.throwaway or not named:
        return None
    return (f"demo: --throwaway keeps nothing, in a temporary store of its own; {named[0]} "
            "names the store that keeps the results: give one or the other")


def _demo(args: argparse.Namespace) -> int:
    from appliance.config import ConfigError  # noqa: PLC0415  (fast start)
    from appliance.interrupts import stop_on_signals  # noqa: PLC0415

    if refusal := _count_refusal(args) or _throwaway_refusal(args):  # before anything starts
        print(refusal, file=sys.stderr)
        return 2
    if args.throwaway and (problem := _config_problem()):
        print(f"demo: warning: the config is ignored, as --throwaway reads none; the commands "
              f"that read it refuse it: {problem}", file=sys.stderr)
    try:
        store_url, named = (None, False) if args.throwaway else _default_store(args)
    except ConfigError as exc:
        print(f"demo: config error: {exc}", file=sys.stderr)
        return 2
    if store_url is not None and (problem := _store_refusal(store_url, named=named)):
        print(f"demo: store error: {problem}", file=sys.stderr)  # as the read commands say it
        return 2
    stop, received = threading.Event(), list[int]()
    # SIGHUP (its terminal closed) stops it too: its default action ended the demo where it
    # stood, its mosquitto and edges (which take SIGHUP as "read the config again") orphaned
    with (_backoffice_log_at_warnings(unless=args.verbose),
          stop_on_signals(stop, logging.getLogger("appliance.backoffice.service"), received)):
        return _run_until_stopped(args, store_url, stop, received)


@contextmanager
def _backoffice_log_at_warnings(*, unless: bool) -> Iterator[None]:
    """The in-process back office logs its warnings only (its INFO line "demo-backoffice
    connected to ..." stood timestamped among the demo's plain lines, which say what it
    does); ``unless`` (-v) keeps its whole log."""
    logger = logging.getLogger("appliance.backoffice")
    level = logger.level
    if not unless:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _stopped_before_start(received: list[int]) -> int:
    """Said and returned where a stop came before the demo started anything."""
    print("demo stopped (Ctrl-C, SIGTERM or SIGHUP) before it started anything", file=sys.stderr)
    return 128 + received[0] if received else 130


def _run_until_stopped(args: argparse.Namespace, store_url: str | None,
                       stop: threading.Event, received: list[int]) -> int:
    """The demo on ``store_url`` (None: a throw-away store), holding the store's demo lock
    (which keeps a second demo off it), until it ends or ``stop`` is set (by a signal, whose
    number is in ``received``); the command's exit code. The lock is taken before the demo's
    back office, edges and generators are loaded (seconds on a busy machine): a second demo is
    refused at once."""
    from appliance.backoffice.demolock import DemoLockError, demo_lock  # noqa: PLC0415 (psycopg)
    from appliance.backoffice.storeerrors import StoreError  # noqa: PLC0415
    from appliance.transport.broker import BrokerError  # noqa: PLC0415

    try:
        with nullcontext() if store_url is None else demo_lock(store_url):
            from appliance.backoffice.demo import EXIT_INTERRUPTED, run_demo  # noqa: PLC0415

            if stop.is_set():  # a stop before now, or while the modules loaded (seconds)
                return _stopped_before_start(received)
            code = run_demo(args.devices, args.count, args.timeout_s, stop=stop,
                            store_url=store_url, store_option=_store_option(args))
    except DemoLockError as exc:  # another demo runs on the store: refused before it starts
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except (BrokerError, StoreError) as exc:  # StoreError: the lock's PostgreSQL connection
        if stop.is_set():  # a Ctrl-C while it waited for the store: a stop, said as one
            print(f"demo {exc}", file=sys.stderr)
            return 128 + received[0] if received else 130
        if isinstance(exc, StoreError):  # before anything started (a database not there):
            print(f"demo: store error: {exc}", file=sys.stderr)  # as the read commands say it
            return 2
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    # stopped: 130 after Ctrl-C, 143 after SIGTERM, as every command ends (README)
    return 128 + received[0] if code == EXIT_INTERRUPTED and received else code


def _config_problem() -> str | None:
    """What is wrong with the config the other commands read here (./config.yaml, the
    APPLIANCE__ variables), or None: a throw-away demo reads none, and says so rather than
    pass over a broken one in silence."""
    from appliance.config import ConfigError, load_config_or_defaults  # noqa: PLC0415

    try:
        load_config_or_defaults(None)
    except ConfigError as exc:
        return str(exc)
    return None


def _default_store(args: argparse.Namespace) -> tuple[str, bool]:
    """``--store``, else the store the back-office commands read by default (ConfigError when
    the config cannot be read); and whether it was named (``--store``, or the config's
    ``store.url``, ``APPLIANCE__STORE__URL`` included) rather than the default one under
    ``state_dir``."""
    from appliance.backoffice.storeurl import store_url_for  # noqa: PLC0415
    from appliance.config import load_config_or_defaults  # noqa: PLC0415

    if args.store and args.config is None:
        return str(args.store), True
    config = load_config_or_defaults(args.config)  # a --config named is read beside --store
    if args.store:
        return str(args.store), True
    return store_url_for(config.store.url, config.state_dir), config.store.url is not None


def _store_refusal(store_url: str, *, named: bool) -> str | None:
    """Why the demo cannot keep its results at ``store_url``, decided before anything starts
    (no broker, no lock file, no folder made): a URL that names no store, or a SQLite file
    ``named`` (by ``--store`` or the config's ``store.url``) in a folder that is not there,
    a typo or a relative path read as an absolute one. The default store's folder, the
    config's ``state_dir`` (./state), the demo makes. None when it can."""
    from appliance.backoffice.storeurl import missing_folder, url_problem  # noqa: PLC0415

    return url_problem(store_url) or (missing_folder(store_url) if named else None)


def _store_option(args: argparse.Namespace) -> str:
    """The option that names the demo's store to the commands it suggests: its ``--store``
    (a password masked), its ``--config``, or '' for the default store they read anyway."""
    from appliance.backoffice.storeurl import masked_url  # noqa: PLC0415

    if args.store:
        return f" --store {shlex.quote(masked_url(str(args.store)))}"
    if args.config:
        return f" --config {shlex.quote(str(args.config))}"
    return ""


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``demo`` to the command line."""
    demo = root.add_parser(
        "demo",
        help="the whole system here: private mosquitto, back office, edge daemons on synthetic "
        "skin; prints results as they are stored",
    )
    demo.add_argument("--devices", type=whole_number(1, MAX_DEMO_DEVICES), default=2,
                      help=f"edge daemons to run, 1-{MAX_DEMO_DEVICES}, each its own process (2)")
    demo.add_argument("--count", type=whole_number(1, MAX_DEMO_COUNT), default=2,
                      help="results per edge, at most what fits --timeout-s: about "
                      f"{float(SECONDS_PER_RESULT):g} s each for an edge with a core to itself, so "
                      f"{fitting_count(1, 900, 1)} in the 900 s default with as many --devices "
                      "as cores, fewer with more (2)")
    demo.add_argument("--timeout-s",
                      type=finite_number(0, MAX_TIMEOUT_S, "seconds", above_low=True),
                      default=900.0, help="give up after this many seconds (900)")
    demo.add_argument("--config", help="config whose store keeps the results (default: "
                      "./config.yaml when present, else built-in defaults: ./state)")
    demo.add_argument("--store", type=named_store, help="store URL for the results: "
                      "sqlite:///PATH or postgresql://... (default: the one `appliance fleet` "
                      "reads)")
    demo.add_argument("--throwaway", action="store_true",
                      help="keep nothing: results go to a temporary store deleted on exit")
    demo.set_defaults(handler=_demo, own_stop_signals=True)  # held until _demo takes them
