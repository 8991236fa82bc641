"""Pathology over the provisioned broker (deploy/mosquitto: TLS, dynamic security): a server and
a job client provisioned with ``--pathology-server`` / ``--pathology-client`` serve a job end
to end; a kiosk, a back-office worker or a job client cannot touch what is not theirs, another
job client's jobs included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from appliance.cli import main
from appliance.config import PASSWORD_ENV
from appliance.edge.testing import wait_until
from appliance.pathology.jobs import JOB_SCHEMA
from appliance.synthetic.he import SlideSpec
from appliance.transport.client import new_client
from tests.fleet_broker import FleetBroker, Probe, provisioned_broker
from tests.he_slides import painted

pytestmark = pytest.mark.broker
SERVER, USER, KIOSK, WORKER = "pathology-lab-0", "lab-user", ("shop-1", "kiosk-a"), "backoffice-1"
RIVAL = "lab-rival"  # another lab's job client login
JOBS = "appliance/pathology/jobs"
ERRORS = "appliance/pathology/errors"
SENT = (0x00, 0x10)  # PUBACK success, or success with no matching subscribers


@pytest.fixture
def lab_broker() -> Iterator[FleetBroker]:
    with provisioned_broker([f"--device={KIOSK[0]}/{KIOSK[1]}", "--worker", WORKER,
                             "--pathology-server", SERVER, "--pathology-client", USER,
                             "--pathology-client", RIVAL]) as broker:
        yield broker


def _config_file(path: Path, broker: FleetBroker, login: str, **extra: object) -> Path:
    data = {"mqtt": {"host": "127.0.0.1", "port": broker.port, "username": login,
                     "tls": {"enabled": True, "ca_file": str(broker.folder / "certs" / "ca.crt")}},
            **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def _retained(broker: FleetBroker, topic: str, login: str = USER) -> list[bytes]:
    """The retained message on ``topic``, read as the job client ``login`` (empty: none). The
    broker sends a subscription's retained message before it answers the next SUBSCRIBE on that
    connection: once the second SUBACK is in, whatever was retained has come."""
    seen: list[bytes] = []
    subacks: list[int] = []
    client = new_client(broker.settings(login, login))
    client.on_message = lambda _c, _u, message: seen.append(bytes(message.payload))
    client.on_subscribe = lambda _c, _u, _m, codes, _p: subacks.append(codes[0].value)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert wait_until(client.is_connected, 10)
        client.subscribe(topic, qos=1)
        client.subscribe(f"{JOBS}/{login}/no-such-job/state", qos=1)  # the marker: none there
        assert wait_until(lambda: len(subacks) == 2, 10)
    finally:
        client.disconnect()
        client.loop_stop()
    return [payload for payload in seen if payload]


def test_no_one_but_the_pathology_roles_reaches_the_job_topics(lab_broker: FleetBroker) -> None:
    kiosk = Probe(lab_broker, KIOSK[1], f"edge-{KIOSK[0]}-{KIOSK[1]}")
    worker = Probe(lab_broker, WORKER, WORKER)
    user = Probe(lab_broker, USER, USER)  # the job commands connect as their login
    server = Probe(lab_broker, SERVER, SERVER)
    hijack = Probe(lab_broker, SERVER, "another-id")
    try:
        assert (kiosk.connack, worker.connack, user.connack, server.connack) == (0, 0, 0, 0)
        assert hijack.connack in (0x85, 0x87)  # a server login is bound to its client id
        for probe in (kiosk, worker):  # neither may send, see or answer a job
            assert probe.publish(f"{JOBS}/{USER}/j1/request") == 0x87
            assert probe.publish(f"{JOBS}/{USER}/j1/state") == 0x87
            assert probe.subscribe(f"{JOBS}/+/+/request") == 0x87
            assert probe.subscribe(f"{JOBS}/+/+/state") == 0x87
        # a job client sends requests and cancels and reads states of its own jobs; it cannot
        # forge a state, a server's presence or a refusal
        assert user.publish(f"{JOBS}/{USER}/j1/request", b"") in SENT
        assert user.publish(f"{JOBS}/{USER}/j1/cancel", b"", retain=True) in SENT
        assert user.subscribe(f"{JOBS}/{USER}/+/state") == 1
        assert user.subscribe(f"{JOBS}/+/+/state") == 0x87  # every login's: not for it
        assert user.subscribe("appliance/pathology/servers/+") == 1
        assert user.publish(f"{JOBS}/{USER}/j1/state") == 0x87
        assert user.publish(f"appliance/pathology/servers/{SERVER}") == 0x87
        assert user.publish("appliance/pathology/errors") == 0x87
        assert user.publish(f"appliance/pathology/errors/{USER}") == 0x87  # nor its own
        assert user.subscribe("appliance/#") == 0x87
        # a server publishes states and only its own presence
        assert server.publish(f"{JOBS}/{USER}/j1/state", b"", retain=True) in SENT
        assert server.subscribe(f"{JOBS}/+/+/request") == 1  # every login's jobs
        assert server.publish(f"appliance/pathology/servers/{SERVER}", b"", retain=True) in SENT
        assert server.publish("appliance/pathology/servers/pathology-lab-9") == 0x87
        assert server.publish(f"{ERRORS}/{USER}") in SENT  # answers each login on its own
        assert server.subscribe(f"{ERRORS}/#") == 1  # and reads them all
        assert server.subscribe(f"appliance/pathology/servers/{SERVER}") == 1  # its own only
        assert server.subscribe("appliance/pathology/servers/pathology-lab-9") == 0x87
        assert server.publish(f"appliance/{KIOSK[0]}/{KIOSK[1]}/ack") == 0x87
        assert server.subscribe("appliance/+/+/result") == 0x87
    finally:
        for probe in (kiosk, worker, user, server, hijack):
            probe.close()


def test_the_fleet_roles_wildcards_reach_no_pathology_topic(lab_broker: FleetBroker) -> None:
    """A worker's {p}/+/+/cmd/# and {p}/+/+/ack, and the rollout's {p}/+/+/model/update, also
    match pathology/jobs/cmd/j1/request (a job of a login named "cmd"), its cancel and state,
    and pathology/servers/ack (a server named "ack"); {p}/+/+/status a server named
    "status"."""
    worker = Probe(lab_broker, WORKER, WORKER)
    rollout = Probe(lab_broker, "rollout", "rollout")
    try:
        for topic in (f"{JOBS}/cmd/j1/request", f"{JOBS}/cmd/j1/cancel", f"{JOBS}/cmd/j1/state",
                      "appliance/pathology/servers/ack"):
            assert worker.publish(topic) == 0x87, topic
        assert rollout.publish(f"{JOBS}/model/update") == 0x87
        for probe in (worker, rollout):
            assert probe.subscribe("appliance/pathology/servers/status") == 0x87
            assert probe.subscribe("appliance/+/+/status") == 1  # the fleet's own stays
        assert worker.publish(f"appliance/{KIOSK[0]}/{KIOSK[1]}/ack") in SENT
    finally:
        worker.close()
        rollout.close()


def test_a_job_client_cannot_take_another_login_s_client_id(lab_broker: FleetBroker) -> None:
    """A login that could pick any client id would take the connection, and a persistent
    session with its queued results, of whichever login that id belongs to: a kiosk, a
    back-office worker or a pathology server."""
    owners = {f"edge-{KIOSK[0]}-{KIOSK[1]}": KIOSK[1], WORKER: WORKER, SERVER: SERVER}
    held = [Probe(lab_broker, login, client_id) for client_id, login in owners.items()]
    thieves = [Probe(lab_broker, USER, client_id) for client_id in owners]
    try:
        assert [probe.connack for probe in held] == [0, 0, 0]
        for thief in thieves:
            assert thief.connack in (0x85, 0x87), thief.connack  # bound to its own id
        for probe in held:  # a connection taken over at a thief's CONNECT answers no more
            probe.subscribe(f"{JOBS}/{USER}/no-such-job/state")
        assert [probe.disconnects for probe in held] == [[], [], []]  # none was taken over
    finally:
        for probe in (*held, *thieves):
            probe.close()


def _slide(tmp_path: Path) -> Path:
    """One small synthetic H&E slide in its own slide root."""
    slides = tmp_path / "slides"
    slides.mkdir()
    spec = SlideSpec("b11", "P11", "MSI", "biopsy", 1, 0.5, seed=11)
    Image.fromarray(painted(spec)).save(slides / "b11.jpg", quality=88)
    return slides / "b11.jpg"


def _serve(broker: FleetBroker, tmp_path: Path, slides: Path,
           **pathology: object) -> subprocess.Popen[str]:
    """`appliance pathology serve` as the provisioned server login."""
    server_config = _config_file(
        tmp_path / "server.yaml", broker, SERVER, state_dir=str(tmp_path / "state"),
        pathology={"client_id": SERVER, "slide_roots": [str(slides)],
                   "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                   "prepare_workers": 1, **pathology})
    env = {**os.environ, PASSWORD_ENV: broker.password(SERVER)}
    return subprocess.Popen([sys.executable, "-m", "appliance", "pathology", "serve",
                             "--config", str(server_config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stopped(server: subprocess.Popen[str]) -> str:
    """Stop the server; its output, which names no refused publish or subscribe."""
    server.terminate()
    output, _ = server.communicate(timeout=30)
    assert "not author" not in output.lower(), output[-2000:]
    assert "0x87" not in output, output[-2000:]
    return output


def _final_state(broker: FleetBroker, job_id: str, login: str) -> dict[str, Any]:
    """The job's retained state once it is final (read as ``login``), within 120 s."""
    topic = f"{JOBS}/{job_id}/state"

    def ended() -> bool:
        held = _retained(broker, topic, login)
        return bool(held) and json.loads(held[0])["state"] in ("done", "failed", "cancelled")

    assert wait_until(ended, 120, poll_s=0.5), _retained(broker, topic, login)
    state: dict[str, Any] = json.loads(_retained(broker, topic, login)[0])
    return state


