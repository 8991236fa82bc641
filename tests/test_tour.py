"""The README's tour, as a newcomer runs it: every command, its output and its exit code.

``appliance demo`` (a private mosquitto, the back office and two edge daemons), then the
back-office commands on what the demo kept, then ``analyze`` and ``calibrate`` from another
folder. The commands run as child processes in folders without a config.yaml, as on a fresh
machine. README.md "A tour" lists the same sequence.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.slow]
GRADES = {"fine", "normal", "coarse"}


def appliance(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``appliance ARGS`` in ``folder``, with no APPLIANCE__ overrides from the test's own env."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("APPLIANCE__")}
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], cwd=folder, env=env, capture_output=True,
        text=True, timeout=300, check=False,
    )


def test_the_newcomer_tour(tmp_path: Path) -> None:
    tour, elsewhere = tmp_path / "tour", tmp_path / "elsewhere"
    tour.mkdir()
    elsewhere.mkdir()
    _demo_then_back_office(tour)
    _analyze_and_calibrate(elsewhere)


def _demo_then_back_office(tour: Path) -> None:
    demo = appliance(tour, "demo")  # 2 kiosks, 2 customers each
    assert demo.returncode == 0, demo.stderr
    assert "4 result(s) stored" in demo.stdout
    assert "results kept in sqlite:///" in demo.stdout
    assert (tour / "state" / "backoffice.sqlite3").is_file()

    fleet = appliance(tour, "fleet")
    assert fleet.returncode == 0, fleet.stderr
    assert "kiosk-demo-1" in fleet.stdout
    assert "kiosk-demo-2" in fleet.stdout
    assert "2 device(s)" in fleet.stdout

    query = appliance(tour, "results", "query")
    assert query.returncode == 0, query.stderr
    rows = [line for line in query.stdout.splitlines() if line.startswith("20")]
    assert len(rows) == 4
    assert [r.split()[0] for r in rows] == sorted((r.split()[0] for r in rows), reverse=True)
    banded = [row for row in rows if re.search(r"\d\d-\d\d|80\+", row.split()[-1])]
    assert len(banded) == 3  # age bands; the second kiosk's second customer declined
    assert query.stdout.rstrip().endswith("4 result(s), newest first")

    _exports(tour)

    report = appliance(tour, "report", "cohort", "--out", "report")
    assert report.returncode == 0, report.stderr
    summary = json.loads((tour / "report" / "summary.json").read_text())
    assert summary["results_with_age_band"] == 3
    assert (tour / "report" / "index.html").is_file()


def _exports(tour: Path) -> None:
    import pyarrow.parquet as pq

    for fmt in ("csv", "jsonl", "parquet"):
        done = appliance(tour, "results", "export", "--format", fmt, "--out", f"results.{fmt}")
        assert done.returncode == 0, done.stderr
        assert f"exported 4 result(s) as {fmt}" in done.stderr
    with (tour / "results.csv").open(newline="") as stream:
        assert len(list(csv.DictReader(stream))) == 4
    lines = (tour / "results.jsonl").read_text().splitlines()
    assert {json.loads(line)["label"] for line in lines} <= GRADES
    assert pq.read_table(tour / "results.parquet").num_rows == 4
    again = appliance(tour, "results", "export", "--format", "csv", "--out", "results.csv")
    assert again.returncode == 2
    assert "exists; pass --force" in again.stderr


def _analyze_and_calibrate(elsewhere: Path) -> None:
    made = appliance(elsewhere, "synth", "skin", "--out", "frames", "--count", "1", "--seed", "5")
    assert made.returncode == 0, made.stderr
    analyze = appliance(elsewhere, "analyze", "frames/skin-5-00000.jpg", "--json")
    assert analyze.returncode == 0, analyze.stderr
    record = json.loads(analyze.stdout)
    assert record["classification"]["label"] in GRADES
    assert record["quality"]["verdict"] == "ok"

    made = appliance(elsewhere, "synth", "micrometer", "--out", "micrometer.png",
                     "--um-per-px", "9.6")
    assert made.returncode == 0, made.stderr
    calibrate = appliance(elsewhere, "calibrate", "micrometer.png", "--mm", "0.1")
    assert calibrate.returncode == 0, calibrate.stderr
    measured = float(calibrate.stdout.split("um_per_px: ")[1])
    assert measured == pytest.approx(9.6, rel=0.01)
    assert "±" in calibrate.stdout

    refused = appliance(elsewhere, "calibrate", "frames/skin-5-00000.jpg", "--mm", "0.1")
    assert refused.returncode == 1
    assert "skin-5-00000.jpg" in refused.stderr
    assert "micrometer" in refused.stderr
    assert refused.stdout == ""
