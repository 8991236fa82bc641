"""The work behind ``appliance analyze``: measure files one by one, never stopping on a bad one.

Each file is measured as the kiosk measures its best frame (``edge.measure.measure_frame``).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance import safejson
from appliance.capture.quality import QualityGate
from appliance.config import Config, SkinConfig, load_config_or_defaults, value_origin
from appliance.edge.grade_margin import NEAR_TIE_MARGIN, grade_between
from appliance.edge.measure import Classifier, Measurement, measure_frame, skin_measurement
from appliance.edge.reasons import grade_withheld
from appliance.filekind import not_a_folder
from appliance.imagefile import write_image
from appliance.logsafe import escape_controls
from appliance.skin.colour import WhiteReference
from appliance.skin.frames import FrameError, load_frame, record_name, shown_name

NAME_COLUMN_WIDTH = 28  # the table's image column at its narrowest; longer names widen it
MAX_SIDECAR_BYTES = 1_000_000  # `appliance synth skin` writes a few kB
OVERLAY_SUFFIX = ".overlay.jpg"  # NAME.overlay.jpg: an input's overlay in the --overlay folder

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
    ("grade", "classification", 13, ""),  # "normal/coarse": a near-tie
)
REJECTED_CELLS = "not measured"  # after a rejected frame's verdict, where the numbers would be
TABLE_LEGEND = ("n/m: not measured (outside the validated range, docs/measurement.md; --json's "
                "quality reasons say why); not given: the grade needs a feature that was not "
                "measured (--json says which); A/B: a near-tie, between grades A and B (their "
                f"probabilities less than {NEAR_TIE_MARGIN} apart; --json's grade_between)")


class AnalyzeRun:
    """Measures image files with one config: scale, optional model, optional overlay folder."""

    def __init__(
        self,
        config: Config,
        overlay_dir: Path | None,
        classifier: Classifier | None = None,
        white_reference: WhiteReference | None = None,
        um_per_px_from: str = "config",
    ) -> None:
        self.config = config
        self.um_per_px_from = um_per_px_from  # --um-per-px, the variable, the file or default
        self.overlay_dir = overlay_dir
        self.classifier = classifier
        self.white_reference = white_reference
        self.gate = QualityGate(um_per_px=config.skin.um_per_px)
        self.overlay_names: dict[Path, str] = {}  # from overlay_names() for the run's inputs

    def _analyzer(self, rgb: np.ndarray, um_per_px: float) -> Measurement:
        return skin_measurement(rgb, um_per_px, self.white_reference)

    @classmethod
    def from_config(
        cls, path: str | None, overlay_dir: str | None, white_frame: str | None = None,
        um_per_px: float | None = None,
    ) -> AnalyzeRun:
        """Load the config (``load_config_or_defaults``: the shipped model without a file), the
        model if configured, the white reference if given, and make the overlay folder;
        ``um_per_px`` (``--um-per-px``) replaces the config's scale for this run."""
        config = load_config_or_defaults(path)
        origin = "--um-per-px" if um_per_px is not None else value_origin(
            config, "skin.um_per_px", path)
        if um_per_px is not None:
            skin = SkinConfig.model_validate({"um_per_px": um_per_px})
            config = config.model_copy(update={"skin": skin})
        classifier = None
        if config.model.path:
            from appliance.inference.classifier import (  # noqa: PLC0415 - onnxruntime is heavy
                SkinClassifier,
            )

            classifier = SkinClassifier.load(config.model.path)
        if overlay_dir == "":  # `--overlay "$DIR"` with DIR unset: not "no overlays"
            raise ValueError("--overlay: empty folder name; name a folder")
        folder = Path(overlay_dir) if overlay_dir is not None else None
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file of that name, no permission, a read-only disk
                why = not_a_folder(folder) or exc.strerror  # not "File exists" for a file
                raise ValueError(
                    f"--overlay {folder}: cannot make the folder ({why}); name a folder"
                ) from exc
            if why := unwritable_folder(folder):  # else every frame's overlay fails alike
                raise ValueError(f"--overlay {folder}: cannot write in the folder ({why}); name "
                                 "a folder you can write to")
        white = None
        if white_frame is not None:
            try:
                white = WhiteReference.from_frame(load_frame(white_frame, expected_shape=None))
            except FrameError as exc:  # names the file already
                raise ValueError(f"--white {exc}") from exc
            except ValueError as exc:  # a tile too dark, coloured or textured
                raise ValueError(f"--white {shown_name(white_frame)}: {exc}") from exc
        return cls(config, folder, classifier, white, origin)

    def measure(self, image: Path) -> dict[str, Any]:
        """One result record, or ``{"image", "error"}`` naming the file and what is wrong; a
        measured frame whose overlay could not be written keeps its numbers and says why in
        ``overlay_error``."""
        try:
            return self._measure(image)
        except FrameError as exc:
            return {"image": record_name(image), "error": str(exc)}
        except OSError as exc:  # its text would name the file again
            reason = exc.strerror or type(exc).__name__
            return {"image": record_name(image), "error": f"{shown_name(image)}: {reason}"}
        except (ValueError, MemoryError, cv2.error) as exc:  # one file never ends a run
            error = f"{shown_name(image)}: {type(exc).__name__}: {escape_controls(str(exc))}"
            return {"image": record_name(image), "error": error}

    def _measure(self, image: Path) -> dict[str, Any]:
        rgb = load_frame(image)
        gated = self.gate.assess(rgb)
        if gated.verdict != "ok":  # a blurred or lifted frame's numbers would mislead
            quality = gated.to_payload()
            reasons = "; ".join(quality.reasons) or "no reason given"
            return {"image": record_name(image), "quality": quality.model_dump(),
                    "rejected": f"frame {quality.verdict} ({reasons}): not measured"}
        measured = measure_frame(
            rgb, self.config.skin.um_per_px, gated, self._analyzer, self.classifier
        )
        record: dict[str, Any] = {
            "image": record_name(image),
            "quality": measured.quality.model_dump(),
            "features": measured.features.model_dump(),
            "not_validated": list(measured.not_validated),
            "um_per_px": self.config.skin.um_per_px,
            "um_per_px_from": self.um_per_px_from,
        }
        if measured.classification is not None:
            record["classification"] = measured.classification.model_dump()
            between = grade_between(measured.classification.probabilities)
            if between is not None:
                record["grade_between"] = between
        if self.overlay_dir is not None and measured.draw_overlay is not None:
            record.update(self._write_overlay(self.overlay_dir, image, measured.draw_overlay))
        return record

    def _write_overlay(
        self, folder: Path, image: Path, draw: Callable[[], np.ndarray]
    ) -> dict[str, str]:
        """``{"overlay": path}``, or ``{"overlay_error": why}`` when it cannot be written (a full
        disk, a folder in its place): the frame's measurement stands either way."""
        target = folder / (self.overlay_names.get(image) or overlay_names([image])[image])
        try:
            write_image(target, cv2.cvtColor(draw(), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 85])
        except OSError as exc:
            reason = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            return {"overlay_error": f"{shown_name(target)}: could not write the overlay: "
                                     f"{getattr(reason, 'strerror', None) or reason}"}
        return {"overlay": str(target)}

    @staticmethod
    def table_header(name_width: int = NAME_COLUMN_WIDTH) -> str:
        """The header line of the readable table, its name column ``name_width`` wide."""
        cells = [f"{title:>{width}}" for title, _, width, _ in TABLE_COLUMNS]
        return f"{'image':<{name_width}} " + " ".join(cells)

    @staticmethod
    def table_row(
        record: dict[str, Any], name: str | None = None, name_width: int = NAME_COLUMN_WIDTH
    ) -> str:
        """One readable table line for a result record, under ``name`` (``table_names``; the
        file's name by default) whole, in a column ``name_width`` wide. A rejected frame's line
        has its verdict in the quality column and "not measured" beside it: why is said once,
        on stderr with the run's other failures (``commands_analyze``), not again as a line
        wider than the table."""
        name = name if name is not None else shown_name(Path(record["image"]).name)
        name = f"{name:<{name_width}}"
        if "rejected" in record:
            _, _, width, _ = TABLE_COLUMNS[0]
            return f"{name} {record['quality']['verdict']:>{width}} {REJECTED_CELLS}"
        features = record["features"]
        cells = []
        for _, key, width, fmt in TABLE_COLUMNS:
            if key == "quality":
                value = record["quality"]["verdict"]
            elif key == "classification":
                value = AnalyzeRun._grade(record)
            elif key in record.get("not_validated", ()):
                value = "n/m"  # outside the validated range: not measured
            else:
                value = format(features[key], fmt)
            cells.append(f"{value:>{width}}")
        return f"{name} " + " ".join(cells)

    @staticmethod
    def _grade(record: dict[str, Any]) -> str:
        """The grade ("A/B" for a near-tie between A and B), "not given" when withheld for
        numbers not measured, else "-"."""
        if "grade_between" in record:
            return "/".join(record["grade_between"])
        if "classification" in record:
            return str(record["classification"]["label"])
        return "not given" if grade_withheld(record["quality"]["reasons"]) else "-"

    @staticmethod
    def needs_legend(record: dict[str, Any]) -> bool:
        """Whether the record's table line shows ``n/m``, "not given" or a near-tie (explained
        below)."""
        return (bool(record.get("not_validated")) or "grade_between" in record
                or AnalyzeRun._grade(record) == "not given")

    def sidecar_note(self, images: Sequence[Path]) -> str | None:
        """One line when frames carry their own scale in a ``NAME.json`` sidecar (as `appliance
        synth skin` writes) other than the one they are measured at; None when none does.

        The sidecar is only named, never used: a kiosk's calibration is its config's.
        """
        measured_at = self.config.skin.um_per_px
        differing = [
            (image, scale) for image in images
            if (scale := sidecar_um_per_px(image)) is not None and abs(scale - measured_at) > 0.005
        ]
        if not differing:
            return None
        image, scale = differing[0]
        others = len(differing) - 1
        more = f" (and {others} more frame{'s' if others > 1 else ''})" if others else ""
        return (f"{shown_name(image.name)}: sidecar says {scale:.2f} um/px{more}, measuring at "
                f"{measured_at:.2f} ({self.um_per_px_from}); use --um-per-px to measure at "
                "another scale")


