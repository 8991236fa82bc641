"""``appliance edge``: load the config, build the real plug-ins, handle signals, run.

Its stop and reload handlers are put in place as soon as the config is read, before the heavy
work of building the daemon (a model to load, a camera to open): a Ctrl-C or SIGTERM that came
while the command started (held until then, appliance/interrupts.py) or while the daemon is
built then ends it in order, exit 0, as one that comes while it runs does, never as a
KeyboardInterrupt in the middle of a library or a kill by SIGTERM's default action.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from appliance import interrupts
from appliance.config import Config, ConfigError, load_config
from appliance.edge.daemon import EXIT_FAILURE, EXIT_OK, EdgeDaemon, Requests
from appliance.edge.ending import exit_code_after_stop
from appliance.edge.heap import keep_frame_buffers
from appliance.edge.measure import Classifier, Reloadable, skin_measurement
from appliance.edge.plugins import default_gate, source_from_config
from appliance.edge.systemd import setup_logging
from appliance.statelock import StateDirError, StateLock, StateLockError
from appliance.transport.outbox_file import OutboxError

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_RETRY = 1


def load_model(config: Config) -> Classifier | None:
    """The configured classifier (or the installed update), None when there is neither; the
    journal says which model serves."""
    if config.updates.url:
        from appliance.updates.wiring import startup_model  # noqa: PLC0415 - tuf, ORT

        classifier = startup_model(config)
    elif config.model.path is None:
        log.info("no model.path: results are sent without classification")
        return None
    else:
        from appliance.inference.classifier import SkinClassifier  # noqa: PLC0415 - loads ORT

        classifier = SkinClassifier.load(config.model.path)
    if classifier is not None:
        log.info("model %s %s serving, from %s", classifier.name, classifier.version,
                 classifier.path)
    return classifier


def build_daemon(config: Config, requests: Requests | None = None) -> EdgeDaemon:
    """The daemon with the real camera source, quality gate, analysis and model."""
    source, stall_s = source_from_config(config)
    return EdgeDaemon(
        config,
        source=source,
        analyzer=skin_measurement,
        classifier=load_model(config),
        gate=default_gate(config),
        stall_s=stall_s,
        requests=requests,
    )


def run_edge(config_path: str, verbose: bool = False) -> int:
    """Run the daemon from a config file; returns the process exit code."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"edge: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(verbose, config.device.id)
    requests = Requests()
    with signals_handled(requests):  # and a stop signal held while the command started
        return _run_handled(config, config_path, requests)


def _run_handled(config: Config, config_path: str, requests: Requests) -> int:
    """``appliance edge`` once its signals are handled: the state lock, then the daemon."""
    if requests.stop.is_set():
        log.info("stop requested while starting; exiting before the daemon ran")
        return EXIT_OK
    keep_frame_buffers()  # the analysis thread reuses its frame-sized buffers
    try:  # held while the daemon runs (the kernel drops it if the process dies)
        lock = StateLock(Path(config.state_dir) / "edge.lock", "appliance edge")
    except StateDirError as exc:  # a config error: retrying changes nothing
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    except StateLockError as exc:  # systemd retries (exit 1): the other one may be stopping
        log.error("cannot start: %s", exc)
        return EXIT_RETRY
    try:
        code = _run_locked(config, config_path, requests)
        # never finalise around a worker still in a library; one that may still write the
        # outbox keeps the lock until the process ends (the kernel drops it then), so no
        # second edge opens that outbox under it
        return exit_code_after_stop(code)
    finally:
        lock.release()


def _run_locked(config: Config, config_path: str, requests: Requests) -> int:
    def built() -> EdgeDaemon:
        daemon = build_daemon(config, requests)
        daemon.reload_handler = lambda d: reload_config(d, Path(config_path))
        return daemon

    return run_until_stopped(built, requests)


