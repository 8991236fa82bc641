"""What the measurement pipeline classifies with: the serving model, swapped between two
measurements, and one model pinned for one measurement with its health check.

The updater (``kiosk.ModelUpdater``) swaps it after a verified install or a rollback; SIGHUP
reloads it (``edge/service.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.inference.classifier import SkinClassifier
from appliance.transport import payloads
from appliance.updates.health import HealthCheck, observe_classification


@dataclass(frozen=True)
class PinnedModel:
    """One model and its health check, fixed for one measurement (``ServingModel.pinned``)."""

    classifier: SkinClassifier
    health: HealthCheck | None

    @property
    def name(self) -> str:
        """The model's name."""
        return self.classifier.name

    @property
    def version(self) -> str:
        """The model's version."""
        return self.classifier.version

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features this model reads, in its input order."""
        return self.classifier.feature_names

    def classify(self, features: Mapping[str, float]) -> payloads.Classification:
        """Classify with this model and feed its health check."""
        try:
            result = self.classifier.classify(features)
        except (ValueError, RuntimeError) as exc:
            observe_classification(self.health, None, str(exc))
            raise
        observe_classification(self.health, result, None)
        return result


class ServingModel:
    """The classifier the pipeline calls; ``swap`` changes it between two measurements.

    A measurement reads the model's feature list (to withhold a grade built on numbers that
    were not measured) and then classifies: it takes one ``pinned`` snapshot for both, so a
    swap in between changes the next measurement, never half of this one.
    """

    def __init__(self, classifier: SkinClassifier | None) -> None:
        self._active: tuple[SkinClassifier | None, HealthCheck | None] = (classifier, None)

    @property
    def classifier(self) -> SkinClassifier | None:
        """The serving classifier (None: results go out unclassified)."""
        return self._active[0]

    @property
    def name(self) -> str:
        """The serving model's name ("" when none serves)."""
        return self._active[0].name if self._active[0] is not None else ""

    @property
    def version(self) -> str:
        """The serving model's version ("" when none serves)."""
        return self._active[0].version if self._active[0] is not None else ""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features the serving model reads (none when none serves)."""
        return self._active[0].feature_names if self._active[0] is not None else ()

    def swap(self, classifier: SkinClassifier | None, health: HealthCheck | None) -> None:
        """Serve ``classifier`` from the next measurement on (one assignment: atomic)."""
        self._active = (classifier, health)

    def reload(self, path: str | Path) -> None:
        """SIGHUP: serve the file at ``path`` as it is now, checked whole first (ModelError
        keeps the old one serving); the caller logs which serves (``edge/service.py``)."""
        self.swap(SkinClassifier.load(path), None)

    def pinned(self) -> PinnedModel | None:
        """The model serving now with its health check, fixed for one measurement (None: no
        model serves)."""
        classifier, health = self._active  # one read: the model and its health together
        return PinnedModel(classifier.pinned(), health) if classifier is not None else None

    def classify(self, features: Mapping[str, float]) -> payloads.Classification:
        """Classify with the model serving when the call starts, and feed its health check."""
        model = self.pinned()
        if model is None:
            raise RuntimeError("no model installed")
        return model.classify(features)
