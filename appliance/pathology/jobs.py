"""Pathology jobs over MQTT: topics, the job payload and its checks, the retained job state.

A job id is two topic levels, ``LOGIN/NAME``: the login of the job client that submitted it
(its submitter; the store's ``owner`` is the server that runs it),
then a name of its own (``job submit`` makes a time-ordered one). The broker lets each job
client's login publish and read under its own ``LOGIN`` level only (deploy/mosquitto/
provision.py, docs/broker-identity.md), so a request or cancel under ``jobs/A/...`` came from
login A: MQTT 5 does not tell a subscriber who published, but the topic does. Two logins that
use the same name make two jobs.

Topics (docs/pathology-server.md):
- ``{prefix}/pathology/jobs/{login}/{name}/request``: a job request (QoS 1), retained until
  the job ends, so a server that starts later still sees it; every server reads every request
  and the store decides which one runs it (the first to store it; docs/pathology-server.md);
- ``{prefix}/pathology/jobs/{login}/{name}/state``: the job's state, retained (queued, running
  with progress, done, failed with a reason, cancelled);
- ``{prefix}/pathology/jobs/{login}/{name}/cancel``: a cancel request (retained, so a server
  that takes the job over later still sees it; cleared once the job is cancelled, or at once
  when the job is unknown or already ended);
- ``{prefix}/pathology/errors/{login}``: the refusals and answers about the requests and
  cancels on topics under ``jobs/{login}/``: why one without a readable job id was refused,
  why one under another job's id for other slides was (``request: job``), and why a cancel
  request had nothing to cancel (``request: cancel``, ``state``: unknown or the job's final
  state). Only that login (and the servers) may read them: they name its job ids and why
  they were refused;
- ``{prefix}/pathology/errors``: the same for topics whose first job level could be no
  login (a broker without ACLs, or a server's role): the servers' only;
- ``{prefix}/pathology/servers/{id}``: each server's presence, retained (online, or offline as
  its last will).

A request is checked before anything is stored: size, JSON, schema, job id (the one its topic
names), that it and its slides hold no key the schema lacks, the number of slides, each
resolution (a plausible µm per pixel, appliance/pathology/resolution.py), and that each
slide path lies inside a configured slide root.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import safejson
from appliance.pathology.names import one_form
from appliance.pathology.resolution import resolution_problem

JOB_SCHEMA = "appliance.pathology.job/1"
STATE_SCHEMA = "appliance.pathology.state/1"
_LEVEL = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # a login, or a job's name
JOB_ID_LEVEL = re.compile(rf"^{_LEVEL}\Z")  # a job id's level: its submitter's login, its name
JOB_ID = re.compile(rf"^{_LEVEL}/{_LEVEL}\Z")  # LOGIN/NAME
JOB_ID_RULE = "LOGIN/NAME, each 1-64 of A-Z a-z 0-9 _ . - (LOGIN: its submitter's)"
ANY_JOB = "+/+"  # the topic levels of every job id, in a subscription
ANONYMOUS = "anonymous"  # submits the jobs sent with no mqtt.username (a broker without logins)
MAX_PATH_CHARS = 4096
JOB_KEYS = ("schema", "job_id", "submitted_at", "slides")  # a request's keys: no others
SLIDE_KEYS = ("path", "um_per_px", "name")  # a slide's keys: no others
FINAL_STATES = frozenset({"done", "failed", "cancelled"})
STATES = ("queued", "running", "done", "failed", "cancelled")
CUT_MARK = " [cut to fit one message]"  # ends a reason cut by fitted_state_payload
# a PUBLISH packet beside its topic and payload: fixed header (5), topic length (2), packet id
# (2), properties length (4) and a message expiry (5), rounded up (MQTT 5 spec 3.3)
PUBLISH_OVERHEAD_BYTES = 32


class JobRefusedError(ValueError):
    """A job request that is refused; ``job_id`` is set when the request named a usable one."""

    def __init__(self, reason: str, job_id: str | None = None) -> None:
        super().__init__(reason)
        self.job_id = job_id


@dataclass(frozen=True)
class SlideRequest:
    """One slide of a job: the file, its resolution and the name its results carry."""

    path: str
    um_per_px: float
    name: str


@dataclass(frozen=True)
class JobRequest:
    """A checked job request."""

    job_id: str
    slides: tuple[SlideRequest, ...]
    submitted_at: str

    def to_json(self) -> str:
        """The request as stored and as published."""
        return json.dumps({
            "schema": JOB_SCHEMA, "job_id": self.job_id, "submitted_at": self.submitted_at,
            "slides": [{"path": s.path, "um_per_px": s.um_per_px, "name": s.name}
                       for s in self.slides],
        })


def request_topic(prefix: str, job_id: str) -> str:
    """The retained request of one job (cleared once the job has ended)."""
    return f"{prefix}/pathology/jobs/{job_id}/request"


def state_topic(prefix: str, job_id: str) -> str:
    """The retained state of one job."""
    return f"{prefix}/pathology/jobs/{job_id}/state"


def cancel_topic(prefix: str, job_id: str) -> str:
    """The retained cancel request of one job."""
    return f"{prefix}/pathology/jobs/{job_id}/cancel"


def server_topic(prefix: str, server_id: str) -> str:
    """A server's retained presence: online (with its backend) or offline (its last will)."""
    return f"{prefix}/pathology/servers/{server_id}"


