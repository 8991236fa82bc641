"""The grades the shipped skin model gives (its training table's labels, in its output order).

Kept apart from ``build`` (which imports the training stack) so the back office's console can
know them: a grade the fleet's model gives is a known filter value before any result carries
it (``appliance.console.knownvalues``)."""

from __future__ import annotations

GRADE_LABELS = ("fine", "normal", "coarse")
