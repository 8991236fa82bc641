"""The kiosk display: screen state, live preview and the screen server, wired for the daemon.

The daemon hands it camera frames (``offer_frame``), quality verdicts (``on_gated``) and
shown results (``show_result``), and asks it for the customer's choices (``take_subject``).
With ``screen.port`` unset there is no server and frames are not kept. A port that cannot be
bound is logged and the kiosk keeps measuring and delivering without its screen.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from appliance.capture.quality import FrameQuality
from appliance.capture.sources import Frame
from appliance.config import ScreenConfig
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_server import ScreenServer
from appliance.edge.screen_state import ScreenState
from appliance.edge.screen_view import load_references, result_view
from appliance.transport import payloads

log = logging.getLogger(__name__)

TICK_S = 0.5


class KioskDisplay:
    """Everything the customer sees, fed by the daemon's threads."""

    def __init__(self, settings: ScreenConfig, burst_frames: int, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.state = ScreenState(burst_frames, settings.idle_s, settings.language)
        self.preview = PreviewFeed(settings.preview_width_px)
        reference = Path(settings.reference_file) if settings.reference_file else None
        self.references = load_references(reference)
        self.server: ScreenServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str | None:
        """The page's address while the server runs."""
        return f"http://127.0.0.1:{self.server.server_port}/" if self.server else None

    def offer_frame(self, frame: Frame) -> None:
        """A camera frame for the live preview (capture thread; returns at once)."""
        if self.server is not None:
            self.preview.offer(frame)

    def on_gated(self, quality: FrameQuality, gathered: int, complete: bool) -> None:
        """A quality verdict for the guidance (analysis thread)."""
        self.state.on_gated(quality, gathered, complete)

    def measurement_failed(self) -> None:
        """The burst being analysed gives no result (analysis thread)."""
        self.state.measurement_failed()

    def take_subject(self, stated_band: str | None = None) -> payloads.Subject | None:
        """The customer's age band, only with their consent (analysis thread)."""
        return self.state.take_subject(stated_band)

    def show_result(self, result: payloads.Result, overlay: bool) -> None:
        """A committed result, once its overlay is written (screen thread)."""
        self.state.show_result(result_view(result, self.references, overlay))

    def start(self) -> None:
        """Start the screen server and the idle clock (when ``screen.port`` is set)."""
        if self.settings.port is None:
            return
        try:
            self.server = ScreenServer(self.settings.port, self.state, self.preview, self.folder,
                                       self.settings.preview_fps)
        except OSError as exc:
            log.error("kiosk screen not served: cannot listen on 127.0.0.1:%d: %s; stop what "
                      "uses it or set screen.port (in the config, or for one run "
                      "APPLIANCE__SCREEN__PORT=%d); the kiosk measures and sends without it",
                      self.settings.port, exc, _another_port(self.settings.port))
            return
        server = self.server
        self._threads = [threading.Thread(target=server.serve_forever, args=(0.25,),
                                          name="KioskScreenServer", daemon=True),
                         threading.Thread(target=self._tick, name="KioskScreenIdle", daemon=True)]
        for thread in self._threads:
            thread.start()
        log.info("kiosk screen on %s", self.url)

    def _tick(self) -> None:
        assert self.server is not None
        while not self.server.stopping.wait(TICK_S):
            self.state.tick()

    def stop(self) -> None:
        """Stop serving (open streams end within about a second)."""
        if self.server is None:
            return
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(2.0)


def _another_port(port: int) -> int:
    """A port to name in place of ``port`` in the hint (the next one, or the one before)."""
    return port + 1 if port < 65535 else port - 1

