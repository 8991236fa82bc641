"""A pathology server that goes away under its jobs (killed, crashed, cut off, or stopped): `job
list` says a lost connection so, its last will carrying the time the connection was made, not
the time it went, and a job not ended on such a server as waiting for it; `submit --wait` says
that the job's server went, where it printed the last "running" line for as long as --timeout
(an hour by default)."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from appliance.pathology.jobs import server_topic, state_payload, state_topic
from appliance.pathology.jobs_cli import follow_job
from appliance.pathology.jobs_display import print_job_list
from appliance.pathology.presence import Presence

TOPIC = server_topic("stranger4", "srv-1")
JOB = "anonymous/walk-1"
STATE_TOPIC = state_topic("stranger4", JOB)


def test_a_lost_server_is_not_said_offline_since_it_connected(
        capsys: pytest.CaptureFixture[str]) -> None:
    presence = Presence("srv-1", {"backend": "onnx-cpu"})
    will = presence.will()  # as the server hands it to the broker when it connects
    connected_at = json.loads(will)["at"]
    print_job_list({TOPIC: will})
    line = capsys.readouterr().out.splitlines()[0]
    assert f"offline since {connected_at}" not in line
    assert line == ("server srv-1: offline, its connection lost without a clean stop (killed, "
                    f"crashed or cut off; it had connected at {connected_at}) (onnx-cpu)")


def test_a_cleanly_stopped_or_running_server_is_said_in_its_state_since_then(
        capsys: pytest.CaptureFixture[str]) -> None:
    presence = Presence("srv-1", {"backend": "onnx-cpu"})
    for state in ("online", "offline"):
        payload = presence.payload(state)
        print_job_list({TOPIC: payload})
        line = capsys.readouterr().out.splitlines()[0]
        assert line == f"server srv-1: {state} since {json.loads(payload)['at']} (onnx-cpu)"


def _follow(messages: list[tuple[str, bytes]]) -> int:
    """``submit --wait``'s follower over ``messages`` as the broker delivers them."""
    link: Any = SimpleNamespace(messages=queue.Queue())
    for message in messages:
        link.messages.put(message)
    return follow_job(link, JOB, 30, "stranger4/pathology/errors/anonymous")


def _state(state: str, **fields: Any) -> tuple[str, bytes]:
    return STATE_TOPIC, state_payload(JOB, state, server="srv-1", **fields)


@pytest.mark.parametrize(("gone", "said"), [
    (lambda presence: presence.will(), "lost its connection (killed, crashed or cut off)"),
    (lambda presence: presence.payload("offline"), "stopped"),
], ids=["lost", "stopped"])
def test_waiting_on_a_job_says_once_that_its_server_went_away_and_waits_on(
        capsys: pytest.CaptureFixture[str], gone: Callable[[Presence], bytes], said: str,
) -> None:
    first, second = Presence("srv-1", {"backend": "onnx-cpu"}), Presence("srv-1", {})
    other = Presence("srv-2", {})
    running = _state("running", slides_total=3, slides_done=1)
    code = _follow([
        (TOPIC, first.payload("online")), running,
        (TOPIC, gone(first)), running,  # retained: heard again, said once
        (server_topic("stranger4", "srv-2"), other.will()),  # not the job's server: not said
        (TOPIC, second.payload("online")), _state("running", slides_total=3, slides_done=2),
        (TOPIC, gone(second)), running,  # gone again: said again
        _state("done", slides_total=3, slides_done=3, results=[])])
    assert code == 0
    err = capsys.readouterr().err
    line = (f"job {JOB}: its server srv-1 {said}; the job goes on when that server is back, or "
            "when another takes it over once its lease runs out (pathology.lease_s); waiting "
            "(Ctrl-C stops waiting, not the job)")
    assert err.splitlines() == [line, line]
    assert "srv-2" not in err


def test_the_list_names_a_job_whose_server_is_offline_as_waiting_for_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    presence, other = Presence("srv-1", {}), Presence("srv-2", {})
    jobs = {"anonymous/a": state_payload("anonymous/a", "running", server="srv-1",
                                         slides_total=65, slides_done=3),
            "anonymous/b": state_payload("anonymous/b", "queued", server="srv-1"),
            "anonymous/c": state_payload("anonymous/c", "done", server="srv-1",
                                         slides_total=1, slides_done=1, results=[]),
            "anonymous/d": state_payload("anonymous/d", "running", server="srv-2",
                                         slides_total=2, slides_done=1)}
    print_job_list({TOPIC: presence.will(), server_topic("stranger4", "srv-2"):
                    other.payload("online"),
                    **{state_topic("stranger4", job): payload for job, payload in jobs.items()}})
    waits = " (its server srv-1 is offline: the job waits for it, or for another to take it over)"
    assert capsys.readouterr().out.splitlines()[2:] == [
        f"anonymous/a running 3/65 slides{waits}", f"anonymous/b queued{waits}",
        "anonymous/c done 1/1 slides", "anonymous/d running 1/2 slides", "4 job(s)"]