def errors_topic(prefix: str, login: str | None) -> str:
    """Where the refusals of and answers to ``login``'s requests and cancels go, which only it
    and the servers read; with no login (a topic that names none), the servers' own."""
    errors = f"{prefix}/pathology/errors"
    return errors if login is None else f"{errors}/{login}"


def topic_login(levels: str) -> str | None:
    """The login that the job levels of a request or cancel topic (``LOGIN/NAME``, or levels
    that are no job id) start with, or None when their first level could be no login: the
    broker lets only that login publish there (deploy/mosquitto/provision.py)."""
    login = levels.partition("/")[0]
    return login if JOB_ID_LEVEL.match(login) else None


def new_job_id(submitter: str) -> str:
    """A time-ordered unique job id of ``submitter`` (its login; UTC time, then random hex)."""
    return f"{submitter}/{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def job_submitter(job_id: str) -> str:
    """The login that submitted a job: its id's first level."""
    return job_id.partition("/")[0]


def job_id_of_topic(topic: str) -> str:
    """The job id a job topic names (``.../jobs/LOGIN/NAME/request``): its two levels before
    the last."""
    return "/".join(topic.split("/")[-3:-1])


def utc_text(at: datetime | None = None) -> str:
    """``at`` (default: now) as UTC ISO 8601 text."""
    when = datetime.now(UTC) if at is None else at
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_request(paths: list[Path], um_per_px: float, submitter: str) -> JobRequest:
    """A request of ``submitter`` (its login) for slide files (absolute paths as the servers will
    read them, named by stem)."""
    slides = tuple(SlideRequest(str(path.absolute()), um_per_px, path.stem) for path in paths)
    return JobRequest(new_job_id(submitter), slides, utc_text())


