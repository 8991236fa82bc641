"""The long-running clients of the one client factory (back-office ingest, pathology server)
name a refused login in the same words as every other client (``connack_refusal``): the
broker, the client id, the reason code and what to check. A private mosquitto that asks for a
password, given the wrong one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import PASSWORD_ENV, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import BrokerRefusedError, LinkSettings
from appliance.transport.subscriber import Subscriber
from tests.pathology_helpers import serving

pytestmark = pytest.mark.broker


@pytest.fixture
def locked_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBroker]:
    """A mosquitto that lets only 'office' with another password than the one we send in."""
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with PrivateBroker(workdir=tmp_path / "broker", passwords={"office": "right"}) as broker:
        yield broker


def _config(broker: PrivateBroker, tmp_path: Path, **sections: Any) -> Any:
    data = {"mqtt": {"host": broker.host, "port": broker.port, "username": "office"},
            "state_dir": str(tmp_path / "state"),
            "store": {"url": f"sqlite:///{tmp_path / 'store.sqlite3'}"}, **sections}
    return config_from_mapping(data, environ={})


def _subscriber_refusal(settings: LinkSettings) -> str:
    """What a Subscriber with the same settings is told (transport/subscriber.py)."""
    with pytest.raises(BrokerRefusedError) as refused:
        Subscriber(settings, [("any/topic", 1)], lambda _m: None, reconnect=False).start()
    return str(refused.value)


def _assert_refusal_words(failed: str | None, port: int, client_id: str) -> None:
    assert failed is not None
    assert re.search(rf"^broker 127.0.0.1:{port} refused {client_id} \(reason code 0x8[67]: "
                     r".+\): check mqtt.username and the password .*; not retrying$", failed)


def test_the_ingest_worker_names_a_refusal_like_every_client(
    locked_broker: PrivateBroker, tmp_path: Path,
) -> None:
    config = _config(locked_broker, tmp_path, backoffice={"client_id": "office-1"})
    store = open_store(config.store.url)
    worker = IngestWorker(config, store)
    worker.start()
    try:
        assert wait_until(lambda: worker.failed is not None, timeout_s=10)
    finally:
        worker.stop()
        store.close()
    _assert_refusal_words(worker.failed, locked_broker.port, "office-1")
    assert worker.failed == _subscriber_refusal(worker.link_settings)


def test_the_pathology_server_names_a_refusal_like_every_client(
    locked_broker: PrivateBroker, tmp_path: Path,
) -> None:
    config = _config(locked_broker, tmp_path, pathology={
        "client_id": "refused-server", "backends": ["onnx-cpu"], "prepare_workers": 1})
    with serving(config, connected=False) as server:
        assert wait_until(lambda: server.failed is not None, timeout_s=20)
    _assert_refusal_words(server.failed, locked_broker.port, "refused-server")
    assert server.failed == _subscriber_refusal(server.link_settings)
