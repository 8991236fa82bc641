"""Measure one frame: the gate's verdict, the skin analysis, the model's grade, the overlay.

Written once for both callers: the edge pipeline measures the best frame of each burst, and
``appliance analyze`` measures one file after another. The analyser is injected (the real one
is ``skin_measurement``; tests pass fast fakes). This is where the skin package's own result
becomes the payload's vocabulary, and where a frame outside the validated range of the method
(docs/measurement.md "Validated range") gains a reason in its quality block. The model grades
only features that were measured: when the frame, or any feature the model reads, lies outside
that range, the result has no grade and its quality block says why (``reasons.py``), and so does
the overlay's caption. The kiosk screen's picture is the marked frame without that caption (its
page says every number in the customer's language); ``appliance analyze --overlay`` writes the
captioned overlay. One measurement uses one model throughout: the model whose feature list
decides whether to grade is the model that grades, even if an update swaps models meanwhile.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from appliance.capture.quality import FrameQuality
from appliance.edge.grade_margin import between_words, grade_between
from appliance.edge.reasons import frame_outside_reason, not_graded_reason, not_measured_reason
from appliance.transport import payloads

if TYPE_CHECKING:
    from appliance.skin.colour import WhiteReference

log = logging.getLogger(__name__)


# (grade or None, the model's inputs the grade was withheld for or None) -> the overlay image
OverlayDrawer = Callable[[str | None, tuple[str, ...] | None], np.ndarray]


@dataclass(frozen=True)
class Measurement:
    """What the analyser found in one frame, and how to draw its pictures (if it can).

    The pictures are drawn later (the marked frame by the kiosk screen's thread after the
    commit, the captioned overlay by ``appliance analyze`` when asked), so drawing them never
    delays the result. The overlay's drawer takes the grade (None: none) and, when the grade
    was withheld, the model's inputs that were not measured (None: not withheld; empty: the
    frame as a whole is outside the range); the marked frame carries no text.
    ``frame_outside`` says why the frame as a whole lies outside the method's validated range
    (empty: it does not); ``not_validated`` names the features outside it, and
    ``feature_reasons`` why, where it is not the frame as a whole (pore size, hill size, a
    borderline pore count).
    """

    features: payloads.Features
    overlay: OverlayDrawer | None = None
    frame_outside: tuple[str, ...] = ()
    not_validated: tuple[payloads.FeatureKey, ...] = ()
    feature_reasons: tuple[str, ...] = ()
    marked_frame: Callable[[], np.ndarray] | None = None


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


@runtime_checkable
class Swappable(Protocol):
    """A classifier whose model can change while the kiosk runs (an update, a SIGHUP)."""

    def pinned(self) -> Classifier | None:
        """The model serving now, fixed: a swap after this call does not change it."""


@runtime_checkable
class Reloadable(Protocol):
    """A classifier that SIGHUP can point at a model file (``edge/service.py``)."""

    def reload(self, path: str | Path) -> None:
        """Load and check ``path`` whole, then serve it; on ModelError the old model serves."""


def serving_now(classifier: Classifier | None) -> Classifier | None:
    """The one model for a whole measurement: the model whose feature list decides whether to
    grade is the model that grades (a swap meanwhile changes the next measurement). A
    classifier that is never swapped is its own snapshot."""
    if isinstance(classifier, Swappable):
        return classifier.pinned()
    return classifier


@dataclass(frozen=True)
class MeasuredFrame:
    """One measured frame: quality block, features, grade (None: no model) and the drawers of
    its captioned overlay and of its marked frame (the kiosk screen's)."""

    quality: payloads.Quality
    features: payloads.Features
    classification: payloads.Classification | None
    draw_overlay: Callable[[], np.ndarray] | None
    not_validated: tuple[payloads.FeatureKey, ...] = ()
    draw_marked_frame: Callable[[], np.ndarray] | None = None


def measure_frame(
    rgb: np.ndarray,
    um_per_px: float,
    quality: FrameQuality,
    analyzer: Analyzer,
    classifier: Classifier | None,
) -> MeasuredFrame:
    """Analyse a gated frame, grade its features and keep its picture drawers."""
    measurement = analyzer(rgb, um_per_px)
    model = serving_now(classifier)
    withheld_for = grade_withheld_for(model, measurement)
    classification = None if withheld_for is not None else classify(model, measurement.features)
    block = _quality_block(quality, measurement, withheld_for)
    draw = None
    if measurement.overlay is not None:
        draw = functools.partial(measurement.overlay, shown_grade(classification), withheld_for)
    return MeasuredFrame(block, measurement.features, classification, draw,
                         measurement.not_validated, measurement.marked_frame)


def shown_grade(classification: payloads.Classification | None) -> str | None:
    """The grade as the overlay's caption says it: the label, or the two grades a near-tie
    lies between (edge/grade_margin.py); None without a grade."""
    if classification is None:
        return None
    between = grade_between(classification.probabilities)
    return classification.label if between is None else between_words(between)


def grade_withheld_for(
    model: Classifier | None, measurement: Measurement
) -> tuple[str, ...] | None:
    """The model's inputs that were not measured, when its grade must be withheld (empty: the
    frame as a whole is outside the validated range); None when it may grade, or no model."""
    # a model given a number that was not measured would grade with confidence it has not got
    unsure = unvalidated_inputs(model, measurement.not_validated)
    if model is None or not (measurement.frame_outside or unsure):
        return None
    return unsure


def _quality_block(
    quality: FrameQuality, measurement: Measurement, withheld_for: tuple[str, ...] | None
) -> payloads.Quality:
    """The gate's verdict, with why the frame, some features or the grade lie outside the
    validated range."""
    block = quality.to_payload()
    reasons = list(block.reasons)
    if measurement.frame_outside:
        reasons.append(frame_outside_reason(measurement.frame_outside))
    reasons.extend(not_measured_reason(reason) for reason in measurement.feature_reasons)
    if withheld_for is not None:
        reasons.append(not_graded_reason(withheld_for))
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
    """Measure a frame with the skin analysis; its pictures are drawn only when asked."""
    from appliance.skin.analysis import analyze  # noqa: PLC0415 - heavy, loaded on first use
    from appliance.skin.overlay import draw_markings, draw_overlay  # noqa: PLC0415

    analysis = analyze(rgb, um_per_px, white_reference)
    features = payloads.Features.model_validate(analysis.features.as_dict())
    validity = analysis.validity
    not_validated = tuple(
        key for key in payloads.FEATURE_KEYS if key in validity.not_validated
    )
    return Measurement(
        features,
        lambda grade, withheld_for: draw_overlay(rgb, analysis, grade, withheld_for),
        validity.frame_reasons,
        not_validated,  # type: ignore[arg-type]  # FEATURE_KEYS are FeatureKey values
        validity.feature_reasons,
        lambda: draw_markings(rgb, analysis),
    )
