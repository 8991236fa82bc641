"""``appliance pathology serve`` and ``appliance pathology job submit|list|cancel`` (what they
print of a job: appliance/pathology/jobs_display.py; their client of the broker:
appliance/pathology/jobs_link.py).

The job commands only talk to the broker (any machine that reaches it can use them): submit
publishes a request and, with ``--wait``, follows the job's retained state until it ends; list
reads the retained states and waiting requests of the caller's own jobs and every server
presence; cancel reads the job's retained state and, when the job is queued or running,
publishes a retained cancel request. A job's id starts with its submitter, the login that
sent it (``mqtt.username``; ``anonymous`` without one): each command works in its own
login's jobs only, as the fleet's broker allows (appliance/pathology/jobs.py), and reads its
login's own errors topic, where the servers answer its refused requests and cancels: cancel
says an answer that there was nothing to cancel, ``--wait`` a refused request under its
job's id, list one heard while it reads (they are not retained).

Exit codes (also in each command's help, appliance/cli_help.py): 0 success; 1 a job or slide
failed, the job was cancelled, cancel found no job to stop, or the broker was unreachable; 2 a
bad option or config, or the broker refused the login or a subscription (credentials, ACL: at
once, naming the CONNACK or SUBACK reason code); 3 ``--wait`` saw no final state within
``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.backoffice.commands import CONFIG_HELP
from appliance.logsafe import escape_controls
from appliance.passwordfile import add_login_password_option, login_password
from appliance.pathology.jobs import (
    ANONYMOUS,
    FINAL_STATES,
    JOB_ID,
    JOB_ID_LEVEL,
    JOB_ID_RULE,
    cancel_topic,
    errors_topic,
    job_submitter,
    make_request,
    payload_limit,
    read_state,
    request_topic,
    server_topic,
    state_topic,
)
from appliance.pathology.jobs_display import (
    JobServerWatch,
    answer_about,
    describe_state,
    print_job_list,
    state_count,
)
from appliance.pathology.resolution import um_per_px_option
from appliance.synthetic.arguments import finite_number, named_path

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.pathology.jobs_link import JobLink

LIST_WAIT_S = 1.0  # for the first retained message after the SUBACK
LIST_QUIET_S = 0.3  # retained messages come back to back: this long without one ends them
LIST_MAX_S = 30.0
MAX_WAIT_S = 7 * 86400
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_END = 0, 1, 2, 3
JOB_LOGIN_EXAMPLE = ("APPLIANCE__MQTT__USERNAME=LOGIN, a login provisioned with "
                     "--pathology-client")


def register(sub: Any) -> None:
    """Add ``serve`` and ``job`` under ``appliance pathology``."""
    serve = sub.add_parser("serve", help="the pathology server: jobs over MQTT (long-running)")
    serve.add_argument("--config", default="config.yaml", help="config file (config.yaml)")
    serve.set_defaults(handler=_serve, own_stop_signals=True)  # held until _serve takes them
    job = sub.add_parser("job", help="submit, list or cancel pathology server jobs")
    jobs = job.add_subparsers(dest="job_command", required=True, metavar="COMMAND")
    submit = jobs.add_parser("submit", help="send slides to the pathology servers")
    submit.add_argument("slides", type=named_path, nargs="+",
                        help="slide files the servers can read")
    submit.add_argument("--um-per-px", type=um_per_px_option, required=True,
                        help="slide resolution in µm per pixel (0.1-4)")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")
    submit.add_argument("--timeout", type=finite_number(0, MAX_WAIT_S, "seconds", above_low=True),
                        default=3600.0, help=f"--wait limit in s, at most {MAX_WAIT_S} (3600)")
    submit.set_defaults(handler=_submit)
    listing = jobs.add_parser("list", help="your jobs' retained states, and the servers")
    listing.set_defaults(handler=_list)
    cancel = jobs.add_parser("cancel", help="cancel a queued or running job of yours")
    cancel.add_argument("job_id", type=_job_id,
                        help="the job id that submit printed (LOGIN/NAME; NAME: your own)")
    cancel.set_defaults(handler=_cancel)
    for parser in (submit, listing, cancel):  # they need only the broker: defaults will do
        parser.add_argument("--config", help=CONFIG_HELP)
        add_login_password_option(parser, "the job login's")


def _job_id(text: str) -> str:
    """argparse type of a job id, or of its name alone (it becomes MQTT topic levels: no
    wildcards, no more slashes)."""
    if not (JOB_ID.match(text) or JOB_ID_LEVEL.match(text)):
        raise argparse.ArgumentTypeError(f"{text[:140]!r} is no job id: {JOB_ID_RULE}")
    return text


def _submitter(config: Config) -> str | None:
    """Who submits, lists and cancels jobs here, the first level of their ids: ``mqtt.username``
    (the fleet's broker lets a login reach only jobs under its own name), ``anonymous``
    without one; None, said, when the login cannot be a topic level."""
    submitter = config.mqtt.username or ANONYMOUS
    if JOB_ID_LEVEL.match(submitter):
        return submitter
    print(f"pathology job: mqtt.username {submitter[:80]!r} cannot submit jobs (a job id starts "
          "with its submitter's login: 1-64 of A-Z a-z 0-9 _ . -); use a login provisioned with "
          "--pathology-client (deploy/mosquitto/provision.py)", file=sys.stderr)
    return None


def _config(args: argparse.Namespace) -> Config | None:
    """The config file (serve: ./config.yaml unless given; the job commands, which need only
    the broker: ./config.yaml when present, else built-in defaults, with APPLIANCE__ overrides)."""
    from appliance.config import ConfigError, load_config_or_defaults  # noqa: PLC0415 - pydantic

    try:
        return load_config_or_defaults(args.config)
    except ConfigError as exc:
        from appliance.cli import command_named  # noqa: PLC0415 - only on a refusal

        print(f"{command_named(args).removeprefix('appliance ')}: config error: {exc}",
              file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from appliance.pathology.service_main import serve  # noqa: PLC0415 - heavy deps load on use

    config = _config(args)
    if config is None:
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    return serve(config)


def _linked(args: argparse.Namespace, config: Config, filters: Sequence[str],
            work: Callable[[JobLink], int]) -> int:
    """Run work over a link subscribed to filters, logged in with the password
    ``--password-file`` holds (else the config's). A refused password file, login or
    subscription is a config error (exit 2, as for every command the broker refuses); an
    unreachable broker exit 1."""
    from appliance.pathology.jobs_link import JobLink  # noqa: PLC0415 - paho loads on use
    from appliance.transport.client import BrokerRefusedError  # noqa: PLC0415 - as above

    command = args.job_command
    try:
        password = login_password(args.password_file, config.mqtt.username,
                                  JOB_LOGIN_EXAMPLE)
    except ValueError as exc:
        print(escape_controls(f"pathology job {command}: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    try:
        with JobLink(config, filters, password) as link:
            return work(link)
    except BrokerRefusedError as exc:
        print(f"pathology job {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectionError as exc:
        print(f"pathology job {command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _say_slides_not_seen_here(slides: Sequence[Path]) -> None:
    """Warn of the slides this machine does not see as slide files: the servers read them, and
    may see other files under the same paths. A pipe, a device or a folder is no missing file:
    before, a link to /dev/zero was "not found on this machine"."""
    missing = [path for path in slides if not path.exists()]
    others = [path for path in slides if path.exists() and not path.is_file()]
    for paths, what in ((missing, "not found on this machine (the servers must see them)"),
                        (others, "no slide files on this machine (a folder, a pipe or a "
                                 "device; a server fails them)")):
        if paths:
            named = ", ".join(str(path) for path in paths[:5])
            print(escape_controls(f"pathology job submit: {what}: {named}"
                                  f"{' ...' if len(paths) > 5 else ''}"), file=sys.stderr)


def _submit(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_USAGE
    _say_slides_not_seen_here(args.slides)
    submitter = _submitter(config)
    if submitter is None:
        return EXIT_USAGE
    request = make_request(args.slides, args.um_per_px, submitter)
    payload, limit = request.to_json().encode(), config.pathology.max_job_bytes
    if len(payload) > limit:  # a server refuses it; the fleet's broker (256 KiB) drops it
        print("pathology job submit: "
              f"the request of {len(request.slides)} slides is {len(payload)} "
              f"bytes; at most {limit} (pathology.max_job_bytes, and the broker's "
              "message_size_limit): split the slides into several jobs", file=sys.stderr)
        return EXIT_USAGE
    prefix = config.mqtt.topic_prefix

    def send(link: JobLink) -> int:
        topic = request_topic(prefix, request.job_id)
        room = payload_limit(limit, link.max_packet_bytes, topic)
        if len(payload) > room:  # the broker would drop the connection for it, again and again
            print("pathology job submit: "
                  f"the request of {len(request.slides)} slides is {len(payload)} "
                  f"bytes; broker {config.mqtt.host}:{config.mqtt.port} takes packets of at "
                  f"most {link.max_packet_bytes} bytes (its max_packet_size), {room} of them "
                  "for the request: split the slides into several jobs", file=sys.stderr)
            return EXIT_USAGE
        # retained: a server that starts later still finds it; the one that ends it clears it
        link.publish(topic, payload, retain=True)
        print(request.job_id, flush=True)
        return follow_job(link, request.job_id, args.timeout, errors) if args.wait else EXIT_OK

    # the job's state (and its login's refusals) subscribed (SUBACK) before the job goes out:
    # --wait misses none
    filters, errors = [state_topic(prefix, request.job_id)], errors_topic(prefix, submitter)
    return _linked(args, config, [*filters, server_topic(prefix, "+"), errors]
                   if args.wait else filters, send)


def follow_job(link: JobLink, job_id: str, timeout_s: float, errors: str) -> int:
    """Print each state until a final one; the exit code says how the job ended. A refusal
    naming the job on its login's ``errors`` topic is said as it comes: another request sent
    under its id (the login's own: a job id is fresh) for other slides, refused while the job
    goes on. When no server has said it is online (retained presence) and none has taken the
    job within ``LIST_WAIT_S``, say so once: the request waits, retained, until one starts;
    and when the server running the job goes away (JobServerWatch)."""
    started = time.monotonic()
    deadline, told, heard = started + timeout_s, False, False
    watch = JobServerWatch(job_id)  # the servers online, and the job's own
    while time.monotonic() < deadline:
        try:
            topic, payload = link.messages.get(timeout=0.25)
        except queue.Empty:
            topic, payload = "", b""
        if topic == errors:  # another request under its id, refused: the job goes on
            if refusal := answer_about(payload, job_id, "job"):
                print(f"job {job_id}: a request under its id was refused: {refusal}",
                      file=sys.stderr, flush=True)
            continue
        if "/servers/" in topic:
            watch.heard_presence(topic, payload)
            continue
        if not (told or watch.online or heard) and time.monotonic() - started >= LIST_WAIT_S:
            told = True
            print(f"job {job_id}: no pathology server is online; the request waits, retained, "
                  "until one starts (appliance pathology serve)", file=sys.stderr, flush=True)
        state = read_state(payload) if payload else None
        if state is None:  # cleared, or not a state a server wrote
            continue
        heard = True
        print(describe_state(state), flush=True)
        if state["state"] in FINAL_STATES:
            return _outcome(state)
        watch.heard_state(state)
    print(f"job {job_id}: no final state within {timeout_s:g} s (is a server running?)",
          file=sys.stderr)
    return EXIT_NO_END


def _outcome(state: dict[str, Any]) -> int:
    """0 when the job is done and every slide was scored; else name each failure, 1."""
    job_id = state["job_id"]
    failed = [row for row in state.get("results", []) if row.get("error")]
    for row in failed:
        print(escape_controls(f"job {job_id}: slide {row['slide']} failed: {row['error']}"),
              file=sys.stderr)
    if state["state"] != "done":
        print(escape_controls(f"job {job_id} {state['state']}: "
                              f"{state.get('reason') or 'no reason given'}"), file=sys.stderr)
        return EXIT_FAILED
    failed_count = state_count(state, "slides_failed", len(failed))
    if failed_count:
        total = state_count(state, "slides_total", len(state.get("results", [])))
        print(f"job {job_id}: {failed_count} of {total} slides failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_USAGE
    submitter = _submitter(config)
    if submitter is None:
        return EXIT_USAGE
    prefix, own = config.mqtt.topic_prefix, f"{submitter}/+"
    errors = errors_topic(prefix, submitter)

    def read(link: JobLink) -> int:
        latest = latest_by_topic(link)
        refusal = latest.pop(errors, b"")  # not retained: one that came while it read
        print_job_list(latest)
        if said := answer_about(refusal):
            print(f"pathology job list: heard meanwhile: {said}", file=sys.stderr)
        return EXIT_OK

    # its own jobs and refusals only: the fleet's broker refuses a login's subscription to
    # another's
    return _linked(args, config, [state_topic(prefix, own), server_topic(prefix, "+"),
                                    request_topic(prefix, own), errors], read)


def latest_by_topic(link: JobLink) -> dict[str, bytes]:
    """The last message of each topic: the retained ones the broker sends after the SUBACK,
    read until none has come for ``LIST_QUIET_S`` (at most ``LIST_MAX_S``), and any update
    of the same topics meanwhile (a running job's progress replaces its earlier state)."""
    latest: dict[str, bytes] = {}
    deadline, wait = time.monotonic() + LIST_MAX_S, LIST_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, payload = link.messages.get(timeout=min(wait, left))
        except queue.Empty:
            break
        latest[topic] = payload
        wait = LIST_QUIET_S
    return latest


def _cancel(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_USAGE
    submitter = _submitter(config)
    if submitter is None:
        return EXIT_USAGE
    job_id = args.job_id if "/" in args.job_id else f"{submitter}/{args.job_id}"
    if job_submitter(job_id) != submitter:  # the fleet's broker refuses it; say why here
        print(f"pathology job cancel: {job_id} is a job of login {job_submitter(job_id)!r}, not of "
              f"{submitter!r}: a login cancels only its own jobs; nothing sent", file=sys.stderr)
        return EXIT_USAGE
    prefix = config.mqtt.topic_prefix
    errors = errors_topic(prefix, submitter)  # where a server says there was nothing to cancel

    def cancel(link: JobLink) -> int:
        latest = latest_by_topic(link)
        payload = latest.get(state_topic(prefix, job_id))
        state = read_state(payload) if payload else None
        request = json.dumps({"job_id": job_id, "requested_at": time.time()}).encode()
        if state is None and latest.get(request_topic(prefix, job_id)):
            # withdraw the request, then ask for the cancel, in case a server took it just now
            link.publish(request_topic(prefix, job_id), b"", retain=True)
            link.publish(cancel_topic(prefix, job_id), request, retain=True)
            print(f"job {job_id} withdrawn: no server had taken it")
            return EXIT_OK
        if state is None:
            print("pathology job cancel: "
                  f"{job_id} is unknown: no server has published a state for it "
                  "and no request waits (a mistyped id, or a job that ended longer ago than "
                  "pathology.final_state_keep_s: the store has it); nothing sent", file=sys.stderr)
            return EXIT_FAILED
        if state["state"] in FINAL_STATES:
            reason = f" ({state['reason']})" if state.get("reason") else ""
            print(escape_controls("pathology job cancel: "
                                  f"{job_id} already ended: {state['state']}{reason}; "
                                  "nothing sent"), file=sys.stderr)
            return EXIT_FAILED
        link.publish(cancel_topic(prefix, job_id), request, retain=True)
        print(escape_controls(f"cancel requested for {job_id} ({state['state']} on "
                              f"{state.get('server', '?')})"), flush=True)
        return _cancel_answer(link, job_id, errors)

    return _linked(args, config, [state_topic(prefix, job_id),
                                      request_topic(prefix, job_id), errors], cancel)


def _cancel_answer(link: JobLink, job_id: str, errors: str) -> int:
    """After a cancel of a job that was queued or running: the job ending otherwise than
    cancelled, or a server's answer on the login's ``errors`` topic that there was nothing to
    cancel (it ended meanwhile), within ``LIST_WAIT_S``, is said, exit 1; the job cancelled,
    or nothing heard (the server is still stopping it), exit 0."""
    deadline = time.monotonic() + LIST_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, payload = link.messages.get(timeout=left)
        except queue.Empty:
            break
        state = read_state(payload) if payload else None
        if topic == errors:
            said = answer_about(payload, job_id, "cancel")
        elif state is not None and state["state"] == "cancelled":
            return EXIT_OK
        elif state is not None and state["state"] in FINAL_STATES:
            said = describe_state({**state, "results": [], "results_omitted": 0})
        else:
            said = None
        if said:
            print(f"pathology job cancel: nothing cancelled: {said}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK
