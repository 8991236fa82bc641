"""How the edge daemon gets its model updater: the start-up model, the state topic, the swap.

The daemon calls ``attach_updater`` when ``updates.url`` is set; ``startup_model`` picks the
model a (re)starting kiosk serves: the installed current, else the previous one, else
``model.path`` from the config, so a kiosk killed mid-install never comes back without one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.config import Config
from appliance.inference.classifier import SkinClassifier
from appliance.inference.contract import ModelError
from appliance.transport.topics import MODEL_STATE_LEAF, device_topic
from appliance.updates.install import ModelStore
from appliance.updates.kiosk import ModelUpdater
from appliance.updates.serving import ServingModel

if TYPE_CHECKING:
    from appliance.edge.daemon import EdgeDaemon

log = logging.getLogger(__name__)


def startup_model(config: Config) -> SkinClassifier | None:
    """The first model of these that loads: installed current, installed previous, model.path."""
    installed = ModelStore(config.state_dir).read()
    fallback = Path(config.model.path) if config.model.path else None
    for candidate in (installed.current, installed.previous, fallback):
        if candidate is None or not candidate.is_file():
            continue
        try:
            return SkinClassifier.load(candidate)
        except ModelError as exc:
            log.error("model %s does not load (%s); trying the one before", candidate, exc)
    return None


def attach_updater(daemon: EdgeDaemon) -> ModelUpdater:
    """A ModelUpdater wired to ``daemon``: state on ``.../model/state``, swaps into its pipeline."""
    current = daemon.classifier
    serving = ServingModel(current if isinstance(current, SkinClassifier) else None)
    if serving.classifier is not None:
        daemon.classifier = serving
    device = daemon.config.device
    state_topic = device_topic(daemon.config.mqtt.topic_prefix, device.site, device.id,
                               MODEL_STATE_LEAF)

    def on_swap(model: ServingModel) -> None:
        daemon.classifier = model if model.classifier is not None else None
        daemon.link.send_status()

    return ModelUpdater(
        daemon.config,
        serving,
        lambda payload: daemon.link.publish_retained(state_topic, payload),
        daemon.pipeline_stop,
        on_swap,
    )
