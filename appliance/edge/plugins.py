"""The real plug-ins of the pipeline, built from the config: source and gate.

The real analyser is ``edge.measure.skin_measurement``; the model loads in ``edge.service``.
"""

from __future__ import annotations

from pathlib import Path

from appliance.capture.folder import FOLDER_ANSWER_S, DirectorySource
from appliance.capture.quality import QualityGate
from appliance.capture.sources import FrameSource, UvcSource
from appliance.capture.synthetic import SyntheticSource
from appliance.config import Config
from appliance.synthetic.camera import generated_skin, stated_age_band

REPLAYED_FILE = "replayed.sqlite3"  # the folder source's measured files, beside the outbox


def source_from_config(config: Config) -> tuple[FrameSource, float | None]:
    """The configured frame source and its stall limit (None: a folder may stay quiet)."""
    camera = config.camera
    if camera.source == "uvc":
        assert camera.path is not None  # the config validator requires it
        return UvcSource(camera.path), config.edge.camera_stall_s
    if camera.source == "directory":
        assert camera.path is not None
        # a folder that stops answering goes offline well before the watchdog misses the
        # capture thread's beats
        answer_s = min(FOLDER_ANSWER_S, config.edge.watchdog_stall_s / 3)
        record = Path(config.state_dir) / REPLAYED_FILE
        return DirectorySource(camera.path, record, answer_s), None
    skin, age_band = generated_skin(camera.seed), stated_age_band(camera.seed)
    source = SyntheticSource(skin, fps=config.edge.synthetic_fps, age_band=age_band)
    return source, config.edge.camera_stall_s


def default_gate(config: Config) -> QualityGate:
    """The quality gate with its calibrated thresholds, at the kiosk's calibrated scale."""
    return QualityGate(um_per_px=config.skin.um_per_px)
