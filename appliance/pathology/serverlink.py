"""The broker link of ``appliance pathology serve``: its one paho client (MQTT 5, a clean
session, its presence as the retained birth and the last will), paho's callbacks, which only
queue events for the main loop, the question about the broker's packet limit when a CONNECT is
dropped, a rival under its client id, and leaving the broker cleanly (appliance/pathology/
presence.py; docs/pathology-server.md). Running the jobs is the server's
(appliance/pathology/server.py), which this class is a base of.

The packet-limit question goes under the server's probe login ``SERVER@probe`` (its password,
client id ``SERVER@probe``, no topic at all: deploy/mosquitto/provision.py), never under the
server's own client id, whose connection the broker would close for it (MQTT 5 spec 3.1.4).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.config import Config
from appliance.pathology.jobs import (
    ANY_JOB,
    cancel_topic,
    job_id_of_topic,
    request_topic,
    server_topic,
)
from appliance.pathology.presence import Presence, RivalWatch, leave_broker, rival_message
from appliance.transport.client import (
    BrokerRefusedError,
    LinkSettings,
    broker_max_packet_bytes,
    connack_refusal,
    connect_bytes_at_least,
    connect_properties,
    is_fatal_connack,
    new_client,
    packet_bound,
    reason_value,
    set_retained_will,
    settings_from_config,
)
from appliance.transport.unreachable import BrokerReach

# the server's messages, under its logger as before this part moved here (a journal filter)
log = logging.getLogger("appliance.pathology.server")
PROBE_SUFFIX = "@probe"  # of the probe's login and client id ('@' is in no server id)
# job requests and cancels at QoS 0 waiting in the queue at most (64 MiB of 256 KiB requests),
# as in the back office's ingest (appliance/backoffice/batcher.py)
MAX_QOS0_WAITING = 256


def probe_settings(settings: LinkSettings) -> LinkSettings:
    """The packet-size probe's connection: the server's broker and password, the probe login
    and client id, no session kept."""
    username = None if settings.username is None else settings.username + PROBE_SUFFIX
    return replace(settings, client_id=settings.client_id + PROBE_SUFFIX, username=username,
                   session_expiry_s=0)


class ServerLink:
    """The broker half of a pathology server (a base of ``PathologyServer``, whose main loop
    handles the events queued here)."""

    config: Config
    server_id: str
    prefix: str
    events: queue.Queue[tuple[str, Any]]

    def _init_link(self, backend_settings: dict[str, Any]) -> None:
        """Not connected yet; the client built, its presence and last will ready."""
        self.connected = threading.Event()
        self.broker_max_packet: int | None = None  # as this connection's CONNACK says
        self.failed: str | None = None
        self.exit_code = 3  # of a failure: 3 the broker refuses us, 4 a rival took our name
        self.presence = Presence(self.server_id, backend_settings)
        self._qos0_lock = threading.Lock()
        self._qos0_waiting = 0  # QoS 0 requests and cancels in the queue (_queue_message)
        self.qos0_dropped = 0
        self.rivals = RivalWatch(self.presence)
        self._packet_limit_asked = False  # the broker's packet limit, asked once
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        self.link_settings = settings_from_config(
            self.config.mqtt, self.server_id, session_expiry_s=0,
            reconnect_initial_s=1.0, reconnect_cap_s=30.0)
        will = (server_topic(self.prefix, self.server_id), self.presence.will())
        client = new_client(self.link_settings, will, reconnect=True)
        client.manual_ack_set(True)  # PUBACK only once the job is stored (MQTT 5 spec 4.3.2)
        self.reach = BrokerReach(self.server_id, self.config.mqtt.host, self.config.mqtt.port,
                                 log)
        self.reach.attach(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        mqtt_config = self.config.mqtt
        # a clean session, ended with the connection: every request and cancel is retained, so
        # a queue kept for a stopped server would only hand it stale copies; and the largest
        # packet it takes, from the largest request (a larger one still arrives and is refused)
        self.client.connect_async(mqtt_config.host, mqtt_config.port,
                                  keepalive=mqtt_config.keepalive_s, clean_start=True,
                                  properties=connect_properties(
                                      self.link_settings,
                                      packet_bound(self.config.pathology.max_job_bytes)))
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    props: Any) -> None:
        try:
            self.reach.reached()  # the broker answered, whatever it answered
            if reason.is_failure:
                refusal = connack_refusal(self.link_settings, reason)
                log.error("%s", refusal)
                if is_fatal_connack(reason_value(reason)):
                    self.failed = refusal
                    client.disconnect()
                return
            requests = request_topic(self.prefix, ANY_JOB)
            presence = server_topic(self.prefix, self.server_id)
            # the largest packet this broker takes (MQTT 5 spec 3.2.2.3.6); it drops the
            # connection of a client that sends a larger one
            self.broker_max_packet = getattr(props, "MaximumPacketSize", None)
            self.events.put(("connected", ()))  # before the retained requests it brings
            # its own presence first: what is retained there says who else used this name
            client.subscribe(presence, options=SubscribeOptions(qos=1))  # its retained first
            client.subscribe([(requests, SubscribeOptions(qos=1)),
                              (cancel_topic(self.prefix, ANY_JOB), SubscribeOptions(qos=1))])
            self.presence.connection += 1
            client.publish(presence, self.presence.payload("online"), qos=1, retain=True)
            set_retained_will(client, presence, self.presence.will())  # the next connection's
            self.connected.set()
            log.info("%s connected; jobs from %s", self.server_id, requests)
        except Exception:  # never let an exception kill paho's network thread
            log.exception("on_connect failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       props: Any) -> None:
        answered = self.connected.is_set()
        self.connected.clear()
        if reason.value != 0:
            log.warning("%s disconnected (%s); reconnecting", self.server_id, reason)
            if not answered:  # closed before its CONNACK: perhaps our CONNECT is too large
                self.events.put(("closed_before_connack", ()))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if "/servers/" in message.topic:
                self.events.put(("presence", (bytes(message.payload),)))
            elif message.topic.endswith("/request"):
                self._queue_message("job", (job_id_of_topic(message.topic),
                                            bytes(message.payload), message.mid, message.qos))
            else:
                self._queue_message("cancel", (job_id_of_topic(message.topic), message.mid,
                                               message.qos, bool(message.payload)))
        except Exception:  # never let an exception kill paho's network thread
            log.exception("could not queue a message on %s", message.topic)

    def _queue_message(self, kind: str, event: tuple[Any, ...]) -> None:
        """Queue a job request or cancel for the main loop, unless it is one QoS 0 message
        too many. QoS 1 ones are bounded by the broker (at most its receive maximum
        unacknowledged); QoS 0 ones are not flow-controlled at all, and the job commands send
        at QoS 1, so a job client's flood of them grew the queue without bound (a few
        thousand requests of 100 kB held 400 MB): beyond MAX_QOS0_WAITING waiting they are
        dropped and counted (a retained one is read again at the next rescan)."""
        if qos_of(kind, event) == 0:
            with self._qos0_lock:
                admitted = self._qos0_waiting < MAX_QOS0_WAITING
                self._qos0_waiting += admitted
                self.qos0_dropped += not admitted
                dropped = self.qos0_dropped
            if not admitted:
                if dropped % 1000 == 1:
                    log.warning("dropped a QoS 0 %s on job %r (%d so far): %d QoS 0 messages "
                                "wait already; the job commands publish at QoS 1", kind,
                                str(event[0])[:64], dropped, MAX_QOS0_WAITING)
                return
        self.events.put((kind, event))

    def _taken(self, kind: str, event: Any) -> None:
        """The main loop took a message off the queue: a QoS 0 one waits no longer."""
        if qos_of(kind, event) == 0:
            with self._qos0_lock:
                self._qos0_waiting -= 1

    def _event_closed_before_connack(self) -> None:
        """Once: ask the broker the largest packet it takes; a CONNECT larger than that is
        dropped at every try, so the server stops (exit 3) saying what to change."""
        if self._packet_limit_asked:
            return
        self._packet_limit_asked = True
        will = (server_topic(self.prefix, self.server_id), self.presence.will())
        try:
            limit = broker_max_packet_bytes(probe_settings(self.link_settings))
        except BrokerRefusedError as refused:
            log.error("%s, so this server cannot tell whether its CONNECT is larger than the "
                      "broker takes (said once). Provision the probe login: run "
                      "deploy/mosquitto/provision.py again with --pathology-server %s (it keeps "
                      "every password); on a broker with a plain password_file: run "
                      "`mosquitto_passwd PASSWORD_FILE %s%s`, typing this server's password, "
                      "then reload mosquitto (SIGHUP; its acl_file needs no line for it)",
                      refused, self.server_id, self.server_id, PROBE_SUFFIX)
            return
        needed = connect_bytes_at_least(self.link_settings, will)
        if limit is None or limit >= needed:
            return  # not a packet too large: reconnecting as paho does
        self.failed = (
            f"broker {self.link_settings.host}:{self.link_settings.port} refuses this server's "
            f"CONNECT: its max_packet_size is {limit} bytes, smaller than the CONNECT's "
            f"{needed} bytes or more (its last will, the presence on {will[0]}, is "
            f"{len(will[1])} bytes); raise max_packet_size in the broker's config; not retrying")

    def _event_presence(self, payload: bytes) -> None:
        """Stop when another live process, started first, serves under this client id; take
        no job for a while when this server starts where one may still run."""
        rival = self.rivals.heard(payload)
        if rival is not None:
            self.exit_code = 4
            self.failed = rival_message(self.server_id, rival,
                                        server_topic(self.prefix, self.server_id))

    def _leave_the_broker(self) -> None:
        """Retain this server's clean "offline" (not under a rival's name, which goes on), then
        disconnect, each waited for (presence.leave_broker): a DISCONNECT sent while its PUBACK
        was on the way, or not sent before paho's thread stopped, reached the broker as a lost
        connection: it sent the will, and the next server read a stop that was not clean and
        took no job for PROBATION_S."""
        offline = None if self.exit_code == 4 else self.presence.payload("offline")
        leave_broker(self.client, server_topic(self.prefix, self.server_id), offline,
                     self.connected)


def qos_of(kind: str, event: Any) -> int | None:
    """The QoS a job request or cancel came from the broker with (None for other events, and
    for a request the server put off and takes up again: it was acknowledged then)."""
    if kind == "job":
        return None if len(event) > 4 and event[4] else int(event[3])
    if kind == "cancel":
        return int(event[2])
    return None
