"""``models status|deploy|rollback`` without a config file: the broker and store from the
command line and APPLIANCE__ overrides, errors that name what is missing, and a status query
that creates nothing."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.edge.testing import wait_until
from appliance.updates.operations import init_repository
from appliance.updates.repository import FileRepository
from appliance.updates.testing import linear_model

pytestmark = pytest.mark.broker

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (no config.yaml) with no APPLIANCE__ variables set."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in [n for n in os.environ if n.upper().startswith("APPLIANCE__")]:
        monkeypatch.delenv(name)
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> FileRepository:
    """A fresh model repository with nothing released."""
    return init_repository(tmp_path / "repo")


@pytest.fixture
def broker_env(mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's broker, given only by APPLIANCE__ variables, on a topic prefix of its own."""
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", mqtt_broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(mqtt_broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", topic_prefix)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_status_with_no_config_file_no_store_and_no_release_says_so_and_creates_nothing(
    elsewhere: Path, repo: FileRepository, broker_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    store = repo.dir.parent / "never" / "backoffice.sqlite3"
    assert main(["models", "status", "--repo", str(repo.dir), "--store", f"sqlite:///{store}"]) == 0
    out = capsys.readouterr().out
    assert f"no releases yet in {repo.dir}" in out
    assert f"no rollouts yet: no store at sqlite:///{store}" in out
    assert "no device has reported a model or been assigned one yet" in out
    assert not store.parent.exists()
    assert main(["models", "status", "--repo", str(repo.dir), "--json"]) == 0  # default store
    report = json.loads(capsys.readouterr().out)
    assert report["store"] == {"url": f"sqlite:///{elsewhere / 'state' / 'backoffice.sqlite3'}",
                               "exists": False}
    assert report["releases"] == []
    assert report["devices"] == []
    assert list(elsewhere.iterdir()) == []  # not even ./state/backoffice.sqlite3


def test_an_unreachable_broker_is_named_with_where_its_address_came_from(
    elsewhere: Path, repo: FileRepository, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = linear_model(repo.dir.parent / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    port = _closed_port()
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(port))
    for command in (["status"], ["deploy", "skin-texture-grade", "1.0.0", "--all"],
                    ["rollback", "skin-texture-grade", "--to", "1.0.0"]):
        assert main(["models", *command, "--repo", str(repo.dir)]) == 2
        err = capsys.readouterr().err
        assert f"broker 127.0.0.1:{port} (mqtt.host from built-in default, mqtt.port from " \
               "APPLIANCE__MQTT__PORT; no --config and no ./config.yaml)" in err
        assert "APPLIANCE__MQTT__HOST and APPLIANCE__MQTT__PORT" in err
    assert list(elsewhere.iterdir()) == []  # no store was made for a deploy that never started


def test_an_unreachable_broker_names_the_file_or_variable_each_setting_came_from(
    elsewhere: Path, repo: FileRepository, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _closed_port()
    config = elsewhere / "site.yaml"
    config.write_text(f"mqtt:\n  port: {port}\n")
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", "127.0.0.1")
    assert main(["models", "status", "--repo", str(repo.dir), "--config", str(config)]) == 2
    assert (f"broker 127.0.0.1:{port} (mqtt.host from APPLIANCE__MQTT__HOST, mqtt.port from "
            f"{config}): ") in capsys.readouterr().err


def test_a_config_file_named_but_missing_is_an_error_naming_it(
    elsewhere: Path, repo: FileRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["status"], ["deploy", "skin-texture-grade", "1.0.0", "--all"]):
        assert main(["models", *command, "--repo", str(repo.dir), "--config", "typo.yaml"]) == 2
        assert "typo.yaml: config file not found" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


class _Retained:
    """Retained reports published on the test's prefix, cleared again on exit."""

    def __init__(self, mqtt_broker: Any) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(mqtt_broker.host, mqtt_broker.port)
        self.client.loop_start()
        self.topics: list[str] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
        self.topics.append(topic)

    def close(self) -> None:
        for topic in self.topics:
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_status_shows_a_kiosk_s_own_words_with_control_characters_escaped(
    repo: FileRepository, mqtt_broker: Any, topic_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from appliance.transport import payloads

    state = payloads.ModelState(
        device_id="k1", site="lab", state="rejected", at=payloads.utc_now(),
        running=payloads.ModelInfo(name="grader", version="1.0"),
        # names and versions refuse control characters at the contract; a reason is free text
        reason="\x1b[2J\x1b]0;title\x07self-test failed \u202e1.0")
    retained = _Retained(mqtt_broker)
    try:
        retained.publish(f"{topic_prefix}/lab/k1/model/state", state.to_json())
        assert main(["models", "status", "--repo", str(repo.dir), "--all-devices"]) == 0
    finally:
        retained.close()
    out = capsys.readouterr().out
    assert not set(out) & {"\x1b", "\x07", "\u202e"}
    assert "\\x1b[2J\\x1b]0;title\\u0007self-test failed" in out
    assert "self-test failed \\u202e1.0" in out


@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_status_leaves_out_kiosks_another_repository_serves_unless_asked(
    repo: FileRepository, mqtt_broker: Any, topic_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Kiosks of two repositories share the prefix: this repository's status shows its own
    (and a kiosk with no model yet), counts the other's, and lists them with --all-devices."""
    from appliance.transport import payloads

    model = linear_model(repo.dir.parent / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    now = payloads.utc_now()
    reports = {
        "ours": payloads.ModelInfo(name="skin-texture-grade", version="1.0.0"),
        "theirs": payloads.ModelInfo(name="lesion-grade", version="3.1.0"),
        "fresh": None,
    }
    retained = _Retained(mqtt_broker)
    try:
        for device, running in reports.items():
            status = payloads.Status(device_id=device, site="lab", state="online", at=now,
                                     model=running)
            retained.publish(f"{topic_prefix}/lab/{device}/status", status.to_json())
        capsys.readouterr()
        assert main(["models", "status", "--repo", str(repo.dir), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert main(["models", "status", "--repo", str(repo.dir)]) == 0
        table = capsys.readouterr().out
        assert main(["models", "status", "--repo", str(repo.dir), "--json", "--all-devices"]) == 0
        every = json.loads(capsys.readouterr().out)
    finally:
        retained.close()
    assert [row["device_id"] for row in shown["devices"]] == ["fresh", "ours"]
    assert shown["other_devices"] == 1
    assert "1 other device(s) on this broker prefix run models this repository never " \
           "released (--all-devices lists them too)" in table
    assert "lab/theirs" not in table
    assert [(row["device_id"], row["elsewhere"]) for row in every["devices"]] == [
        ("fresh", False), ("ours", False), ("theirs", True)]
    assert every["other_devices"] == 0


@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_deploy_to_a_site_leaves_out_kiosks_another_repository_serves(
    repo: FileRepository, mqtt_broker: Any, topic_prefix: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--all or --site picked them too (status leaves them out): such a kiosk never reads this
    repository, so as a canary it timed out and halted the rollout."""
    from appliance.transport import payloads

    model = linear_model(repo.dir.parent / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    theirs = payloads.Status(device_id="k9", site="clinic", state="online",
                             at=payloads.utc_now(),
                             model=payloads.ModelInfo(name="lesion-grade", version="3.1.0"))
    retained = _Retained(mqtt_broker)
    try:
        retained.publish(f"{topic_prefix}/clinic/k9/status", theirs.to_json())
        capsys.readouterr()
        code = main(["models", "deploy", "skin-texture-grade", "1.0.0", "--repo", str(repo.dir),
                     "--site", "clinic", "--timeout-s", "2", "--store",
                     f"sqlite:///{tmp_path / 'store.sqlite3'}"])
    finally:
        retained.close()
    assert code == 2
    assert capsys.readouterr().err == (
        "models deploy: left out 1 device(s) that run models this repository never released "
        "(clinic/k9); --devices takes them\n"
        "models deploy: no device matches; kiosks appear once they publish a status\n")


@pytest.fixture
def models_pg_database() -> Iterator[str]:
    """The URL of a new PostgreSQL database holding an empty back-office store, dropped after."""
    import psycopg

    from appliance.backoffice.store import open_store

    name = f"models_status_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        open_store(f"{PG_SERVER}/{name}").close()
        yield f"{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_models_status_names_a_postgres_server_lost_mid_read_in_one_line(
    repo: FileRepository, models_pg_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The database went away after status opened it (a restart, a failover): status ended
    in a psycopg traceback; it says so in one line naming the database, exit 1, as the
    back-office read commands do."""
    import psycopg

    from appliance.updates import fleetops

    opener = fleetops.open_existing_store

    def opened_then_lost(url: str) -> Any:
        store = opener(url)
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s", (url.rsplit("/", 1)[1],))
        return store

    monkeypatch.setattr(fleetops, "open_existing_store", opened_then_lost)
    assert main(["models", "status", "--repo", str(repo.dir), "--store",
                 models_pg_database]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"models status: the PostgreSQL database {models_pg_database} failed: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.postgres
@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_models_deploy_names_a_postgres_server_lost_on_the_way_in_one_line(
    repo: FileRepository, models_pg_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The database went away after deploy opened it: deploy ended in a psycopg traceback."""
    import psycopg

    from appliance.updates import fleetops

    model = linear_model(repo.dir.parent / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    opener = fleetops.open_store

    def opened_then_lost(url: str) -> Any:
        store = opener(url)
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s", (url.rsplit("/", 1)[1],))
        return store

    monkeypatch.setattr(fleetops, "open_store", opened_then_lost)
    capsys.readouterr()
    assert main(["models", "deploy", "skin-texture-grade", "1.0.0", "--all", "--repo",
                 str(repo.dir), "--store", models_pg_database]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"models deploy: the PostgreSQL database {models_pg_database} failed: ")
    assert err.endswith("; the rollout stopped where it was (`appliance models status` shows "
                        "it; run the command again to complete it)\n")
    assert "Traceback" not in err


@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_deploy_to_all_makes_a_kiosk_online_the_canary_not_one_switched_off(
    repo: FileRepository, mqtt_broker: Any, topic_prefix: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first kiosk by name was the canary: switched off, it could only time out, so the
    rollout halted after --timeout-s whatever the kiosks online would have said."""
    from appliance.transport import payloads

    model = linear_model(repo.dir.parent / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    retained = _Retained(mqtt_broker)
    try:
        for device, state in (("a-off", "offline"), ("b-on", "online")):
            status = payloads.Status(device_id=device, site="lab", state=state,
                                     at=payloads.utc_now(),
                                     model=payloads.ModelInfo(name="skin-texture-grade",
                                                              version="1.0.0"))
            retained.publish(f"{topic_prefix}/lab/{device}/status", status.to_json())
        capsys.readouterr()
        code = main(["models", "deploy", "skin-texture-grade", "1.0.0", "--repo", str(repo.dir),
                     "--all", "--canary", "1", "--timeout-s", "1", "--store",
                     f"sqlite:///{tmp_path / 'store.sqlite3'}"])
    finally:
        retained.close()
    assert code == 1  # nobody answers here: the canary times out
    out = capsys.readouterr().out
    assert "halted after canary: 1 failure(s) (allowed 0); lab/b-on timeout" in out, out


@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_a_deploy_ended_by_sigterm_records_its_rollout_stopped_by_sigterm(
    repo: FileRepository, mqtt_broker: Any, topic_prefix: str, tmp_path: Path,
) -> None:
    """models status said `its deploy stopped: SystemExit: 143`, Python's words, not the
    operator's (`timeout`, systemd and `kill` send SIGTERM)."""
    from appliance.backoffice.store import open_store
    from appliance.transport import payloads

    model = linear_model(repo.dir.parent / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    retained = _Retained(mqtt_broker)
    try:
        status = payloads.Status(device_id="k1", site="lab", state="online",
                                 at=payloads.utc_now())
        retained.publish(f"{topic_prefix}/lab/k1/status", status.to_json())
        deploy = subprocess.Popen(
            [sys.executable, "-m", "appliance", "models", "deploy", "skin-texture-grade",
             "1.0.0", "--repo", str(repo.dir), "--devices", "lab/k1", "--timeout-s", "60",
             "--store", store_url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: bool(_rollout_rows(store_url)), 30, poll_s=0.2)
            deploy.send_signal(signal.SIGTERM)
            assert deploy.wait(30) == 143
        finally:
            deploy.kill()
            deploy.wait()
    finally:
        retained.close()
    with closing(open_store(store_url)) as store:
        rows = store.query("SELECT state, reason FROM rollouts", [])
    assert rows == [("interrupted", "its deploy stopped: SIGTERM (exit 143)")]


def _rollout_rows(store_url: str) -> list[Any]:
    path = Path(store_url.removeprefix("sqlite:///"))
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            return db.execute("SELECT state FROM rollouts").fetchall()
        except sqlite3.OperationalError:  # tables not made yet
            return []


@pytest.mark.usefixtures("elsewhere", "broker_env")
def test_a_deploy_names_the_kiosks_it_waits_for_and_how_long(
    repo: FileRepository, mqtt_broker: Any, topic_prefix: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It said only "canary of skin-texture-grade 1.0.0 to 1 device(s)", then nothing for up
    to --timeout-s (300 s by default): which kiosk it waited for was not said."""
    from appliance.transport import payloads

    caplog.set_level(logging.INFO, logger="appliance.updates.rollout")
    model = linear_model(repo.dir.parent / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    retained = _Retained(mqtt_broker)
    try:
        status = payloads.Status(device_id="k1", site="lab", state="online",
                                 at=payloads.utc_now())
        retained.publish(f"{topic_prefix}/lab/k1/status", status.to_json())
        assert main(["models", "deploy", "skin-texture-grade", "1.0.0", "--repo", str(repo.dir),
                     "--devices", "lab/k1", "--timeout-s", "1", "--store",
                     f"sqlite:///{tmp_path / 'store.sqlite3'}"]) == 1
    finally:
        retained.close()
    assert ("canary of skin-texture-grade 1.0.0 to 1 device(s): lab/k1; waiting up to 1 s for "
            "each to report it installed and healthy") in caplog.text
