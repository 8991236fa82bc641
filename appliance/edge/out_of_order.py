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
ExecStartPre=) and the daemon takes the port back. No config is read: a config the daemon
refused is one reason this runs.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from appliance import interrupts
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_server import ScreenServer
from appliance.edge.screen_state import DOWN_FOR_GOOD, ScreenState

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


def out_of_order_state(detail: dict[str, str], language: str = "ja") -> ScreenState:
    """A screen state that says the kiosk is out of order (customers: tell staff), and why."""
    state = ScreenState(burst_frames=1, idle_s=3600.0, language=language)
    state.set_out_of_order(DOWN_FOR_GOOD, detail=detail)
    return state


def serve_out_of_order(port: int = DEFAULT_PORT,
                       environ: Mapping[str, str] | None = None) -> int:
    """Serve the out-of-order screen on 127.0.0.1:``port`` until SIGTERM or SIGINT; exit code."""
    detail = failure_detail(os.environ if environ is None else environ)
    log.error("the edge daemon is down for good (systemd: %s, %s, status %s): the kiosk "
              "screen says it is out of order until it is started again", detail["result"],
              detail["code"], detail["status"])
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="kiosk-out-of-order-") as empty, \
            interrupts.stop_on_signals(stop, log):
        try:
            server = _server(port, detail, Path(empty))
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


def _server(port: int, detail: dict[str, str], empty: Path) -> ScreenServer:
    """The kiosk screen's server on a state that says the kiosk is out of order; no camera,
    so its preview never sends a frame and its folder holds no overlay."""
    return ScreenServer(port, out_of_order_state(detail), PreviewFeed(640), empty, 1.0)
