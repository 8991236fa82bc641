"""Simulated customers at the demo's kiosk screens: each picks an age band and consent there.

The demo's synthetic camera shows one simulated person per visit, with an age drawn by the
skin generator (``synthetic_params``: parameters without geometry; the band is the one the
camera's ``stated_age_band`` gives). Before each visit is
measured, this driver does what the customer does on the screen: it posts that person's age
band and a consent choice to the kiosk page's own endpoint (``POST /subject``), naming the
measurement and the daemon run it is for, so the choice can never slip to the next person (or
to a daemon run started since). Every fifth person at each kiosk
declines, so the demo also shows results that arrive without subject data; each kiosk's first
decline is one person earlier than the kiosk before it (``DECLINE_FIRST``), so the default demo,
two kiosks of two customers, shows one. The results the
back office stores then carry ``subject.age_band`` from the kiosk screen, and the cohort
report runs on them.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from appliance.synthetic.camera import age_band_of
from appliance.synthetic.skin import synthetic_params

log = logging.getLogger(__name__)

POLL_S = 0.05
DECLINE_EVERY = 5
DECLINE_FIRST = 2  # the first kiosk's first decliner is its person 2 (counting from 0)


@dataclass
class Kiosk:
    """One demo kiosk's screen and the synthetic camera seed behind it."""

    name: str
    port: int
    camera_seed: int
    number: int = 0  # the kiosk's place among the demo's kiosks, from 0
    chosen_for: int = -1  # the measurement number the last choice was posted for


def customer_choice(camera_seed: int, index: int, run: str, kiosk: int = 0) -> dict[str, Any]:
    """What simulated person ``index`` of a synthetic camera chooses on the screen of the
    daemon run ``run``, at the demo's kiosk number ``kiosk``."""
    params = synthetic_params(camera_seed, index)
    consent = (index + kiosk) % DECLINE_EVERY != DECLINE_FIRST
    return {"age_band": age_band_of(params.age_years), "consent": consent, "measurement": index,
            "run": run}


def _call(port: int, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


class KioskCustomers(threading.Thread):
    """Posts each simulated person's choices to their kiosk's screen before they are measured."""

    def __init__(self, kiosks: list[Kiosk], stop: threading.Event) -> None:
        super().__init__(name="KioskCustomers", daemon=True)
        self.kiosks, self.stop_event = kiosks, stop
        self.posted = 0

    def run(self) -> None:
        """Until stopped: for every kiosk, choose for the measurement it is about to make."""
        while not self.stop_event.wait(POLL_S):
            for kiosk in self.kiosks:
                try:
                    self._visit(kiosk)
                except (OSError, ValueError) as exc:  # the edge is starting or has ended
                    log.debug("kiosk %s screen: %s", kiosk.name, exc)

    def _visit(self, kiosk: Kiosk) -> None:
        state = _call(kiosk.port, "/state")
        upcoming = int(state["measurements"])
        if kiosk.chosen_for == upcoming:
            return
        try:
            choice = customer_choice(kiosk.camera_seed, upcoming, str(state["run"]),
                                     kiosk.number)
            _call(kiosk.port, "/subject", choice)
        except urllib.error.HTTPError as exc:
            if exc.code != 400:  # 400: that person was measured meanwhile; choose for the next
                raise
            return
        kiosk.chosen_for = upcoming
        self.posted += 1


def cohort_lines(store: Any) -> str:
    """The demo's cohort, from the age bands customers chose on the kiosk screens."""
    from appliance.backoffice.agebands import REPORT_FEATURES  # noqa: PLC0415
    from appliance.console.cohortview import feature_views  # noqa: PLC0415  (scipy)

    views = {v.key: v for v in feature_views(store.band_sums(REPORT_FEATURES))}
    return "\n".join(_cohort_text(views))


def _cohort_text(views: dict[str, Any]) -> list[str]:
    kime = views.get("kime_score")
    if kime is None or not kime.bands:
        return ["cohort: no stored result has an age band (nobody consented on a kiosk screen)"]
    stats = {b.band: b for b in kime.bands}
    bands = ", ".join(f"{band} n={stats[band].n} mean {stats[band].mean:.1f}" if band in stats
                      else f"{band} n=0" for band in kime.axis or stats)
    counted = sum(b.n for b in kime.bands)
    lines = [f"cohort: {counted} stored result(s) with an age band (chosen on the kiosk "
             f"screens); kime score by band: {bands}"]
    pearson = kime.pearson
    if math.isfinite(pearson.r):  # enough results in two or more bands
        interval = (f"[{pearson.low:+.2f}, {pearson.high:+.2f}] (n={pearson.n})"
                    if math.isfinite(pearson.low) else f"(n={pearson.n}, too few for a 95 % CI)")
        lines.append(f"cohort: kime score vs age, Pearson r {pearson.r:+.2f} {interval}")
    return lines
