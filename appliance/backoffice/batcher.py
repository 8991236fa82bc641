"""The ingest writer: MQTT messages from the inbox, sorted, committed in batches, then acked.

Paho's network thread only puts messages on the inbox. One writer thread takes up to
``batch_max_rows`` of them (waiting at most ``batch_interval_ms`` to fill a batch), has them
sorted (``Triage``, in triage.py), commits results, device status, the kiosks' model reports
and dead letters in ONE transaction, and only then tells each device which of its results are
committed (the end-to-end ack, docs/delivery.md) and sends the PUBACKs (MQTT 5 spec 4.3.2: the
receiver owns the message once it sends PUBACK). A result refused as invalid is confirmed to
its device too once its whole payload is committed to the dead letters: the back office has
taken it, and a re-send would only be refused again. A crash before the commit loses nothing:
the broker redelivers the unacknowledged messages to the session, the device sends again what
was never confirmed, and the store keeps each ``measurement_id`` once. A result over its
kiosk's rate (kiosk_rate.py) is marked as it is offered, and only acknowledged to the broker
with its batch; so is a status over its kiosk's rate (status_rate.py), whose kiosk's newest one
is held and added to a later batch once its bucket lets it in (written, not acknowledged
again), and so is a model report over its kiosk's rate (the status bound, a bucket of its own),
which is not kept.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from appliance.backoffice.kiosk_rate import KioskRate, RateWords
from appliance.backoffice.outage import OutageWords, StoreOutage
from appliance.backoffice.placed_capture import StatusReading
from appliance.backoffice.schema import DeadLetter, dead_letter
from appliance.backoffice.status_rate import StatusRate
from appliance.backoffice.store import Batch, Store
from appliance.backoffice.storeerrors import DATABASE_ERRORS, refused_for_its_values
from appliance.backoffice.storeurl import masked_url
from appliance.backoffice.triage import Confirmed, Inbound, Triage
from appliance.config import BackofficeConfig
from appliance.transport.payloads import Result, utc_now
from appliance.transport.topics import MODEL_STATE_LEAF

log = logging.getLogger(__name__)
RETRY_MAX_S = 5.0
# how long a commit waits for a PostgreSQL server's answer before its connection is cut and the
# batch retried as in any outage (said, nothing acknowledged meanwhile): a server that hangs
# while its host stays up (a stalled disk, a stopped process) still acknowledges at the TCP
# level, so keepalives never find it, and the commit waited for ever with nothing said. A full
# batch commits in well under a second; one waiting behind a migration's lock on its table
# may take longer, and is only retried.
COMMIT_DEADLINE_S = 120.0
COMMIT_OUTAGE = OutageWords(
    failed="commit failed",
    meanwhile="nothing of the batch is acknowledged, so the broker and the kiosks keep it: "
              "retrying every few seconds, said again each minute while commits fail",
    still="commits still fail")


@dataclass
class IngestStats:
    """Counters of one worker since it started."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    statuses: int = 0
    model_reports: int = 0  # kiosks' model reports written (those kept already included)
    # model reports over their kiosk's rate (that of its statuses): acknowledged, not kept
    model_reports_over_rate: int = 0
    batches: int = 0
    commit_failures: int = 0
    qos0_refused: int = 0  # QoS 0 messages dropped: MAX_QOS0_WAITING waited already
    over_rate: int = 0  # results over their kiosk's rate: neither stored nor confirmed
    # statuses over their kiosk's rate: acknowledged, not written; each kiosk's newest of them
    # is held and written once its rate allows (then counted in ``statuses`` too)
    statuses_over_rate: int = 0
    # dead letters the bounds pruned that were a result's only copy (its kiosk was told to
    # drop it): lost; the store counts them by device (``appliance results dead-letters``)
    only_copies_pruned: int = 0

    def in_words(self) -> str:
        """The counters as the log says them: the messages and what became of them, then each
        refusal or failure that happened ("12 messages in 3 batches: 10 results stored, ...")."""
        kept = ", ".join(_counted(count, one, many) for count, one, many in [
            (self.stored, "result stored", "results stored"),
            (self.duplicates, "duplicate", "duplicates"),
            (self.dead_letters, "dead letter", "dead letters"),
            (self.statuses, "status", "statuses"),
            (self.model_reports, "model report", "model reports")])
        refused = ", ".join(_counted(count, one, many) for count, one, many in [
            (self.over_rate, "result", "results"),
            (self.statuses_over_rate, "status", "statuses"),
            (self.model_reports_over_rate, "model report", "model reports")] if count)
        failed = ", ".join(_counted(count, one, many) for count, one, many in [
            (self.qos0_refused, "QoS 0 message dropped (the inbox full)",
             "QoS 0 messages dropped (the inbox full)"),
            (self.commit_failures, "failed commit", "failed commits"),
            (self.only_copies_pruned, "dead letter pruned that was a result's only copy",
             "dead letters pruned that were a result's only copy")] if count)
        said = (f"{_counted(self.received, 'message', 'messages')} in "
                f"{_counted(self.batches, 'batch', 'batches')}: {kept}")
        if refused:
            said += f"; over their kiosk's rate: {refused}"
        return f"{said}; {failed}" if failed else said


