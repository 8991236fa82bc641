"""The ingest writer: MQTT messages from the inbox, sorted, committed in batches, then acked.

Paho's network thread only puts messages on the inbox. One writer thread takes up to
``batch_max_rows`` of them (waiting at most ``batch_interval_ms`` to fill a batch), validates
them, commits results, device status and dead letters in ONE transaction, and only then tells
each device which of its results are committed (the end-to-end ack, docs/delivery.md) and sends
the PUBACKs (MQTT 5 spec 4.3.2: the receiver owns the message once it sends PUBACK). A result
refused as invalid is confirmed to its device too once its whole payload is committed to the
dead letters: the back office has taken it, and a re-send would only be refused again. A crash
before the commit loses nothing: the broker redelivers the unacknowledged messages to the
session, the device sends again what was never confirmed, and the store keeps each
``measurement_id`` once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from appliance.backoffice.letterlog import DeadLetterLog
from appliance.backoffice.schema import (
    DeadLetter,
    dead_letter,
    device_row,
    iso_utc,
    named_measurement_id,
    result_row,
)
from appliance.backoffice.store import Batch, Store
from appliance.backoffice.storeurl import masked_url
from appliance.config import BackofficeConfig
from appliance.transport.payloads import (
    PayloadError,
    Result,
    Status,
    check_json,
    parse_payload,
    utc_now,
)
from appliance.transport.topics import parse_device_topic

log = logging.getLogger(__name__)
LOG_PAYLOAD_CHARS = 120
RETRY_MAX_S = 5.0
# Times are bounded by the receiver's clock: a kiosk's clock may run a little ahead; going
# back, a kiosk's backlog (30 days by default) and imported archives stay well inside 10 years,
# while an unset clock (1970) or a garbage year does not.
MAX_CLOCK_AHEAD = timedelta(minutes=5)
MAX_AGE = timedelta(days=3653)

# (site, device id, measurement id): one result a device may drop from its outbox
Confirmed = tuple[str, str, str]


@dataclass(frozen=True)
class Inbound:
    """One received MQTT message, as the network thread hands it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool = False  # replayed from the broker's retained store on subscribe


@dataclass
class IngestStats:
    """Counters of one worker since it started."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    statuses: int = 0
    batches: int = 0
    commit_failures: int = 0
    qos0_refused: int = 0  # QoS 0 messages dropped: MAX_QOS0_WAITING waited already
    # dead letters the bounds pruned that were a result's only copy (its kiosk was told to
    # drop it): lost; the store counts them by device (``appliance results dead-letters``)
    only_copies_pruned: int = 0


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
    """Sorts messages into result rows, status rows and dead letters."""

    def __init__(self, topic_prefix: str, dead_letter_max_bytes: int, *,
                 log_dead_letters: bool = True) -> None:
        """``log_dead_letters``: warn of each message it dead-letters (not when it judges
        letters already kept again: ``results retry``)."""
        self.topic_prefix = topic_prefix
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.log_dead_letters = log_dead_letters
        self._letter_log = DeadLetterLog()

    def sort(self, messages: list[Inbound]) -> tuple[Batch, list[Result]]:
        """The batch to commit and the valid results in it."""
        batch, results = Batch(topic_prefix=self.topic_prefix), []
        now = utc_now()
        received_at = iso_utc(now)
        for message in messages:
            try:
                result = self._one(message, batch, received_at, now)
            except PayloadError as exc:
                batch.dead_letters.append(self._dead(message, str(exc), received_at))
                continue
            except Exception as exc:  # a message must never stop the worker, whatever it holds
                log.exception("unexpected error on a message on %s", message.topic)
                reason = f"unexpected error: {type(exc).__name__}: {exc}"
                batch.dead_letters.append(self._dead(message, reason, received_at))
                continue
            if result is not None:
                results.append(result)
        return batch, results

    def _one(
        self, message: Inbound, batch: Batch, received_at: str, now: datetime
    ) -> Result | None:
        where = parse_device_topic(self.topic_prefix, message.topic)
        if where is None or where[2] not in ("result", "status"):
            raise PayloadError(f"not a device result or status topic under {self.topic_prefix}")
        site, device, leaf = where
        if b"\\u0000" in message.payload:  # valid JSON, but PostgreSQL text cannot hold NUL
            raise PayloadError("a string holds a NUL character (\\u0000); no store accepts it")
        if leaf == "status":
            if message.payload:  # an empty retained message only clears the topic
                status = parse_payload(message.payload, Status)
                _check_origin(status.site, status.device_id, site, device)
                _check_time("at", status.at, now)
                seen_at = iso_utc(status.at) if message.retained else received_at
                batch.statuses.append(device_row(status, seen_at))
            return None
        result = parse_result(message.payload)
        _check_origin(result.site, result.device_id, site, device)
        _check_time("captured_at", result.captured_at, now)
        batch.results.append(result_row(result, received_at, message.payload.decode()))
        return result

    def _dead(self, message: Inbound, reason: str, received_at: str) -> DeadLetter:
        if self.log_dead_letters:
            where = parse_device_topic(self.topic_prefix, message.topic)
            source = message.topic if where is None else f"{where[0]}/{where[1]}"
            self._letter_log.warn(source, message.topic, reason, len(message.payload),
                                  _cut(message.payload))
        return dead_letter(
            received_at, message.topic, reason, message.payload, self.dead_letter_max_bytes
        )

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
    """Refuse a time ahead of the receiver's clock, or older than any kiosk keeps a result."""
    if moment.tzinfo is None:
        raise PayloadError(f"{field}: {moment.isoformat()} has no time zone; send UTC")
    if moment > now + MAX_CLOCK_AHEAD:
        raise PayloadError(
            f"{field}: {iso_utc(moment)} is ahead of the receiver's clock ({iso_utc(now)}); "
            "check the device's clock (NTP)"
        )
    if moment < now - MAX_AGE:
        raise PayloadError(f"{field}: {iso_utc(moment)} is older than {MAX_AGE.days} days")


