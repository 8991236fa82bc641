"""SIGHUP re-reads the model file even when the config is unchanged: a model copied over
``model.path`` serves from then on, a broken one is refused and the old model keeps serving,
and the journal says which model serves, or why the file was refused, naming it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.service import reload_config
from appliance.edge.testing import FIXED_FEATURES, fast_daemon
from appliance.inference.classifier import SkinClassifier
from appliance.updates.serving import ServingModel
from appliance.updates.testing import linear_model

pytestmark = pytest.mark.broker


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """``live.onnx`` holding version 1.0.0; ``new.onnx`` beside it holds 1.1.0."""
    linear_model(tmp_path / "new.onnx", "1.1.0")
    return linear_model(tmp_path / "live.onnx", "1.0.0")


def _daemon(tmp_path: Path, broker: Any, prefix: str, live: Path) -> tuple[EdgeDaemon, Path]:
    """A daemon serving ``live`` and its config file, which names ``live`` and never changes."""
    config = config_from_mapping({
        "device": {"id": "kiosk-t", "site": "lab"},
        "camera": {"source": "synthetic", "limit": 3},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
        "model": {"path": str(live)},
    }, "test", environ={})
    daemon = fast_daemon(config)
    daemon.classifier = SkinClassifier.load(live)
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(f"model: {{path: {live}}}\n")
    return daemon, config_path


def _graded_version(daemon: EdgeDaemon) -> str:
    assert daemon.classifier is not None
    return daemon.classifier.classify(FIXED_FEATURES.model_dump()).version


def test_sighup_serves_a_model_copied_over_the_same_path(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, live: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon, config_path = _daemon(tmp_path, mqtt_broker, topic_prefix, live)
    shutil.copyfile(tmp_path / "new.onnx", live)
    with caplog.at_level(logging.INFO):
        reload_config(daemon, config_path)
    assert f"model reload: now serving skin-texture-grade 1.1.0 (from {live})" in caplog.text
    assert _graded_version(daemon) == "1.1.0"
    daemon.outbox.close()


def test_sighup_refuses_a_truncated_model_naming_the_file_and_keeps_the_old_one(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, live: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon, config_path = _daemon(tmp_path, mqtt_broker, topic_prefix, live)
    live.write_bytes((tmp_path / "new.onnx").read_bytes()[:200])  # a copy cut short
    with caplog.at_level(logging.INFO):
        reload_config(daemon, config_path)
    refused = [r.getMessage() for r in caplog.records if "model reload refused" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].startswith(
        f"model reload refused, still serving skin-texture-grade 1.0.0: {live}: not a loadable"
    )
    assert "a restart exits 2" in refused[0]
    assert "now serving" not in caplog.text
    assert _graded_version(daemon) == "1.0.0"
    daemon.outbox.close()


def test_sighup_reloads_the_file_under_the_updater_s_serving_model_too(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, live: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon, config_path = _daemon(tmp_path, mqtt_broker, topic_prefix, live)
    serving = ServingModel(SkinClassifier.load(live))
    daemon.classifier = serving
    shutil.copyfile(tmp_path / "new.onnx", live)
    with caplog.at_level(logging.INFO):
        reload_config(daemon, config_path)
    assert "model reload: now serving skin-texture-grade 1.1.0" in caplog.text
    assert daemon.classifier is serving
    assert _graded_version(daemon) == "1.1.0"
    live.write_bytes(b"")
    reload_config(daemon, config_path)
    assert "model reload refused, still serving skin-texture-grade 1.1.0" in caplog.text
    assert _graded_version(daemon) == "1.1.0"
    daemon.outbox.close()


def test_sighup_leaves_an_installed_update_serving_and_says_so(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, live: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon, config_path = _daemon(tmp_path, mqtt_broker, topic_prefix, live)
    installed = linear_model(tmp_path / "installed.onnx", "2.0.0")  # what the updater put in
    daemon.classifier = ServingModel(SkinClassifier.load(installed))
    root = tmp_path / "1.root.json"
    root.write_text("{}")
    config_path.write_text(f"model: {{path: {live}}}\n"
                           f"updates: {{url: 'http://127.0.0.1:9/', trusted_root: {root}}}\n")
    with caplog.at_level(logging.INFO):
        reload_config(daemon, config_path)
    assert (f"model reload: the installed update skin-texture-grade 2.0.0 keeps serving; "
            f"model.path {live} is only its fallback") in caplog.text
    assert _graded_version(daemon) == "2.0.0"
    daemon.outbox.close()
