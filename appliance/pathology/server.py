"""``appliance pathology serve``: jobs from MQTT, slides prepared in worker processes, one
dynamic batcher feeding one backend, results into the back-office store.

Flow (docs/pathology-server.md): a job request is retained on its own topic and every server
reads it; it is checked and written to the store (the first server to store it owns it), and
only then acknowledged; a server that dies first reads it again, retained, at its restart, and
the server that ends or refuses a job clears it; a request beyond max_retained_requests
retained at once, or beyond its login's share of them, is cleared as it comes (a job client
cannot fill the broker, nor crowd out the other logins' requests). Once stored,
the job belongs to this server while its lease is renewed; if the server dies, another server
claims the job when the lease runs out and scores only the slides not yet stored. Paho
callbacks only queue events; the main loop owns the store connection, the process pool and
the job table. The client, its callbacks, its presence and leaving the broker are the server's
link (appliance/pathology/serverlink.py); which requests it takes, puts off or refuses is
request admission (appliance/pathology/admission.py), each request checked off the main loop
within a time limit (appliance/pathology/requestcheck.py); handing slides to the preparation
workers is appliance/pathology/preparing.py; this module runs the jobs it takes.
"""

from __future__ import annotations

import logging
import queue
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.backoffice.outage import OutageWords, StoreOutage
from appliance.backoffice.storeerrors import STORE_ERRORS, refused_for_its_values
from appliance.config import Config
from appliance.pathology import jobstore
from appliance.pathology.admission import HOUSEKEEPING_S, RequestAdmission
from appliance.pathology.backends import TileBackend, open_backend
from appliance.pathology.batcher import FairBatcher
from appliance.pathology.cancels import CancelRequests
from appliance.pathology.finisher import SlideFinisher
from appliance.pathology.jobrun import RESULT_FIELDS, InferenceRunner, JobRun
from appliance.pathology.jobs import (
    ANY_JOB,
    FINAL_STATES,
    JobRefusedError,
    JobRequest,
    cancel_topic,
    fitted_state_payload,
    payload_limit,
    request_topic,
    same_slides,
    state_topic,
    stored_request,
)
from appliance.pathology.jobstore import PathologyStore, storable_text
from appliance.pathology.prepare import TileSettings
from appliance.pathology.preparing import SlidePreparation
from appliance.pathology.requestcheck import RequestChecks, login_request
from appliance.pathology.serverlink import ServerLink, qos_of
from appliance.pathology.service_metrics import ServiceMetrics
from appliance.pathology.workerpool import PreparationWorkers
from appliance.transport.client import publish_properties

log = logging.getLogger(__name__)
STORE_RETRY_S = 1.0
SERVER_OUTAGE = OutageWords(
    failed="a read or write failed",
    meanwhile="the job requests and cancels it was for stay unacknowledged on the broker and "
              "are tried again each second, said again each minute while the store fails",
    still="reads or writes still fail")
RESCAN_S = 60.0  # how often the retained requests are read again
THREADS_MARGIN_S = 5.0  # beyond a store call's deadline: a slide's pictures, a model batch


