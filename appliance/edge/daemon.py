"""The edge daemon: wires camera, analysis, outbox and MQTT threads and supervises them.

Threads: capture, analysis, commit and the MQTT link, joined by small bounded queues. The
main thread only supervises: signals, commands, config reload, systemd watchdog and status,
and the ``camera.limit`` exit (after the back office has confirmed the last result).

An outbox found damaged while running is repaired on the way out, not in place: a repair
renumbers its rows, and the link's record of what it sent is kept by seq. The daemon stops,
repairs the file (moved aside, its readable rows recovered), commits the results the
committer held meanwhile into the repaired outbox, and exits 1 so that systemd starts it afresh.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.capture.quality import QualityGate
from appliance.capture.sources import Frame, FrameSource, RecordsMeasured
from appliance.capture.supervisor import CaptureRunner
from appliance.config import Config
from appliance.edge.committer import ResultCommitter
from appliance.edge.kiosk import KioskDisplay
from appliance.edge.measure import Analyzer, Classifier
from appliance.edge.pipeline import Accepted, AnalysisRunner, Identity
from appliance.edge.relabel import send_as_this_kiosk
from appliance.edge.screen import KioskScreen
from appliance.edge.session import SessionTracker
from appliance.edge.staff import StaffNotice
from appliance.edge.status import DeviceStatus
from appliance.edge.systemd import Notifier, watchdog_interval_s
from appliance.transport.acks import ACK_LEAF
from appliance.transport.callbacks import shown_topic
from appliance.transport.client import LinkSettings, settings_from_config
from appliance.transport.forget import FORGET_LEAF, ForgetRequests
from appliance.transport.losttally import count_lost_beside
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxError
from appliance.transport.outbox_repair import open_outbox
from appliance.transport.presence import PRESENCE_LEAF, PresenceKeeper
from appliance.transport.presence_look import PresenceLook
from appliance.transport.presence_messages import Presence
from appliance.transport.resend import RESEND_LEAF, ResendRequests
from appliance.transport.session_topics import SESSION_TOPICS_FILE
from appliance.transport.topics import device_topic

log = logging.getLogger(__name__)

TICK_S = 0.1
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BROKER_REFUSED = 3
OUTBOX_FILE = "outbox.sqlite3"
# looking again, a kiosk that held back waits this many reconnect delays (at least the floor)
# for a live rival to connect again and show itself, before it measures again
PROBE_RECONNECTS = 4
PROBE_FLOOR_S = 10.0


def link_settings(config: Config) -> LinkSettings:
    """MQTT link settings from the config (the password from env or systemd credentials)."""
    edge = config.edge
    return settings_from_config(
        config.mqtt,
        f"edge-{config.device.site}-{config.device.id}",
        session_expiry_s=edge.session_expiry_s,
        message_expiry_s=edge.message_expiry_s,
        max_inflight=edge.max_inflight,
        reconnect_initial_s=edge.reconnect_initial_s,
        reconnect_cap_s=edge.reconnect_cap_s,
        ack_resend_initial_s=edge.ack_resend_initial_s,
        ack_resend_cap_s=max(edge.ack_resend_cap_s, edge.ack_resend_initial_s),
    )


def presence_keeper(config: Config, settings: LinkSettings) -> PresenceKeeper:
    """This process's presence on the device's presence topic, and when to look again while
    another live kiosk has the device id."""
    device, edge = config.device, config.edge
    topic = device_topic(config.mqtt.topic_prefix, device.site, device.id, PRESENCE_LEAF)
    own = Presence(device.id, device.site)
    probe_s = max(PROBE_FLOOR_S, PROBE_RECONNECTS * edge.reconnect_cap_s)
    return PresenceKeeper(topic, own, settings.client_id, retry_s=edge.duplicate_retry_s,
                          probe_s=probe_s,
                          new_look=lambda: PresenceLook(settings, topic, own, probe_s))


def new_outbox(config: Config, *, rebuild: bool = False) -> Outbox:
    """The outbox in ``state_dir`` with its bounds and policy (a damaged one is repaired;
    ``rebuild``: one found damaged while in use, even where it opens)."""
    edge = config.edge
    return open_outbox(
        Path(config.state_dir) / OUTBOX_FILE,
        rebuild=rebuild,
        max_rows=edge.outbox_max_rows,
        max_age_s=edge.outbox_max_age_h * 3600.0,
        policy=edge.outbox_policy,
        keep_confirmed_s=edge.keep_confirmed_h * 3600.0,
    )


@dataclass(frozen=True)
class Requests:
    """What signals ask of the daemon (a handler only sets these): stop, reload the config.
    They may be put in place before the daemon is built, and so hold a request made meanwhile."""

    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)


class EdgeDaemon:
    """One kiosk's daemon; ``run()`` blocks until stopped and returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        source: FrameSource,
        analyzer: Analyzer,
        classifier: Classifier | None = None,
        gate: QualityGate | None = None,
        stall_s: float | None = 5.0,
        notifier: Notifier | None = None,
        requests: Requests | None = None,
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.notifier = notifier or Notifier()
        self.pipeline_stop = threading.Event()
        self.measuring_paused = threading.Event()  # set while the outbox cannot write
        self.link_stop = threading.Event()
        requests = requests or Requests()
        self.stop_requested = requests.stop
        self.reload_requested = requests.reload
        self.reload_handler: Callable[[EdgeDaemon], None] | None = None
        self.outbox = new_outbox(config)
        self.status = DeviceStatus(self)
        settings = link_settings(config)
        self.presence = presence_keeper(config, settings)
        self.link = MqttLink(
            settings,
            self.outbox,
            status_topic=self._topic("status"),
            status_payload=self.status.payload,
            ack_topic=self._topic(ACK_LEAF),
            subscriptions=(self._topic("cmd/#"), *self._update_topics()),
            stop=self.link_stop,
            presence=self.presence,
            session_file=Path(config.state_dir) / SESSION_TOPICS_FILE,
        )
        self.staff = StaffNotice(self.link)
        self._resends = ResendRequests(self.link.ignored, self.link.resend_confirmed_since)
        self._forgets = ForgetRequests(self.link.ignored, self.outbox.forget_confirmed)
        self.updater = self._attach_updater()
        self.sessions = SessionTracker(config.edge.burst_frames, config.edge.rearm_frames)
        gate = gate or QualityGate(um_per_px=config.skin.um_per_px)
        self._build_pipeline(source, analyzer, gate, stall_s)
        self._watchdog_every_s = watchdog_interval_s()
        self._next_ping_s = 0.0
        self._next_status_s = 0.0
        self._stalled: set[str] = set()

    def _topic(self, leaf: str) -> str:
        device = self.config.device
        return device_topic(self.config.mqtt.topic_prefix, device.site, device.id, leaf)

    def _update_topics(self) -> tuple[str, ...]:
        return (self._topic("model/update"),) if self.config.updates.url else ()

    def _attach_updater(self) -> Any:
        """The verified model updater (appliance/updates/wiring.py) when updates.url is set."""
        if not self.config.updates.url:
            return None
        from appliance.updates.wiring import attach_updater  # noqa: PLC0415 - tuf, ORT

        return attach_updater(self)

    def _build_pipeline(
        self, source: FrameSource, analyzer: Analyzer, gate: QualityGate, stall_s: float | None
    ) -> None:
        """Capture -> frames queue -> analysis -> results queue -> commit, one stop event."""
        config, edge = self.config, self.config.edge
        records = source if isinstance(source, RecordsMeasured) else None  # a folder source
        frames: queue.Queue[Frame] = queue.Queue(maxsize=edge.frame_queue_size)
        results: queue.Queue[Accepted] = queue.Queue(maxsize=edge.result_queue_size)
        self._build_screen()
        self.capture = CaptureRunner(
            source,
            frames,
            self.pipeline_stop,
            stall_s=stall_s,
            reopen_cap_s=edge.camera_reopen_cap_s,
            # beats well inside the watchdog's limit: a beat as long as the limit itself read
            # as a stall whenever the machine was slow to wake the thread
            beat_s=edge.watchdog_stall_s / 4,
            on_camera_change=lambda _online: self.link.send_status(),
            on_frame=self.display.offer_frame,
        )
        self.analysis = AnalysisRunner(
            frames,
            results,
            self.pipeline_stop,
            gate=gate,
            sessions=self.sessions,
            analyzer=analyzer,
            classifier=lambda: self.classifier,
            identity=Identity(config.device.id, config.device.site, self._topic("result")),
            um_per_px=config.skin.um_per_px,
            limit=config.camera.limit,
            paused=self.measuring_paused,
            held=self.presence.held,
            on_gated=self.display.on_gated,
            subject=self.display.take_subject,
            on_failed=self.display.measurement_failed,
            on_not_measured=records.record_not_measured if records is not None else None,
        )
        self.committer = ResultCommitter(
            results, self.outbox, self.pipeline_stop, wake_link=self.link.wake,
            screen=self.screen, group_max=edge.group_commit_max, paused=self.measuring_paused,
            on_committed=records.record_measured if records is not None else None,
            on_dropped=records.record_not_kept if records is not None else None,
        )

    def _build_screen(self) -> None:
        """The kiosk display (page, preview, guidance) and the thread that shows results."""
        screen_dir = Path(self.config.state_dir) / "screen"
        self.display = KioskDisplay(self.config.screen, self.config.edge.burst_frames, screen_dir)
        self.screen = KioskScreen(screen_dir, self.link_stop, on_shown=self.display.show_result)

    def request_stop(self) -> None:
        """Stop soon (signal-safe: only sets an event)."""
        self.stop_requested.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start every thread, supervise until stopped or done, and shut down cleanly."""
        self.display.start()
        device = self.config.device
        send_as_this_kiosk(self.outbox, self._topic("result"), device.site, device.id)
        self.committer.pause_unless_writable()
        for thread in (self.link, self.screen, self.committer, self.analysis, self.capture):
            thread.start()
        if self.updater is not None:
            self.updater.start()
        self.status.start()
        self.notifier.notify("READY=1")
        log.info("edge daemon running: %s", self.config.summary())
        try:
            return self._supervise()
        finally:
            self._shutdown()

    def _supervise(self) -> int:
        while not self.stop_requested.wait(TICK_S):
            if self.link.fatal_error is not None:
                return EXIT_BROKER_REFUSED if self.link.refused else EXIT_FAILURE
            if self.outbox.damaged:
                log.error("%s; exiting to repair it (results not yet committed are kept)",
                          self.outbox.damaged)
                return EXIT_FAILURE
            dead = self.dead_threads()
            if dead:
                log.error("%s ended unexpectedly; exiting so systemd restarts", ", ".join(dead))
                return EXIT_FAILURE
            self._handle_commands()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                if self.reload_handler is not None:
                    self.reload_handler(self)
            self._tick_watchdog()
            self._tick_status()
            why = self._out_of_order()
            self.display.state.set_out_of_order(why, staff_told=self.staff.told(why))
            if self._limit_done():
                log.info("camera.limit reached and the back office confirmed every result; exiting")
                return EXIT_OK
        log.info("stop requested")
        return EXIT_OK

    def _out_of_order(self) -> str | None:
        """What the customer's screen says while the kiosk cannot measure (None: it can)."""
        if self.presence.held.is_set():
            return "guide_duplicate_device"
        if self.measuring_paused.is_set():
            return "guide_paused_disk_full" if self.committer.disk_full else "guide_paused_storage"
        if self.capture.failed and not self.pipeline_stop.is_set():
            return "guide_camera_offline"
        return None

    def _limit_done(self) -> bool:
        if not self.analysis.finished.is_set():
            return False
        self.pipeline_stop.set()  # no more frames needed
        return not self.committer.is_alive() and self.link.idle()

    def _shutdown(self) -> None:
        """Stop within about 5 s; every committed result stays in the outbox."""
        self.notifier.notify("STOPPING=1")
        self.pipeline_stop.set()
        for thread, timeout_s in ((self.capture, 1.0), (self.analysis, 1.0), (self.committer, 1.5)):
            thread.join(timeout_s)
        self.link_stop.set()
        self.link.wake()
        self.link.join(1.5)
        self.screen.join(1.0)
        self.display.stop()
        if not self.committer.is_alive():
            self.outbox.close()
            if self.outbox.damaged:
                self._repair_outbox()
        self.status.close()
        log.info("edge daemon stopped; %d result(s) wait in the outbox", self.outbox.depth())

    def _repair_outbox(self) -> None:
        """Repair the damaged outbox (every thread has ended) and keep the held results in it."""
        try:
            self.outbox = new_outbox(self.config, rebuild=True)
        except OutboxError as exc:
            lost = self.committer.drop_held(exc)
            counted = count_lost_beside(self.outbox.beside, lost)
            log.error("could not repair the outbox (%s); %d held result(s) lost%s", exc, lost,
                      "" if counted else ", and the tally beside it refuses the count too")
            return
        try:
            kept = self.committer.keep_held(self.outbox)  # or counted dropped, each logged
        except OutboxError:
            return
        finally:
            self.outbox.close()
        log.warning("outbox repaired; %d held result(s) committed to it", kept)

    # -- supervision -------------------------------------------------------------------------

    def _handle_commands(self) -> None:
        while True:
            try:
                message = self.link.inbox.get_nowait()
            except queue.Empty:
                return
            if message.topic.endswith("/cmd/measure"):
                # said when it asks something new: a flood of them is one line per measurement
                if self.sessions.request_measurement():
                    log.info("measurement requested over MQTT (%s)", shown_topic(message.topic))
            elif message.topic.endswith(f"/{RESEND_LEAF}"):
                self._resends.handle(message.payload, shown_topic(message.topic))
            elif message.topic.endswith(f"/{FORGET_LEAF}"):
                self._forgets.handle(message.payload, shown_topic(message.topic))
            elif message.topic.endswith("/model/update") and self.updater is not None:
                self.updater.notify()  # only "refresh now": signed metadata decides what runs
            else:
                self.link.ignored.warn("unknown command topic %s ignored",
                                       shown_topic(message.topic))

    def dead_threads(self) -> list[str]:
        """Names of pipeline threads (and the customer screen's) that ended although nothing
        asked them to (a crash)."""
        if self.pipeline_stop.is_set():
            return []
        expected: list[CaptureRunner | AnalysisRunner | ResultCommitter | KioskScreen] = [
            self.capture, self.committer, self.screen
        ]
        if not self.analysis.finished.is_set():
            expected.append(self.analysis)
        return [t.name for t in expected if not t.is_alive()]

    def stalled_threads(self) -> list[str]:
        """Names of threads that should run but have not made progress lately."""
        limit_s = self.config.edge.watchdog_stall_s
        watched: list[CaptureRunner | AnalysisRunner | ResultCommitter | MqttLink] = [self.link]
        if not self.pipeline_stop.is_set():
            watched += [self.capture, self.analysis, self.committer]
        now_s = time.monotonic()
        return [t.name for t in watched if now_s - t.last_beat_s > limit_s]

    def _tick_watchdog(self) -> None:
        stalled = set(self.stalled_threads())
        if stalled != self._stalled:
            if stalled:
                log.error("no progress in %s; watchdog pings stop", ", ".join(sorted(stalled)))
            self._stalled = stalled
        now_s = time.monotonic()
        if self._watchdog_every_s is None or stalled or now_s < self._next_ping_s:
            return
        self._next_ping_s = now_s + self._watchdog_every_s
        self.notifier.notify("WATCHDOG=1")

    def _tick_status(self) -> None:
        now_s = time.monotonic()
        if now_s < self._next_status_s:
            return
        self._next_status_s = now_s + min(self.config.edge.status_interval_s, 5.0)
        self.notifier.notify(f"STATUS={self.status.text()}")
        self.status.maybe_publish()
