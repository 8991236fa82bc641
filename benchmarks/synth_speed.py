"""Speed and determinism of `appliance synth skin`; prints one JSON object.

seconds: wall time of `appliance synth skin --count 20 --seed 7` (default 2 worker processes),
including interpreter start-up; cli_cpu_s: CPU seconds that run used in all its processes (on a
loaded machine, cli_cpu_s / 2 is what the wall time would be on two free cores);
per_frame_cpu_s: CPU seconds per frame, single-threaded OpenCV, in-process;
byte_identical: a second run writes byte-identical JPEGs and sidecars.
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

FRAMES = 20
SEED = 7
CPU_FRAMES = 5


def _children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by waited-for child processes and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_cli(out_dir: Path) -> float:
    """Wall seconds of one CLI run writing FRAMES frames to out_dir."""
    command = [
        sys.executable,
        "-m",
        "appliance",
        "synth",
        "skin",
        "--out",
        str(out_dir),
        "--count",
        str(FRAMES),
        "--seed",
        str(SEED),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _same_files(first: Path, second: Path) -> bool:
    """True when both folders hold the same file names with the same bytes."""
    names = sorted(p.name for p in first.iterdir())
    if names != sorted(p.name for p in second.iterdir()) or len(names) != 2 * FRAMES:
        return False
    return all((first / n).read_bytes() == (second / n).read_bytes() for n in names)


def _cpu_per_frame_s() -> float:
    """CPU seconds per frame, generated in this process with one OpenCV thread."""
    import cv2

    from appliance.synthetic.skin import synthetic_frame

    cv2.setNumThreads(1)
    synthetic_frame(SEED, 999)  # warm-up: imports, OpenCV initialisation
    started = time.process_time()
    for index in range(CPU_FRAMES):
        synthetic_frame(SEED, index)
    return (time.process_time() - started) / CPU_FRAMES


def main() -> None:
    """Run the benchmark and print its JSON figures."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "first", Path(tmp) / "second"
        cpu_before = _children_cpu_s()
        seconds = _run_cli(first)
        cli_cpu_s = _children_cpu_s() - cpu_before
        _run_cli(second)
        identical = _same_files(first, second)
    figures = {
        "frames": FRAMES,
        "seconds": round(seconds, 2),
        "cli_cpu_s": round(cli_cpu_s, 2),
        "per_frame_cpu_s": round(_cpu_per_frame_s(), 3),
        "byte_identical": identical,
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help only
    main()
