"""A grade the model cannot tell from the next one: said as "between the two", never as one.

The classifier's label is its most probable grade, however close the second. On the shipped
model (appliance/shipped/skin-texture-grade.int8.onnx 1.1.0, its own table
models/data/skin-grades.parquet) the top grade of a result whose two most probable grades lie
less than ``NEAR_TIE_MARGIN`` apart was right for 23 of the 35 held-out rows (calibration,
validation and test splits), the second for the other 12, and for 14 of 25 on all 1,200 rows
below 0.05: little better than a coin flip between two grades, which between them always held
the expert's. From a margin of 0.15 on the top grade was right for 87 % of the held-out rows.
Such near-ties are 7.3 % of the held-out rows, and always between neighbouring grades
(fine/normal, normal/coarse). The model's probabilities are calibrated (a temperature fitted on
the calibration split, appliance/modelbuild/temperature.py), so two grades less than 0.15 apart
are a top grade the model itself gives at most about 0.58; model 1.0.0, overconfident, put 27
of those rows there (16 right).

The result keeps every probability (``classification.probabilities``, stored whole with the
payload by the back office), so anyone reading it can tell a near-tie the same way: the kiosk
screen, ``appliance analyze`` (its table, ``--json`` and the overlay's caption), the console's
results list, result page and CSV, its API, and ``appliance results query`` and ``export`` all
say it through ``grade_between``.
Standard library only, as edge/reasons.py, so the console can use it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

NEAR_TIE_MARGIN = 0.15  # top probability less second below this: a near-tie


def near_tie(probabilities: Mapping[str, float]) -> tuple[str, str] | None:
    """The two grades a result lies between, in the model's label order (the order of
    ``probabilities``), when their probabilities are less than NEAR_TIE_MARGIN apart; None
    when the top grade stands clear (or the model has one label)."""
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
    if len(ranked) < 2 or ranked[0][1] - ranked[1][1] >= NEAR_TIE_MARGIN:
        return None
    order = list(probabilities)
    first, second = sorted((ranked[0][0], ranked[1][0]), key=order.index)
    return first, second


def grade_between(probabilities: Mapping[str, float] | None) -> list[str] | None:
    """The two grades a result lies between (``near_tie``) as every place that shows a grade
    says it; None when its grade stands clear, or it has none (no probabilities)."""
    tie = near_tie(probabilities) if probabilities else None
    return list(tie) if tie is not None else None


def between_words(between: Sequence[str]) -> str:
    """A near-tie in words, as the overlay's caption and the console say it."""
    return f"between {between[0]} and {between[1]}"
