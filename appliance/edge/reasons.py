"""Why a result's grade was withheld, as its quality block says it, and read back.

``measure.py`` writes these reasons into a result's quality block, so they travel with the
result to the back office; the kiosk screen and the console read them back to say why there is
no grade in words a customer or an operator understands. The wording is part of the result
contract (docs/measurement.md "Validated range"); nothing here imports more than the standard
library and the feature keys, so the console can use it without the kiosk's image stack.

Reading back trusts nothing: the console reads reasons from whatever a kiosk sent, so only the
feature keys of the contract are taken from a reason, each once, however long the reason is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.skin.features import FEATURE_KEYS

FRAME_OUTSIDE = "outside validated range: "
NOT_MEASURED = "not measured: "  # why some features were not measured (the frame was)
NOT_GRADED = "not graded: the model reads features outside the validated range"
NOT_GRADED_FRAME = "not graded: the frame is outside the validated range"
_KEYS = frozenset(FEATURE_KEYS)


@dataclass(frozen=True)
class Withheld:
    """A grade withheld: the features the model reads that were not measured, and whether the
    frame as a whole lies outside the validated range."""

    features: tuple[str, ...]
    frame: bool

    def as_json(self) -> dict[str, object]:
        """The JSON the kiosk page and the console's API give for it."""
        return {"features": list(self.features), "frame": self.frame}


def frame_outside_reason(conditions: Sequence[str]) -> str:
    """The reason of a frame outside the validated range, naming each broken condition."""
    return FRAME_OUTSIDE + "; ".join(conditions)


def not_measured_reason(condition: str) -> str:
    """The reason some features were not measured: the condition of theirs that was broken
    (e.g. ``pore count borderline: ...``); the features themselves are the result's
    ``not_validated``."""
    return NOT_MEASURED + condition


def not_graded_reason(features: Sequence[str]) -> str:
    """The reason of a withheld grade: the model's inputs that were not measured (none: the
    frame as a whole is outside the validated range)."""
    return f"{NOT_GRADED} ({', '.join(features)})" if features else NOT_GRADED_FRAME


def grade_withheld(reasons: Sequence[str]) -> Withheld | None:
    """Why a result's grade was withheld, from its quality reasons (None: it was not)."""
    frame = any(reason.startswith(FRAME_OUTSIDE) for reason in reasons)
    for reason in reasons:
        if reason == NOT_GRADED_FRAME:
            return Withheld((), frame)
        if reason.startswith(NOT_GRADED + " (") and reason.endswith(")"):
            return Withheld(_known_features(reason[len(NOT_GRADED) + 2 : -1]), frame)
    return None


def _known_features(named: str) -> tuple[str, ...]:
    """The feature keys a reason names, each once, in its order; anything else is left out (a
    hostile kiosk could name thousands of made-up ones)."""
    return tuple(dict.fromkeys(key for key in named.split(", ") if key in _KEYS))