def table_names(images: Sequence[Path]) -> dict[str, str]:
    """Each input's name in the table, by its record's ``image``: the file's name, or the path
    as given where two inputs share a file name (a/x.jpg and b/x.jpg); never cut, so that no
    two rows read alike (names cut at 28 characters made ``subject-0042-left-cheek-visit1``
    and ``-visit2`` one row name)."""
    counts = Counter(image.name for image in images)
    return {record_name(image): shown_name(image.name if counts[image.name] == 1 else image)
            for image in images}


def unwritable_folder(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (a read-only disk, no permission), None when one
    can: known before any frame is measured, not said again for each overlay."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def overlay_names(images: Sequence[Path]) -> dict[Path, str]:
    """Each input's overlay file name: ``STEM.overlay.jpg``, or ``STEM-N.overlay.jpg`` (N its
    place among the inputs of that stem) where stems collide (a/x.jpg and b/x.jpg, x.jpg and
    x.png), compared without case as a case-insensitive disk would; ValueError naming both
    inputs when a name is still taken twice (x-2.jpg beside two x.jpg)."""
    by_stem: dict[str, list[Path]] = {}
    for image in dict.fromkeys(images):  # the same path twice is one input
        by_stem.setdefault(image.stem.casefold(), []).append(image)
    names = {image: f"{image.stem}-{place}" if len(group) > 1 else image.stem
             for group in by_stem.values() for place, image in enumerate(group, 1)}
    taken: dict[str, Path] = {}
    for image, name in names.items():
        if (other := taken.setdefault(name.casefold(), image)) != image:
            raise ValueError(f"--overlay: {shown_name(other)} and {shown_name(image)} would both "
                             f"write {shown_name(name)}{OVERLAY_SUFFIX}; rename one of them")
    return {image: f"{name}{OVERLAY_SUFFIX}" for image, name in names.items()}


def sidecar_um_per_px(image: Path) -> float | None:
    """``um_per_px`` from the frame's ``NAME.json`` sidecar; None without a usable one.

    A path without a name (``.``, ``/``) has none (``with_suffix`` would raise ValueError):
    the frame reader then refuses it as a folder, and the other inputs are still measured.
    """
    if not image.name:
        return None
    sidecar = image.with_suffix(".json")
    try:
        if not sidecar.is_file() or sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            return None
        scale = safejson.loads(sidecar.read_bytes()).get("um_per_px")
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        return None
    usable = isinstance(scale, int | float) and not isinstance(scale, bool) and math.isfinite(scale)
    return float(scale) if usable else None
