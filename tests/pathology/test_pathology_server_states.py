"""An ended job's retained state expires on the broker after pathology.final_state_keep_s
(MQTT 5 message expiry); a queued or running one stays as long as the job runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology.jobs import JOB_SCHEMA, request_topic, state_topic
from tests.pathology_helpers import serving

pytestmark = pytest.mark.broker
KEEP_S = 3600


class States:
    """Each state published for the jobs under a prefix, with its message expiry (or None)."""

    def __init__(self, broker: Any, prefix: str) -> None:
        self.seen: list[tuple[dict[str, Any], int | None]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: m.payload and self.seen.append(
            (json.loads(m.payload), getattr(m.properties, "MessageExpiryInterval", None)))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(state_topic(prefix, "+/+"), 1)
        self.client.loop_start()

    def ended(self, job_id: str) -> bool:
        return any(state["job_id"] == job_id and state["state"] in ("done", "failed")
                   for state, _ in self.seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def served(tmp_path: Path, mqtt_broker: Any, topic_prefix: str) -> Iterator[Path]:
    """A server with one slide root, serving in a thread; the root."""
    root = tmp_path / "slides"
    root.mkdir()
    config = config_from_mapping({
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port,
                 "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path / "state"),
        "store": {"url": f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}"},
        "pathology": {"client_id": f"keep-{uuid.uuid4().hex[:10]}", "slide_roots": [str(root)],
                      "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                      "prepare_workers": 1, "final_state_keep_s": KEEP_S}})
    with serving(config):
        yield root


def _submit(broker: Any, prefix: str, job_id: str, slide: Path) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    request = {"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
               "slides": [{"path": str(slide), "um_per_px": 1.0}]}
    client.publish(request_topic(prefix, job_id), json.dumps(request).encode(), qos=1,
                   retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_an_ended_job_s_state_expires_and_a_running_one_s_does_not(
    served: Path, mqtt_broker: Any, topic_prefix: str,
) -> None:
    """Before, every final state (up to max_job_bytes each) stayed retained forever."""
    Image.new("RGB", (256, 256), (250, 250, 250)).save(served / "blank.jpg")
    states = States(mqtt_broker, topic_prefix)
    _submit(mqtt_broker, topic_prefix, "lab/ran", served / "blank.jpg")
    _submit(mqtt_broker, topic_prefix, "lab/refused", served.parent / "outside.jpg")
    assert wait_until(lambda: states.ended("lab/ran") and states.ended("lab/refused"), timeout_s=60)
    states.close()
    expiry = {(state["job_id"], state["state"]): keep for state, keep in states.seen}
    assert expiry[("lab/ran", "queued")] is None
    finals = [keep for (job_id, state), keep in expiry.items() if state in ("done", "failed")]
    assert len(finals) == 2
    assert all(keep is not None and 0 < keep <= KEEP_S for keep in finals)
    retained = States(mqtt_broker, topic_prefix)  # read again: the broker still has them
    assert wait_until(lambda: retained.ended("lab/ran") and retained.ended("lab/refused"),
                      timeout_s=10)
    retained.close()
