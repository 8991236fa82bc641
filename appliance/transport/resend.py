"""The back office's request that a kiosk send again what it confirmed since a time.

A store restored from a backup lacks what the back office confirmed after that backup; the
kiosks keep such results for ``edge.keep_confirmed_h`` (appliance/transport/outbox_kept.py).
``appliance fleet resend --since T`` publishes ``{"since": T}`` on each kiosk's
``{prefix}/{site}/{device}/cmd/resend`` (a topic only the back office's and the rollout's logins
may publish: deploy/mosquitto/provision.py); the kiosk has the kept results confirmed at or after
T (the back office's clock, as their acks said) wait again, and its link sends them at the
pace of its resends (appliance/transport/unconfirmed.py). The back office stores each
measurement id once.

Every request is from outside, so it is bounded: at most ``MAX_REQUEST_BYTES``, one JSON object
with exactly the key ``since``, a UTC ISO 8601 time, and at most one request taken in
``MIN_INTERVAL_S``; any other is refused with a
line in the journal (within the link's budget of lines for messages from outside) and changes
nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from appliance.logsafe import LineBudget, shorten

RESEND_LEAF = "cmd/resend"
MAX_REQUEST_BYTES = 256
MAX_AHEAD_S = 300.0  # `fleet resend --since` no further ahead of the operator's clock
MIN_INTERVAL_S = 60.0
SHOWN_CHARS = 80


class ResendRequestError(ValueError):
    """A resend request that is not one; the message says why."""


def parse_request(raw: bytes, now_s: float | None) -> float:
    """The request's ``since`` as a Unix time; ResendRequestError saying why it is none.
    ``now_s``: the clock ``since`` is on, which it may pass by ``MAX_AHEAD_S`` at most (the
    operator's, in ``fleet resend``); None on a kiosk, whose own clock is not the one its kept
    results' times are on (their acks', the back office's clock): one that lags would refuse
    every request as "in the future" and lose what a restore lacks."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise ResendRequestError(f"{len(raw)} bytes, more than {MAX_REQUEST_BYTES}")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ResendRequestError(f"not JSON ({exc})") from exc
    if not isinstance(body, dict) or set(body) != {"since"} or not isinstance(body["since"], str):
        raise ResendRequestError('not {"since": "<UTC ISO 8601 time>"}')
    text = body["since"]
    shown = repr(shorten(text, SHOWN_CHARS))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ResendRequestError(f"since {shown} is no ISO 8601 time") from exc
    offset = moment.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ResendRequestError(f"since {shown} is not in UTC")
    since_s = moment.timestamp()
    if now_s is not None and since_s > now_s + MAX_AHEAD_S:
        now = datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise ResendRequestError(f"since {text} is in the future by this host's clock "
                                 f"(now {now}): nothing was confirmed after it yet")
    return since_s


class ResendRequests:
    """Takes the valid requests, one in ``MIN_INTERVAL_S`` at most, and hands each one's time
    to ``act`` (the link's ``resend_confirmed_since``); says each refusal."""

    def __init__(self, ignored: LineBudget, act: Callable[[float], None]) -> None:
        self._ignored, self._act = ignored, act
        self._last_taken_s: float | None = None  # monotonic

    def handle(self, raw: bytes, topic: str) -> None:
        """Act on the request ``raw`` that came on ``topic`` (shown as given), or refuse it."""
        since_s = self.take(raw, topic)
        if since_s is not None:
            self._act(since_s)

    def take(self, raw: bytes, topic: str) -> float | None:
        """The ``since`` of a request to act on now (None: refused, and said)."""
        now_s = time.monotonic()
        if self._last_taken_s is not None and now_s - self._last_taken_s < MIN_INTERVAL_S:
            self._ignored.warn("refused a resend request on %s: one was taken %.0f s ago "
                               "(at most one in %.0f s); nothing changed", topic,
                               now_s - self._last_taken_s, MIN_INTERVAL_S)
            return None
        try:
            since_s = parse_request(raw, None)
        except ResendRequestError as exc:
            self._ignored.warn("refused a resend request on %s: %s; nothing changed", topic,
                               exc)
            return None
        self._last_taken_s = now_s
        return since_s
