"""A pathology server's CONNECT names the largest packet it takes (four times
pathology.max_job_bytes), so a broker without the shipped max_packet_size drops a request
carrying megabytes of MQTT 5 user properties for it instead of handing it over whole."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology.jobs import JOB_SCHEMA, request_topic, state_topic
from tests.pathology_helpers import serving

pytestmark = pytest.mark.broker


@pytest.fixture
def served(tmp_path: Path, mqtt_broker: Any, topic_prefix: str) -> Iterator[Path]:
    """A server with one (empty) slide root, serving in a thread; the root."""
    root = tmp_path / "slides"
    root.mkdir()
    config = config_from_mapping({
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port,
                 "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path / "state"),
        "store": {"url": f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}"},
        "pathology": {"client_id": f"packets-{uuid.uuid4().hex[:10]}", "slide_roots": [str(root)],
                      "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                      "prepare_workers": 1}})
    with serving(config):
        yield root


def test_a_request_carrying_megabytes_of_user_properties_never_reaches_the_server(
    served: Path, mqtt_broker: Any, topic_prefix: str,
) -> None:
    states: dict[str, str] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: m.payload and states.update(
        {json.loads(m.payload)["job_id"]: json.loads(m.payload)["state"]})
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.subscribe(state_topic(topic_prefix, "+/+"), 1)
    client.loop_start()
    padded = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    padded.UserProperty = [(f"k{i}", "x" * 60_000) for i in range(40)]  # 2.4 MB
    try:
        for job_id, properties in (("lab/big", padded), ("lab/after", None)):
            # a slide that is not there: the server refuses the job at once, saying so
            request = {"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
                       "slides": [{"path": str(served / "absent.jpg"), "um_per_px": 1.0}]}
            client.publish(request_topic(topic_prefix, job_id), json.dumps(request).encode(),
                           qos=1, retain=True, properties=properties).wait_for_publish(30)
        assert wait_until(lambda: states.get("lab/after") == "failed", 30), states
        assert "lab/big" not in states  # on main: refused as "after" is, read whole first
    finally:
        for job_id in ("lab/big", "lab/after"):
            for topic in (request_topic(topic_prefix, job_id), state_topic(topic_prefix, job_id)):
                client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