def run_until_stopped(build: Callable[[], EdgeDaemon], requests: Requests) -> int:
    """Build the daemon and run it until it stops; its exit code. The one way an edge process
    runs its daemon (``appliance edge`` and the test kiosks of appliance/edge/testing.py), so
    each of them ends the same way: a stop asked while it was built (it never runs), a bug
    (its traceback to the journal, exit 1), and ``exit_code_after_stop`` after it, in the
    caller, where a worker may still be inside a library."""
    try:
        daemon = build()
    except OutboxError as exc:  # e.g. its folder cannot be read: systemd retries (exit 1)
        log.error("cannot start: %s", exc)
        return EXIT_RETRY
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    except Exception as exc:  # ModelError and friends: the message names the file
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return EXIT_CONFIG
    if requests.stop.is_set():  # while it was built: it never ran, its outbox closes as it is
        daemon.outbox.close()
        log.info("stop requested while starting; exiting before the daemon ran")
        return EXIT_OK
    try:
        return daemon.run()
    except Exception:  # a bug: its traceback to the journal, and the exit through the caller's
        # exit_code_after_stop (a worker may still be inside a library: no finalisation then)
        log.exception("edge daemon failed; exiting so systemd restarts")
        return EXIT_FAILURE


@contextmanager
def signals_handled(requests: Requests) -> Iterator[None]:
    """For the length of the block SIGTERM/SIGINT request a stop, SIGHUP a config reload (main
    thread only); a stop signal that came while the command started is handed over as it
    begins (appliance/interrupts.py). The handlers before it are back after it."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        requests.stop.set()

    def reload(signum: int, _frame: FrameType | None) -> None:
        requests.reload.set()

    with interrupts.delivered({signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: reload}):
        yield


def reload_config(daemon: EdgeDaemon, config_path: Path) -> None:
    """SIGHUP: re-read the config and the model file; swap the model live, report what needs
    a restart."""
    try:
        new = load_config(config_path)
    except ConfigError as exc:
        log.error("reload refused, keeping the running config: %s", exc)
        return
    old = daemon.config
    changed = [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]
    reload_model(daemon, new, model_changed="model" in changed)
    needs_restart = [name for name in changed if name != "model"]
    if needs_restart:
        log.warning("config changes in %s take effect after a restart", ", ".join(needs_restart))
    log.info("config reloaded from %s", config_path)


def reload_model(daemon: EdgeDaemon, new: Config, model_changed: bool) -> None:
    """SIGHUP: serve ``model.path`` as it is on disk now, checked first; a file that does not
    load leaves the serving model serving, and the journal says which serves and why.

    The file is re-read on every SIGHUP, not only when the config's text changed: a model
    copied over the same path is the usual way to replace it. An installed update (updates.url)
    is the updater's to change, so it keeps serving unless the model section changed.
    """
    current = daemon.classifier
    path = new.model.path
    if path is None:
        if model_changed:  # model.path removed: load_model says what serves now
            _swap_in(daemon, new, None)
        return
    if new.updates.url and not model_changed and not _serves_from(current, Path(path)):
        log.info("model reload: the installed update %s keeps serving; model.path %s is only "
                 "its fallback", _serving(current), path)
        return
    try:
        _swap_in(daemon, new, path)
    except Exception as exc:  # ModelError and friends: the old model keeps serving
        why = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        restart = "" if new.updates.url else "; until it loads, a restart exits 2 (config error)"
        log.error("model reload refused, still serving %s: %s%s", _serving(current), why, restart)
        return
    log.info("model reload: now serving %s (from %s)", _serving(daemon.classifier), path)


def _swap_in(daemon: EdgeDaemon, new: Config, path: str | None) -> None:
    """Load and check ``path`` (None: what ``load_model`` picks), then serve it."""
    current = daemon.classifier
    if path is None:
        daemon.classifier = load_model(new)
    elif isinstance(current, Reloadable):
        current.reload(path)  # checks the whole file before it swaps
    else:
        from appliance.inference.classifier import SkinClassifier  # noqa: PLC0415 - loads ORT

        daemon.classifier = SkinClassifier.load(path)
    daemon.config = daemon.config.model_copy(update={"model": new.model})
    daemon.link.send_status()


def _serves_from(classifier: Classifier | None, path: Path) -> bool:
    """Whether the serving model came from ``path`` (for a ServingModel: its classifier)."""
    inner = getattr(classifier, "classifier", classifier)
    source = getattr(inner, "path", None)
    return isinstance(source, Path) and source.resolve() == path.resolve()


def _serving(classifier: Classifier | None) -> str:
    """"NAME VERSION" of the serving model, or "no model"."""
    if classifier is None or not classifier.name:
        return "no model"
    return f"{classifier.name} {classifier.version}"