def _counted(count: int, one: str, many: str) -> str:
    """``count`` with its noun: ``one`` for a count of one, else ``many``."""
    return f"{count} {one if count == 1 else many}"


REPORT_WORDS = RateWords(
    "backoffice.kiosk_statuses_per_s", "model reports",
    "those beyond are acknowledged and not kept in its model history",
    "acknowledged and not kept")
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
        self.kiosk_rate = KioskRate(triage.topic_prefix, settings.kiosk_results_per_s,
                                     settings.kiosk_results_burst)
        self.status_rate = StatusRate(triage.topic_prefix, settings.kiosk_statuses_per_s,
                                      settings.kiosk_statuses_burst)
        # a kiosk's model reports: each one a row of the history (model_reports.py), bounded as
        # its statuses are; an honest kiosk sends a handful at each install or refusal
        self.report_rate = KioskRate(triage.topic_prefix, settings.kiosk_statuses_per_s,
                                     settings.kiosk_statuses_burst, leaf=MODEL_STATE_LEAF,
                                     words=REPORT_WORDS)
        # failed commits, said once, not once a retry
        self._outage = StoreOutage(store.url, log, COMMIT_OUTAGE)

    def offer(self, message: Inbound) -> bool:
        """Queue a message for the store; False when it is dropped instead.

        QoS 1 messages are bounded by the broker (at most its receive maximum unacknowledged);
        QoS 0 ones are not flow-controlled at all, and no kiosk sends them (results and
        statuses go at QoS 1), so a flood of them from a hostile login would grow this queue
        without bound: beyond MAX_QOS0_WAITING waiting they are dropped and counted.

        A result over its kiosk's rate is queued without its payload, only to be acknowledged
        to the broker in its turn (MQTT 5 spec 4.6: PUBACKs in the order the messages came);
        one at QoS 0 needs no acknowledgement and is dropped. Either is counted
        (``stats.over_rate``), not refused: True. So is a status over its kiosk's rate
        (``stats.statuses_over_rate``), its kiosk's newest held by ``status_rate``, and a model
        report over its kiosk's rate (``stats.model_reports_over_rate``): not kept."""
        if message.received is None and self.status_rate.is_status(message.topic):
            # a status's receipt is when it came, not when its batch is written: one held over
            # its kiosk's rate is stamped as it came, so the statuses queued before it must be
            # too, or, written after it while the writer is behind, they read newer than it
            message = replace(message, received=utc_now())
        if self.kiosk_rate.refuses(message.topic):
            self.stats.over_rate += 1
            if message.qos == 0:
                return True
            message = replace(message, payload=b"", over_rate=True)
        elif self.status_rate.refuses(message):
            self.stats.statuses_over_rate += 1
            if message.qos == 0:
                return True
            message = replace(message, payload=b"", over_rate=True)
        elif self.report_rate.refuses(message.topic):
            self.stats.model_reports_over_rate += 1
            if message.qos == 0:
                return True
            message = replace(message, payload=b"", over_rate=True)
        elif message.qos == 0:
            with self._qos0_lock:
                if self._qos0_waiting >= MAX_QOS0_WAITING:
                    self.stats.qos0_refused += 1
                    return False
                self._qos0_waiting += 1
        self.inbox.put(message)
        return True

    def run(self) -> None:
        """Commit batches until stopped and the inbox is empty; with them the statuses held
        over their kiosk's rate that it lets in now (after what came before them), and as it
        stops every one still held."""
        while True:
            messages = self._collect()
            self.kiosk_rate.say_due()
            self.status_rate.say_due()
            self.report_rate.say_due()
            stopping = not messages and self.stop_event.is_set()
            messages += self.status_rate.due(every=stopping)
            if messages:
                self._handle_until_done(messages)
            elif stopping:
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
        within = [message for message in messages if not message.over_rate]
        if not within:  # a kiosk's flood alone: nothing to store, nothing to confirm
            self._ack(messages)
            self.stats.received += len(messages)
            return
        # a status held over its kiosk's rate was acknowledged (and counted) in its own batch
        messages = [message for message in messages if not message.held]
        batch, results = self._triage.sort(within)
        fresh = self._commit(batch)
        if fresh is None:
            return  # stopped before the store took it: unacked, so the broker redelivers
        self._triage.say_retained_letters(batch.new_letters)
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
                return self._committed(batch)
            except Exception as exc:  # a store outage must not kill the worker
                if not is_transient(exc):
                    raise
                self._outage.failed(exc)
            if self.stop_event.wait(delay_s):
                return None
            delay_s = min(delay_s * 2, RETRY_MAX_S)
            self._reconnect()

    def _committed(self, batch: Batch) -> list[str]:
        """One try at committing ``batch``: whole, or part by part where the store refuses it
        whole. A store that fails meanwhile (is_transient) is raised, for the outage's retry,
        from a part too: before, that left the worker's loop with a traceback ("could not
        handle a batch") and bypassed the outage's lines."""
        try:
            fresh = self._write(batch)
        except Exception as exc:
            self.stats.commit_failures += 1
            if is_transient(exc):
                raise
            self._outage.passed()  # the store answers: it refuses the data
            return self._commit_apart(batch, exc)
        self._outage.passed()
        return fresh

    def _write(self, batch: Batch) -> list[str]:
        """One try at committing ``batch``. Where the server had closed the connection since
        the last batch while no outage was said (a maintenance restart, a crash, an idle
        timeout while no kiosk sent anything), the batch is committed again at once on a new
        connection (Store.reopened_after_close, said at INFO; a server still restarting is
        waited for, for seconds): that is no outage, nothing waited on it longer. The new try
        is safe whatever the first did: nothing is acknowledged before a commit, and a result
        committed twice is stored once."""
        try:
            return self._write_once(batch)
        except Exception as exc:
            if self._outage.ongoing or \
                    not self._store.reopened_after_close(exc, self.stop_event):
                raise
        return self._write_once(batch)

    def _write_once(self, batch: Batch) -> list[str]:
        with self._store.answering_within(COMMIT_DEADLINE_S):
            return self._store.write_batch(batch, *self._keep())

    def _keep(self) -> tuple[int, int]:
        """How many dead letters to keep, in rows and in bytes."""
        return self._settings.dead_letter_max_rows, self._settings.dead_letter_max_total_bytes

    def _reconnect(self) -> None:
        """A new connection for the next try; one that fails is no try of its own (the
        outage counts failed commits), the next commit says the store is still away."""
        try:
            self._store.reconnect()
        except Exception as exc:  # the server is still away: the next commit fails too
            log.debug("store reconnect failed: %s", exc)

    def _commit_apart(self, batch: Batch, error: Exception) -> list[str]:
        """Commit a batch the store refused one part at a time; refused parts are set aside.

        A dead letter the store refuses, or prunes at once, is taken out of ``batch``: it was
        not kept, so it is not confirmed to its device. Each part, and each dead letter set
        aside, is one try of ``_write``: a PostgreSQL restart that one meets is waited out and
        the part made again, said at INFO. Before, the part's failure left the worker's loop
        with a traceback ("could not handle a batch").
        """
        log.error("store %s refused a batch (%s); committing its parts one by one",
                  masked_url(self._store.url), error)
        fresh: list[str] = []
        prefix = batch.topic_prefix  # each part's prune reads device topics under it
        def readings(site: str, device: str) -> list[StatusReading]:  # a device's, of batch
            return [reading for reading in batch.clock_readings if reading[:2] == (site, device)]

        # a result's part with its kiosk's readings: they place its capture (placed_capture.py)
        parts = [Batch(results=[row], topic_prefix=prefix, clock_readings=readings(row[2], row[1]))
                 for row in batch.results]
        parts += [Batch(statuses=[row], topic_prefix=prefix, clock_readings=readings(*row[:2]))
                  for row in batch.statuses]
        parts += [Batch(model_reports=[row], topic_prefix=prefix) for row in batch.model_reports]
        parts += [Batch(dead_letters=[letter], topic_prefix=prefix)
                  for letter in batch.dead_letters]
        for part in parts:
            try:
                fresh += self._write(part)  # a restart met in flight: made again (_write)
            except Exception as exc:
                if is_transient(exc):
                    raise
                self._set_aside(part, exc)
                part.dead_letters.clear()
        batch.dead_letters[:] = [letter for part in parts for letter in part.dead_letters]
        for part in parts:
            batch.pruned_only_copies.update(part.pruned_only_copies)
            batch.new_letters.update(part.new_letters)
        return fresh

    def _set_aside(self, part: Batch, error: Exception) -> None:
        """A result the store refuses goes to the dead letters; anything else is logged."""
        kind = ("result" if part.results else "status" if part.statuses else
                "model report" if part.model_reports else "dead letter")
        log.error("store %s refused one %s: %s", masked_url(self._store.url), kind, error)
        if not part.results:
            return
        row = part.results[0]  # RESULT_COLUMNS order: id, device, site, ..., payload last
        topic = f"{self._triage.topic_prefix}/{row[2]}/{row[1]}/result"
        letter = dead_letter(row[4], topic, f"the store refused it: {error}",
                             str(row[-1]).encode(), self._triage.dead_letter_max_bytes)
        aside = Batch(dead_letters=[letter], topic_prefix=self._triage.topic_prefix)
        self._write(aside)
        part.pruned_only_copies.update(aside.pruned_only_copies)

    def _count(self, messages: list[Inbound], batch: Batch, fresh: list[str]) -> None:
        stats = self.stats
        stats.received += len(messages)
        stats.batches += 1
        stats.stored += len(fresh)
        stats.duplicates += len(batch.results) - len(fresh)
        stats.dead_letters += len(batch.dead_letters)
        stats.statuses += len(batch.statuses)
        stats.model_reports += len(batch.model_reports)
        stats.only_copies_pruned += batch.pruned_only_copies.total()


def is_transient(error: Exception) -> bool:
    """Whether a store error may pass (connection, lock, disk) rather than refuse the data.

    Both sqlite3 and psycopg name these OperationalError / InterfaceError; matching the names
    keeps psycopg an optional import. So may any other error of the database that does not
    refuse the values written (storeerrors.refused_for_its_values): a store that refuses every
    write alike, as a read-only PostgreSQL server does (a standby after a failover, an
    InternalError to psycopg), may take them again, and setting the batch aside part by part
    would only fail with it, or, once the server takes writes again, keep good results as
    dead letters.
    """
    names = ("OperationalError", "InterfaceError")
    if any(cls.__name__ in names for cls in type(error).__mro__):
        return True
    return isinstance(error, DATABASE_ERRORS) and not refused_for_its_values(error)
