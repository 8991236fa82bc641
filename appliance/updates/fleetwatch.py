"""The back office's view of the fleet over MQTT: retained statuses and model states, notices.

``FleetWatcher`` subscribes to ``{prefix}/+/+/status`` and ``{prefix}/+/+/model/state`` (both
retained, so a fresh watcher learns every device at once) and publishes the notices on
``.../model/update``. A notice carries nothing a kiosk acts on but "refresh now". One the
broker cannot take (it is restarting) stays in paho's queue and goes out once the client has
reconnected, while the watcher is open: a deploy's notices reach kiosks the broker knows when
it is back during the rollout; those still unsent when it closes are named, and their kiosks
install at their next check.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from appliance.backoffice.triage import MAX_CLOCK_AHEAD
from appliance.config import MqttConfig
from appliance.transport import payloads
from appliance.transport.client import (
    reason_value,
    settings_from_config,
    with_login_password,
)
from appliance.transport.subscriber import Subscriber
from appliance.transport.topics import (
    MODEL_STATE_LEAF,
    device_topic,
    fleet_filter,
    parse_device_topic,
)

log = logging.getLogger(__name__)

SETTLE_S = 1.0  # retained messages arrive right after SUBACK; this covers a busy broker
NOTICE_WAIT_S = 10.0  # a "refresh now" notice not acknowledged by then is said not sent
NO_MATCHING_SUBSCRIBERS = 0x10  # a PUBACK's reason code (MQTT 5 spec 3.4.2.1)
UPDATE_LEAF = "model/update"
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DeviceView:
    """What the broker's retained messages say about one device."""

    site: str
    device_id: str
    status: payloads.Status | None = None
    state: payloads.ModelState | None = None
    # a time (time.monotonic()) ``state`` reached the broker after: when it arrived live, or,
    # replayed as a retained message after a reconnect and newer than the one held, when the
    # connection was last known alive before it dropped (it came while the watcher was away);
    # None for a replay on the first subscription: then only its own time says when it was sent
    state_heard_s: float | None = None

    @property
    def running(self) -> str | None:
        """The model version it runs, by its newest report."""
        model = self.running_model
        return model.version if model is not None else None

    @property
    def running_model(self) -> payloads.ModelInfo | None:
        """The model (name and version) it runs, by its newest report."""
        state, status = self.state, self.status
        newer_state = state is not None and (status is None or _rank(status.at) <= _rank(state.at))
        model = state.running if newer_state and state is not None else None
        if model is None and status is not None:
            model = status.model
        return model


def _rank(at: datetime) -> datetime:
    """A report's time for ordering. One further ahead of this clock than the ingest accepts
    (a kiosk clock that ran ahead) outranks nothing, or its retained report would hide every
    later one until that time came; so does one without a time zone (the ingest refuses it)."""
    believed = at.tzinfo is not None and at <= datetime.now(UTC) + MAX_CLOCK_AHEAD
    return at if believed else _NEVER