def default_server_id() -> str:
    """``pathology-HOSTNAME``, cut to what a client id may hold."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40]
    return f"pathology-{host or 'host'}"


class PathologyServer(ServerLink, RequestAdmission, CancelRequests, SlidePreparation):
    """One pathology server; ``run(stop)`` serves until stop is set."""

    def __init__(self, config: Config, store: PathologyStore,
                 backend: TileBackend | None = None) -> None:
        self.config, self.settings, self.store = config, config.pathology, store
        self.server_id = self.settings.client_id or default_server_id()
        self.prefix = config.mqtt.topic_prefix
        self.backend = backend or open_backend(self.settings)
        info = self.backend.info
        self.tile_settings = TileSettings(info.tile_px, info.tile_um,
                                          reference=info.stain_reference,
                                          max_tile_bytes=self.settings.max_tile_bytes)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.batcher = FairBatcher(self.settings.max_batch, self.settings.max_wait_ms / 1000,
                                   self.settings.max_pending_tiles)
        self.metrics = ServiceMetrics(self.settings.max_batch)
        self.runs: dict[str, JobRun] = {}
        self._retry: list[tuple[float, str, Any]] = []
        self._outage = StoreOutage(store.url, log, SERVER_OUTAGE)  # said once, not each try
        self._housekeeping_failed = False  # its next round is its retry
        self._init_admission()
        # off the main loop: a slide folder on a share that stopped answering would hold it
        self.request_checks = RequestChecks(lambda payload, topic_id: login_request(
            self.settings, payload, topic_id), server_id=self.server_id)
        self._init_link(self.backend.settings)

    def run(self, stop: threading.Event) -> None:
        """Connect, start the workers and serve jobs until stop is set."""
        finisher = SlideFinisher(self.store_for_thread, self.backend.info, url=self.store.url,
                                 results_dir=Path(self.settings.results_dir),
                                 server_id=self.server_id,
                                 backend_settings=self.backend.settings, on_stored=self._stored,
                                 on_dropped=self._dropped, on_unstored=self._unstored)
        runner = InferenceRunner(self.batcher, self.backend, finisher, self.metrics, self.events)
        self.finisher = finisher
        self.metrics.serve(self.settings.metrics_port or 0, self.settings.metrics_bind,
                           thread_name=f"metrics-http {self.server_id}")
        try:
            with PreparationWorkers(self.settings.prepare_workers,
                                    thread_name=f"SlidePreparation {self.server_id}",
                                    call_limit_s=self.settings.prepare_timeout_s) as pool:
                self.pool = pool
                finisher.start()
                runner.start()
                self._connect()
                try:
                    self._loop(stop)
                finally:
                    runner.stop_event.set()
                    finisher.stop_event.set()
                    self.metrics.close()
                    self._leave_the_broker()
                    for run in self.runs.values():
                        run.cancel_futures()
        finally:
            self._wait_for_threads(runner, finisher)

    def _wait_for_threads(self, runner: InferenceRunner, finisher: SlideFinisher) -> None:
        """Once stopped: wait for the inference runner's batch in hand and the finisher's
        slide in hand (its store call answers or is cut within the store's deadline), so no
        write of this server outlasts its stop; a thread still running after that is left,
        and said, as are request checks still waiting on a share (they write nothing)."""
        wait_s = jobstore.ANSWER_DEADLINE_S + THREADS_MARGIN_S
        log.debug("waiting for the slide finisher and the inference runner to end (at most "
                  "%g s)", wait_s)
        deadline_s = time.monotonic() + wait_s
        for thread in (runner, finisher):
            if thread.ident is not None:  # started
                thread.join(max(0.0, deadline_s - time.monotonic()))
        left = [thread.name for thread in (runner, finisher) if thread.is_alive()]
        if left:
            log.warning("%s still running %g s after the stop (a store call or a model batch "
                        "that does not end); left behind, it ends with the process",
                        " and ".join(left), wait_s)
        elif getattr(finisher, "store", None) is not None:
            finisher.store.close()
        checking = self.request_checks.end(max(0.0, deadline_s - time.monotonic()))
        if checking:
            log.warning("%d request checks still wait for their slide folders (a network "
                        "share that does not answer?); left behind", checking)

    def _stored(self, job_id: str, index: int, row: dict[str, Any]) -> None:
        """Finisher thread: a slide result is in the store (handled by the main loop)."""
        self.events.put(("stored", (job_id, index, row)))

    def _dropped(self, job_id: str, run_id: int) -> None:
        """Finisher thread: it writes no more results of that run of the job (handled by the
        main loop)."""
        self.events.put(("dropped", (job_id, run_id)))

    def _unstored(self, job_id: str, run_id: int, reason: str) -> None:
        """Finisher thread: a slide of that run could not be stored, not even as failed
        (handled by the main loop)."""
        self.events.put(("unstored", (job_id, run_id, reason)))

    def store_for_thread(self) -> PathologyStore:
        """A second connection to the same store, for the finisher thread."""
        return PathologyStore(self.store.url, getattr(self.store, "_pg_schema", None),
                              self.store.stop)

    def _loop(self, stop: threading.Event) -> None:
        next_housekeeping = 0.0
        while not stop.is_set() and self.failed is None:
            try:
                kind, event = self.events.get(timeout=0.1)
                self._taken(kind, event)
                self._handle(kind, event)
            except queue.Empty:
                pass
            now = time.monotonic()
            due = [item for item in self._retry if item[0] <= now]
            self._retry = [item for item in self._retry if item[0] > now]
            for _, kind, event in due:
                self._handle(kind, event, retried=True)
            self._take_waiting()
            if now >= next_housekeeping:
                self._handle("housekeeping", (), retried=self._housekeeping_failed)
                next_housekeeping = now + HOUSEKEEPING_S
            self._collect_prepared()
            self._dispatch()

    def _handle(self, kind: str, event: Any, *, retried: bool = False) -> None:
        """Run one event; when the store is down, reconnect and try the event again later.

        The outage ends when an event tried again passes, not when any event does: on a full
        disk an event that only reads passes while the one that writes still fails."""
        if kind in ("job", "cancel") and self.rivals.on_probation():
            self._retry.append((self.rivals.probation_until, kind, event))
            return
        try:
            self._run_event(kind, event)
        except STORE_ERRORS as exc:
            if not refused_for_its_values(exc):
                self._store_failed(kind, event, exc)
                return
            self._not_handled(kind, event, exc)  # tried again, it would fail again
        except Exception as exc:  # one message must never stop the server, nor come back
            self._not_handled(kind, event, exc)
        if retried:  # handled, or dropped for a fault of its own: the store no longer stops it
            self._outage.passed()
        if kind == "housekeeping":
            self._housekeeping_failed = False

    def _run_event(self, kind: str, event: Any) -> None:
        """Run the event's handler; where the server had closed the store's connection while
        no outage was said (a restart or a crash between two housekeeping rounds), run it
        again at once on a new one (Store.reopened_after_close, said at INFO): no outage.
        Safe as the retry of an event after any outage is (``_store_failed``)."""
        handler = getattr(self, f"_event_{kind}")
        try:
            handler(*event)
        except STORE_ERRORS as exc:
            if self._outage.ongoing or not self.store.reopened_after_close(exc):
                raise
            handler(*event)

    def _not_handled(self, kind: str, event: Any, error: Exception) -> None:
        """Say once that an event failed for a fault of its own; a request or cancel is
        dropped (a request refused with the reason, so its submitter learns of it)."""
        log.error("could not handle %s; dropped", kind, exc_info=error)
        if kind in ("job", "cancel"):
            self._drop_message(kind, event, error)

    def _store_failed(self, kind: str, event: Any, error: Exception) -> None:
        """Say the outage (once, then each minute), reconnect, and keep the event for later
        (housekeeping runs again at its next round anyway; a QoS 0 request or cancel is
        dropped). A call cut by the server's stop is no outage: the loop ends, and the event's
        messages stay on the broker."""
        if self.store.stopping():
            log.debug("stopped while the store had not answered %s (%s)", kind, error)
            return
        log.debug("store failed (%s) while handling %s; retrying in %g s", error, kind,
                  STORE_RETRY_S)
        self._outage.failed(error)
        self._reconnect_store()
        if kind == "housekeeping":
            self._housekeeping_failed = True
        elif qos_of(kind, event) == 0:
            # not kept: QoS 0 is not flow-controlled, and a flood kept here for the store's
            # return would outgrow the bound on waiting ones (a retained request is read
            # again at the next rescan)
            log.debug("a QoS 0 %s dropped while the store fails", kind)
        else:
            self._retry.append((time.monotonic() + STORE_RETRY_S, kind, event))

    def _reconnect_store(self) -> None:
        try:
            self.store.reconnect()
        except STORE_ERRORS as exc:  # the server is still away: the next try says so
            log.debug("store reconnect failed: %s", exc)

    def _take(self, topic_id: str, payload: bytes) -> None:
        try:
            request = self.request_checks.check(payload, topic_id)
        except JobRefusedError as exc:
            self._refuse(exc)
            self._clear_request(topic_id)
        else:
            if self.store.accept(request, self.server_id, self.settings.lease_s):
                self._start(request, set(), payload)
            else:
                self._redelivered(request, payload)

    def _redelivered(self, request: JobRequest, payload: bytes) -> None:
        """A job already stored: resume it if it is ours and not running here (from the
        stored request: the one published now may have been rewritten since, and is then
        refused); if it has ended, answer the request again when it is the job's own (its
        server stopped before it could clear it, or its submitter sent it again) and refuse
        another one under its id; else leave it (its owner answers)."""
        job_id = request.job_id
        job = self.store.job(job_id)
        ours = job is not None and job["owner"] == self.server_id
        if ours and job is not None and job["state"] in ("queued", "running") and \
                job_id not in self.runs:
            own = same_slides(job["request"], request)
            self._start(stored_request(job["request"]), self.store.stored_slides(job_id),
                        payload if own else b"")
            if not own:
                self._refuse_reused_id(job_id, job["state"])
        elif job is not None and job["state"] in FINAL_STATES:
            if same_slides(job["request"], request):
                self._answer_ended(job_id)
            else:
                self._refuse_reused_id(job_id, job["state"], was_refusal=not job["request"])
        else:
            log.debug("job %s is stored, run by %s", job_id, job and job["owner"])

    def _start(self, request: JobRequest, stored: set[int], payload: bytes = b"") -> None:
        """Run a job here (``payload``: its request's bytes as read, when they are known): kept
        among the runs, then begun; where the store fails in between (a restart met in
        flight), the next housekeeping round begins it (before, it stayed queued in the store,
        and one with every slide stored already was never ended)."""
        run = JobRun(request, stored, payload=payload)
        self.runs[request.job_id] = run
        self._begin(run)

    def _begin(self, run: JobRun) -> None:
        """Publish the job queued, store it running, and end it where every slide is stored
        already; ``run.begun`` once all of that is done."""
        job_id = run.request.job_id
        self._publish(job_id, "queued", slides_total=len(run.request.slides))
        self.store.set_running(job_id, self.server_id)
        self._progress(run)
        if run.complete:
            self._finish(run, "done")
        run.begun = True

    def _cancel(self, run: JobRun) -> None:
        self._stop_then_end(run, "cancelled", "cancelled on request")

    def _stop_then_end(self, run: JobRun, state: str, reason: str) -> None:
        """Stop a job's work now and store its end once the finisher has dropped it: a slide
        it was finishing meanwhile is then stored before the end (and among its published
        results), never after it. A job ending already keeps the end it was given."""
        if run.ending is not None:
            return
        run.ending = (state, reason)
        freed = self._drop(run)
        log.info("job %s ends %s once its slides in hand are written; %d waiting tiles freed",
                 run.request.job_id, state, freed)

    def _drop(self, run: JobRun) -> int:
        """Stop a run's work: its preparations are forgotten, its waiting tiles freed (how
        many is returned) and the finisher told to drop it (after which no slide of this run
        reaches it)."""
        run.cancel_futures()
        freed = self.batcher.drop_job(run.request.job_id)
        self.finisher.inbox.put(("drop", (run.request.job_id, run.run_id)))
        return freed

    def _event_dropped(self, job_id: str, run_id: int) -> None:
        run = self.runs.get(job_id)  # an earlier run's drop does not end a later run
        if run is not None and run.run_id == run_id and run.ending is not None:
            self._finish(run, *run.ending)

    def _event_stored(self, job_id: str, index: int, row: dict[str, Any]) -> None:
        run = self.runs.get(job_id)
        if run is None:
            return
        run.stored_row(index, row)
        if run.ending is not None:
            return
        if not run.complete:
            self._progress(run)
            return
        errors = [r["error"] for r in self.store.slide_results(job_id)]
        if all(errors):
            self._finish(run, "failed", reason=f"no slide could be scored ({errors[0]})")
        else:
            self._finish(run, "done")

    def _event_batch_failed(self, runs: set[tuple[str, int]], reason: str) -> None:
        """Fail the runs whose tiles the model failed on, not a later run of the same job."""
        for job_id, run_id in runs:
            run = self.runs.get(job_id)
            if run is not None and run.run_id == run_id:
                self._stop_then_end(run, "failed", f"model failed on a batch: {reason}")

    def _event_unstored(self, job_id: str, run_id: int, reason: str) -> None:
        """A slide of the run could not be stored: the job cannot complete, so it fails with
        the reason (a later run of the same job is not this one)."""
        run = self.runs.get(job_id)
        if run is not None and run.run_id == run_id:
            self._stop_then_end(run, "failed", reason)

    def _finish(self, run: JobRun, state: str, reason: str = "") -> None:
        job_id, reason = run.request.job_id, storable_text(reason)
        results = [{key: row[key] for key in RESULT_FIELDS}  # a failed job says which slides
                   for row in self.store.slide_results(job_id)]
        ended = self.store.finish(job_id, self.server_id, state, reason) or \
            (self._stored_end_here(job_id) or ("",))[0] == state
        self.runs.pop(job_id, None)  # after the store calls: a failed one is retried whole
        if ended:
            self._publish(job_id, state, reason=reason, **run.summary(), results=results)
        self._clear_request(job_id)
        if state == "cancelled":
            self.client.publish(cancel_topic(self.prefix, job_id), b"", qos=1, retain=True)

    def _stored_end_here(self, job_id: str) -> tuple[str, str] | None:
        """The end (state, reason) the store holds for the job by this server, else None. A
        ``finish`` that committed but lost its answer (a restart, a broken connection) left
        it there unpublished: a retried ``_finish`` or the next housekeeping (the lease no
        longer renews) finds it, and the end must still be published, then the request
        cleared."""
        job = self.store.job(job_id)
        if job is None or job["owner"] != self.server_id or job["state"] not in FINAL_STATES:
            return None
        return job["state"], job["reason"]

    def _progress(self, run: JobRun) -> None:
        self._publish(run.request.job_id, "running", **run.summary())
        run.published_at = time.monotonic()

    def _publish(self, job_id: str, state: str, **fields: Any) -> None:
        """A job's retained state, cut to one message the broker takes (an ended job's
        results that fit, a long reason; jobs.fitted_state_payload), kept by the broker for
        final_state_keep_s once the job ended (MQTT 5 spec 3.3.2.3.3: then it is gone)."""
        fields.setdefault("reason", "")
        fields.update(server=self.server_id, backend=self.backend.settings,
                      metrics=self.metrics.snapshot(self.batcher.pending_tiles))
        topic = state_topic(self.prefix, job_id)
        limit = payload_limit(self.settings.max_job_bytes, self.broker_max_packet, topic)
        payload = fitted_state_payload(job_id, state, limit, **fields)
        if len(payload) > limit:  # sent, it would cost the connection (and come again)
            log.error("the %s state of job %s is %d bytes, more than this broker takes (%d); "
                      "not published (the store has it)", state, job_id, len(payload), limit)
            return
        keep_s = self.settings.final_state_keep_s if state in FINAL_STATES else None
        self.client.publish(topic, payload, qos=1, retain=True,
                            properties=publish_properties(keep_s))

    def _event_housekeeping(self) -> None:
        """Renew leases, notice cancels and lost jobs, claim jobs of dead servers, and now and
        then read the retained requests again and prune the stored refusals."""
        if self.connected.is_set() and time.monotonic() - self._rescanned_at >= RESCAN_S:
            self._rescanned_at = time.monotonic()
            # subscribing again sends every retained request again (retain handling 0, MQTT 5
            # spec 3.3.1.3): a broker drops what exceeds a client's queue
            # (mosquitto's max_queued_messages, 1000 by default), so a request it dropped at
            # the first subscribe comes in a later round, as ended jobs are cleared
            self.client.subscribe(request_topic(self.prefix, ANY_JOB),
                                  options=SubscribeOptions(qos=1))
        self._prune_stored_refusals()
        self._answer_ended_due()
        self.refusal_lines.say_due()
        owned = self.store.renew(self.server_id, list(self.runs), self.settings.lease_s)
        for job_id in list(self.runs):
            run = self.runs[job_id]
            stored_end = None if job_id in owned else self._stored_end_here(job_id)
            if stored_end is not None:
                self._finish(run, *stored_end)
                continue
            if job_id not in owned:
                log.warning("job %s was taken over by another server; dropping it", job_id)
                self._drop(run)
                del self.runs[job_id]
            elif run.ending is not None:
                continue  # its end is stored once the finisher has dropped it
            elif not run.begun:  # the store failed while it was begun
                self._begin(run)
            elif self.store.cancel_requested(job_id):
                self._cancel(run)
            elif time.monotonic() - run.published_at >= 1.0:
                self._progress(run)
        # a server at max_running_jobs (or on probation) leaves them to the others
        room = 0 if self.rivals.on_probation() else self._room()
        for request in self.store.claim_expired(self.server_id, self.settings.lease_s,
                                                limit=min(room, 10)) if room else []:
            log.warning("job %s: its server went silent; taking it over", request.job_id)
            self._start(request, self.store.stored_slides(request.job_id))
        self.metrics.jobs_running.set(len(self.runs))
