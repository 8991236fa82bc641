"""benchmarks/soak.py: its machinery run for a few seconds (broker, back office killed and
started again, broker restarted, the kiosk's results stored, none lost) and its slope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import soak  # noqa: E402  (benchmarks/ is no package)

KEYS = {
    "results_committed_by_kiosk", "results_stored", "results_left_in_outbox", "results_lost",
    "results_dropped_by_kiosk", "events", "edge", "backoffice", "broker", "max_outbox_bytes",
    "max_store_bytes", "max_edge_log_bytes", "max_mqtt_clients_total", "cpu_fraction_of_a_core",
}


def test_slope_per_1000_is_the_least_squares_slope_times_1000() -> None:
    assert soak.slope_per_1000([(0, 10.0), (100, 11.0), (200, 12.0)]) == 10.0
    assert soak.slope_per_1000([(0, 5.0), (100, 5.0), (200, 5.0)]) == 0.0
    assert soak.slope_per_1000([(0, 1.0), (1, 2.0)]) is None  # too few points
    assert soak.slope_per_1000([(3, 1.0), (3, 2.0), (3, 4.0)]) is None  # no spread


@pytest.mark.broker
@pytest.mark.slow
def test_a_short_soak_stores_every_result_across_a_killed_back_office_and_a_broker_restart(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "soak.py"), "--minutes", "0.4", "--sample-s", "1",
         "--workdir", str(tmp_path / "soak")],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert set(figures) >= KEYS
    assert any("SIGKILL" in event for event in figures["events"])
    assert any("broker stopped" in event for event in figures["events"])
    assert figures["results_stored"] >= 2
    assert figures["results_lost"] == 0
    assert figures["results_dropped_by_kiosk"] == 0
    assert figures["kiosk_exit"] == 0
    assert figures["backoffice_exit"] == 0
    for name in ("edge", "backoffice", "broker"):
        assert figures[name]["fds_max"] > 0
        assert figures[name]["rss_mib_max"] > 0
