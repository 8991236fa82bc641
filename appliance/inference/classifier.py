"""The kiosk's skin texture classifier: measured features in, payloads.Classification out.

``SkinClassifier.load(path)`` refuses a bad model with ModelError; ``reload(path)`` loads and
checks the new file completely before it swaps, so a bad update leaves the old model serving.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from appliance.inference.contract import ModelContract, ModelError
from appliance.inference.runner import FloatMatrix, OnnxRunner, not_probabilities
from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.transport.payloads import Classification

log = logging.getLogger(__name__)

DEFAULT_MODEL = shipped_path(SKIN_MODEL)

__all__ = ["DEFAULT_MODEL", "FeatureError", "ModelError", "SkinClassifier"]


class FeatureError(ValueError):
    """Features that the loaded model cannot classify (a key missing or not a finite number)."""


class SkinClassifier:
    """A loaded texture-grade model; thread-safe ``classify`` and ``reload``."""

    def __init__(self, runner: OnnxRunner) -> None:
        self._runner = runner
        self._swap_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> SkinClassifier:
        """Load, check and warm up the model at ``path``; ModelError says what is wrong."""
        runner = OnnxRunner(path)
        # debug: a one-shot command (analyze, config check) prints no line per run for it;
        # the edge daemon says in its journal which model it serves (edge/service.py)
        log.debug("model %s %s loaded from %s", runner.contract.name, runner.contract.version,
                  path)
        return cls(runner)

    @property
    def name(self) -> str:
        """The serving model's name."""
        return self._runner.contract.name

    @property
    def version(self) -> str:
        """The serving model's version."""
        return self._runner.contract.version

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features the serving model reads, in its input order."""
        return self._runner.contract.feature_names

    @property
    def contract(self) -> ModelContract:
        """The serving model's full contract (features, labels, provenance, figures)."""
        return self._runner.contract

    @property
    def path(self) -> Path:
        """The file the serving model came from."""
        return self._runner.path

    def bound_runs(self, deadline_s: float | None) -> None:
        """Stop each later run of this model (its pinned copies' too) at ``deadline_s``,
        refused as ModelTooSlowError (``OnnxRunner.run_deadline_s``); None: no bound."""
        self._runner.run_deadline_s = deadline_s

    def reload(self, path: str | Path) -> None:
        """Swap in the model at ``path``; on ModelError the old model keeps serving (the
        caller logs which model serves: ``edge/service.py`` ``reload_model``)."""
        with self._swap_lock:
            self._runner = OnnxRunner(path)

    def pinned(self) -> SkinClassifier:
        """The model serving now, fixed: a later ``reload`` does not change what this one
        reads or how it classifies (one snapshot for one measurement)."""
        return SkinClassifier(self._runner)

    def vector(self, features: Mapping[str, float]) -> FloatMatrix:
        """The [1, n] float32 input in the model's feature order; FeatureError if one is bad."""
        return _vector(self._runner.contract, features)

    def classify(self, features: Mapping[str, float]) -> Classification:
        """Label and per-label probabilities of one feature vector, with model name and version."""
        runner = self._runner  # one model for the whole call, even if reload() swaps meanwhile
        matrix = _vector(runner.contract, features)
        probabilities = runner.probabilities(matrix)[0]
        problem = not_probabilities(probabilities)
        if problem is not None:  # NaN would be read as the first label, clamped to 0
            contract = runner.contract
            raise ModelError(f"{runner.path}: model {contract.name} {contract.version}: its "
                             f"outputs for these features {problem}; they are no "
                             "probabilities, so no grade is given")
        labels = runner.contract.labels
        return Classification(
            model=runner.contract.name,
            version=runner.contract.version,
            label=labels[int(np.argmax(probabilities))],
            probabilities={
                label: min(1.0, max(0.0, float(p)))
                for label, p in zip(labels, probabilities, strict=True)
            },
        )


def _vector(contract: ModelContract, features: Mapping[str, float]) -> FloatMatrix:
    names = contract.feature_names
    missing = [name for name in names if name not in features]
    if missing:
        raise FeatureError(
            f"features lack {', '.join(missing)}; model {contract.name} {contract.version} "
            f"needs {list(names)}"
        )
    values = [float(features[name]) for name in names]
    bad = [name for name, value in zip(names, values, strict=True) if not math.isfinite(value)]
    if bad:
        raise FeatureError(f"features {', '.join(bad)} are not finite numbers")
    return np.asarray([values], dtype=np.float32)
