"""The appliance command: one entry point, subcommands registered by each area.

Each area package may hold modules named ``commands`` or ``commands_*`` with
``register(root, groups)``; ``root`` is the
top-level subparsers object and ``groups`` maps shared command groups (``synth``, ``models``) to
theirs. Handlers are set with ``set_defaults(handler=...)``, take the parsed arguments and return
the exit code. Areas import their heavy dependencies inside handlers so ``appliance --help`` and
``appliance config check`` start fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

from appliance import __version__, interrupts, logsafe
from appliance.cli_help import ExampleFormatter, apply_help, chosen_parser, command_parsers
from appliance.numbertext import NEGATIVE_NUMBER
from appliance.skin.scale_range import SCALE_UM_PER_PX, scale_outside_validated
from appliance.stdout import StdoutError, emit, refused_line, watched_stdout

if TYPE_CHECKING:
    from appliance.config import ConsoleConfig, UpdatesConfig

AREAS = (
    "capture", "skin", "synthetic", "inference", "modelbuild", "transport", "updates", "edge",
    "backoffice", "console", "pathology",
)
GROUPS = {
    "synth": "make synthetic data with known ground truth",
    "models": "build and evaluate the skin model; sign, release and roll models out",
}
DEFAULT_CONFIG = "config.yaml"

Handler = Callable[[argparse.Namespace], int]


def _config_check(args: argparse.Namespace) -> int:
    from appliance.config import (  # noqa: PLC0415 - pydantic loads after main holds Ctrl-C
        ConfigError,
        load_config_or_defaults,
        missing_files,
    )

    named: str | None = args.file if args.file is not None else args.config
    try:
        config = load_config_or_defaults(named)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    source = _checked_source(named)
    refused = missing_files(config) or _unloadable_model(config.model.path)
    refused = refused or _unusable_trusted_root(config.updates) or _pathology_missing(config)
    refused = refused or _unusable_reference(config.screen.reference_file)
    refused = refused or _unusable_state_dir(config.state_dir)
    refused = refused or _unusable_store(config.store.url, config.state_dir)
    refused = refused or _console_refusal(config.console)
    if refused:
        print(f"config error: {source}: the daemon would refuse it:\n  " + "\n  ".join(refused),
              file=sys.stderr)
        return 2
    from appliance.configroles import given_sections, role_summary  # noqa: PLC0415 - as above

    file = named if named is not None or not os.path.lexists(DEFAULT_CONFIG) else DEFAULT_CONFIG
    emit(f"{source}: ok: {role_summary(config, given_sections(file))}")
    if warning := _unvalidated_scale(config.skin.um_per_px):
        print(f"config check: warning: {source}: {warning}", file=sys.stderr)
    return 0


def _unvalidated_scale(um_per_px: float) -> str | None:
    """A warning for a skin.um_per_px the config takes but the measurement was not validated
    at: every frame measured at it has its texture and pore features marked not measured."""
    if not scale_outside_validated(um_per_px):
        return None
    low, high = SCALE_UM_PER_PX
    return (f"skin.um_per_px {um_per_px:g} is outside {low:g}-{high:g} um/px, the range the skin "
            "measurement was validated on (docs/measurement.md): every frame measured at it has "
            "its texture and pore features marked not measured (not_validated) and no grade; "
            "check the calibration (appliance calibrate)")


def _pathology_missing(config: Any) -> list[str]:
    """What ``pathology serve`` could not use (appliance/pathology/preflight.py), then, for a
    server's config (one naming slide roots), whether its model files open as the server opens
    them (appliance/pathology/modelcheck.py): a corrupt or ill-shaped model passed the check
    and the server refused it at start."""
    from appliance.pathology.preflight import unusable  # noqa: PLC0415 - only for this check

    refused = unusable(config.pathology)
    if refused or not config.pathology.serves_slides:
        return refused
    from appliance.pathology.modelcheck import refused_models  # noqa: PLC0415 - as above

    return refused_models(config.pathology)


def _console_refusal(console: ConsoleConfig) -> list[str]:
    """Why ``appliance console`` would not start on ``console.bind`` (empty when it would)."""
    refusal = console.plain_http_refusal()
    return [] if refusal is None else [refusal]


def _checked_source(named: str | None) -> str:
    """What ``config check`` validates: the file named or found here, else the built-in
    defaults with the environment's overrides, as every other command without one uses them
    (said on stdout; the daemons ``edge``, ``backoffice`` and ``pathology serve`` need a
    file)."""
    from appliance.config import ENV_PREFIX  # noqa: PLC0415 - as in _config_check

    if named is not None or os.path.lexists(DEFAULT_CONFIG):
        return named or DEFAULT_CONFIG
    variables = sorted(name for name in os.environ if name.upper().startswith(ENV_PREFIX))
    overrides = f"with {', '.join(variables)}" if variables else f"(no {ENV_PREFIX} variables)"
    emit(f"no ./{DEFAULT_CONFIG} here: checking the built-in defaults {overrides}, as every "
         "command without --config uses them (`appliance edge`, `appliance backoffice` and "
         "`appliance pathology serve` need a config file)")
    return "built-in defaults"


def _unloadable_model(path: str | None) -> list[str]:
    """Why the daemon could not load ``model.path`` (empty when it can, or none is set)."""
    if path is None:
        return []
    from appliance.inference.classifier import ModelError, SkinClassifier  # noqa: PLC0415

    try:
        SkinClassifier.load(path)
    except ModelError as exc:
        return [f"model.path: {exc}"]
    return []


def _unusable_reference(path: str | None) -> list[str]:
    """Why the kiosk screen could not use ``screen.reference_file`` (empty when it can, or none
    is set): the daemon refuses such a file at start."""
    if path is None:
        return []
    from appliance.edge.screen_view import ReferenceFileError, load_references  # noqa: PLC0415

    try:
        load_references(Path(path))
    except ReferenceFileError as exc:
        return [f"screen.reference_file: {exc}"]
    return []


def _unusable_state_dir(state_dir: str) -> list[str]:
    """Why no daemon could keep its state in ``state_dir`` (a file, a device; empty when it is
    a folder or can be made)."""
    from appliance.filekind import not_a_folder  # noqa: PLC0415 - only for this check

    problem = not_a_folder(Path(state_dir))
    return [] if problem is None else [f"state_dir: {problem}"]


def _unusable_store(url: str | None, state_dir: str) -> list[str]:
    """Why the back office could not open its store as a SQLite file (``store.url``, else the
    one in ``state_dir``): a folder, a device; a file not made yet is none, it makes it."""
    from appliance.backoffice.sqlitefile import sqlite_file_problem  # noqa: PLC0415
    from appliance.backoffice.storeurl import store_url_for  # noqa: PLC0415

    problem = sqlite_file_problem(store_url_for(url, state_dir))
    key = "store.url" if url is not None else "state_dir"
    return [] if problem is None else [f"{key}: {problem}"]


def _unusable_trusted_root(updates: UpdatesConfig) -> list[str]:
    """Why the kiosk's model updater could not start from ``updates.trusted_root`` (empty
    when it can, or updates are off)."""
    if updates.url is None or updates.trusted_root is None:
        return []
    from appliance.updates.fetch import read_trusted_root  # noqa: PLC0415 - tuf

    try:
        read_trusted_root(updates.trusted_root)
    except ValueError as exc:
        return [str(exc)]
    return []


def _register_config(root: Any) -> None:
    config = root.add_parser("config", help="validate configuration")
    sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="validate a config file; exit 2 naming the bad key")
    named = check.add_mutually_exclusive_group()
    named.add_argument("file", nargs="?", help="config file (default: ./config.yaml when "
                       "present, else the built-in defaults)")
    named.add_argument("--config", help="the same, as the other commands name it")
    check.set_defaults(handler=_config_check)


# arguments a refusal of unrecognized ones names (the rest are counted)
NAMED_UNRECOGNIZED = 5


class EscapingParser(argparse.ArgumentParser):
    """An ArgumentParser whose error messages show control characters escaped: they quote the
    arguments given ("unrecognized arguments: ...", "invalid choice: ...", a type's refusal),
    which reach the terminal. An overlong argument there is cut on its way out, as everywhere
    on stderr (``overlong_arguments_cut``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse's own rule (this attribute) took "-inf" for an option: "--um-per-px -inf"
        # met "expected one argument", not the option's range message (numbertext.py)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def parse_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        """As argparse does, but the refusal of arguments it does not take names the first
        NAMED_UNRECOGNIZED of them, each cut, and counts the rest: argparse's own names them
        all, and cutting each in a message of thousands took seconds per thousand. It comes
        from the command chosen, with its usage, not the top level's (``Any``: argparse's
        stubs overload it by the namespace's class)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen_parser(self, parsed).error(unrecognized_message(extras))
        return parsed

    def error(self, message: str) -> NoReturn:
        """Print usage and the escaped message, exit 2 (as argparse does)."""
        super().error(logsafe.escape_controls(message + self._commands_taken(message)))

    def _commands_taken(self, message: str) -> str:
        """`` (one of: query, export, ...)`` when what is missing is this parser's command:
        argparse names only its placeholder, so ``appliance results`` alone said "required:
        COMMAND" and the usage line above it named none of them."""
        if not message.startswith("the following arguments are required:"):
            return ""
        for action in self._actions:
            if action.required and isinstance(action.choices, dict) and action.metavar:
                return f" (one of: {', '.join(action.choices)})"
        return ""


def unrecognized_message(extras: Sequence[str]) -> str:
    """argparse's "unrecognized arguments: ..." naming at most NAMED_UNRECOGNIZED, each cut to
    logsafe.SHOWN_ARGUMENT_CHARS."""
    named = " ".join(logsafe.shorten(extra, logsafe.SHOWN_ARGUMENT_CHARS)
                     for extra in extras[:NAMED_UNRECOGNIZED])
    more = len(extras) - NAMED_UNRECOGNIZED
    return f"unrecognized arguments: {named}" + (f" (and {more} more)" if more > 0 else "")


def shorten_arguments(message: str, given: Sequence[str]) -> str:
    """``message`` with each argument of ``given`` longer than logsafe.SHOWN_ARGUMENT_CHARS
    (quoted or not, with its control characters escaped or not, and the value of
    ``--option=VALUE``) cut to that many characters."""
    limit = logsafe.SHOWN_ARGUMENT_CHARS
    long_values = {value for text in given if len(text) > limit
                   for value in (text, text.partition("=")[2]) if len(value) > limit}
    for value in sorted(long_values, key=len, reverse=True):
        message = message.replace(repr(value), logsafe.shorten_quoted(value, limit))
        message = message.replace(value, logsafe.shorten(value, limit))
        # as a refusal that escaped it names it (logsafe.escape_controls, log records)
        if (escaped := logsafe.escape_controls(value)) != value:
            message = message.replace(escaped, logsafe.shorten(value, limit))
    return message


class ArgumentCuttingStream:
    """A text stream (stderr) that writes each text with the overlong arguments of this run cut
    as ``shorten_arguments`` cuts them: the commands' own refusals and log lines name the value
    they refused ("token id '...'", "[Errno 36] File name too long: '...'"), and a
    100,000-character argument should be one short line there too, wherever it is named."""

    def __init__(self, stream: TextIO, given: Sequence[str]) -> None:
        self._stream = stream
        self._given = given

    def write(self, text: str) -> int:
        """Write ``text`` with the overlong arguments cut; returns the characters taken, as
        ``TextIO.write`` does (all of them)."""
        self._stream.write(shorten_arguments(text, self._given))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # flush, fileno, isatty, encoding, buffer


@contextmanager
def overlong_arguments_cut(given: Sequence[str]) -> Iterator[None]:
    """Within the block stderr cuts every argument of ``given`` longer than
    logsafe.SHOWN_ARGUMENT_CHARS; a run without one keeps stderr as it is."""
    if all(len(text) <= logsafe.SHOWN_ARGUMENT_CHARS for text in given):
        yield
        return
    stderr = sys.stderr
    sys.stderr = cast(TextIO, ArgumentCuttingStream(stderr, given))
    try:
        yield
    finally:
        sys.stderr = stderr


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every area's commands registered (its subcommands'
    parsers are EscapingParsers too: argparse makes them of the parent's class)."""
    parser = EscapingParser(
        prog="appliance", description=__doc__.splitlines()[0], formatter_class=ExampleFormatter,
        epilog="start with `appliance demo`, then `appliance fleet` (README.md: the tour); "
        "`appliance COMMAND --help` shows examples",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    root = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = {}
    for name, help_text in GROUPS.items():
        group = root.add_parser(name, help=help_text)
        groups[name] = group.add_subparsers(dest=f"{name}_command", required=True, metavar="KIND")
    _register_config(root)
    for module_name in _command_modules():
        importlib.import_module(module_name).register(root, groups)
    for command in command_parsers(parser):
        # `appliance fleet -v` (the flag after the command, as most tools take it) was refused
        # "unrecognized arguments: -v"; taken there too, unlisted (it is `appliance`'s own)
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
    apply_help(parser)
    return parser


def _command_modules() -> list[str]:
    """``appliance.<area>.commands`` and ``appliance.<area>.commands_*``, in a stable order."""
    found = []
    for area in AREAS:
        package = importlib.import_module(f"appliance.{area}")
        for info in pkgutil.iter_modules(package.__path__):
            if info.name == "commands" or info.name.startswith("commands_"):
                found.append(f"appliance.{area}.{info.name}")
    return sorted(found, key=lambda name: (AREAS.index(name.split(".")[1]), name))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (bare ``appliance`` prints help).
    A stop signal that comes while the command starts waits for it (appliance/interrupts.py)."""
    interrupts.hold()
    try:
        with overlong_arguments_cut(sys.argv[1:] if argv is None else list(argv)), \
                watched_stdout():
            return _main(argv)
    finally:
        interrupts.release()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments:
        parser.print_help()
        return 0
    args = parser.parse_args(arguments)
    logsafe.install()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # python-tuf logs at INFO each key that did not sign metadata whose threshold still holds
    # (a role's key kept offline, as docs/model-updates.md advises): no news, and it reads as
    # an error; a threshold not met is an error of its own. -v shows them.
    logging.getLogger("tuf").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # matplotlib logs at INFO that it built its font cache (a machine's first report or
    # heatmap): no news of the command's own, and the one log line of an otherwise plain run.
    logging.getLogger("matplotlib").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    handler: Handler = args.handler
    try:
        if getattr(args, "own_stop_signals", False):
            code = handler(args)  # it takes the held stop signals when it is ready for them
        else:
            with sigterm_ends_as_interrupt():  # a stop signal so far ends it here, as a later one
                code = handler(args)
        if sys.stdout is not None:  # None: started with standard output closed (`>&-`)
            sys.stdout.flush()  # a closed pipe shows here, not in an unhandled flush at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        silence_stdout()
        return 0
    except StdoutError as exc:  # `> out.txt` on a full disk: every command's printing
        silence_stdout()
        print(refused_line(command_named(args).removeprefix("appliance "), exc),
              file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # a path the system cannot take (a name over 255 bytes, a path over 4096) fails
        # wherever the command first touches it; one line, the path cut, not a traceback
        # that echoes it whole
        name = logsafe.shorten_quoted(str(exc.filename), logsafe.SHOWN_ARGUMENT_CHARS)
        print(f"{command_named(args)}: path too long for this system: {name}", file=sys.stderr)
        return 2


def command_named(args: argparse.Namespace) -> str:
    """The command as typed, subcommands included ("appliance results export"): each group
    keeps its chosen subcommand under NAME_command (``results_command``, ``job_command``)."""
    words = ["appliance", args.command]
    while isinstance(chosen := getattr(args, f"{words[-1]}_command", None), str):
        words.append(chosen)
    return " ".join(words)


@contextmanager
def sigterm_ends_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, systemd, ``kill``) ends a command as Ctrl-C would, by an exception
    in the main thread: the output file it was writing is removed on the way out (outfile.py,
    imagefile.py), not left as a hidden partial file, and a store it holds is closed; exit 143.
    SIGHUP (its terminal closed, an ssh connection lost) ends it the same way, exit 129: its
    default action killed ``synth skin`` or ``results export`` where they stood and left the
    hidden file they were writing. Under ``nohup`` it stays ignored.
    The daemons (``edge``, ``backoffice``, the servers) put their own orderly stop in its place
    while they run. A stop signal held while the command started (appliance/interrupts.py) ends
    it as the block begins, as a later one would: SIGTERM's default action, which it met before,
    killed the process without its clean exit. Off the main thread (a test calling ``main``)
    signals cannot be handled."""
    handlers: dict[int, interrupts.SignalHandler] = {signal.SIGTERM: _exit_as_terminated}
    if not interrupts.hangup_ignored():  # under ``nohup`` it stays ignored, as asked
        handlers[signal.SIGHUP] = _exit_as_terminated
    with interrupts.delivered(handlers):
        yield


def _exit_as_terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def silence_stdout() -> None:
    """The reader of our output left (``| head``): point stdout at /dev/null so the final
    flush at exit raises nothing (the recipe of Python's ``signal`` module documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
