"""The helpers the fault tests, update tests and benchmarks wait and listen with."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from appliance.edge.testing import ResultCollector, wait_until
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import BrokerRefusedError


def test_wait_until_returns_once_the_condition_holds() -> None:
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert wait_until(third_time, timeout_s=5.0, poll_s=0.001)
    assert len(calls) == 3  # stopped polling as soon as it held


def test_wait_until_gives_up_after_the_timeout() -> None:
    started_s = time.monotonic()
    assert not wait_until(lambda: False, timeout_s=0.1, poll_s=0.01)
    assert time.monotonic() - started_s >= 0.1


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A mosquitto on a free port that lets only 'backoffice' (with a password) in."""
    with PrivateBroker(workdir=tmp_path / "broker", passwords={"backoffice": "pw"}) as broker:
        yield broker


@pytest.mark.broker
def test_the_result_collector_is_refused_and_subscribes_to_nothing(
    locked_broker: PrivateBroker, monkeypatch: pytest.MonkeyPatch,
) -> None:
    subscribed: list[Any] = []
    real = mqtt.Client.subscribe

    def recording(self: mqtt.Client, topic: Any, *args: Any, **kwargs: Any) -> Any:
        subscribed.append(topic)
        return real(self, topic, *args, **kwargs)

    monkeypatch.setattr(mqtt.Client, "subscribe", recording)
    with pytest.raises(BrokerRefusedError) as refused:  # it sends no credentials
        ResultCollector(locked_broker.host, locked_broker.port, "t/+/+/result", "collector-x")
    message = str(refused.value)
    assert f"broker 127.0.0.1:{locked_broker.port} refused collector-x" in message
    assert re.search(r"reason code 0x8[67]", message)
    assert refused.value.reason_code in (0x86, 0x87)
    assert subscribed == []
