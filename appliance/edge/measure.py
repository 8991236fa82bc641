"""Measure one frame: the gate's verdict, the skin analysis, the model's grade, the overlay.

Written once for both callers: the edge pipeline measures the best frame of each burst, and
``appliance analyze`` measures one file after another. The analyser is injected (the real one
is ``skin_measurement``; tests pass fast fakes). This is where the skin package's own result
becomes the payload's vocabulary, and where a frame outside the validated range of the method
(docs/measurement.md "Validated range") gains a reason in its quality block. The model grades
only features that were measured: when the frame, or any feature the model reads, lies outside
that range, the result has no grade and its quality block says why.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from appliance.capture.quality import FrameQuality
from appliance.transport import payloads

if TYPE_CHECKING:
    from appliance.skin.colour import WhiteReference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """What the analyser found in one frame, and how to draw its overlay (if it can).

    The overlay is drawn later (by the kiosk screen's thread after the commit, or by
    ``appliance analyze`` when asked), so drawing it never delays the result.
    ``frame_outside`` says why the frame as a whole lies outside the method's validated range
    (empty: it does not); ``not_validated`` names the features outside it.
    """

    features: payloads.Features
    overlay: Callable[[str | None], np.ndarray] | None = None  # draws it, with the grade if any
    frame_outside: tuple[str, ...] = ()
    not_validated: tuple[payloads.FeatureKey, ...] = ()


Analyzer = Callable[[np.ndarray, float], Measurement]


class Classifier(Protocol):
    """The on-device model, as the measurement uses it."""

    @property
    def name(self) -> str:
        """Model name."""

    @property
    def version(self) -> str:
        """Model version."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features the model reads."""

    def classify(self, features: Mapping[str, float]) -> payloads.Classification:
        """Label the features."""


@dataclass(frozen=True)
class MeasuredFrame:
    """One measured frame: quality block, features, grade (None: no model) and overlay drawer."""

    quality: payloads.Quality
    features: payloads.Features
    classification: payloads.Classification | None
    draw_overlay: Callable[[], np.ndarray] | None
    not_validated: tuple[payloads.FeatureKey, ...] = ()


def measure_frame(
    rgb: np.ndarray,
    um_per_px: float,
    quality: FrameQuality,
    analyzer: Analyzer,
    classifier: Classifier | None,
) -> MeasuredFrame:
    """Analyse a gated frame, grade its features and keep its overlay drawer."""
    measurement = analyzer(rgb, um_per_px)
    # a model given a number that was not measured would grade with confidence it has not got
    unsure = unvalidated_inputs(classifier, measurement.not_validated)
    withheld = bool(measurement.frame_outside or unsure)
    classification = None if withheld else classify(classifier, measurement.features)
    block = _quality_block(quality, measurement.frame_outside, unsure)
    draw = None
    if measurement.overlay is not None:
        draw = functools.partial(
            measurement.overlay, classification.label if classification else None
        )
    return MeasuredFrame(block, measurement.features, classification, draw,
                         measurement.not_validated)


def _quality_block(
    quality: FrameQuality, frame_outside: tuple[str, ...], unsure: tuple[str, ...]
) -> payloads.Quality:
    """The gate's verdict, with why the frame or its grade lies outside the validated range."""
    block = quality.to_payload()
    reasons = list(block.reasons)
    if frame_outside:
        reasons.append("outside validated range: " + "; ".join(frame_outside))
    if unsure:
        reasons.append("not graded: the model reads features outside the validated range ("
                       + ", ".join(unsure) + ")")
    if len(reasons) == len(block.reasons):
        return block
    return block.model_copy(update={"reasons": reasons[:16]})


def unvalidated_inputs(
    classifier: Classifier | None, not_validated: tuple[str, ...]
) -> tuple[str, ...]:
    """The features the model reads that lie outside the validated range (none: no model)."""
    if classifier is None:
        return ()
    return tuple(key for key in classifier.feature_names if key in not_validated)


def classify(
    classifier: Classifier | None, features: payloads.Features
) -> payloads.Classification | None:
    """The model's grade of the features; None without a model or when the model fails."""
    if classifier is None:
        return None
    try:
        return classifier.classify(features.model_dump())
    except (ValueError, RuntimeError) as exc:
        log.error("model %s failed: %s; result sent unclassified", classifier.name, exc)
        return None


def skin_measurement(
    rgb: np.ndarray, um_per_px: float, white_reference: WhiteReference | None = None
) -> Measurement:
    """Measure a frame with the skin analysis; the overlay is drawn only when asked."""
    from appliance.skin.analysis import analyze  # noqa: PLC0415 - heavy, loaded on first use
    from appliance.skin.overlay import draw_overlay  # noqa: PLC0415

    analysis = analyze(rgb, um_per_px, white_reference)
    features = payloads.Features.model_validate(analysis.features.as_dict())
    validity = analysis.validity
    not_validated = tuple(
        key for key in payloads.FEATURE_KEYS if key in validity.not_validated
    )
    return Measurement(
        features,
        lambda grade: draw_overlay(rgb, analysis, grade),
        validity.frame_reasons,
        not_validated,  # type: ignore[arg-type]  # FEATURE_KEYS are FeatureKey values
    )
