"""tests/self_signals.py: a signal that a test's thread sends to the pytest process itself,
where the default action ends the process, is said first: the thread, the test then running
and the line that sent it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SENT_LATE = '''
import os, signal, threading, time

later = threading.Event()


def test_leaves_a_thread():
    def send_late():
        later.wait()
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=send_late, name="late-sender", daemon=True).start()


def test_meets_it():
    later.set()
    time.sleep(60)  # a guard only: the SIGTERM ends the process first
'''

SENT_WITH_A_HANDLER = '''
import os, signal


def test_handles_its_own():
    got = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert got == [signal.SIGTERM, signal.SIGTERM]
'''


def _run(tmp_path: Path, probe: str, *plugin: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(probe)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1",
         "--rootdir", str(tmp_path), *plugin, str(tmp_path / "test_probe.py")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_a_late_sigterm_names_its_thread_the_test_running_and_the_line(tmp_path: Path) -> None:
    done = _run(tmp_path, SENT_LATE, "-p", "tests.self_signals")
    assert "worker 'gw0' crashed while running 'test_probe.py::test_meets_it'" in done.stdout
    said = done.stdout + done.stderr
    assert ("tests/self_signals.py: thread 'late-sender' sends SIGTERM to this pytest process "
            in said), said[-3000:]
    assert "The test running: test_probe.py::test_meets_it. Sent from:" in said
    assert 'test_probe.py", line 10, in send_late' in said


def test_a_signal_the_process_handles_is_not_said(tmp_path: Path) -> None:
    done = _run(tmp_path, SENT_WITH_A_HANDLER, "-p", "tests.self_signals")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests/self_signals.py" not in done.stdout + done.stderr


def test_without_the_plugin_nothing_says_who_sent_it(tmp_path: Path) -> None:
    """What the plugin adds is not there without it (so the first test can fail)."""
    done = _run(tmp_path, SENT_LATE)
    assert "worker 'gw0' crashed while running 'test_probe.py::test_meets_it'" in done.stdout
    assert "late-sender" not in done.stdout + done.stderr
