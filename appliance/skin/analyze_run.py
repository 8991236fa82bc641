"""The work behind ``appliance analyze``: measure files one by one, never stopping on a bad one.

Each file is measured as the kiosk measures its best frame (``edge.measure.measure_frame``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.capture.quality import QualityGate
from appliance.config import Config, load_config_or_defaults
from appliance.edge.measure import Classifier, Measurement, measure_frame, skin_measurement
from appliance.skin.colour import WhiteReference
from appliance.skin.frames import FrameError, load_frame

TABLE_COLUMNS = (
    ("quality", "quality", 12, ""),
    ("kime", "kime_score", 5, ".0f"),
    ("hills/mm2", "hill_density_per_mm2", 9, ".1f"),
    ("hill mm2", "hill_mean_area_mm2", 8, ".3f"),
    ("furrow mm/mm2", "furrow_density_mm_per_mm2", 13, ".2f"),
    ("width um", "furrow_mean_width_um", 8, ".0f"),
    ("pores", "pore_count", 5, "d"),
    ("pore um", "pore_mean_diameter_um", 7, ".0f"),
    ("L*", "lab_l", 5, ".1f"),
    ("class", "classification", 10, ""),
)


class AnalyzeRun:
    """Measures image files with one config: scale, optional model, optional overlay folder."""

    def __init__(
        self,
        config: Config,
        overlay_dir: Path | None,
        classifier: Classifier | None = None,
        white_reference: WhiteReference | None = None,
    ) -> None:
        self.config = config
        self.overlay_dir = overlay_dir
        self.classifier = classifier
        self.white_reference = white_reference
        self.gate = QualityGate()

    def _analyzer(self, rgb: np.ndarray, um_per_px: float) -> Measurement:
        return skin_measurement(rgb, um_per_px, self.white_reference)

    @classmethod
    def from_config(
        cls, path: str | None, overlay_dir: str | None, white_frame: str | None = None
    ) -> AnalyzeRun:
        """Load the config (``load_config_or_defaults``: the shipped model without a file), the
        model if configured, the white reference if given, and make the overlay folder."""
        config = load_config_or_defaults(path)
        classifier = None
        if config.model.path:
            from appliance.inference.classifier import (  # noqa: PLC0415 - onnxruntime is heavy
                SkinClassifier,
            )

            classifier = SkinClassifier.load(config.model.path)
        folder = Path(overlay_dir) if overlay_dir else None
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file of that name, no permission, a read-only disk
                raise ValueError(
                    f"--overlay {folder}: cannot make the folder ({exc.strerror}); name a folder"
                ) from exc
        white = None
        if white_frame is not None:
            try:
                white = WhiteReference.from_frame(load_frame(white_frame, expected_shape=None))
            except ValueError as exc:  # FrameError or a too-dark tile
                raise ValueError(f"--white {white_frame}: {exc}") from exc
        return cls(config, folder, classifier, white)

    def measure(self, image: Path) -> dict[str, Any]:
        """One result record, or ``{"image", "error"}`` naming the file and what is wrong."""
        try:
            return self._measure(image)
        except FrameError as exc:
            return {"image": str(image), "error": str(exc)}
        except (ValueError, OSError, MemoryError, cv2.error) as exc:  # one file never ends a run
            return {"image": str(image), "error": f"{image}: {type(exc).__name__}: {exc}"}

    def _measure(self, image: Path) -> dict[str, Any]:
        rgb = load_frame(image)
        gated = self.gate.assess(rgb)
        if gated.verdict != "ok":  # a blurred or lifted frame's numbers would mislead
            quality = gated.to_payload()
            reasons = "; ".join(quality.reasons) or "no reason given"
            return {"image": str(image), "quality": quality.model_dump(),
                    "rejected": f"frame {quality.verdict} ({reasons}): not measured"}
        measured = measure_frame(
            rgb, self.config.skin.um_per_px, gated, self._analyzer, self.classifier
        )
        record: dict[str, Any] = {
            "image": str(image),
            "quality": measured.quality.model_dump(),
            "features": measured.features.model_dump(),
            "not_validated": list(measured.not_validated),
        }
        if measured.classification is not None:
            record["classification"] = measured.classification.model_dump()
        if self.overlay_dir is not None and measured.draw_overlay is not None:
            target = self.overlay_dir / f"{image.stem}.overlay.jpg"
            overlay = cv2.cvtColor(measured.draw_overlay(), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(target), overlay, [cv2.IMWRITE_JPEG_QUALITY, 85]):
                return {"image": str(image), "error": f"{target}: could not write the overlay"}
            record["overlay"] = str(target)
        return record

    @staticmethod
    def table_header() -> str:
        """The header line of the readable table."""
        cells = [f"{title:>{width}}" for title, _, width, _ in TABLE_COLUMNS]
        return f"{'image':<28} " + " ".join(cells)

    @staticmethod
    def table_row(record: dict[str, Any]) -> str:
        """One readable table line for a result record (a rejected frame: its verdict only)."""
        if "rejected" in record:
            return f"{Path(record['image']).name[:28]:<28} {record['rejected']}"
        features = record["features"]
        cells = []
        for _, key, width, fmt in TABLE_COLUMNS:
            if key == "quality":
                value = record["quality"]["verdict"]
            elif key == "classification":
                value = record.get("classification", {}).get("label", "-")
            elif key in record.get("not_validated", ()):
                value = "n/m"  # outside the validated range: not measured
            else:
                value = format(features[key], fmt)
            cells.append(f"{value:>{width}}")
        return f"{Path(record['image']).name[:28]:<28} " + " ".join(cells)
