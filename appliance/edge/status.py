"""What the daemon says about itself: the retained MQTT status, systemd STATUS=, metrics."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal

from appliance import __version__
from appliance.edge.metrics import MetricsServer
from appliance.transport import payloads

if TYPE_CHECKING:
    from appliance.edge.daemon import EdgeDaemon

log = logging.getLogger(__name__)
# A changed outbox depth is published this soon (not only every status_interval_s), so the
# fleet table never pairs a fresh last_seen with a depth from a minute ago.
DEPTH_REFRESH_S = 2.0


class DeviceStatus:
    """Reads the daemon's counters; builds status payloads, status text and metrics."""

    def __init__(self, daemon: EdgeDaemon) -> None:
        self.daemon = daemon
        self._metrics: MetricsServer | None = None
        self._next_publish_s = time.monotonic() + daemon.config.edge.status_interval_s
        self._last_publish_s = time.monotonic()
        self._published_depth: int | None = None

    def start(self) -> None:
        """Serve metrics when ``edge.metrics_port`` is set; a port that cannot be bound is
        logged and the kiosk keeps measuring and delivering without its metrics."""
        port = self.daemon.config.edge.metrics_port
        if port is None:
            return
        metrics = MetricsServer(port, self.metrics)
        try:
            metrics.start()
        except OSError as exc:
            log.error("metrics not served: cannot listen on 127.0.0.1:%d: %s; check "
                      "edge.metrics_port", port, exc)
            return
        self._metrics = metrics

    def close(self) -> None:
        """Stop serving metrics."""
        if self._metrics is not None:
            self._metrics.close()

    def payload(self, state: str) -> bytes:
        """The retained status message: the birth ("online"), the "offline" one a clean stop
        leaves, or the last will ("offline", built as each link connects: without the camera
        before the capture starts)."""
        d = self.daemon
        device = d.config.device
        camera: Literal["online", "offline"] | None = None
        capture = getattr(d, "capture", None)  # the first last will is built before it exists
        if capture is not None and capture.ident is not None:  # started: its last state
            camera = "online" if capture.online else "offline"
        model = None
        if d.classifier is not None:
            model = payloads.ModelInfo(name=d.classifier.name, version=d.classifier.version)
        status = payloads.Status(
            device_id=device.id,
            site=device.site,
            state="online" if state == "online" else "offline",
            at=payloads.utc_now(),
            software_version=__version__,
            model=model,
            camera=camera,
            outbox_depth=d.outbox.depth(),
            outbox_oldest_age_s=d.outbox.oldest_age_s(),
            dropped=d.outbox.dropped(),
            measuring_paused=self._measuring_paused() if state == "online" else None,
            outbox_in_use=self._outbox_in_use() if state == "online" else None,
            keep_confirmed_h=self._keep_confirmed_h(),
        )
        return status.to_json()

    def _measuring_paused(self) -> Literal["disk_full", "storage"] | None:
        """Why the kiosk does not measure, for the status (staff.py: the screen tells the
        customer that staff were told once such a status reached the broker); None while it
        measures, so that the status of a measuring kiosk is the one a back office older than
        the field takes."""
        committer = getattr(self.daemon, "committer", None)  # the last will: built before it
        if committer is None or not self.daemon.measuring_paused.is_set():
            return None
        return "disk_full" if committer.disk_full else "storage"

    def _keep_confirmed_h(self) -> float | None:
        """The kiosk's edge.keep_confirmed_h where it is not the default, in every status (the
        last will too: the back office asks it to forget erased results that long,
        kiosk_forgets.py); None (left out, as a back office older than the field takes) at the
        default, which a back office reads from its absence."""
        hours = self.daemon.config.edge.keep_confirmed_h
        return None if hours == payloads.KEEP_CONFIRMED_DEFAULT_H else hours

    def _outbox_in_use(self) -> Literal["repaired_copy"] | None:
        """'repaired_copy' while the outbox in use is the repaired copy of one that could not
        be moved aside (outbox_repair.py), for the fleet to show: someone must free the damaged
        file; None (the field left out, as a back office older than it takes) otherwise."""
        outbox = self.daemon.outbox
        return "repaired_copy" if outbox.path != outbox.beside else None

    def text(self) -> str:
        """One line for systemd's STATUS=."""
        d = self.daemon
        alerts = ""
        if d.measuring_paused.is_set():
            alerts = f"MEASURING PAUSED: {d.committer.paused_why or 'the outbox cannot write'}, "
        if self._outbox_in_use():
            alerts += (f"OUTBOX ON ITS REPAIRED COPY {d.outbox.path}: the damaged "
                       f"{d.outbox.beside} cannot be moved aside, ")
        rival = d.presence.rival
        if rival is not None:
            alerts = (f"HELD BACK: device id {d.config.device.id} in use by host {rival.host} "
                      f"pid {rival.pid}, {alerts}")
        return (
            f"{alerts}camera {'online' if d.capture.online else 'offline'}, "
            f"{d.committer.committed} measured, outbox {d.outbox.depth()} "
            f"(and {d.outbox.kept_confirmed()} confirmed kept), "
            f"dropped {d.outbox.dropped()}, "
            f"broker {'connected' if d.link.connected else 'disconnected'}"
        )

    def maybe_publish(self) -> None:
        """Refresh the retained status every ``edge.status_interval_s``, and within
        ``DEPTH_REFRESH_S`` of a change in the outbox depth."""
        now_s = time.monotonic()
        depth = self.daemon.outbox.depth()
        depth_moved = depth != self._published_depth and (
            now_s - self._last_publish_s >= DEPTH_REFRESH_S
        )
        if now_s >= self._next_publish_s or depth_moved:
            self._next_publish_s = now_s + self.daemon.config.edge.status_interval_s
            self._last_publish_s = now_s
            self._published_depth = depth
            self.daemon.link.send_status()

    def metrics(self) -> dict[str, float]:
        """Current values of every metric (names as in edge.metrics.METRICS)."""
        d = self.daemon
        return {
            "appliance_edge_frames": d.capture.frames_captured,
            "appliance_edge_frames_dropped": d.capture.frames_dropped,
            "appliance_edge_measurements": d.committer.committed,
            "appliance_edge_measurements_lost": d.committer.refused,
            "appliance_edge_measuring_paused": float(d.measuring_paused.is_set()),
            "appliance_edge_outbox_on_repaired_copy": float(self._outbox_in_use() is not None),
            "appliance_edge_outbox_depth": d.outbox.depth(),
            "appliance_edge_outbox_kept_confirmed": d.outbox.kept_confirmed(),
            "appliance_edge_outbox_oldest_age_seconds": d.outbox.oldest_age_s() or 0.0,
            "appliance_edge_outbox_dropped": d.outbox.dropped(),
            "appliance_edge_results_confirmed": d.link.stats.acked,
            "appliance_edge_results_resent": d.link.stats.resent,
            "appliance_edge_results_refused": (d.link.stats.rejected
                                               + d.link.stats.dropped_unanswered),
            "appliance_edge_mqtt_reconnects": d.link.stats.reconnects,
            "appliance_edge_mqtt_connected": float(d.link.connected),
            "appliance_edge_held_back": float(d.presence.held.is_set()),
            "appliance_edge_camera_online": float(d.capture.online),
            "appliance_edge_camera_failures": d.capture.failures,
        }
