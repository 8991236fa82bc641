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
    """One run of everything: two kiosks (the second killed and started again), the back
    office killed, the broker restarted, the console read by an operator, the screen by a
    client, both by a chromium now and then."""
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "soak.py"), "--minutes", "0.5", "--sample-s", "1",
         "--kiosks", "2", "--kiosk-kill-every-s", "12", "--console", "--console-every-s", "2",
         "--screen", "--browser-every-s", "10", "--workdir", str(tmp_path / "soak")],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert set(figures) >= KEYS
    assert any("back office SIGKILL" in event for event in figures["events"])
    assert any("broker stopped" in event for event in figures["events"])
    assert figures["results_stored"] >= 2
    assert figures["results_lost"] == 0
    assert figures["results_dropped_by_kiosk"] == 0
    assert figures["kiosk_exit"] == 0
    assert figures["backoffice_exit"] == 0
    for name in ("edge", "backoffice", "broker"):
        assert figures[name]["fds_max"] > 0
        assert figures[name]["rss_mib_max"] > 0
    assert figures["kiosk_kills"] >= 1
    assert any("kiosk edge2 SIGKILL" in event for event in figures["events"])
    assert figures["lives"]["edge2"]["lives"] >= 2
    assert figures["lives"]["edge"]["lives"] == 1
    each = figures["results_committed_by_each_kiosk"]
    assert each["edge"] >= 1
    assert each["edge2"] >= 1
    assert figures["duplicates_stored"] == 0
    assert figures["console_exit"] == 0
    assert figures["edge2_exit"] == 0
    operator, screen = figures["visitors"]["operator"], figures["visitors"]["screen"]
    assert operator["visits"] >= 2
    assert operator["answers"]["/logout 303"] >= 1
    assert operator["answers"]["/results.csv 200"] >= 1
    assert screen["answers"]["/state 200"] >= 5
    browser = figures["visitors"]["browser"]
    assert browser["visits"] >= 1
    assert browser["answers"]["console logout 200"] >= 1  # back on the login page
    assert browser["answers"]["screen text 200"] >= 1  # the screen's page drew its texts
    assert browser["not_ok_total"] == 0
    assert figures["lives"]["console"]["rss_mib"]["max"] > 0


def test_kiosk_env_sets_and_takes_out_variables_of_the_kiosk_only() -> None:
    arguments = soak.command_line().parse_args(
        ["--kiosk-env", "GLIBC_TUNABLES=glibc.malloc.hugetlb=1", "--kiosk-env", "LANG="])
    extra = dict(arguments.kiosk_env)
    assert extra == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "LANG": ""}
    env = soak.kiosk_environment({"LANG": "C.UTF-8", "PATH": "/bin"}, extra)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    with pytest.raises(SystemExit):
        soak.command_line().parse_args(["--kiosk-env", "no-equals-sign"])


SITE = "/v/lib/python3.11/site-packages"
SMAPS = "\n".join([
    "55f402c00000-55f407200000 rw-p 00000000 00:00 0  [heap]",
    "Rss:               71680 kB", "AnonHugePages:     71680 kB",
    "7f7ba8000000-7f7ba9000000 rw-p 00000000 00:00 0",  # a thread arena's heap
    "Rss:               16384 kB", "AnonHugePages:      2048 kB",
    "7f7ba9000000-7f7baa000000 rw-p 00000000 00:00 0",  # its rest, split off by an madvise
    "Rss:               10240 kB", "AnonHugePages:         0 kB",
    "7f7baa000000-7f7bac000000 ---p 00000000 00:00 0",  # reserved, not yet used
    "Rss:                   0 kB",
    "7f7bc0001000-7f7bc0801000 rw-p 00000000 00:00 0",  # a thread stack, say
    "Rss:                  40 kB",
    f"7f7bc0ae9000-7f7bc26b5000 r-xp 000e9000 fe:00 5415263  {SITE}/onnxruntime/capi/x.so",
    "Rss:               17800 kB",
    f"7f7bd2df8000-7f7bd645a000 r-xp 001f8000 fe:00 5415072  {SITE}/cv2/cv2.abi3.so",
    "Rss:               34128 kB",
    "7f7bd7000000-7f7bd7001000 r--p 00000000 fe:00 1  /usr/bin/python3.11",
    "Rss:                   4 kB",
]) + "\n"


