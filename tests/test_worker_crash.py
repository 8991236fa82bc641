"""tests/worker_crash.py: a pytest-xdist worker that dies is reported with how its process
ended, not only with "crashed while running"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

DIES = '''
import ctypes, os, signal

def test_dies():
    {how}
'''


def _run(tmp_path: Path, how: str, *plugin: str) -> str:
    """pytest -n 1 on one test that ends its worker ``how``; what the controller printed."""
    (tmp_path / "test_probe.py").write_text(DIES.format(how=how))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1",
         "--rootdir", str(tmp_path), *plugin, str(tmp_path / "test_probe.py")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "worker 'gw0' crashed while running 'test_probe.py::test_dies'" in done.stdout
    return done.stdout


@pytest.mark.parametrize(("how", "said"), [
    ("os.kill(os.getpid(), signal.SIGTERM)", "was killed by SIGTERM (its default action: "),
    ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by SIGKILL (kill -9, or the kernel's "),
    ("ctypes.pythonapi.Py_FatalError(b'probe')",  # as the fuzz test's worker died
     "was killed by SIGABRT (an abort: faulthandler's traceback is in the run's stderr, but "),
    ("os._exit(3)", "exited with status 3 (os._exit, "),
], ids=["sigterm", "sigkill", "fatal-python-error", "os-exit"])
def test_a_dead_worker_is_reported_with_how_its_process_ended(
        tmp_path: Path, how: str, said: str) -> None:
    out = _run(tmp_path, how, "-p", "tests.worker_crash")
    assert "crashed while running 'test_probe.py::test_dies': its process (pid " in out
    assert said in out


def test_without_the_plugin_the_report_does_not_say(tmp_path: Path) -> None:
    """What the plugin adds is not there without it (so the test above can fail)."""
    out = _run(tmp_path, "os.kill(os.getpid(), signal.SIGTERM)")
    assert "SIGTERM" not in out
