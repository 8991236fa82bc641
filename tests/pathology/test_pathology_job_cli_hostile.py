"""The job commands read retained states that anyone allowed to publish there could have put:
a malformed one is skipped and named, text is shown with its control characters escaped."""

from __future__ import annotations

import json
import os
import queue
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.cli import main
from appliance.pathology import jobs_cli, jobs_display
from appliance.pathology.jobs import request_topic, server_topic, state_payload, state_topic
from appliance.transport.broker import free_port

pytestmark = pytest.mark.broker

HOSTILE = {"job_id": "anonymous/evil", "state": "running",
           "reason": "\x1b]0;title\x07\u202etxt.exe"}
# a job id with terminal controls, on a topic mosquitto takes (it refuses controls in topics)
CONTROLS = {"job_id": "anonymous/j\x1b[2J\x1b[31m1", "state": "running"}


def _retain(broker: Any, messages: dict[str, bytes],
            properties: Properties | None = None) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    for topic, payload in messages.items():
        client.publish(topic, payload, qos=1, retain=True,
                       properties=properties).wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def config(tmp_path: Path, mqtt_broker: Any, topic_prefix: str) -> Any:
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump({"mqtt": {"host": mqtt_broker.host,
                                             "port": mqtt_broker.port,
                                             "topic_prefix": topic_prefix}}))
    yield file
    _retain(mqtt_broker, {state_topic(topic_prefix, f"anonymous/{name}"): b"" for name in
                          ("a", "b", "c", "d", "n", "ok", "spoof", "evil", "ctrl")} |
            {state_topic(topic_prefix, "other/ok"): b""} |
            {server_topic(topic_prefix, "s1"): b""})  # retained messages outlive the test


