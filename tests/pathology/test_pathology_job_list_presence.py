"""`pathology job list` on a server whose connection was lost (killed, crashed): its last will
carries the time its connection was made, which the list must not call the time it went
offline."""

from __future__ import annotations

import json

import pytest

from appliance.pathology.jobs_display import print_job_list
from appliance.pathology.presence import Presence

TOPIC = "stranger4/pathology/servers/srv-1"


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