def _check_origin(site: str, device: str, topic_site: str, topic_device: str) -> None:
    if (site, device) != (topic_site, topic_device):
        raise PayloadError(
            f"payload says device {site}/{device} but came on the topic of "
            f"{topic_site}/{topic_device}"
        )


MAX_QOS0_WAITING = 256  # QoS 0 messages in the inbox at most (64 MiB of 256 KiB payloads)


class BatchWriter(threading.Thread):
    """The one thread that commits the inbox to the store and acknowledges what it committed."""

    def __init__(
        self,
        store: Store,
        settings: BackofficeConfig,
        triage: Triage,
        ack: Callable[[list[Inbound]], None],
        on_stored: Callable[[list[Result]], None] | None = None,
        *,
        confirm: Callable[[list[Confirmed]], None] | None = None,
    ) -> None:
        super().__init__(name="IngestWriter", daemon=True)
        self._confirm = confirm
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.stats = IngestStats()
        self.stop_event = threading.Event()
        self._store, self._settings, self._triage = store, settings, triage
        self._ack, self._on_stored = ack, on_stored
        self._qos0_lock = threading.Lock()
        self._qos0_waiting = 0

    def offer(self, message: Inbound) -> bool:
        """Queue a message for the store; False when it is dropped instead.

        QoS 1 messages are bounded by the broker (at most its receive maximum unacknowledged);
        QoS 0 ones are not flow-controlled at all, and no kiosk sends them (results and
        statuses go at QoS 1), so a flood of them from a hostile login would grow this queue
        without bound: beyond MAX_QOS0_WAITING waiting they are dropped and counted."""
        if message.qos == 0:
            with self._qos0_lock:
                if self._qos0_waiting >= MAX_QOS0_WAITING:
                    self.stats.qos0_refused += 1
                    return False
                self._qos0_waiting += 1
        self.inbox.put(message)
        return True

    def run(self) -> None:
        """Commit batches until stopped and the inbox is empty."""
        while True:
            messages = self._collect()
            if messages:
                self._handle_until_done(messages)
            elif self.stop_event.is_set():
                return

    def _handle_until_done(self, messages: list[Inbound]) -> None:
        """Handle a batch, retrying on any error: unacked messages would stall the session."""
        delay_s = 0.2
        while True:
            try:
                self._handle(messages)
                return
            except Exception:
                log.exception("could not handle a batch of %d messages; retrying in %.1f s",
                              len(messages), delay_s)
            if self.stop_event.wait(delay_s):
                return  # unacked: the broker redelivers them when the session resumes
            delay_s = min(delay_s * 2, RETRY_MAX_S)

    def _collect(self) -> list[Inbound]:
        try:
            messages = [self.inbox.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self._settings.batch_interval_ms / 1000
        while len(messages) < self._settings.batch_max_rows:
            try:
                messages.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                break
            try:
                messages.append(self.inbox.get(timeout=remaining_s))
            except queue.Empty:
                break
        if taken := sum(message.qos == 0 for message in messages):
            with self._qos0_lock:
                self._qos0_waiting -= taken
        return messages

    def _handle(self, messages: list[Inbound]) -> None:
        batch, results = self._triage.sort(messages)
        fresh = self._commit(batch)
        if fresh is None:
            return  # stopped before the store took it: unacked, so the broker redelivers
        confirmed = self._confirmed(results, batch.dead_letters)
        if self._confirm is not None and confirmed:
            self._confirm(confirmed)
        self._ack(messages)
        self._count(messages, batch, fresh)
        if self._on_stored is not None and fresh:
            new = set(fresh)
            try:
                self._on_stored([r for r in results if r.measurement_id in new])
            except Exception:  # stored and acked already; a listener's bug changes nothing
                log.exception("the stored-results listener failed")

    def _confirmed(self, results: list[Result], letters: list[DeadLetter]) -> list[Confirmed]:
        """Results new, already stored or dead-lettered in full: each device may forget them."""
        confirmed = [(r.site, r.device_id, r.measurement_id) for r in results]
        return confirmed + self._triage.refused_results(letters)

    def _commit(self, batch: Batch) -> list[str] | None:
        delay_s = 0.2
        while True:
            try:
                return self._store.write_batch(batch, *self._keep())
            except Exception as exc:  # a store outage must not kill the worker
                self.stats.commit_failures += 1
                if not is_transient(exc):
                    return self._commit_apart(batch, exc)
                log.error("store %s: commit failed (%s); retrying in %.1f s",
                          masked_url(self._store.url), exc, delay_s)
            if self.stop_event.wait(delay_s):
                return None
            delay_s = min(delay_s * 2, RETRY_MAX_S)
            self._reconnect()

    def _keep(self) -> tuple[int, int]:
        """How many dead letters to keep, in rows and in bytes."""
        return self._settings.dead_letter_max_rows, self._settings.dead_letter_max_total_bytes

    def _reconnect(self) -> None:
        try:
            self._store.reconnect()
        except Exception as exc:
            log.error("store %s: reconnect failed (%s)", masked_url(self._store.url), exc)

    def _commit_apart(self, batch: Batch, error: Exception) -> list[str]:
        """Commit a batch the store refused one part at a time; refused parts are set aside.

        A dead letter the store refuses, or prunes at once, is taken out of ``batch``: it was
        not kept, so it is not confirmed to its device.
        """
        log.error("store %s refused a batch (%s); committing its parts one by one",
                  masked_url(self._store.url), error)
        fresh: list[str] = []
        keep = self._keep()
        prefix = batch.topic_prefix  # each part's prune reads device topics under it
        parts = [Batch(results=[row], topic_prefix=prefix) for row in batch.results]
        parts += [Batch(statuses=[row], topic_prefix=prefix) for row in batch.statuses]
        parts += [Batch(dead_letters=[letter], topic_prefix=prefix)
                  for letter in batch.dead_letters]
        for part in parts:
            try:
                fresh += self._store.write_batch(part, *keep)
            except Exception as exc:
                if is_transient(exc):
                    raise
                self._set_aside(part, exc)
                part.dead_letters.clear()
        batch.dead_letters[:] = [letter for part in parts for letter in part.dead_letters]
        for part in parts:
            batch.pruned_only_copies.update(part.pruned_only_copies)
        return fresh

    def _set_aside(self, part: Batch, error: Exception) -> None:
        """A result the store refuses goes to the dead letters; anything else is logged."""
        kind = "result" if part.results else "status" if part.statuses else "dead letter"
        log.error("store %s refused one %s: %s", masked_url(self._store.url), kind, error)
        if not part.results:
            return
        row = part.results[0]  # RESULT_COLUMNS order: id, device, site, ..., payload last
        topic = f"{self._triage.topic_prefix}/{row[2]}/{row[1]}/result"
        letter = dead_letter(row[4], topic, f"the store refused it: {error}",
                             str(row[-1]).encode(), self._triage.dead_letter_max_bytes)
        aside = Batch(dead_letters=[letter], topic_prefix=self._triage.topic_prefix)
        self._store.write_batch(aside, *self._keep())
        part.pruned_only_copies.update(aside.pruned_only_copies)

    def _count(self, messages: list[Inbound], batch: Batch, fresh: list[str]) -> None:
        stats = self.stats
        stats.received += len(messages)
        stats.batches += 1
        stats.stored += len(fresh)
        stats.duplicates += len(batch.results) - len(fresh)
        stats.dead_letters += len(batch.dead_letters)
        stats.statuses += len(batch.statuses)
        stats.only_copies_pruned += batch.pruned_only_copies.total()


def is_transient(error: Exception) -> bool:
    """Whether a store error may pass (connection, lock, disk) rather than refuse the data.

    Both sqlite3 and psycopg name these OperationalError / InterfaceError; matching the names
    keeps psycopg an optional import.
    """
    names = ("OperationalError", "InterfaceError")
    return any(cls.__name__ in names for cls in type(error).__mro__)