def parse_job(payload: bytes, roots: list[Path], max_bytes: int, max_slides: int,
              topic_job_id: str | None = None) -> JobRequest:
    """Check a job request; JobRefusedError names what is wrong (and the job id when known).
    ``topic_job_id``: the id its request topic names (a usable one), which the payload must
    repeat; a refusal is then that job's."""
    if len(payload) > max_bytes:
        raise JobRefusedError(f"job payload of {len(payload)} bytes; at most {max_bytes}",
                              topic_job_id)
    try:
        data = safejson.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobRefusedError(f"job payload is not JSON ({exc})", topic_job_id) from exc
    if not isinstance(data, dict):
        raise JobRefusedError("job payload must be a JSON object", topic_job_id)
    try:  # JSON's \ud800 escapes make strings no file system, database or log can take
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise JobRefusedError("job payload holds text that is not Unicode (an unpaired "
                              "surrogate escape such as \\ud800)", topic_job_id) from exc
    if _holds_nul(data):  # PostgreSQL's text refuses it, which the server took for an outage
        raise JobRefusedError("job payload holds a NUL character (the escape \\u0000), which "
                              "no stored text may hold", topic_job_id)
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise JobRefusedError(f"job_id {str(job_id)[:140]!r}: use {JOB_ID_RULE}", topic_job_id)
    if topic_job_id is not None and job_id != topic_job_id:
        raise JobRefusedError(f"job_id {job_id!r} in the request published for job "
                              f"{topic_job_id!r}", topic_job_id)
    if data.get("schema") != JOB_SCHEMA:
        raise JobRefusedError(f"schema {str(data.get('schema'))[:80]!r}; expected {JOB_SCHEMA}",
                          job_id)
    _refuse_unknown_keys(data, JOB_KEYS, "the job request", job_id)
    slides = data.get("slides")
    if not isinstance(slides, list) or not slides:
        raise JobRefusedError("slides must be a non-empty list", job_id)
    if len(slides) > max_slides:
        raise JobRefusedError(f"{len(slides)} slides; a job may name at most {max_slides}", job_id)
    checked = tuple(_slide(item, index, roots, job_id) for index, item in enumerate(slides))
    return JobRequest(job_id, checked, str(data.get("submitted_at", ""))[:40])


def _refuse_unknown_keys(data: dict[str, Any], known: tuple[str, ...], where: str,
                        job_id: str) -> None:
    """Refuse a key this schema does not have, naming it: the protocol is closed, as the
    kiosk's payloads are (extra keys forbidden), so a client that sets a field the server does
    not read (``tile_um``) learns so rather than getting a job run without it."""
    unknown = [key for key in data if key not in known]
    if unknown:
        names = ", ".join(repr(key[:40]) for key in unknown[:5])
        raise JobRefusedError(
            f"{where} has {len(unknown)} unknown key(s) {names}; {JOB_SCHEMA} has only "
            f"{', '.join(known)}", job_id)


def _holds_nul(data: Any) -> bool:
    """Whether decoded JSON holds a NUL character in any string, a key or a value (walked
    without recursion: JSON nested as deep as the decoder takes it would exhaust the stack)."""
    waiting = [data]
    while waiting:
        value = waiting.pop()
        if isinstance(value, str) and "\0" in value:
            return True
        if isinstance(value, dict):
            waiting += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            waiting += value
    return False


def _slide(item: Any, index: int, roots: list[Path], job_id: str) -> SlideRequest:
    """One checked slide entry."""
    where = f"slides[{index}]"
    if not isinstance(item, dict):
        raise JobRefusedError(f"{where} must be an object with path and um_per_px", job_id)
    _refuse_unknown_keys(item, SLIDE_KEYS, where, job_id)
    path, um = item.get("path"), item.get("um_per_px")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS or "\0" in path:
        raise JobRefusedError(
            f"{where}.path must be a file path of 1-{MAX_PATH_CHARS} chars", job_id)
    um_per_px = _um_per_px(um, where, job_id)
    try:
        confined = confine(Path(path), roots)
    except (RuntimeError, OSError) as exc:  # a link loop (RuntimeError before Python 3.13)
        raise JobRefusedError(f"{where}.path {path[:200]!r} cannot be resolved ({exc}); name a "
                              "slide file", job_id) from exc
    if confined is None:
        raise JobRefusedError(f"{where}.path {path[:200]!r} is outside the slide roots", job_id)
    try:  # a link to a file whose name is not UTF-8: no store, state or log text can hold it
        str(confined).encode()
    except UnicodeEncodeError as exc:
        raise JobRefusedError(f"{where}.path {path[:200]!r} leads to a file whose name is not "
                              "UTF-8 text; rename the file", job_id) from exc
    given = item.get("name")
    name = one_form(given if isinstance(given, str) and given else confined.stem)
    return SlideRequest(str(confined), um_per_px, re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100])


