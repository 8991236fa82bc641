"""A demo edge for tests whose simulated customers each step up to the scope only once their
choice (age band, consent) is on the kiosk screen: ``python -m tests.demo_edges CONFIG``.

The demo's driver posts a customer's choice while the kiosk is between customers; on a busy
machine the next customer could be measured before it arrived (the choice is then refused,
and that person has none). A test that counts the choices made needs every customer to have
chosen: here the next customer waits for it, no longer than it takes to arrive.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from dataclasses import replace

import numpy as np

from appliance.capture.sources import Frame
from appliance.capture.synthetic import SyntheticSource
from appliance.config import Config
from appliance.edge.daemon import EdgeDaemon, Requests
from appliance.edge.testing import SMALL_FRAME_PX, fast_daemon, fast_source, run_daemon


class ChoosingCustomers:
    """The fast synthetic customers; before each one's first frame, dark frames (nobody at
    the scope) until the kiosk's screen (127.0.0.1:``screen_port``) holds a choice."""

    def __init__(self, inner: SyntheticSource, screen_port: int) -> None:
        self.inner, self.screen_port = inner, screen_port
        self.description = f"{inner.description}, each customer once chosen on the screen"
        self._visit_frames = inner.script.total_frames
        self._customer_frames = 0  # frames of customers served, of whole visits and this one
        self._index = 0  # every frame served, dark ones included
        width, height = SMALL_FRAME_PX
        self._nobody = np.zeros((height, width, 3), np.uint8)

    def open(self) -> None:
        """Open the inner source."""
        self.inner.open()

    def read(self) -> Frame | None:
        """The next customer's frame, or a dark one while that customer has not chosen."""
        self._index += 1
        if self._customer_frames % self._visit_frames == 0 and not self._chosen():
            time.sleep(1.0 / self.inner.fps)
            return Frame(self._nobody, self._index, name="nobody", simulated=True)
        frame = self.inner.read()
        if frame is None:
            return None
        self._customer_frames += 1
        return replace(frame, index=self._index)

    def close(self) -> None:
        """Close the inner source."""
        self.inner.close()

    def _chosen(self) -> bool:
        """Whether the screen holds a choice for the next measurement."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.screen_port}/state",
                                        timeout=2) as answer:
                return json.loads(answer.read()).get("subject") is not None
        except OSError:  # its server is starting
            return False


def main(argv: list[str]) -> int:
    """Run the fast daemon on choosing customers from a config file until stopped."""
    def build(config: Config, requests: Requests) -> EdgeDaemon:
        assert config.screen.port is not None, "a demo edge has a screen"
        source = ChoosingCustomers(fast_source(config), config.screen.port)
        return fast_daemon(config, source, requests=requests)

    return run_daemon(argv[0], build)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
