"""The kiosk screen's files: the last result (JSON) and its overlay image, in state_dir.

Written only after the result is committed to the outbox, and replaced atomically
(write a temp file, then rename) so the screen never reads half a file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from appliance.transport.payloads import Result

log = logging.getLogger(__name__)

RESULT_FILE = "last_result.json"
OVERLAY_FILE = "last_overlay.png"


class KioskScreen:
    """Publishes the newest result for the kiosk display as files in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def result_path(self) -> Path:
        """The JSON of the newest result."""
        return self.folder / RESULT_FILE

    @property
    def overlay_path(self) -> Path:
        """The overlay (PNG) of the newest result, when the analyser drew one."""
        return self.folder / OVERLAY_FILE

    def show(self, result: Result, overlay_rgb: np.ndarray | None) -> None:
        """Replace the screen files with this result (a failure is logged, never raised)."""
        try:
            if overlay_rgb is not None:
                self._write_overlay(overlay_rgb)
            temp = self.result_path.with_suffix(".json.tmp")
            temp.write_bytes(result.to_json())
            os.replace(temp, self.result_path)
        except OSError as exc:
            log.warning("kiosk screen files in %s not updated: %s", self.folder, exc)

    def _write_overlay(self, overlay_rgb: np.ndarray) -> None:
        temp = self.folder / "last_overlay.tmp.png"
        if not cv2.imwrite(str(temp), cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{temp}: PNG encoding failed")
        os.replace(temp, self.overlay_path)
