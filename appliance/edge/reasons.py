"""Why a result's grade was withheld, as its quality block says it, and read back.

``measure.py`` writes these reasons into a result's quality block, so they travel with the
result to the back office; the kiosk screen and the console read them back to say why there is
no grade in words a customer or an operator understands. The wording is part of the result
contract (docs/measurement.md "Validated range"); nothing here imports more than the standard
library, so the console can use it without the kiosk's image stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FRAME_OUTSIDE = "outside validated range: "
NOT_GRADED = "not graded: the model reads features outside the validated range"
NOT_GRADED_FRAME = "not graded: the frame is outside the validated range"


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
            named = reason[len(NOT_GRADED) + 2 : -1].split(", ")
            return Withheld(tuple(key for key in named if key), frame)
    return None
