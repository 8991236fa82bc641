"""Running a command whose process pool loses a worker: the pool's workers of a process, and the
command run until its workers draw, one killed with SIGKILL (as the kernel's OOM killer does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pool_workers(pid: int) -> list[int]:
    """The pool's worker processes among ``pid``'s children (not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children  # spawned or forked, the tracker is neither
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()]


def kill_a_worker(arguments: list[str]) -> tuple[int, str]:
    """Run ``appliance ARGUMENTS``, SIGKILL one pool worker once two are drawing, and return the
    exit code and stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "appliance", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while len(workers := pool_workers(process.pid)) < 2:  # both spawned
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        time.sleep(3.0)  # past their imports: drawing frames
        os.kill(workers[0], signal.SIGKILL)
        _, err = process.communicate(timeout=300)  # a hang guard only, never reached
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err
