"""The back office's request that a kiosk forget the kept copies of results it erased.

A kiosk keeps each result the back office confirmed for ``edge.keep_confirmed_h``
(appliance/transport/outbox_kept.py), so that ``fleet resend`` can bring back what a restored
store lacks. When a person withdraws consent (``appliance results erase``) the back office
publishes the erased ids each kiosk sent on its ``{prefix}/{site}/{device}/cmd/forget`` (a topic
only the back office's login may publish: deploy/mosquitto/provision.py), as
``{"ids": ["<measurement id>", ...]}``; the kiosk deletes the copies of those ids the back
office confirmed, durably, and says how many (never which). An id it does not hold is no error:
the back office asks again at each connect of the kiosk until the kiosk's window would have
dropped the copy anyway. A result the back office never confirmed is never deleted by this:
the back office cannot know it, and it is to be delivered (then judged by the erasure's
tombstones, appliance/backoffice/erasure.py).

Every request is from outside, so it is bounded: at most ``MAX_REQUEST_BYTES``, one JSON object
with exactly the key ``ids``, a list of 1 to ``MAX_IDS`` ids each of the form a stored result's
id has (a lower-case UUIDv7); any other is refused with a line in the journal (within the link's
budget of lines for messages from outside) and changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

from appliance.logsafe import LineBudget
from appliance.transport.outbox_file import OutboxError
from appliance.transport.payloads import MEASUREMENT_ID_PATTERN

log = logging.getLogger(__name__)

FORGET_LEAF = "cmd/forget"
MAX_IDS = 1000  # one request; the back office sends more in several
# the ids as JSON strings with their separators (39 bytes each) and the object around them
MAX_REQUEST_BYTES = MAX_IDS * 40 + 64
_ID = re.compile(MEASUREMENT_ID_PATTERN)


class ForgetRequestError(ValueError):
    """A forget request that is not one; the message says why."""


def parse_request(raw: bytes) -> list[str]:
    """The request's ids, each once, in its order; ForgetRequestError saying why it is none."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise ForgetRequestError(f"{len(raw)} bytes, more than {MAX_REQUEST_BYTES}")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ForgetRequestError(f"not JSON ({type(exc).__name__})") from exc
    if not isinstance(body, dict) or set(body) != {"ids"} or not isinstance(body["ids"], list):
        raise ForgetRequestError('not {"ids": ["<result id>", ...]}')
    ids = body["ids"]
    if not 1 <= len(ids) <= MAX_IDS:
        raise ForgetRequestError(f"{len(ids)} ids, not 1 to {MAX_IDS}")
    wrong = sum(1 for each in ids if not isinstance(each, str) or _ID.fullmatch(each) is None)
    if wrong:
        raise ForgetRequestError(
            f"{wrong} of its {len(ids)} ids are not a result's id (a UUIDv7 in lower case)"
        )
    return list(dict.fromkeys(ids))


class ForgetRequests:
    """Takes the valid requests and has ``forget`` (the outbox's ``forget_confirmed``) delete
    the confirmed copies they name; says each refusal, and how many copies went."""

    def __init__(self, ignored: LineBudget, forget: Callable[[list[str]], int]) -> None:
        self._ignored, self._forget = ignored, forget

    def handle(self, raw: bytes, topic: str) -> None:
        """Act on the request ``raw`` that came on ``topic`` (shown as given), or refuse it."""
        try:
            ids = parse_request(raw)
        except ForgetRequestError as exc:
            self._ignored.warn("refused a forget request on %s: %s; nothing changed", topic, exc)
            return
        try:
            removed = self._forget(ids)
        except OutboxError as exc:  # kept: the back office asks again at the next connect
            log.error("could not delete the kept results the back office erased: %s", exc)
            return
        log.info(
            "the back office erased %d result(s) on request: %d confirmed copy(ies) "
            "deleted from the outbox",
            len(ids),
            removed,
        )
