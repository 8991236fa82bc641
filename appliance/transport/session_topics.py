"""What the edge link's persistent session is subscribed to, kept across restarts.

The broker keeps a session's subscriptions for as long as the session lives (clean start 0
and a session expiry, MQTT 5 spec 3.1.2.4 and 3.1.2.11.2), whatever a later connection
subscribes to. After a config change (a new ``mqtt.topic_prefix``, ``updates.url`` removed) and
a restart, the kiosk would go on receiving on the topics it no longer wants: a command on the
old prefix would still make it measure. So the topics it subscribes to are kept in a small file
beside the outbox (``state_dir/session-topics.json``, with the client id whose session they
are). At each CONNACK the link subscribes to what it wants and unsubscribes from what the file
lists beyond that; once the broker has answered that UNSUBSCRIBE the file lists only what is
wanted. Messages queued in the session for the topics still wanted stay there. Where there is
no usable file (the first start, a file from another client id, or one that cannot be read),
nothing is known of what the session holds, and the first connection starts a clean session;
what that can lose is an ack (the result is sent again) or a command sent while the kiosk was
off. A message queued under an old subscription before the UNSUBSCRIBE is ignored by the
link's callbacks (callbacks.QueuedCallbacks: no current subscription matches its topic).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import paho.mqtt.client as mqtt

from appliance.boundedread import read_bounded
from appliance.outfile import replaced_when_complete

log = logging.getLogger(__name__)

SESSION_TOPICS_FILE = "session-topics.json"
SESSION_TOPICS_SCHEMA = "appliance.session-topics/1"
MAX_FILE_BYTES = 64 * 1024


class SessionTopics:
    """The topics the broker's session for ``client_id`` holds, as far as this kiosk knows; an
    unknown session (no usable file) starts clean (``path`` None: nothing kept, none stale)."""

    def __init__(self, path: Path | None, client_id: str, wanted: tuple[str, ...]) -> None:
        self.path, self.client_id, self.wanted = path, client_id, wanted
        recorded = self._read() if path is not None else wanted
        self.known = recorded is not None
        self.stale = tuple(topic for topic in recorded or () if topic not in wanted)
        self._unsubscribing: int | None = None  # the UNSUBSCRIBE's message id, until UNSUBACK
        if recorded is not None and not set(wanted) <= set(recorded):
            self._write((*wanted, *self.stale))  # what the session may hold once it subscribes

    def clean_start(self) -> bool:
        """Whether the next connection starts a clean session (what the old holds is unknown)."""
        return not self.known

    def connected(self, client: mqtt.Client) -> None:
        """At CONNACK, after subscribing to what is wanted: unsubscribe from what is stale (a
        clean session holds only what was just subscribed, and the file says so)."""
        if not self.known:
            self.known = True
            self._write(self.wanted)
        elif self.stale:
            _rc, self._unsubscribing = client.unsubscribe(list(self.stale))

    def unsubscribed(self, mid: int) -> None:
        """An UNSUBACK: the stale topics have left the session once it answers ours."""
        if self._unsubscribing is None or mid != self._unsubscribing:
            return
        log.info("unsubscribed from %s (no longer in this kiosk's config)", ", ".join(self.stale))
        self.stale, self._unsubscribing = (), None
        self._write(self.wanted)

    def _read(self) -> tuple[str, ...] | None:
        """The topics in the file; None (said, where a file was there) when it is no use."""
        assert self.path is not None
        try:  # a pipe put in its place is not waited on: the kiosk would never start
            data = json.loads(read_bounded(self.path, MAX_FILE_BYTES))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            self._unusable(f"cannot be read ({exc})")
            return None
        topics = data.get("topics") if isinstance(data, dict) else None
        if (not isinstance(data, dict) or data.get("schema") != SESSION_TOPICS_SCHEMA
                or not isinstance(topics, list) or not all(isinstance(t, str) for t in topics)):
            self._unusable(f"is not a {SESSION_TOPICS_SCHEMA} file")
            return None
        if data.get("client_id") != self.client_id:
            self._unusable(f"is for client id {str(data.get('client_id'))[:80]!r}")
            return None
        return tuple(topics)

    def _unusable(self, why: str) -> None:
        log.warning("%s %s; the next connection starts a clean session, so no subscription "
                    "of an earlier config stays in it", self.path, why)

    def _write(self, topics: tuple[str, ...]) -> None:
        """Keep ``topics`` in the file (a full disk is said; the session goes on as it is)."""
        if self.path is None:
            return
        body = {"schema": SESSION_TOPICS_SCHEMA, "client_id": self.client_id,
                "topics": list(dict.fromkeys(topics))}
        try:
            with replaced_when_complete(self.path) as temp:
                temp.write_text(json.dumps(body))
        except OSError as exc:
            log.error("could not keep the session's topics: %s; a later config change may leave "
                      "a subscription of this one in the broker's session", exc)
