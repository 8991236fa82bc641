"""A stop while the analysis is still inside a native library call ends the process with its
normal exit code (never SIGABRT at interpreter finalisation) and keeps every committed result."""

from __future__ import annotations

import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.transport.broker import PrivateBroker

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.broker, pytest.mark.slow]
BLOCKED = "analysis blocked in native code"
# only a child that hangs meets this: each wait below ends at the event it waits for, or at the
# child's end, whatever the machine's load
HUNG_S = 600.0

# `appliance edge` whose analysis measures twice, then stays inside OpenCV calls (each releases
# the GIL), as a real analysis does while it measures a frame when the stop comes; its customers
# come on small cheap frames (appliance/edge/testing.py), so that the two measurements do not
# wait for the skin generator on a loaded machine
EDGE_WITH_BLOCKING_ANALYSIS = f"""
import sys
import cv2
import numpy as np
import appliance.edge.service as service
from appliance.cli import main
from appliance.edge.testing import fast_source, fixed_analyzer

noise = np.random.default_rng(0).integers(0, 255, (1200, 1200), dtype=np.uint8)
calls = []

def blocking_analyzer(rgb, um_per_px):
    calls.append(rgb)
    if len(calls) > 2:
        cv2.medianBlur(noise, 5)
        print({BLOCKED!r}, file=sys.stderr, flush=True)  # in the loop from now on
        while True:
            cv2.medianBlur(noise, 5)
    return fixed_analyzer(rgb, um_per_px)

service.skin_measurement = blocking_analyzer
service.source_from_config = lambda config: (fast_source(config), config.edge.camera_stall_s)
sys.exit(main(["edge", "--config", sys.argv[1]]))
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as started:
        yield started


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(
        "device: {id: kiosk-exit, site: test}\n"
        "camera: {source: synthetic}\n"
        f"mqtt: {{port: {port}, topic_prefix: edgeexit}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "edge: {synthetic_fps: 30, reconnect_initial_s: 0.2, reconnect_cap_s: 1.0}\n"
    )
    return path


class _Log:
    """A child's output, read as it comes (never a fixed wait): each wait ends once what it
    waits for has been said, or once the child has ended."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.fd = process.stdout.fileno()
        self.text = ""

    def wait_for(self, said: Callable[[str], bool], what: str) -> None:
        hung_at_s = time.monotonic() + HUNG_S
        while not said(self.text):
            if not self._more(hung_at_s):
                raise AssertionError(f"the edge ended (or hung) before {what}:\n"
                                     f"{self.text[-2000:]}")

    def to_the_end(self) -> str:
        """Everything it said, once it has ended (its output closed)."""
        hung_at_s = time.monotonic() + HUNG_S
        while self._more(hung_at_s):
            pass
        return self.text

    def _more(self, hung_at_s: float) -> bool:
        """Read what comes next; False at the output's end (or the hang limit)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, hung_at_s - time.monotonic()))
        chunk = os.read(self.fd, 65536) if ready else b""
        self.text += chunk.decode(errors="replace")
        return bool(chunk)


def _committed(log_text: str) -> set[str]:
    return set(re.findall(r"measurement ([0-9a-f-]{36}) committed", log_text))


def test_stop_while_analysis_is_in_native_code_exits_normally_and_keeps_results(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    edge = subprocess.Popen(
        [sys.executable, "-c", EDGE_WITH_BLOCKING_ANALYSIS, str(_config(tmp_path, broker.port))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        log = _Log(edge)
        log.wait_for(lambda text: BLOCKED in text and len(_committed(text)) == 2,
                     "two results committed and the analysis inside OpenCV")
        edge.send_signal(signal.SIGTERM)
        log_text = log.to_the_end()
        code = edge.wait(HUNG_S)
    finally:
        edge.kill()
        edge.wait()
        assert edge.stdout is not None
        edge.stdout.close()
    assert code == 0, f"exit {code}:\n{log_text[-2000:]}"
    assert "AnalysisRunner still running after the stop" in log_text
    committed = _committed(log_text)
    assert len(committed) == 2
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite3") as db:
        kept = {row[0] for row in db.execute("SELECT measurement_id FROM outbox")}
    assert kept == committed  # nobody acknowledged them: all still wait to be sent


# `appliance edge` whose daemon leaves a worker running (as a stop while the analysis is inside
# OpenCV does), and whose os._exit first writes down whether another process could take the
# state lock (argv: config, lock file, where to write that)
EDGE_LEAVING_A_WORKER = """
import os
import sys
import threading
from pathlib import Path
import appliance.edge.service as service
from appliance.cli import main
from appliance.statelock import StateLock, StateLockError

def run_leaving_a_worker(config, config_path, requests):
    threading.Thread(target=threading.Event().wait, name="StuckWorker", daemon=True).start()
    return 0

real_exit = os._exit

def exit_saying_the_lock(code):
    try:
        StateLock(Path(sys.argv[2]), "a second appliance edge").release()
    except StateLockError:
        Path(sys.argv[3]).write_text("lock held to the end")
    else:
        Path(sys.argv[3]).write_text("lock free before the end")
    real_exit(code)

