"""Fast stand-ins for the heavy plug-ins, for fault tests and delivery benchmarks.

``fixed_analyzer`` measures nothing (constant features), ``textured_skin`` frames are cheap
to make, and ``FlakySource`` fails on demand, so the daemon's delivery, supervision and
recovery can be exercised in seconds. ``python -m appliance.edge.testing CONFIG`` runs the
real daemon wiring with these stand-ins (the SIGKILL test runs it as a child process).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from appliance.capture.sources import Frame, FrameSource, SourceError
from appliance.capture.synthetic import CustomerScript, SyntheticSource, textured_skin
from appliance.config import Config, load_config
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.pipeline import Measurement
from appliance.edge.service import install_signal_handlers
from appliance.edge.systemd import setup_logging
from appliance.transport import payloads

FIXED_FEATURES = payloads.Features(
    pore_count=42,
    pore_density_per_cm2=341.8,
    pore_mean_diameter_um=92.0,
    pore_area_ratio=0.023,
    furrow_density_mm_per_mm2=6.1,
    hill_density_per_mm2=9.4,
    hill_mean_area_mm2=0.098,
    furrow_mean_width_um=38.0,
    furrow_anisotropy=0.31,
    kime_score=61.0,
    lab_l=64.0,
    lab_a=12.5,
    lab_b=16.0,
    melanin_index=0.42,
    erythema_index=0.37,
    shine_ratio=0.04,
)


def fixed_analyzer(rgb: np.ndarray, um_per_px: float) -> Measurement:
    """Constant features, no overlay: the pipeline without the cost of measuring."""
    return Measurement(FIXED_FEATURES)


class FlakySource:
    """Wraps a source; while ``failing`` is set, opening and reading raise SourceError."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner
        self.description = f"flaky {inner.description}"
        self.failing = threading.Event()

    def open(self) -> None:
        """Open the inner source unless failing."""
        if self.failing.is_set():
            raise SourceError(f"{self.description}: device unplugged (simulated)")
        self.inner.open()

    def read(self) -> Frame | None:
        """Read the inner source unless failing."""
        if self.failing.is_set():
            raise SourceError(f"{self.description}: read error (simulated)")
        return self.inner.read()

    def close(self) -> None:
        """Close the inner source."""
        self.inner.close()


def fast_source(config: Config, script: CustomerScript | None = None) -> SyntheticSource:
    """Synthetic customers on cheap textured frames at the configured frame rate."""
    return SyntheticSource(
        textured_skin(config.camera.seed), fps=config.edge.synthetic_fps, script=script
    )


def fast_daemon(config: Config, source: FrameSource | None = None) -> EdgeDaemon:
    """The daemon with the real gate, sessions, outbox and MQTT link, but fake measuring."""
    return EdgeDaemon(
        config,
        source=source or fast_source(config),
        analyzer=fixed_analyzer,
        stall_s=config.edge.camera_stall_s,
    )


def main(argv: list[str]) -> int:
    """Run the fast daemon from a config file until stopped (or ``camera.limit``)."""
    config = load_config(argv[0])
    setup_logging(False, config.device.id)
    daemon = fast_daemon(config)
    install_signal_handlers(daemon)
    started_s = time.monotonic()
    code = daemon.run()
    print(f"fast daemon exited {code} after {time.monotonic() - started_s:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
