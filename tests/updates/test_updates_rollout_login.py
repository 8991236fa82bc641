"""``models status`` (and deploy, rollback, halt: one watcher) under the ``rollout`` login on the
shipped broker (deploy/mosquitto, dynamic security), which binds that login to the client id
``rollout``: the commands connected as ``models-PID`` and were refused (CONNACK 0x87)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.updates.operations import init_repository
from tests.fleet_broker import FleetBroker, provisioned_broker

pytestmark = pytest.mark.broker


@pytest.fixture
def fleet_broker() -> Iterator[FleetBroker]:
    with provisioned_broker(["--device=shop-1/kiosk-a", "--worker", "backoffice-1"]) as broker:
        yield broker


def test_models_status_logs_in_as_rollout_on_the_shipped_broker(
    fleet_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [n for n in os.environ if n.upper().startswith("APPLIANCE__")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    repo = init_repository(tmp_path / "repo")
    config = tmp_path / "rollout.yaml"  # the back office's broker section, as README says
    config.write_text(
        f"mqtt:\n  host: 127.0.0.1\n  port: {fleet_broker.port}\n  username: rollout\n"
        f"  tls:\n    enabled: true\n    ca_file: {fleet_broker.folder / 'certs' / 'ca.crt'}\n"
        f"store:\n  url: sqlite:///{tmp_path / 'store.sqlite3'}\n")
    monkeypatch.setenv("APPLIANCE_MQTT_PASSWORD", fleet_broker.password("rollout"))
    capsys.readouterr()
    code = main(["models", "status", "--repo", str(repo.dir), "--config", str(config), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "refused" not in captured.err
    assert "devices" in json.loads(captured.out)
