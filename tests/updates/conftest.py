"""Fixtures of the model-update tests: a signed repository with kiosks, and their model states."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from updates_helpers import Fleet

from appliance.updates.testing import ModelEvents


@pytest.fixture
def fleet(tmp_path: Path, mqtt_broker: Any, topic_prefix: str) -> Iterator[Fleet]:
    """A model repository, its HTTP server and a fleet of kiosks on the shared broker."""
    started = Fleet.start(tmp_path, mqtt_broker, topic_prefix)
    yield started
    started.close()


@pytest.fixture
def events(mqtt_broker: Any, topic_prefix: str) -> Iterator[ModelEvents]:
    """Every model state the kiosks report under this test's topic prefix."""
    watcher = ModelEvents(mqtt_broker.host, mqtt_broker.port, topic_prefix, topic_prefix[-24:])
    yield watcher
    watcher.close()
