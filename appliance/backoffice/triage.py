"""The ingest worker's triage: each MQTT message becomes a result row, a device status row, a
model report row (model_reports.py) or a dead letter.

A message is checked before anything of it is stored: its topic, strict JSON, the payload's
model, that the payload names the device whose topic it came on, and that its times lie within
the receiver's clock bounds. Whatever fails, even by an unexpected error, becomes a dead letter
with the reason, so no message stops the worker. ``BatchWriter`` (batcher.py) commits what
``Triage.sort`` returns. A dead letter is named in a warning as it is sorted, except one of a
retained message: the broker hands those out again at every subscribe, so it is named once the
commit tells that the store did not hold it already (``say_retained_letters``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from pydantic import ValidationError

from appliance.backoffice.letterlog import DeadLetterLog
from appliance.backoffice.model_reports import model_report_row
from appliance.backoffice.schema import (
    DeadLetter,
    dead_letter,
    device_row,
    iso_utc,
    named_measurement_id,
    result_row,
)
from appliance.backoffice.store import Batch
from appliance.backoffice.store_writes import latest_readings
from appliance.transport.bootstamp import BootStamp
from appliance.transport.payloads import (
    ModelState,
    PayloadError,
    Result,
    Status,
    check_json,
    parse_payload,
    utc_now,
)
from appliance.transport.topics import MODEL_STATE_LEAF, parse_device_topic

# the ingest writer's logger, as before triage had a module of its own (and as letterlog.py's)
log = logging.getLogger("appliance.backoffice.batcher")
LOG_PAYLOAD_CHARS = 120
# Times are bounded ahead by the receiver's clock: a kiosk's clock may run a little ahead.
# Going back, a status's time is its kiosk's clock as it stands, which the back office reads
# (erasure_clock.py), however far behind; a result's capture is judged once its kiosk's clock
# reading is at hand, as the store places it (placed_capture.py's MAX_AGE).
MAX_CLOCK_AHEAD = timedelta(minutes=5)

# (site, device id, measurement id): one result a device may drop from its outbox
Confirmed = tuple[str, str, str]


class LetterWarning(NamedTuple):
    """What the warning of one dead letter names (``DeadLetterLog.warn``'s arguments)."""

    source: str
    topic: str
    reason: str
    payload_bytes: int
    payload_start: str


@dataclass(frozen=True)
class Inbound:
    """One received MQTT message, as the network thread hands it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool = False  # replayed from the broker's retained store on subscribe
    # a result or status over its kiosk's rate (kiosk_rate.py, status_rate.py): acknowledged
    # to the broker in its turn, not written; its payload is not kept
    over_rate: bool = False
    # a status's receipt, stamped as it came (batcher.py; its clock reading, its order among
    # its kiosk's statuses); None: stamped as its batch is sorted
    received: datetime | None = None
    # a status held over its kiosk's rate, written later (status_rate.py): acknowledged and
    # counted with the batch it came in, not again with the one that writes it
    held: bool = False
    # where in its boot the kiosk built it, from its user properties (a status's:
    # appliance/transport/bootstamp.py; None: not said), which orders one boot's statuses
    boot: BootStamp | None = None


def parse_result(raw: bytes) -> Result:
    """A Result from raw bytes: strict JSON checks, pydantic's JSON fast path, clear errors."""
    check_json(raw)
    try:
        return Result.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        parse_payload(raw, Result)  # raises PayloadError with the readable reason
        raise PayloadError(str(exc).splitlines()[0]) from exc


def _cut(raw: bytes) -> str:
    text = raw[:LOG_PAYLOAD_CHARS].decode("utf-8", errors="replace")
    return text + ("..." if len(raw) > LOG_PAYLOAD_CHARS else "")


class Triage:
    """Sorts messages into result rows, status rows, model report rows and dead letters."""

    def __init__(self, topic_prefix: str, dead_letter_max_bytes: int, *,
                 log_dead_letters: bool = True) -> None:
        """``log_dead_letters``: warn of each message it dead-letters (not when it judges
        letters already kept again: ``results retry``)."""
        self.topic_prefix = topic_prefix
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.log_dead_letters = log_dead_letters
        self._letter_log = DeadLetterLog()
        # letter_sha256 -> the warning of a retained message's letter, said once the store
        # tells whether it held the letter already (``say_retained_letters``)
        self._retained_unsaid: dict[str, LetterWarning] = {}

    def sort(self, messages: list[Inbound]) -> tuple[Batch, list[Result]]:
        """The batch to commit and the valid results in it, with each device's newest clock
        reading of its statuses in it (the store writes one row a device of them:
        status_order.py)."""
        batch, results = Batch(topic_prefix=self.topic_prefix), []
        self._retained_unsaid.clear()  # a batch sorted again after an error: said once
        now = utc_now()
        received_at = iso_utc(now)
        for message in messages:
            at, received = ((now, received_at) if message.received is None
                            else (message.received, iso_utc(message.received)))
            try:
                result = self._one(message, batch, received, at, sorted_at=received)
            except PayloadError as exc:
                batch.dead_letters.append(self._dead(message, str(exc), received))
                continue
            except Exception as exc:  # a message must never stop the worker, whatever it holds
                log.exception("unexpected error on a message on %s", message.topic)
                reason = f"unexpected error: {type(exc).__name__}: {exc}"
                batch.dead_letters.append(self._dead(message, reason, received))
                continue
            if result is not None:
                results.append(result)
        # a kiosk's clock readings are latest-wins: one a kiosk (store_writes.py)
        batch.clock_readings = latest_readings(batch.clock_readings)
        return batch, results

    def _one(
        self, message: Inbound, batch: Batch, received_at: str, now: datetime, *,
        sorted_at: str,
    ) -> Result | None:
        """``sorted_at``: when it came (its receipt, stamped as the network thread hands it
        over: batcher.py), else now, which orders a live online status after every status of
        its kiosk that came before it, also one held over its rate (status_rate.py) and written
        after the statuses queued behind it."""
        where = parse_device_topic(self.topic_prefix, message.topic)
        if where is None or where[2] not in ("result", "status", MODEL_STATE_LEAF):
            raise PayloadError(f"not a device result, status or model state topic under "
                               f"{self.topic_prefix}")
        site, device, leaf = where
        if b"\\u0000" in message.payload:  # valid JSON, but PostgreSQL text cannot hold NUL
            raise PayloadError("a string holds a NUL character (\\u0000); no store accepts it")
        if leaf == MODEL_STATE_LEAF:
            self._model_report(message, batch, (site, device), received_at, now)
            return None
        if leaf == "status":  # a live "online" one was built as sent: it reads the clock
            if message.payload:  # an empty retained message only clears the topic
                status = parse_payload(message.payload, Status)
                _check_origin(status.site, status.device_id, site, device)
                _check_time("at", status.at, now)
                seen_at = iso_utc(status.at) if message.retained else received_at
                live = status.state == "online" and not message.retained
                # sent as sorted; the store places any other's sending (status_order.py)
                batch.statuses.append(device_row(status, seen_at, sorted_at if live else None,
                                                 message.boot))
                if live:
                    ahead_s = (status.at - now).total_seconds()
                    batch.clock_readings.append((site, device, ahead_s, received_at,
                                                 status.outbox_oldest_age_s, message.boot))
            return None
        result = parse_result(message.payload)
        _check_origin(result.site, result.device_id, site, device)
        _check_time("captured_at", result.captured_at, now)
        batch.results.append(result_row(result, received_at, message.payload.decode()))
        return result

    def _model_report(self, message: Inbound, batch: Batch, where: tuple[str, str],
                      received_at: str, now: datetime) -> None:
        """A kiosk's model report as a ``model_reports`` row; an empty retained message only
        clears the topic (the history keeps what it said)."""
        if not message.payload:
            return
        report = parse_payload(message.payload, ModelState)
        _check_origin(report.site, report.device_id, *where)
        _check_time("at", report.at, now)
        batch.model_reports.append(model_report_row(report, received_at, message.payload))

    def _dead(self, message: Inbound, reason: str, received_at: str) -> DeadLetter:
        letter = dead_letter(
            received_at, message.topic, reason, message.payload, self.dead_letter_max_bytes
        )
        if self.log_dead_letters:
            where = parse_device_topic(self.topic_prefix, message.topic)
            source = message.topic if where is None else f"{where[0]}/{where[1]}"
            warning = LetterWarning(source, message.topic, reason, len(message.payload),
                                    _cut(message.payload))
            if message.retained and letter.letter_sha256 is not None:
                self._retained_unsaid[letter.letter_sha256] = warning
            else:
                self._letter_log.warn(*warning)
        return letter

    def say_retained_letters(self, new_letters: set[str]) -> None:
        """Warn of the retained messages the last sorted batch dead-lettered, once committed:
        those the store did not hold yet (``Batch.new_letters``). One it held is the same junk
        the broker hands out again at every subscribe (a back office's every start): it was
        named when first kept, so it is only noted at debug."""
        for letter_sha256, warning in self._retained_unsaid.items():
            if letter_sha256 in new_letters:
                self._letter_log.warn(*warning)
            else:
                log.debug("retained message on %s: its dead letter is kept already (%s)",
                          warning.topic, warning.reason)
        self._retained_unsaid.clear()

    def refused_results(self, letters: list[DeadLetter]) -> list[Confirmed]:
        """The device results among these committed dead letters that their device may drop.

        Only a letter that holds its whole payload counts. Every payload the broker delivers
        is kept whole (``backoffice.dead_letter_max_bytes`` is at least its message size
        limit); one kept cut is larger than any result, is not parsed for an id, and is not
        confirmed. A letter is confirmed to the device whose topic it came on, and a device can
        publish only on its own topics (deploy/mosquitto), so no device can make another drop
        a result. One received again is confirmed again (the store keeps it once): its device
        sends it again because the last ack did not reach it.
        """
        confirmed = []
        for letter in letters:
            where = parse_device_topic(self.topic_prefix, letter.topic)
            if where is None or where[2] != "result" or letter.payload_bytes > len(letter.payload):
                continue
            measurement_id = named_measurement_id(letter.payload)
            if measurement_id is None:
                continue  # no id a kiosk could hold (not JSON, no or a bad measurement_id)
            confirmed.append((where[0], where[1], measurement_id))
        return confirmed


def _check_time(field: str, moment: datetime, now: datetime) -> None:
    """Refuse a time without a time zone, or ahead of the receiver's clock."""
    if moment.tzinfo is None:
        raise PayloadError(f"{field}: {moment.isoformat()} has no time zone; send UTC")
    if moment > now + MAX_CLOCK_AHEAD:
        raise PayloadError(
            f"{field}: {iso_utc(moment)} is ahead of the receiver's clock ({iso_utc(now)}); "
            "check the device's clock (NTP)"
        )


def _check_origin(site: str, device: str, topic_site: str, topic_device: str) -> None:
    if (site, device) != (topic_site, topic_device):
        raise PayloadError(
            f"payload says device {site}/{device} but came on the topic of "
            f"{topic_site}/{topic_device}"
        )
