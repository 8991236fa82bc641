"""The cancel requests a pathology server reads (retained on ``jobs/LOGIN/NAME/cancel``): each
flags its unfinished job in the store, and the server that runs the job cancels it (at once
when it is this one, else its owner at its next housekeeping); one that names nothing to
cancel (no job id, a job the store does not know, one that already ended) is cleared and
answered on its login's errors topic (docs/pathology-server.md, "Topics and payloads"). The
job requests are admission's (appliance/pathology/admission.py), running the jobs the
server's (appliance/pathology/server.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from appliance.logsafe import LineBudget
from appliance.pathology.admission import shown_levels
from appliance.pathology.jobrun import JobRun
from appliance.pathology.jobs import JOB_ID, JOB_ID_RULE, cancel_topic, state_payload
from appliance.pathology.jobstore import PathologyStore


class CancelRequests:
    """The cancel half of a pathology server's request handling (a base of
    ``PathologyServer``, whose main loop runs ``_event_cancel``; paho's callbacks only queue
    the messages)."""

    store: PathologyStore
    client: mqtt.Client
    prefix: str
    server_id: str
    runs: dict[str, JobRun]
    refusal_lines: LineBudget

    if TYPE_CHECKING:  # the server's (appliance/pathology/server.py) and admission's
        def _cancel(self, run: JobRun) -> None: ...
        def _publish_error(self, levels: str, payload: bytes) -> None: ...

    def _event_cancel(self, job_id: str, mid: int, qos: int, requested: bool) -> None:
        if requested and not JOB_ID.match(job_id):
            self._not_a_job_id(job_id)
        elif requested and self.store.request_cancel(job_id):
            if job_id in self.runs:
                self._cancel(self.runs[job_id])
        elif requested:
            self._nothing_to_cancel(job_id)
        if qos:
            self.client.ack(mid, qos)

    def _nothing_to_cancel(self, job_id: str) -> None:
        """A cancel request for a job the store does not know, or one that already ended: clear
        the retained request (else the broker hands it to every server at every connect) and
        say why on the errors topic. The job command sends a cancel only after a server
        published the job's state, which it does once the job is stored, so an unknown id
        here was never submitted (or the store was replaced)."""
        job = self.store.job(job_id)
        self.client.publish(cancel_topic(self.prefix, job_id), b"", qos=1, retain=True)
        if job is None:
            self.refusal_lines.warn("cancel request for unknown job %s cleared", job_id)
            self._answer_cancel(job_id, "unknown", f"job {job_id} is unknown: no server stored "
                                "it (a mistyped id, or a job never submitted); nothing to cancel")
        elif job["state"] != "cancelled":  # cancelled: this very request, already carried out
            self._answer_cancel(job_id, job["state"], f"job {job_id} already ended "
                                f"({job['state']}); nothing to cancel")

    def _not_a_job_id(self, name: str) -> None:
        """A cancel request on a topic that names no job a submit could make (a topic level may
        be 65,535 bytes): cleared, and answered naming only its start."""
        self.client.publish(cancel_topic(self.prefix, name), b"", qos=1, retain=True)
        shown = shown_levels(name)
        self.refusal_lines.warn("cancel request for %r (%d characters, not a job id) cleared",
                                shown, len(name))
        self._answer_cancel(shown, "unknown", f"cancel request for {shown!r} ({len(name)} "
                            f"characters) names no job: a job id is {JOB_ID_RULE}; nothing to "
                            "cancel", levels=name)

    def _answer_cancel(self, job_id: str, state: str, reason: str, levels: str = "") -> None:
        """Answer a cancel request of ``job_id`` (on the topic of job ``levels``: the job id
        itself unless given) on its login's errors topic."""
        self._publish_error(levels or job_id, state_payload(
            job_id, state, request="cancel", reason=reason, server=self.server_id))
