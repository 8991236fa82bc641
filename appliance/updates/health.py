"""The health check after a model swap, and the classifier wrapper that feeds it.

After a swap the kiosk watches the next ``health_measurements`` classifications. Any error
fails the check at once. When enough arrived, the share of each label is compared with the
self-test's shares by total-variation distance (half the sum of absolute differences, 0 = the
same, 1 = no label in common); past ``health_max_label_distance`` the new model is rolled back.
With fewer measurements, the check passes after ``health_window_s`` without errors (a quiet
kiosk must not hold a rollout forever).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.transport.payloads import Classification


@dataclass(frozen=True)
class Verdict:
    """The outcome of a health check: passed or not, and why."""

    healthy: bool
    reason: str


def label_distance(counts: Mapping[str, int], expected_shares: Mapping[str, float]) -> float:
    """Total-variation distance between observed label counts and expected shares."""
    total = sum(counts.values())
    labels = set(counts) | set(expected_shares)
    return 0.5 * sum(
        abs(counts.get(label, 0) / total - expected_shares.get(label, 0.0)) for label in labels
    )


class HealthCheck:
    """Watches classifications after a swap until it can give a verdict (thread-safe)."""

    def __init__(
        self,
        expected_shares: Mapping[str, float],
        measurements: int,
        window_s: float,
        max_distance: float,
    ) -> None:
        self.expected_shares = dict(expected_shares)
        self.measurements = measurements
        self.max_distance = max_distance
        self._deadline_s = time.monotonic() + window_s
        self._labels: Counter[str] = Counter()
        self._error: str | None = None
        self._lock = threading.Lock()

    def observe(self, label: str | None, error: str | None = None) -> None:
        """Record one classification (its label) or one failure (its error)."""
        with self._lock:
            if error is not None and self._error is None:
                self._error = error
            elif label is not None:
                self._labels[label] += 1

    def verdict(self) -> Verdict | None:
        """The verdict once one is due, else None."""
        with self._lock:
            seen = sum(self._labels.values())
            if self._error is not None:
                return Verdict(False, f"classification failed after the swap: {self._error}")
            if seen >= self.measurements:
                return self._judge(seen)
            if time.monotonic() >= self._deadline_s:
                return Verdict(True, f"{seen} measurement(s) in the health window, no errors")
            return None

    def _judge(self, seen: int) -> Verdict:
        distance = label_distance(self._labels, self.expected_shares)
        shares = ", ".join(f"{k} {v}/{seen}" for k, v in sorted(self._labels.items()))
        if distance > self.max_distance:
            return Verdict(
                False,
                f"label distribution far from the self-test's (distance {distance:.2f} > "
                f"{self.max_distance}): {shares}",
            )
        return Verdict(True, f"{seen} measurement(s), label distance {distance:.2f}: {shares}")


def observe_classification(
    check: HealthCheck | None, result: Classification | None, error: str | None
) -> None:
    """Feed one outcome to ``check`` when one is running."""
    if check is not None:
        check.observe(result.label if result is not None else None, error)