def _um_per_px(value: Any, where: str, job_id: str) -> float:
    """A slide's resolution, refused unless plausible (JSON also carries NaN and Infinity)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise JobRefusedError(f"{where}.um_per_px must be a number, got {str(value)[:40]!r}",
                              job_id)
    try:
        um_per_px = float(value)
    except OverflowError:  # an integer too large for a float
        um_per_px = math.inf
    problem = resolution_problem(um_per_px)
    if problem is not None:
        raise JobRefusedError(f"{where}.um_per_px: {problem}", job_id)
    return um_per_px


def confine(path: Path, roots: list[Path]) -> Path | None:
    """The resolved absolute path when it lies inside one of the roots, else None; OSError
    when a path inside cannot be resolved (a link loop). Where it leads is settled before any
    error of its file counts: a path into another lab's folder (by name, ``..`` or a link)
    gets the same answer whether a file is there, missing or a loop."""
    if not path.is_absolute():
        return None
    resolved = Path(os.path.realpath(path))  # raises on no loop and no missing file
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        return None
    try:
        resolved.stat()
    except OSError as exc:  # a missing file fails when it is read, in its slide's result
        if exc.errno == errno.ELOOP:
            raise
    return resolved


def state_payload(job_id: str, state: str, **fields: Any) -> bytes:
    """The retained state message of a job."""
    body = {"schema": STATE_SCHEMA, "job_id": job_id, "state": state,
            "updated_at": utc_text(), **fields}
    return json.dumps(body, allow_nan=False, default=str).encode()


def final_state_payload(job_id: str, state: str, max_bytes: int, **fields: Any) -> bytes:
    """``state_payload`` of an ended job, its ``results`` cut to what fits in ``max_bytes``
    (the broker drops a larger message: its message_size_limit, as pathology.max_job_bytes):
    failed slides first, the number left out in ``results_omitted``; ``slides_failed`` counts
    them all. Every result stays in the store."""
    results: list[dict[str, Any]] = fields.pop("results")
    fields["slides_failed"] = sum(1 for row in results if row.get("error"))
    payload = state_payload(job_id, state, results=results, **fields)
    if len(payload) <= max_bytes:
        return payload
    spare = max_bytes - len(state_payload(job_id, state, results=[], results_omitted=len(results),
                                          **fields))
    kept = _rows_that_fit(results, spare)
    return state_payload(job_id, state, results=kept, results_omitted=len(results) - len(kept),
                         **fields)


def payload_limit(max_bytes: int, broker_max_packet: int | None, topic: str) -> int:
    """The most bytes of payload a server's message on ``topic`` may carry:
    pathology.max_job_bytes (the broker's message_size_limit), or less where the broker's
    maximum packet size (its CONNACK's; it drops the connection of a client that sends a larger
    packet, MQTT 5 spec 3.2.2.3.6) leaves less room beside the topic and the packet's header."""
    if broker_max_packet is None:
        return max_bytes
    return min(max_bytes, broker_max_packet - len(topic.encode()) - PUBLISH_OVERHEAD_BYTES)


def fitted_state_payload(job_id: str, state: str, max_bytes: int, **fields: Any) -> bytes:
    """``state_payload`` of at most ``max_bytes``: an ended job's ``results`` cut as
    ``final_state_payload`` cuts them; where the rest is too large on its own, the backend's
    settings are left at its name, then a long ``reason`` (a failed slide's error names its
    path) is cut, ending in CUT_MARK; ``cut`` names what was cut (the store keeps the job's
    reason and results). Only a ``max_bytes`` below what a job id and state need
    leaves it larger."""
    results = fields.pop("results", None)
    head = {} if results is None else {"results": [], "results_omitted": len(results),
                                       "slides_failed": len(results)}
    cut: list[str] = []

    def fits(**changed: Any) -> bool:
        marked = {"cut": cut} if cut else {}
        body = {**fields, **changed, **head, **marked}
        return len(state_payload(job_id, state, **body)) <= max_bytes

    if not fits() and isinstance(fields.get("backend"), dict):
        cut.append("backend")  # in every state and the server's presence
        fields["backend"] = {"backend": str(fields["backend"].get("backend", ""))[:40]}
    reason = str(fields.get("reason", ""))
    if not fits() and reason:
        cut.append("reason")
        fields["reason"] = _cut_to_fit(reason, lambda text: fits(reason=text))
    if cut:
        fields["cut"] = cut
    if results is None:
        return state_payload(job_id, state, **fields)
    return final_state_payload(job_id, state, max_bytes, results=results, **fields)


def _cut_to_fit(text: str, fits: Callable[[str], bool]) -> str:
    """The longest start of ``text``, ending in CUT_MARK, that ``fits`` (found by halves)."""
    fitting, too_long = 0, len(text) + 1
    while too_long - fitting > 1:
        middle = (fitting + too_long) // 2
        if fits(text[:middle] + CUT_MARK):
            fitting = middle
        else:
            too_long = middle
    return text[:fitting] + CUT_MARK


def _rows_that_fit(results: list[dict[str, Any]], spare_bytes: int) -> list[dict[str, Any]]:
    """The result rows, failed first, whose JSON (", " between them) fits in spare_bytes; in
    slide order."""
    kept: list[dict[str, Any]] = []
    used = 0
    for row in sorted(results, key=lambda row: not row.get("error")):
        size = len(json.dumps(row, allow_nan=False, default=str)) + (2 if kept else 0)
        if used + size > spare_bytes:
            break
        kept.append(row)
        used += size
    return sorted(kept, key=lambda row: int(row.get("slide_index", 0)))


def read_state(payload: bytes) -> dict[str, Any] | None:
    """A retained job state as ``state_payload`` writes it, or None when the payload is none:
    whoever may publish on the topic could have put anything there."""
    data = _json_object(payload)
    if data is None or not all(isinstance(data.get(key), str) for key in ("job_id", "state")):
        return None
    results = data.get("results", [])
    if not isinstance(results, list) or not all(
            isinstance(row, dict) and isinstance(row.get("slide"), str) for row in results):
        return None
    return data


def read_presence(payload: bytes) -> dict[str, Any] | None:
    """A server's retained presence (server, state, at, backend), or None when it is none."""
    data = _json_object(payload)
    if data is None or not all(isinstance(data.get(key), str) for key in ("server", "state", "at")):
        return None
    return data if isinstance(data.get("backend", {}), dict) else None


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        data = safejson.loads(payload)
    except ValueError:  # not UTF-8 (UnicodeDecodeError), or not JSON
        return None
    return data if isinstance(data, dict) else None


def same_slides(stored: dict[str, Any], request: JobRequest) -> bool:
    """Whether ``request`` asks for the job a stored request (``PathologyStore.job``'s
    ``request``; ``{}`` for a refusal) asked for: the same slides, each with its resolution
    and name, in the same order. When it was submitted is not compared: a client that builds
    its request again to resend it stamps it anew."""
    slides = stored.get("slides")
    if not isinstance(slides, list):
        return False
    return [(s.get("path"), s.get("um_per_px"), s.get("name")) for s in slides] == \
        [(s.path, s.um_per_px, s.name) for s in request.slides]


def parse_stored(text: str) -> JobRequest:
    """A request as the store keeps it (already checked when it was accepted)."""
    return stored_request(safejson.loads(text))


def stored_request(data: dict[str, Any]) -> JobRequest:
    """A request from the store's decoded row (``PathologyStore.job``'s ``request``)."""
    slides = tuple(SlideRequest(s["path"], float(s["um_per_px"]), s["name"])
                   for s in data["slides"])
    return JobRequest(data["job_id"], slides, data.get("submitted_at", ""))
