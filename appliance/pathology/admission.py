"""Request admission of ``appliance pathology serve``: which retained job requests a server
takes now, puts off, or refuses, and what it answers about them.

A server counts the requests retained on the broker as it read them since it connected and
clears one beyond ``pathology.max_retained_requests`` as it comes, or beyond its login's share,
``max_retained_requests_per_login`` (appliance/pathology/retained.py); it keeps at most
``running_jobs_limit`` put-off requests, oldest first, and reads the retained requests again
when it had to leave some out; it keeps at most ``max_retained_requests`` refusal states it left
retained, each login's share of them at most (appliance/pathology/refusals.py), and the store
keeps as many refusals, none older than ``final_state_keep_s``. Each refusal is said in the
log one by one up to a budget a minute, then counted (a job client can send them in a loop);
the answers to cancel requests (appliance/pathology/cancels.py) share that budget. Running the
jobs it takes (leases, workers, finishing) is the server's (appliance/pathology/server.py;
docs/pathology-server.md, items 1 and 5).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.config.pathology import PathologyConfig
from appliance.logsafe import LineBudget
from appliance.pathology.jobrun import RESULT_FIELDS, JobRun
from appliance.pathology.jobs import (
    ANY_JOB,
    FINAL_STATES,
    JOB_ID,
    JOB_ID_RULE,
    JobRefusedError,
    JobRequest,
    cancel_topic,
    errors_topic,
    request_topic,
    state_payload,
    state_topic,
    topic_login,
)
from appliance.pathology.jobstore import PathologyStore
from appliance.pathology.refusals import refusals_let_go
from appliance.pathology.requestcheck import RequestChecks
from appliance.pathology.retained import RetainedRequests

log = logging.getLogger(__name__)
HOUSEKEEPING_S = 0.5
REFUSALS_PRUNE_S = 60.0
SHOWN_ID_CHARS = 140  # of topic levels that name no job id, in the answer and the log
CLAIM_DELAY_PER_JOB_S = 0.2  # a busy server tries to take a new job this much later per job
MAX_CLAIM_DELAY_S = 1.0
MAX_WITHDRAWN = 10_000  # cleared requests remembered, so a put-off one is not run after all
# an ended job's request read while its owner may still be clearing it: its stored end is
# published again this much later unless the clear comes first (``_answer_ended``)
ENDED_GRACE_S = 3.0


class RequestAdmission:
    """The admission half of a pathology server (a base of ``PathologyServer``, whose main
    loop runs these handlers; paho's callbacks only queue the messages)."""

    settings: PathologyConfig
    store: PathologyStore
    client: mqtt.Client
    prefix: str
    server_id: str
    runs: dict[str, JobRun]
    connected: threading.Event
    request_checks: RequestChecks

    if TYPE_CHECKING:  # the running half, in appliance/pathology/server.py
        def _take(self, topic_id: str, payload: bytes) -> None: ...
        def _start(self, request: JobRequest, stored: set[int]) -> None: ...
        def _cancel(self, run: JobRun) -> None: ...
        def _publish(self, job_id: str, state: str, **fields: Any) -> None: ...
        def _handle(self, kind: str, event: Any) -> None: ...

    def _init_admission(self) -> None:
        """No request read, kept, withdrawn or refused yet."""
        self._withdrawn: dict[str, None] = {}  # requests cleared lately, oldest first
        # requests put off (busy) or left (at max_running_jobs), oldest first: id -> (due,
        # payload); at most running_jobs_limit, the rest are read again once there is room
        self._waiting: dict[str, tuple[float, bytes]] = {}
        self._missed = False  # a request was left out of _waiting: read them all again
        # ended jobs whose request was read, oldest first: id -> when their stored end is
        # published again (and the request cleared) unless the request is cleared first
        self._ended_due: dict[str, float] = {}
        # job ids with a request retained on the broker (waiting or running), as this server
        # read them since it connected: at most max_retained_requests, and each login's share
        self._retained = RetainedRequests(self.settings)
        # job ids whose refusal this server left retained as their state, oldest first: at most
        # max_retained_requests, each login's share of them at most, so refused requests cannot
        # fill the broker with states either, nor one login's clear the others'
        self._refusal_states: dict[str, None] = {}
        self._rescanned_at = time.monotonic()
        self._refusals_pruned_at = -math.inf
        # a job client can send refused requests and cancels in a loop: a line each, within a
        # budget a minute (the housekeeping says how many were not said)
        self.refusal_lines = LineBudget(log, "job requests and cancels refused")

    def _drop_message(self, kind: str, event: Any, exc: Exception) -> None:
        """Acknowledge a message its handler failed on and clear it when retained, so neither
        the broker's redelivery nor the next start brings it back; a job request is refused
        with the reason, so its submitter learns of it."""
        name, mid, qos = (event[0], event[2], event[3]) if kind == "job" else event[:3]
        if kind == "job" and event[1] and JOB_ID.match(name):
            with suppress(Exception):
                self._refuse(JobRefusedError(f"the server could not handle this request "
                                             f"({type(exc).__name__}); see its log", name))
        with suppress(Exception):
            if kind == "job":
                self._clear_request(name)
            else:
                self.client.publish(cancel_topic(self.prefix, name), b"", qos=1, retain=True)
            if qos:
                self.client.ack(mid, qos)

    def _event_job(self, topic_id: str, payload: bytes, mid: int, qos: int,
                   deferred: bool = False) -> None:
        """Check, store, then acknowledge a job request (retained on its request topic).

        Every server reads every request; the first to store it runs it (``store.accept``),
        the others find it stored and leave it. A server with jobs running puts its try off
        (``CLAIM_DELAY_PER_JOB_S`` a job, at most ``MAX_CLAIM_DELAY_S``), so an idle one gets
        the job first, and one running ``max_running_jobs`` leaves it retained for the others
        until a job of its own ends; a request withdrawn meanwhile (cleared) is then dropped."""
        if payload and self._beyond_retained_limit(topic_id):
            self._refuse_beyond_limit(topic_id)
        elif not payload:  # cleared: the job ended, or `job cancel` withdrew it while waiting
            self._retained.forget(topic_id)
            self._waiting.pop(topic_id, None)
            self._ended_due.pop(topic_id, None)
            if JOB_ID.match(topic_id):
                self._withdrawn[topic_id] = None
            while len(self._withdrawn) > MAX_WITHDRAWN:
                self._withdrawn.pop(next(iter(self._withdrawn)))
        elif deferred and topic_id in self._withdrawn:
            log.info("job %s was withdrawn while this server put it off", topic_id)
        elif not JOB_ID.match(topic_id):
            self._not_a_request(topic_id)
        elif topic_id in self.runs:
            self._read_again(self.runs[topic_id], payload)
        elif self._room() and (deferred or not self._older_waiting()):
            self._take(topic_id, payload)
        else:
            self._withdrawn.pop(topic_id, None)
            self._put_off(topic_id, payload)
        if qos:
            self.client.ack(mid, qos)

    def _event_connected(self) -> None:
        """A new session: the subscription brings every retained request again."""
        self._retained.clear()

    def _beyond_retained_limit(self, job_id: str) -> bool:
        """Whether a request would be one more than max_retained_requests retained on the
        broker, or than its login's share (counted as read; a stored job's request is never
        one too many)."""
        if job_id in self._retained or not JOB_ID.match(job_id):
            return False
        if self._retained.limit_passed(job_id) and self.store.job(job_id) is None:
            return True
        self._retained.add(job_id)
        return False

    def _refuse_beyond_limit(self, job_id: str) -> None:
        """Clear a request beyond max_retained_requests, or beyond its login's share, and
        tell its submitter (a state not retained, which `job submit --wait` hears): nothing
        of it stays on the broker or in the store, however many a job client sends."""
        reason = self._retained.refusal(job_id)
        self.refusal_lines.warn("job %s %s", job_id, reason)
        self._clear_request(job_id)
        payload = state_payload(job_id, "failed", reason=reason, server=self.server_id)
        self.client.publish(state_topic(self.prefix, job_id), payload, qos=1)

    def _older_waiting(self) -> bool:
        """Whether a request that came in now must queue: this server is busy (it puts its try
        off), or older requests wait, kept or left out for the next read (first come, first
        taken)."""
        return bool(self._claim_delay_s() or self._waiting or self._missed)

    def _claim_delay_s(self) -> float:
        return min(MAX_CLAIM_DELAY_S, CLAIM_DELAY_PER_JOB_S * len(self.runs))

    def _room(self) -> int:
        """How many more jobs this server may run (``pathology.max_running_jobs``)."""
        return max(0, self.settings.running_jobs_limit - len(self.runs))

    def _put_off(self, job_id: str, payload: bytes) -> None:
        """Keep a request to try later (a job not stored yet, or one of this server's own to
        resume after a restart) unless it is stored for another server, or ended (then its
        request is cleared); beyond running_jobs_limit kept, only note that the retained
        requests must be read again (an own job left out meanwhile may go to a server with
        room once its lease runs out)."""
        if job_id not in self._waiting and (
                self._missed or len(self._waiting) >= self.settings.running_jobs_limit):
            self._missed = True  # older ones were left out: this one queues behind them
            return
        job = self.store.job(job_id)
        if job is None or (job["owner"] == self.server_id and
                           job["state"] not in FINAL_STATES):
            # read again, it keeps its turn (and takes the payload as it is now)
            due, _ = self._waiting.get(job_id, (time.monotonic() + self._claim_delay_s(), b""))
            self._waiting[job_id] = (due, payload)
        else:
            self._waiting.pop(job_id, None)
            if job["state"] in FINAL_STATES:  # answered as it asks: again, or refused
                self._take(job_id, payload)

    def _take_waiting(self) -> None:
        """Try the kept requests oldest first while there is room, up to the first not due yet
        (a younger one put off for less time waits behind it); with none kept but some left
        out, subscribe again, which sends every retained request again in the order they were
        first published (MQTT 5 spec 3.3.1.3, retain handling 0; mosquitto keeps that order),
        at most every HOUSEKEEPING_S so resends do not pile up."""
        now = time.monotonic()
        while self._waiting and self._room():
            job_id, (due, payload) = next(iter(self._waiting.items()))
            if due > now:
                break
            del self._waiting[job_id]
            self._handle("job", (job_id, payload, 0, 0, True))
        if self._missed and not self._waiting and self._room() and self.connected.is_set() \
                and time.monotonic() - self._rescanned_at >= HOUSEKEEPING_S:
            self._missed = False
            self._rescanned_at = time.monotonic()
            self.client.subscribe(request_topic(self.prefix, ANY_JOB),
                                  options=SubscribeOptions(qos=1))

    def _clear_request(self, job_id: str) -> None:
        """Clear a job's retained request: the job ended, or it was refused. From now on it
        counts neither among the retained requests nor in its login's share: the broker
        drops it as it reads this clear (a request sent again under its id is counted anew
        when read). Counted until the clear came back from the broker, a login's own burst
        of refused requests had its next job refused meanwhile."""
        self._retained.forget(job_id)
        self.client.publish(request_topic(self.prefix, job_id), b"", qos=1, retain=True)

    def _not_a_request(self, name: str) -> None:
        """A request on a topic that names no job id: cleared, refused on the errors topic of
        the login that its topic starts with."""
        self._clear_request(name)
        shown = shown_levels(name)
        reason = (f"job request on a topic naming {shown!r} ({len(name)} characters), not a "
                  f"job id: a job id is {JOB_ID_RULE}")
        self.refusal_lines.warn("job refused: %s", reason)
        self._publish_error(name, state_payload("", "failed", reason=reason,
                                                server=self.server_id))

    def _answer_ended(self, job_id: str) -> None:
        """The request of a job the store says ended is still retained: its server stopped
        between storing the end and clearing it (a kill -9), maybe before it published the
        final state, which then still says running; or its submitter sent it again; or it
        was read in the moment between its server storing the end and clearing it (every
        server reads every request, and the others find the job stored). Its stored end is
        published again ENDED_GRACE_S later unless the clear comes first: published at once,
        a job's end went out twice, the second time naming a server that did not run it."""
        if job_id not in self._ended_due:
            self._ended_due[job_id] = time.monotonic() + ENDED_GRACE_S
        while len(self._ended_due) > MAX_WITHDRAWN:  # the next rescan brings one left out
            self._ended_due.pop(next(iter(self._ended_due)))

    def _answer_ended_due(self) -> None:
        """Publish again the stored end of each ended job whose request stayed retained for
        ENDED_GRACE_S, oldest first (one the store fails on stays, for the next round: it is
        forgotten only once answered; before, a failure in reading its slide results, a
        restart met in flight, left its request unanswered until the next rescan)."""
        now = time.monotonic()
        while self._ended_due:
            job_id, due = next(iter(self._ended_due.items()))
            if due > now:
                return
            job = self.store.job(job_id)
            if job is not None and job["state"] in FINAL_STATES:
                self._ended_request(job)
            del self._ended_due[job_id]

    def _ended_request(self, job: dict[str, Any]) -> None:
        """Publish an ended job's state again from the store, then clear its request."""
        job_id = job["job_id"]
        rows = self.store.slide_results(job_id)
        total = len(job["request"].get("slides", []))
        progress = {"slides_total": total, "slides_done": len(rows),
                    "progress": round(len(rows) / total, 4),
                    "tiles_scored": sum(int(row["tile_count"] or 0) for row in rows)} \
            if total else {}
        self._publish(job_id, job["state"], reason=job["reason"], **progress,
                      results=[{key: row[key] for key in RESULT_FIELDS} for row in rows])
        if not job["request"]:  # a refusal: its state counts among those this server left
            self._keep_refusal_state(job_id)
        self._clear_request(job_id)

    def _read_again(self, run: JobRun, payload: bytes) -> None:
        """A request for a job this server runs: its own read again (a rescan sends it
        every RESCAN_S; its submitter may send it again) is left to the job, another one under
        its id, for other slides, refused (``_refuse_reused_id``). One that cannot be checked
        now (a slide moved since, a share that does not answer) is left to the job too: it may
        well be the job's own."""
        job_id = run.request.job_id
        if payload != run.payload:
            try:
                request = self.request_checks.check(payload, job_id)
            except JobRefusedError as exc:
                log.debug("job %s runs here; a request read again for it: %s", job_id, exc)
                return
            if request.slides != run.request.slides:
                self._refuse_reused_id(job_id, "running")
                return
            run.payload = payload  # looked at once: a rescan's copy is not checked again
        log.debug("job %s runs here already", job_id)

    def _refuse_reused_id(self, job_id: str, state: str, *, was_refusal: bool = False) -> None:
        """A request under the id of a job that ended (or was refused, or runs) asks for other
        slides: clear it and answer on the errors topic, naming the id. The job's own state
        stays as the broker keeps it: published again, it would read as this request's answer
        (a running job's own request is in the store, which a server resuming it reads)."""
        if was_refusal:
            held = "was refused"
        elif state in FINAL_STATES:
            held = f"already ended ({state})"
        else:
            held = f"is {state}"
        reason = (f"job id {job_id} is taken: a job under it {held} with other slides; a job "
                  "id names one request for good: submit this one under a new id")
        self.refusal_lines.warn("request refused: %s", reason)
        self._clear_request(job_id)
        self._publish_error(job_id, state_payload(job_id, state, request="job", reason=reason,
                                                  server=self.server_id))

    def _publish_error(self, levels: str, payload: bytes) -> None:
        """Publish a refusal or answer about the request or cancel on the topic of job levels
        ``levels`` on the errors topic of the login they start with, which only it and the
        servers read (refusals name its job ids and why); levels whose first could be no login
        go to the servers' own errors topic."""
        self.client.publish(errors_topic(self.prefix, topic_login(levels)), payload, qos=1)

    def _refuse(self, exc: JobRefusedError) -> None:
        self.refusal_lines.warn("job refused: %s", exc)
        if exc.job_id is None:  # it names no job (the server's checks name the topic's)
            self._publish_error("", state_payload("", "failed", reason=str(exc),
                                                  server=self.server_id))
            return
        if self.store.record_refusal(
                exc.job_id, self.server_id, str(exc), keep_s=self.settings.final_state_keep_s,
                keep=self.settings.max_retained_requests,
                keep_per_login=self.settings.retained_requests_per_login_limit):
            self._publish(exc.job_id, "failed", reason=str(exc))
            self._keep_refusal_state(exc.job_id)
        else:  # refused already, or a stored job: its state stays (published again if ended)
            log.info("job %s is already stored; the refusal does not change it", exc.job_id)
            job = self.store.job(exc.job_id)
            if job is not None and job["state"] in FINAL_STATES:
                self._answer_ended(exc.job_id)

    def _prune_stored_refusals(self) -> None:
        """Now and then (REFUSALS_PRUNE_S), remove the refusals the store holds beyond the
        newest max_retained_requests (each login's beyond its share) or older than
        final_state_keep_s, as the broker drops their states (record_refusal prunes too,
        but only when a request is refused)."""
        if time.monotonic() - self._refusals_pruned_at < REFUSALS_PRUNE_S:
            return
        self.store.prune_refusals(self.settings.final_state_keep_s,
                                  self.settings.max_retained_requests,
                                  self.settings.retained_requests_per_login_limit)
        self._refusals_pruned_at = time.monotonic()

    def _keep_refusal_state(self, job_id: str) -> None:
        """Note a refused job's retained state, the newest; clear those this server left
        beyond its login's newest max_retained_requests_per_login, and beyond
        max_retained_requests in all (appliance/pathology/refusals.py; `job list` shows the
        newest, the store keeps the same). One bound for every login let one login's garbage
        clear the others' refusal states."""
        self._refusal_states.pop(job_id, None)
        self._refusal_states[job_id] = None
        for gone in refusals_let_go(list(reversed(self._refusal_states)),
                                    self.settings.retained_requests_per_login_limit,
                                    self.settings.max_retained_requests):
            del self._refusal_states[gone]
            self.client.publish(state_topic(self.prefix, gone), b"", qos=1, retain=True)


def shown_levels(name: str) -> str:
    """Topic levels that name no job id, cut to SHOWN_ID_CHARS for the answer and the log."""
    return name if len(name) <= SHOWN_ID_CHARS else name[:SHOWN_ID_CHARS] + "..."