service._run_locked = run_leaving_a_worker
os._exit = exit_saying_the_lock
sys.exit(main(["edge", "--config", sys.argv[1]]))
"""


def _end_leaving_a_worker(tmp_path: Path, *, stdout_closed: bool) -> tuple[int, str, str]:
    """Run that edge; its exit status, standard error and what it wrote at os._exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    said = tmp_path / "said-at-exit"
    command = [sys.executable, "-c", EDGE_LEAVING_A_WORKER, str(_config(tmp_path, port=1)),
               str(tmp_path / "state" / "edge.lock"), str(said)]
    if stdout_closed:  # as a service manager or a `>&-` may start it: sys.stdout is None
        command = ["bash", "-c", 'exec "$@" >&-', "edge", *command]
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    return done.returncode, done.stderr, said.read_text() if said.exists() else ""


def test_a_worker_left_running_keeps_the_state_lock_until_the_process_ends(
    tmp_path: Path,
) -> None:
    """While a worker of the stopped daemon may still write the outbox, no second edge may
    take the state folder: the lock is held until the process ends."""
    code, stderr, said = _end_leaving_a_worker(tmp_path, stdout_closed=False)
    assert code == 0, stderr[-2000:]
    assert "StuckWorker still running after the stop" in stderr
    assert said == "lock held to the end"


def test_a_worker_left_running_ends_the_process_without_standard_output(
    tmp_path: Path,
) -> None:
    """An edge started with its standard output closed still ends at once with its exit code,
    not with a traceback from flushing a stream that is not there."""
    code, stderr, said = _end_leaving_a_worker(tmp_path, stdout_closed=True)
    assert code == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    assert said == "lock held to the end"


# `appliance edge` whose daemon fails with a bug while its analysis is inside OpenCV
EDGE_FAILING_WITH_A_WORKER_IN_OPENCV = """
import sys
import threading
from types import SimpleNamespace
import cv2
import numpy as np
import appliance.edge.service as service
from appliance.cli import main

noise = np.random.default_rng(0).integers(0, 255, (600, 600), dtype=np.uint8)

def measuring():
    while True:
        cv2.medianBlur(noise, 5)

def run():
    threading.Thread(target=measuring, name="AnalysisRunner", daemon=True).start()
    raise RuntimeError("a bug in the supervision")

service.build_daemon = lambda config, requests: SimpleNamespace(run=run)
sys.exit(main(["edge", "--config", sys.argv[1]]))
"""


def test_a_daemon_that_fails_with_a_worker_in_a_library_exits_1_with_its_traceback_logged(
    tmp_path: Path,
) -> None:
    """A bug that ends the daemon's run also ends the process through exit_code_after_stop:
    exit 1 for systemd to restart it, the traceback in the journal, and no interpreter
    finalisation around the worker still inside OpenCV (which can abort it: SIGABRT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    done = subprocess.run(
        [sys.executable, "-c", EDGE_FAILING_WITH_A_WORKER_IN_OPENCV,
         str(_config(tmp_path, port=1))],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        timeout=120, check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "edge daemon failed; exiting so systemd restarts" in done.stderr
    assert "RuntimeError: a bug in the supervision" in done.stderr
    assert "AnalysisRunner still running after the stop; ending the process now with exit 1" \
        in done.stderr


# the test kiosk of appliance/edge/testing.py (`python -m appliance.edge.testing`, as the
# SIGKILL, duplicate-device and update tests run it), whose build or run argv[2] chooses:
# "bug": its run fails with a bug while its analysis is inside OpenCV; "stop": a SIGTERM comes
# while it is built
TEST_KIOSK_ENDING = """
import os
import signal
import sys
import threading
from types import SimpleNamespace
import cv2
import numpy as np
from appliance.edge import testing

noise = np.random.default_rng(0).integers(0, 255, (600, 600), dtype=np.uint8)

def measuring():
    while True:
        cv2.medianBlur(noise, 5)

def run():
    threading.Thread(target=measuring, name="AnalysisRunner", daemon=True).start()
    raise RuntimeError("a bug in the supervision")

def failing(config, *requests):
    return SimpleNamespace(run=run, stop_requested=threading.Event(),
                           reload_requested=threading.Event())

def stopped_while_built(config, *requests):
    os.kill(os.getpid(), signal.SIGTERM)
    return testing.fast_daemon(config, requests=requests[0] if requests else None)

build = {"bug": failing, "stop": stopped_while_built}[sys.argv[2]]
sys.exit(testing.run_daemon(sys.argv[1], build))
"""


@pytest.mark.parametrize(("case", "code", "said"), [
    ("bug", 1, ["edge daemon failed; exiting so systemd restarts",
                "RuntimeError: a bug in the supervision",
                "AnalysisRunner still running after the stop; ending the process now with exit 1"]),
    ("stop", 0, ["stop requested while starting; exiting before the daemon ran"]),
])
def test_the_test_kiosk_ends_through_the_daemons_own_stop_paths(
    tmp_path: Path, case: str, code: int, said: list[str],
) -> None:
    """The test kiosk ran its daemon outside ``appliance edge``'s stop logic: a bug propagated
    out of run_daemon (no journal line, finalisation around the worker inside OpenCV, which
    can abort it), and a SIGTERM while it was built killed it by the signal's default action."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    done = subprocess.run(
        [sys.executable, "-c", TEST_KIOSK_ENDING, str(_config(tmp_path, port=1)), case],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        timeout=120, check=False,
    )
    assert done.returncode == code, done.stderr[-2000:]
    for line in said:
        assert line in done.stderr