class FleetWatcher:
    """Keeps the newest status and model state of every device under ``prefix``.

    It subscribes only once the broker accepted the connection (transport/subscriber.py); a
    refusal retrying cannot fix ends the start with BrokerRefusedError naming the broker and
    the reason code.
    """

    def __init__(self, mqtt_config: MqttConfig, client_id: str,
                 password: str | None = None) -> None:
        self.prefix = mqtt_config.topic_prefix
        self._devices: dict[tuple[str, str], DeviceView] = {}
        self._lock = threading.Lock()
        # notices paho holds to send again after a reconnect, by message id; and the
        # acknowledgements that came before ``notify`` had counted their notice unsent
        self._unsent: dict[int, tuple[str, str]] = {}
        self._acknowledged: dict[int, int] = {}  # message id: PUBACK reason code
        # the last sign the connection was alive (a message or an acknowledgement), and that
        # time as it was when the connection last dropped (None before any drop)
        self._alive_s: float | None = None
        self._away_since_s: float | None = None
        filters = [(fleet_filter(self.prefix, "status"), 1),
                   (fleet_filter(self.prefix, MODEL_STATE_LEAF), 1)]
        # ``password``: read from a file the command names (passwordfile.py)
        settings = with_login_password(settings_from_config(mqtt_config, client_id), password)
        self._link = Subscriber(settings, filters, self._on_message)
        self._link.client.on_publish = self._on_published
        self._link.client.on_disconnect = self._on_disconnected
        self._link.start()
        time.sleep(SETTLE_S)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._alive_s = time.monotonic()
        self._record(message.topic, bytes(message.payload), live=not message.retain)

    def _record(self, topic: str, raw: bytes, *, live: bool) -> None:
        parsed = parse_device_topic(self.prefix, topic)
        if parsed is None or not raw:
            return
        site, device_id, leaf = parsed
        if leaf not in ("status", MODEL_STATE_LEAF):
            return
        if b"\\u0000" in raw:  # as the ingest refuses it (backoffice/triage.py): a deploy
            # records a report's reason, and PostgreSQL's text cannot hold a NUL
            log.warning("ignored a bad payload on %s: a string holds a NUL character (\\u0000); "
                        "no store accepts it", topic)
            return
        try:
            status = payloads.parse_payload(raw, payloads.Status) if leaf == "status" else None
            state = payloads.parse_payload(raw, payloads.ModelState) if status is None else None
        except payloads.PayloadError as exc:
            log.warning("ignored a bad payload on %s: %s", topic, exc)
            return
        said = status or state
        if said is not None and (said.site, said.device_id) != (site, device_id):
            log.warning("ignored a payload on %s: it says device %s/%s", topic, said.site,
                        said.device_id)  # identifiers: validated, nothing to escape
            return
        with self._lock:
            view = self._devices.get((site, device_id), DeviceView(site, device_id))
            if state is None:
                heard_s = view.state_heard_s
            else:
                heard_s = time.monotonic() if live else self._replay_heard_s(view, state)
            self._devices[(site, device_id)] = replace(
                view, status=status or view.status, state=state or view.state,
                state_heard_s=heard_s,
            )

    def _replay_heard_s(self, view: DeviceView, state: payloads.ModelState) -> float | None:
        """``state_heard_s`` of a model state the broker replayed as retained (lock held). The
        same one as held: as it was. One newer than held (by the kiosk's own clock: ordering
        two of its reports), or the first of a device, after a reconnect: it reached the broker
        while this watcher was away, so after the connection was last known alive; anything
        else is None. A refusal a kiosk sent while the broker restarted came so, and was taken
        for one from before the rollout: the wave timed out instead of ending with its reason.
        One older than held (a broker's persistence from before its last save) is no news."""
        if state == view.state:
            return view.state_heard_s
        newer = view.state is None or _rank(state.at) > _rank(view.state.at)
        return self._away_since_s if newer else None

    def _on_disconnected(self, _c: object, _u: object, _flags: object, _code: object,
                         _props: object) -> None:
        with self._lock:
            self._away_since_s = self._alive_s

    def devices(self) -> dict[tuple[str, str], DeviceView]:
        """Every device seen, by (site, device id)."""
        with self._lock:
            return dict(self._devices)

    def notify(self, site: str, device_id: str, rollout_id: str) -> None:
        """Publish the "refresh now" notice to one device. One the broker cannot take now is
        logged, not raised: paho keeps it queued (QoS 1) and sends it again once it has
        reconnected, but only while this watcher is open (the deploy runs); ``close`` names
        those still unsent, which the device installs at its next check. So is one the
        broker took but had no subscription for (``_unheard``)."""
        body = json.dumps({"refresh": True, "rollout": rollout_id}).encode()
        topic = device_topic(self.prefix, site, device_id, UPDATE_LEAF)
        try:
            sent = self._link.client.publish(topic, body, qos=1)
            sent.wait_for_publish(NOTICE_WAIT_S)
        except ValueError as exc:  # paho: its queue is full, so the notice is not in it
            log.warning("notice to %s/%s not sent (%s); it installs at its next check "
                        "(updates.check_interval_s)", site, device_id, exc)
            return
        except RuntimeError as exc:  # paho: not connected; queued, sent after reconnecting
            reason = str(exc)
        else:
            # not acknowledged: written into a connection the broker had already dropped (the
            # client has not noticed yet), no error; sent again (DUP) after reconnecting
            reason = f"the broker did not acknowledge it within {NOTICE_WAIT_S:g} s"
        with self._lock:  # on_publish runs before is_published() turns true
            answer = self._acknowledged.pop(sent.mid, None)
            if answer is None:
                self._unsent[sent.mid] = (site, device_id)
        if answer is not None:
            self._unheard(site, device_id, answer)
            return
        log.warning("notice to %s/%s not sent yet (%s); sent again once the broker is back, "
                    "while this deploy runs; else it installs at its next check "
                    "(updates.check_interval_s)", site, device_id, reason)

    def command(self, site: str, device_id: str, leaf: str, body: bytes) -> int | None:
        """Publish a command (QoS 1, not retained) to one device; the broker's PUBACK reason
        code (``NO_MATCHING_SUBSCRIBERS``: no session of the kiosk takes it), or None when it
        did not acknowledge it within ``NOTICE_WAIT_S``."""
        topic = device_topic(self.prefix, site, device_id, leaf)
        try:
            sent = self._link.client.publish(topic, body, qos=1)
            sent.wait_for_publish(NOTICE_WAIT_S)
        except (ValueError, RuntimeError):  # paho: its queue is full, or not connected
            return None
        with self._lock:  # on_publish runs before is_published() turns true
            return self._acknowledged.pop(sent.mid, None)

    def _on_published(self, _c: object, _u: object, mid: int, code: object,
                      _props: object) -> None:
        """The broker acknowledged a notice (PUBACK), perhaps one sent again after a
        reconnect."""
        with self._lock:
            self._alive_s = time.monotonic()
            device = self._unsent.pop(mid, None)
            if device is None:  # before ``notify`` looked for it
                self._acknowledged[mid] = reason_value(code)
        if device is not None:
            self._unheard(*device, reason_value(code))

    @staticmethod
    def _unheard(site: str, device_id: str, answer: int) -> None:
        """Name a notice the broker took but passed to no one: the kiosk is away and the
        broker keeps no session for it (one restarted without persistence, a session
        expired), so it installs at its next check."""
        if answer == NO_MATCHING_SUBSCRIBERS:
            log.warning("notice to %s/%s reached the broker but no subscription of the kiosk "
                        "(away, and no session kept for it); it installs at its next check "
                        "(updates.check_interval_s)", site, device_id)

    def close(self) -> None:
        """Disconnect; a notice still unsent is dropped with paho's queue, and named."""
        self._link.close()
        with self._lock:
            unsent = sorted(self._unsent.values())
            self._unsent.clear()
        for site, device_id in unsent:
            log.warning("notice to %s/%s dropped as this deploy ended, never acknowledged by "
                        "the broker; it installs at its next check (updates.check_interval_s)",
                        site, device_id)