def test_job_list_skips_malformed_states_and_escapes_the_rest(
    config: Path, mqtt_broker: Any, topic_prefix: str, capsys: pytest.CaptureFixture[str],
) -> None:
    _retain(mqtt_broker, {
        state_topic(topic_prefix, "anonymous/a"): b"not json",
        state_topic(topic_prefix, "anonymous/b"): b'{"x": 1}',
        state_topic(topic_prefix, "anonymous/c"): b"[1, 2]",
        state_topic(topic_prefix, "anonymous/d"):
            b'{"job_id": "anonymous/d", "state": "done", "results": [1]}',
        state_topic(topic_prefix, "anonymous/n"):
            b'{"job_id": "anonymous/n", "state": "done", "results": ' +
            b"[" * 1000 + b"]" * 1000 + b"}",  # nested past the JSON decoder's recursion limit
        state_topic(topic_prefix, "anonymous/ok"): b'{"job_id": "anonymous/ok", "state": "queued"}',
        state_topic(topic_prefix, "anonymous/evil"): json.dumps(HOSTILE).encode(),
        state_topic(topic_prefix, "anonymous/ctrl"): json.dumps(CONTROLS).encode(),
        # a state on another job's topic would stand for a job that is not there
        state_topic(topic_prefix, "anonymous/spoof"):
            b'{"job_id": "anonymous/ok", "state": "done"}',
        # another login's job: not this login's to list (the fleet's broker would refuse it)
        state_topic(topic_prefix, "other/ok"): b'{"job_id": "other/ok", "state": "queued"}',
        server_topic(topic_prefix, "s1"): b'{"server": "s1"}',
    })
    assert main(["pathology", "job", "list", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert not set(captured.out + captured.err) & {"\x1b", "\x07", "\u202e"}
    assert "anonymous/ok queued" in captured.out
    assert "other/ok" not in captured.out + captured.err
    assert "anonymous/evil running (\\x1b]0;title\\u0007\\u202etxt.exe)" in captured.out
    assert "2 job(s)" in captured.out
    assert "8 retained message(s) that are no job state of their topic or server presence " \
        "ignored" in captured.err
    assert f"{state_topic(topic_prefix, 'anonymous/a')}" in captured.err


def test_job_list_never_reads_a_request_carrying_megabytes_of_user_properties(
    config: Path, mqtt_broker: Any, topic_prefix: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """A broker without the shipped max_packet_size (the suite's mosquitto has none) hands a
    reader every packet whole: the job commands' CONNECT names the largest they take (four
    times pathology.max_job_bytes), so the broker drops a larger one for them."""
    padded = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    padded.UserProperty = [(f"k{i}", "x" * 60_000) for i in range(40)]  # 2.4 MB
    big = request_topic(topic_prefix, "anonymous/big")
    small = request_topic(topic_prefix, "anonymous/small")
    _retain(mqtt_broker, {big: b'{"job_id": "anonymous/big"}'}, padded)
    _retain(mqtt_broker, {small: b'{"job_id": "anonymous/small"}'})
    try:
        assert main(["pathology", "job", "list", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "anonymous/small waiting" in out
        assert "big" not in out  # on main: "big waiting: no server has taken it yet"
    finally:
        _retain(mqtt_broker, {big: b"", small: b""})


def test_cancel_takes_a_malformed_state_for_none(
    config: Path, mqtt_broker: Any, topic_prefix: str, capsys: pytest.CaptureFixture[str],
) -> None:
    _retain(mqtt_broker, {state_topic(topic_prefix, "anonymous/b"): b'{"x": 1}'})
    assert main(["pathology", "job", "cancel", "b", "--config", str(config)]) == 1
    assert "anonymous/b is unknown" in capsys.readouterr().err


def test_cancel_of_another_login_s_job_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A job id names its submitter's login first; the fleet's broker refuses a cancel under
    another's, and the command says so at once (no broker listens here: nothing is sent)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"mqtt": {"host": "127.0.0.1", "port": free_port(),
                                               "username": "lab-a"}}))
    assert main(["pathology", "job", "cancel", "lab-b/j1", "--config", str(config)]) == 2
    assert "lab-b/j1 is a job of login 'lab-b', not of 'lab-a'" in capsys.readouterr().err


def test_job_commands_need_no_config_file_as_other_broker_commands(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml here: built-in defaults and APPLIANCE__
    for name in [n for n in os.environ if n.upper().startswith("APPLIANCE__")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", mqtt_broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(mqtt_broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", topic_prefix)
    assert main(["pathology", "job", "list"]) == 0
    assert capsys.readouterr().out == "0 job(s)\n"
    assert main(["pathology", "job", "list", "--config", "typo.yaml"]) == 2
    assert "typo.yaml: config file not found" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf"])
def test_a_wait_limit_outside_its_range_is_refused_before_anything_is_sent(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # NaN or a negative limit gave up at once (exit 3) after sending the job; inf never ended
    config = tmp_path / "config.yaml"  # nothing listens there: nothing can be sent
    config.write_text(yaml.safe_dump({"mqtt": {"host": "127.0.0.1", "port": free_port()}}))
    with pytest.raises(SystemExit) as refused:
        main(["pathology", "job", "submit", str(tmp_path / "s.jpg"), "--um-per-px", "1",
              "--wait", f"--timeout={value}", "--config", str(config)])
    assert refused.value.code == 2
    assert "argument --timeout: must be a finite number" in capsys.readouterr().err


def test_job_list_shows_each_job_once_with_its_latest_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a running job publishes its progress while `job list` reads: the last one counts
    link = SimpleNamespace(messages=queue.Queue())
    for done in (11, 12):
        state = {"job_id": "lab/j1", "state": "running", "slides_total": 60,
                 "slides_done": done}
        link.messages.put(("p/pathology/jobs/lab/j1/state", json.dumps(state).encode()))
    link.messages.put(("p/pathology/jobs/lab/j2/request", b'{"job_id": "lab/j2"}'))
    jobs_display.print_job_list(jobs_cli.latest_by_topic(link))  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.count("lab/j1 running") == 1
    assert "lab/j1 running 12/60 slides" in out
    assert "1 job(s)" in out
    assert "lab/j2 waiting: no server has taken it yet" in out


def test_job_list_shows_a_job_whose_results_were_cut_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A final state too large for one message carries results_omitted: job submit --wait
    says so; job list, which shows no results, keeps its one line a job."""
    link = SimpleNamespace(messages=queue.Queue())
    state = {"job_id": "lab/big", "state": "done", "slides_total": 1000, "slides_done": 1000,
             "slides_failed": 999, "results_omitted": 400, "results": []}
    link.messages.put(("p/pathology/jobs/lab/big/state", json.dumps(state).encode()))
    jobs_display.print_job_list(jobs_cli.latest_by_topic(link))  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines() == ["lab/big done 1000/1000 slides",
                                                    "1 job(s)"]


def test_job_submit_wait_shows_each_slide_as_pathology_run_does() -> None:
    """`job submit --wait` printed the score as the JSON had it ('MSS score
    0.34761406533332084'), where `pathology run` prints 'MSS score 0.348 (... 127 tiles)'; and
    an unsupported slide with its score ('unsupported score 1.000'), the answer its label
    withholds, where `pathology run` gives its share of tiles in distribution instead."""
    reason = "tissue unlike the model's training data"
    state = {"job_id": "j", "state": "done", "slides_total": 5, "slides_done": 5, "results": [
        {"slide": "a", "label": "MSS", "score": 0.34761406533332084, "tile_count": 127},
        {"slide": "u", "label": "unsupported", "score": 0.99, "tile_count": 12,
         "in_distribution_share": 0.25, "reason": reason},
        {"slide": "v", "label": "unsupported", "score": 0.99, "reason": reason},
        {"slide": "e", "error": "e.jpg: slide file not found"},
        {"slide": "odd", "label": "MSI", "score": "high", "tile_count": True},
    ]}
    assert jobs_display.describe_state(state).splitlines() == [
        "j done 5/5 slides",
        "  a: MSS score 0.348 (127 tiles)",
        f"  u: unsupported ({reason}: 25% of 12 tiles in distribution)",
        f"  v: unsupported ({reason})",
        "  e: e.jpg: slide file not found",
        "  odd: MSI score high",
    ]


def test_job_submit_wait_names_the_pictures_a_full_results_disk_left_unwritten() -> None:
    """The server stores a slide's score without its pictures and tile table where it cannot
    write them (a full disk), with empty paths; `--wait` said only the score."""
    written = {"heatmap_path": "/r/h.png", "cam_path": "/r/c.png", "tiles_path": "/r/t.csv"}
    state = {"job_id": "j", "state": "done", "results": [
        {"slide": "a", "label": "MSS", "score": 0.25, "tile_count": 9,
         "heatmap_path": "", "cam_path": "", "tiles_path": ""},
        {"slide": "b", "label": "MSI", "score": 0.75, "tile_count": 9, **written},
        {"slide": "c", "label": "MSI", "score": 0.75, "tile_count": 9, **written,
         "cam_path": ""},  # a model without CAMs draws none
        {"slide": "e", "error": "e.jpg: slide file not found",
         "heatmap_path": "", "cam_path": "", "tiles_path": ""},
    ]}
    assert jobs_display.describe_state(state).splitlines() == [
        "j done",
        "  a: MSS score 0.250 (9 tiles); heatmap, CAMs and tile table not written (the "
        "server's log says why)",
        "  b: MSI score 0.750 (9 tiles)",
        "  c: MSI score 0.750 (9 tiles)",
        "  e: e.jpg: slide file not found",
    ]


def test_submit_wait_says_a_refused_request_under_its_job_s_id_and_follows_the_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`job submit --wait` reads its login's errors topic: a refusal naming its job (another
    request sent under the id, for other slides, while the job runs) is said, and the job is
    followed to its end; refusals of the login's other jobs are not its own."""
    errors, job_id = "p/pathology/errors/lab", "lab/j1"
    link = SimpleNamespace(messages=queue.Queue())
    taken = state_payload(job_id, "running", request="job", reason="job id lab/j1 is taken")
    link.messages.put((errors, state_payload("lab/j2", "done", request="job", reason="other")))
    link.messages.put((errors, taken))
    link.messages.put(("p/pathology/jobs/lab/j1/state",
                       state_payload(job_id, "done", slides_total=1, slides_done=1)))
    assert jobs_cli.follow_job(link, job_id, 10, errors) == 0  # type: ignore[arg-type]
    captured = capsys.readouterr()
    assert "lab/j1 done 1/1 slides" in captured.out
    assert captured.err.splitlines() == [
        "job lab/j1: a request under its id was refused: lab/j1: job id lab/j1 is taken"]


def test_submit_tells_a_missing_slide_from_one_that_is_no_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pipe, a link to a device and a folder are there, but no slide files: on main each was
    "not found on this machine" with the missing one, and a name's escape codes reached the
    terminal."""
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "folder").mkdir()
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump({"mqtt": {"host": "127.0.0.1", "port": free_port()}}))
    slides = [tmp_path / name for name in ("pipe.jpg", "zero.jpg", "folder", "gone\x1b[2J.jpg")]
    assert main(["pathology", "job", "submit", *map(str, slides), "--um-per-px", "1",
                 "--config", str(file)]) == 1  # no broker there
    said = capsys.readouterr().err.splitlines()
    assert said[:2] == [
        f"pathology job submit: not found on this machine (the servers must see them): "
        f"{tmp_path}/gone\\x1b[2J.jpg",
        f"pathology job submit: no slide files on this machine (a folder, a pipe or a device; "
        f"a server fails them): {tmp_path}/pipe.jpg, {tmp_path}/zero.jpg, {tmp_path}/folder"]
