"""The kiosk screen while the edge daemon is down for good: out of order, and why, for staff.

The daemon serves the kiosk screen itself, so when it is gone the page (kiosk.js) can only
say it is starting again. systemd restarts it after most failures, but not after an exit it
would meet again (2: its config or model refused; 3: the broker refused its credentials:
``RestartPreventExitStatus=``), nor once a start limit is hit (the shipped unit sets none):
the unit is then "failed", and the screen promised a restart that never came. The edge
unit's ``OnFailure=`` starts deploy/appliance-kiosk-out-of-order.service, which runs
``appliance edge --out-of-order``:
the same page on the same port, saying the kiosk is out of order, asking the customer to tell
staff, and telling staff why in systemd's words (``$MONITOR_SERVICE_RESULT``,
``$MONITOR_EXIT_CODE``, ``$MONITOR_EXIT_STATUS``: systemd.exec(5), "Environment variables in
spawned processes"). A start of the daemon stops that unit first (the edge unit's
ExecStartPre=) and the daemon takes the port back. Of the kiosk's config only
``screen.language`` is read (the language the screen starts in), and on its own: a config the
daemon refused is one reason this runs. Where it cannot be read, the page starts in that key's
default, and the log says why.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from appliance import interrupts
from appliance.config.edge import ScreenConfig
from appliance.config.loader import ConfigError, read_yaml
from appliance.configname import ENV_PREFIX
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_server import ScreenServer
from appliance.edge.screen_state import DOWN_FOR_GOOD, LANGUAGES, ScreenState

log = logging.getLogger(__name__)

DEFAULT_PORT = 8090  # deploy/appliance-kiosk-screen.service shows http://127.0.0.1:8090/
# the edge daemon's exit statuses systemd does not restart (deploy/appliance-edge.service)
# -> the catalogue key that says what they mean (messages.json)
WHY_BY_EXIT_STATUS = {"2": "down_config", "3": "down_credentials"}
WHY_OTHERWISE = "down_failed"  # systemd gave up restarting it (its start limit, say)


def failure_detail(environ: Mapping[str, str]) -> dict[str, str]:
    """Why the daemon is down, for staff: a catalogue key and systemd's own words for it."""
    result = environ.get("MONITOR_SERVICE_RESULT") or "unknown"
    code = environ.get("MONITOR_EXIT_CODE") or "unknown"
    status = environ.get("MONITOR_EXIT_STATUS") or "unknown"
    why = WHY_BY_EXIT_STATUS.get(status, WHY_OTHERWISE) if code == "exited" else WHY_OTHERWISE
    return {"key": why, "result": result, "code": code, "status": status}


DEFAULT_LANGUAGE: str = ScreenConfig.model_fields["language"].default
LANGUAGE_VARIABLE = f"{ENV_PREFIX}SCREEN__LANGUAGE"  # the override the screen's config takes


def configured_language(config_path: str | Path, environ: Mapping[str, str]) -> str:
    """The language the kiosk screen starts in: ``screen.language`` of the kiosk's config
    (its APPLIANCE__SCREEN__LANGUAGE override first), read alone, since the rest of the
    config may be what the daemon refused; where it cannot be read or names no language the
    screen has, DEFAULT_LANGUAGE, said in the log."""
    if environ.get(LANGUAGE_VARIABLE):
        return _known_language(environ[LANGUAGE_VARIABLE], LANGUAGE_VARIABLE)
    try:
        screen = read_yaml(Path(config_path)).get("screen")
    except ConfigError as exc:
        log.warning("the out-of-order screen starts in %s (screen.language's default): its "
                    "config was not read: %s", DEFAULT_LANGUAGE, exc)
        return DEFAULT_LANGUAGE
    if not isinstance(screen, dict) or "language" not in screen:
        return DEFAULT_LANGUAGE  # what the screen itself starts in with this config
    return _known_language(screen["language"], f"{config_path}: screen.language")


def _known_language(language: object, where: str) -> str:
    """``language`` when the screen has it, else DEFAULT_LANGUAGE with a warning naming it."""
    if isinstance(language, str) and language in LANGUAGES:
        return language
    log.warning("the out-of-order screen starts in %s (screen.language's default): %s is %r, "
                "not one of %s", DEFAULT_LANGUAGE, where, language, ", ".join(LANGUAGES))
    return DEFAULT_LANGUAGE


def out_of_order_state(detail: dict[str, str],
                       language: str = DEFAULT_LANGUAGE) -> ScreenState:
    """A screen state that says the kiosk is out of order (customers: tell staff), and why."""
    state = ScreenState(burst_frames=1, idle_s=3600.0, language=language)
    state.set_out_of_order(DOWN_FOR_GOOD, detail=detail)
    return state


def serve_out_of_order(port: int = DEFAULT_PORT, environ: Mapping[str, str] | None = None,
                       config_path: str | Path = "config.yaml") -> int:
    """Serve the out-of-order screen on 127.0.0.1:``port``, in the language the kiosk's
    config at ``config_path`` sets, until SIGTERM, SIGINT or SIGHUP; exit code."""
    environ = os.environ if environ is None else environ
    detail = failure_detail(environ)
    language = configured_language(config_path, environ)
    log.error("the edge daemon is down for good (systemd: %s, %s, status %s): the kiosk "
              "screen says it is out of order until it is started again", detail["result"],
              detail["code"], detail["status"])
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="kiosk-out-of-order-") as empty, \
            interrupts.stop_on_signals(stop, log):
        try:
            server = _server(port, out_of_order_state(detail, language), Path(empty))
        except OSError as exc:
            log.error("kiosk screen not served: cannot listen on 127.0.0.1:%d: %s", port, exc)
            return 1
        serving = threading.Thread(target=server.serve_forever, args=(0.25,), daemon=True,
                                   name="KioskScreenServer")
        serving.start()
        stop.wait()
        server.stopping.set()
        server.shutdown()
        server.server_close()
        serving.join(2.0)
    return 0


def _server(port: int, state: ScreenState, empty: Path) -> ScreenServer:
    """The kiosk screen's server on a state that says the kiosk is out of order; no camera,
    so its preview never sends a frame and its folder holds no overlay."""
    return ScreenServer(port, state, PreviewFeed(640), empty, 1.0)
