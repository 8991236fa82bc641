"""Throughput of `appliance models skin-table --workers N`; prints one JSON object.

rows_per_s: rows of the table over the wall time of one run (interpreter start-up, the
workers' imports and writing the table included), the best of ``--runs``; cli_cpu_s: CPU
seconds that best run used in all its processes (on a loaded machine, cli_cpu_s / cores is what
the wall time would be on free cores); load_avg: the 1-minute load before and after. The
command is the one ``PYTHONPATH`` (or the installed package) gives, so two checkouts compare on
the same machine at the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by waited-for child processes and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_table(out: Path, rows: int, workers: int, features: str) -> tuple[float, float]:
    """Wall and CPU seconds of one `models skin-table` run writing ``out``."""
    command = [sys.executable, "-m", "appliance", "models", "skin-table", "--out", str(out),
               "--force", "--rows", str(rows), "--workers", str(workers), "--features",
               features, "--quiet"]
    cpu_before, started = _children_cpu_s(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, _children_cpu_s() - cpu_before


def main() -> None:
    """Run the benchmark and print its JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40, help="rows of the table (40)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--features", choices=("measured", "truth"), default="measured")
    parser.add_argument("--runs", type=int, default=3, help="runs; the best counts (3)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [_run_table(Path(tmp) / "table.csv", args.rows, args.workers, args.features)
                for _ in range(args.runs)]
    wall_s, cpu_s = min(runs)
    print(json.dumps({
        "rows": args.rows, "workers": args.workers, "features": args.features,
        "rows_per_s": round(args.rows / wall_s, 2), "seconds": round(wall_s, 2),
        "seconds_each": [round(wall, 2) for wall, _ in runs], "cli_cpu_s": round(cpu_s, 2),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
