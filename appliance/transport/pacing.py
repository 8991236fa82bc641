"""How many unconfirmed results the kiosk's next resend round may send: the back office's pace.

The back office stores a kiosk's results at its token bucket's rate at the most
(appliance/backoffice/kiosk_rate.py) and turns the rest away without a word: no ack, so the
kiosk learns of a refusal only by its absence (docs/delivery.md, "A kiosk over its rate").
Sending a whole broker window a round while the bucket lets a few through is wasted traffic
for both. So a round sends what the back office confirmed since the previous round (its bucket
refilled over the same span; results first sent meanwhile count too, as they took tokens):
- twice that while no round was turned away in part since the back office last answered (it
  may take far more: find out in a few rounds, as a healthy one after an outage does);
- just that after a round of which some were turned away (their tokens were not there);
- one more than that after a round confirmed whole once one was turned away (a probe for a
  faster refill: at most one result turned away in two rounds while the rate holds);
- a single result after a span in which nothing was confirmed (the back office away, or its
  bucket empty), and then the whole back-off wait before the next round (unconfirmed.py).
The first round after the link starts counts what was confirmed since it started. Only
resends are paced: a result's first send goes at once (transport/sender.py).
"""

from __future__ import annotations


class ResendPace:
    """The next resend round's size, from the confirmations since the previous round."""

    def __init__(self) -> None:
        self._sent = 0  # results the previous round sent (0: no round yet)
        self._confirmed = 0  # results the back office confirmed since the previous round
        self._growing = True  # no round turned away yet since the last quiet one: double

    def confirmed(self, count: int) -> None:
        """The back office confirmed ``count`` results (first sends and resends alike)."""
        self._confirmed += count

    def quiet(self) -> bool:
        """Whether nothing was confirmed since the previous round (or since the start)."""
        return self._confirmed == 0

    def round_size(self) -> int:
        """How many results the next round may send (at least one)."""
        confirmed = self._confirmed
        if confirmed == 0:
            return 1
        if confirmed < self._sent:  # the back office turned some of the last round away
            return confirmed
        return 2 * confirmed if self._growing else confirmed + 1

    def sent(self, count: int) -> None:
        """A round sent ``count`` results: count the confirmations afresh from now."""
        if self._confirmed == 0:
            self._growing = True  # after silence the back office's room is unknown again
        elif self._confirmed < self._sent:
            self._growing = False
        self._sent, self._confirmed = count, 0