def test_a_provisioned_server_and_job_client_serve_a_job_end_to_end(
    lab_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slide = _slide(tmp_path)
    server = _serve(lab_broker, tmp_path, slide.parent)
    cli = ["--config", str(_config_file(tmp_path / "user.yaml", lab_broker, USER))]
    monkeypatch.setenv(PASSWORD_ENV, lab_broker.password(USER))
    try:
        assert main(["pathology", "job", "submit", str(slide), "--um-per-px", "0.5",
                     "--wait", "--timeout", "120", *cli]) == 0, capsys.readouterr()
        job_id = capsys.readouterr().out.split()[0]
        assert job_id.startswith(f"{USER}/")  # its submitter's login first
        assert main(["pathology", "job", "list", *cli]) == 0
        listed = capsys.readouterr().out
        assert f"{job_id} done" in listed, listed
        assert "waiting" not in listed
        assert SERVER in listed
        # the server cleared the request it ended (its role may publish the empty retained)
        assert _retained(lab_broker, f"{JOBS}/{job_id}/request") == []
        assert _retained(lab_broker, f"{JOBS}/{job_id}/state")  # the final state stays
    finally:
        _stopped(server)


def test_a_job_client_cannot_cancel_withdraw_replace_or_read_another_login_s_job(
    lab_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another lab's login (RIVAL) holds a job client's role too. The broker refuses its
    cancel of USER's job, its clearing (withdrawing) and replacing of USER's waiting request
    and its reading of USER's states; `job cancel` of USER's job id refuses before sending.
    Its own job under the same name is another job, and USER's job completes as requested."""
    slide = _slide(tmp_path)
    monkeypatch.setenv(PASSWORD_ENV, lab_broker.password(USER))
    cli = ["--config", str(_config_file(tmp_path / "user.yaml", lab_broker, USER))]
    assert main(["pathology", "job", "submit", str(slide), "--um-per-px", "0.5", *cli]) == 0
    job_id = capsys.readouterr().out.split()[0]  # no server yet: the request waits, retained
    name = job_id.rpartition("/")[2]
    forged = {"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
              "slides": [{"path": str(slide), "um_per_px": 0.25, "name": "forged"}]}
    rival = Probe(lab_broker, RIVAL, RIVAL)
    try:
        theirs = f"{JOBS}/{job_id}"
        cancel = json.dumps({"job_id": job_id, "requested_at": 0}).encode()
        assert rival.publish(f"{theirs}/cancel", cancel, retain=True) == 0x87
        assert rival.publish(f"{theirs}/request", b"", retain=True) == 0x87  # withdraw
        assert rival.publish(f"{theirs}/request", json.dumps(forged).encode(),
                             retain=True) == 0x87
        assert rival.subscribe(f"{JOBS}/{USER}/+/state") == 0x87
        assert rival.subscribe(f"{JOBS}/{USER}/+/request") == 0x87
        # the same name under its own login: a job of its own, stored apart
        own = {**forged, "job_id": f"{RIVAL}/{name}",
               "slides": [{"path": str(slide), "um_per_px": 0.5, "name": "own"}]}
        assert rival.publish(f"{JOBS}/{RIVAL}/{name}/request", json.dumps(own).encode(),
                             retain=True) in SENT
    finally:
        rival.close()
    assert _retained(lab_broker, f"{JOBS}/{job_id}/request")  # still waiting, as sent
    monkeypatch.setenv(PASSWORD_ENV, lab_broker.password(RIVAL))
    rival_cli = ["--config", str(_config_file(tmp_path / "rival.yaml", lab_broker, RIVAL))]
    assert main(["pathology", "job", "cancel", job_id, *rival_cli]) == 2
    assert f"{job_id} is a job of login {USER!r}" in capsys.readouterr().err
    server = _serve(lab_broker, tmp_path, slide.parent)
    try:
        state = _final_state(lab_broker, job_id, USER)
        assert (state["job_id"], state["state"]) == (job_id, "done"), state
        assert [row["slide"] for row in state["results"]] == ["b11"], state
        rivals = _final_state(lab_broker, f"{RIVAL}/{name}", RIVAL)
        assert (rivals["state"], [row["slide"] for row in rivals["results"]]) == (
            "done", ["own"]), rivals
    finally:
        _stopped(server)


def test_a_lab_s_login_cannot_have_the_server_read_another_lab_s_slide(
    lab_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """pathology.slide_roots_by_login: USER's lab has its folder, RIVAL's lab its own. RIVAL's
    `job submit` of USER's slide fails as outside its slide roots (on main every login could
    submit any slide under slide_roots, and got its scores); USER's own job is done."""
    slide = _slide(tmp_path)
    theirs = tmp_path / "rival-slides"
    theirs.mkdir()
    server = _serve(lab_broker, tmp_path, slide.parent, slide_roots_by_login={
        USER: [str(slide.parent)], RIVAL: [str(theirs)]})
    wait = ["--um-per-px", "0.5", "--wait", "--timeout", "120"]
    try:
        monkeypatch.setenv(PASSWORD_ENV, lab_broker.password(RIVAL))
        rival_cli = ["--config", str(_config_file(tmp_path / "rival.yaml", lab_broker, RIVAL))]
        assert main(["pathology", "job", "submit", str(slide), *wait, *rival_cli]) == 1
        said = capsys.readouterr()
        assert said.out.split()[0].startswith(f"{RIVAL}/"), said
        assert f"slides[0].path {str(slide)!r} is outside the slide roots" in said.err, said
        monkeypatch.setenv(PASSWORD_ENV, lab_broker.password(USER))
        user_cli = ["--config", str(_config_file(tmp_path / "user.yaml", lab_broker, USER))]
        assert main(["pathology", "job", "submit", str(slide), *wait, *user_cli]) == 0, \
            capsys.readouterr()
    finally:
        _stopped(server)


def _hearing(probe: Probe, heard: list[tuple[str, str]]) -> None:
    """Note each (topic, job id) of the refusals and answers that ``probe`` receives."""
    probe.client.on_message = lambda _c, _u, message: heard.append(
        (message.topic, json.loads(message.payload)["job_id"]))


def _online(broker: FleetBroker) -> bool:
    """Whether the server's retained presence says online (read as USER, under its client
    id: a probe of USER connected meanwhile would be taken over)."""
    held = _retained(broker, f"appliance/pathology/servers/{SERVER}")
    return bool(held) and json.loads(held[0])["state"] == "online"


def test_a_job_client_reads_only_its_own_refusals(
    lab_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every job login read {p}/pathology/errors, where the servers answered every login's
    refused requests and cancels, naming their job ids and why. Now each login's go to
    errors/LOGIN, which only that login (and the servers) may read: RIVAL's subscriptions to
    USER's, to the servers' own and to every login's get SUBACK 0x87 (on main 0x01), and of
    USER's refusals, answered while RIVAL listens on its own, it hears none, then its own."""
    slide = _slide(tmp_path)
    server = _serve(lab_broker, tmp_path, slide.parent)
    assert wait_until(lambda: _online(lab_broker), 60, poll_s=0.5)  # before USER's probe
    user, rival = Probe(lab_broker, USER, USER), Probe(lab_broker, RIVAL, RIVAL)
    users: list[tuple[str, str]] = []
    rivals: list[tuple[str, str]] = []
    _hearing(user, users)
    _hearing(rival, rivals)
    try:
        for topic in (f"{ERRORS}/{USER}", ERRORS, f"{ERRORS}/+", f"{ERRORS}/#"):
            assert rival.subscribe(topic) == 0x87, topic
        assert rival.subscribe(f"{ERRORS}/{RIVAL}") == 1
        assert user.subscribe(f"{ERRORS}/{USER}") == 1
        # USER's cancel of a job no server knows, and a request on a topic naming no job id
        assert user.publish(f"{JOBS}/{USER}/ghost/cancel", b"{}", retain=True) in SENT
        assert user.publish(f"{JOBS}/{USER}/not a name!/request", b"{}", retain=True) in SENT
        assert wait_until(lambda: len(users) == 2, 60), users
        # the server answers in order: RIVAL's own answer comes after anything of USER's
        assert rival.publish(f"{JOBS}/{RIVAL}/ghost/cancel", b"{}", retain=True) in SENT
        assert wait_until(lambda: len(rivals) == 1, 60), rivals
        assert sorted(users) == [(f"{ERRORS}/{USER}", ""), (f"{ERRORS}/{USER}", f"{USER}/ghost")]
        assert rivals == [(f"{ERRORS}/{RIVAL}", f"{RIVAL}/ghost")]
    finally:
        user.close()
        rival.close()
    try:  # the job commands read their login's own errors topic, which the broker allows
        monkeypatch.setenv(PASSWORD_ENV, lab_broker.password(RIVAL))
        rival_cli = ["--config", str(_config_file(tmp_path / "rival.yaml", lab_broker, RIVAL))]
        assert main(["pathology", "job", "list", *rival_cli]) == 0
    finally:
        _stopped(server)


def test_a_server_subscribes_only_the_filters_it_uses_as_written(lab_broker: FleetBroker) -> None:
    """mosquitto 2.0 bounds neither how many subscriptions a session holds nor their length;
    a server's `jobs/+/+/request`, `.../cancel` and `errors/#` were patterns, which granted any
    filter under them (`jobs/+/<60,000 characters>/request` as many times as its login liked,
    kept in its persistent session). Now they are literal: the filters its link subscribes
    are granted, anything narrower refused (SUBACK 0x87; on main 0x01)."""
    server = Probe(lab_broker, SERVER, SERVER)
    try:
        for topic in (f"{JOBS}/{USER}/+/request", f"{JOBS}/+/{'n' * 60_000}/request",
                      f"{JOBS}/{USER}/j1/cancel", f"{ERRORS}/{USER}", f"{ERRORS}/+"):
            assert server.subscribe(topic) == 0x87, topic[:80]
        for topic in (f"{JOBS}/+/+/request", f"{JOBS}/+/+/cancel", f"{ERRORS}/#",
                      f"appliance/pathology/servers/{SERVER}"):
            assert server.subscribe(topic) == 1, topic
    finally:
        server.close()


def test_provisioning_refuses_a_device_site_named_pathology(tmp_path: Path) -> None:
    """{prefix}/pathology/servers/X is a server's presence: a device at site "pathology" named
    "servers" would publish there (its result, status) and be read as one."""
    done = subprocess.run(
        [sys.executable, "deploy/mosquitto/provision.py", "--out", str(tmp_path / "ids"),
         "--device", "pathology/servers"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode != 0
    assert "reserved" in done.stderr
    assert not (tmp_path / "ids" / "dynamic-security.json").exists()