def test_smaps_breakdown_tells_the_arenas_the_libraries_and_the_rest_apart() -> None:
    groups = soak.smaps_breakdown(SMAPS)
    assert groups["main arena [heap]"] == {"rss_mib": 70.0, "anon_huge_mib": 70.0,
                                           "mappings": 1}
    # a thread arena's heap split in two by an madvise, and its reserved rest
    assert groups["malloc thread arenas"] == {"rss_mib": 26.0, "anon_huge_mib": 2.0,
                                              "mappings": 3}
    assert groups["other anonymous"]["mappings"] == 1  # a thread stack, say
    assert groups["ONNX Runtime"]["rss_mib"] == round(17800 / 1024, 2)
    assert groups["OpenCV"]["rss_mib"] == round(34128 / 1024, 2)
    assert groups["Python"]["mappings"] == 1
    assert next(iter(groups)) == "main arena [heap]"  # largest first


def _row(t_s: float, pid: int, rss: float) -> dict[str, object]:
    return {"t_s": t_s, "edge2": {"pid": pid, "rss_mib": rss, "fds": 16, "threads": 12}}


def test_life_figures_read_a_killed_kiosk_over_its_last_life_only() -> None:
    # a first life that grew to 500 MiB, killed; the second from 300 MiB, 1 MiB every 100 s
    samples = [_row(t, 11, 300.0 + t) for t in range(0, 200, 10)]
    samples += [_row(t, 12, 300.0 + (t - 200) / 100) for t in range(200, 1200, 100)]
    figures = soak.life_figures(samples, "edge2", warmup_s=100.0)
    assert figures["lives"] == 2
    assert figures["last_life_s"] == 900.0
    assert figures["fit_samples"] == 9  # the second life from 100 s after it began
    assert figures["rss_mib"]["max"] == 490.0  # the largest of every life
    assert figures["rss_mib"]["first_fit"] == 301.0
    assert figures["rss_mib"]["per_hour"] == 36.0
    assert figures["fds"]["per_hour"] == 0.0
    assert figures["sockets"]["max"] is None  # not read in these samples
    assert soak.life_figures(samples, "console", warmup_s=0.0) == {}


def test_socket_figures_count_this_process_s_tcp_connections_by_state() -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    before = soak.socket_figures(os.getpid(), soak.tcp_table())
    served.close()  # the peer closed: the client's end waits in CLOSE_WAIT until it closes
    after = soak.socket_figures(os.getpid(), soak.tcp_table())
    client.close()
    listener.close()
    assert before["tcp_listen"] >= 1
    assert before["tcp_established"] >= 2
    assert after["tcp_close_wait"] == before["tcp_close_wait"] + 1
    assert after["sockets"] == before["sockets"] - 1


def test_the_visitors_tally_counts_answers_by_path_and_names_the_bad_ones() -> None:
    import soak_clients

    tally = soak_clients.Tally()
    for path, status in (("/results/abc", 200), ("/results/def", 200), ("/fleet?x=1", 200),
                         ("/login", 303), ("/cohort", 500), ("visit", "failed:OSError")):
        tally.count(path, status)
    figures = tally.figures()
    assert figures["answers"]["/results/{measurement_id} 200"] == 2
    assert figures["answers"]["/fleet 200"] == 1
    assert figures["not_ok"] == {"/cohort 500": 1, "visit failed:OSError": 1}
    assert figures["not_ok_total"] == 2
