"""tests/report_text.py: a passing test that logs a name which is not UTF-8 does not stop a
run under pytest-xdist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LOGS_A_SURROGATE = '''
import logging, os

def test_logs_a_file_name_that_is_not_utf8():
    logging.getLogger("probe").warning("no device at %s", os.fsdecode(b"/dev/gpu\\xff"))
'''


def _run(tmp_path: Path, *plugin: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(LOGS_A_SURROGATE)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1",
         "--rootdir", str(tmp_path), *plugin, str(tmp_path / "test_probe.py")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_a_surrogate_in_a_captured_log_does_not_stop_an_xdist_run(tmp_path: Path) -> None:
    done = _run(tmp_path, "-p", "tests.report_text")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    assert "INTERNALERROR" not in done.stdout + done.stderr


def test_without_the_plugin_such_a_run_stops() -> None:
    """The failure the plugin is for still happens without it (so the test above can fail)."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        done = _run(Path(folder))
    assert "utf-8 encodable" in done.stdout + done.stderr  # the exit status varies: 0 or 3
    assert "1 passed" not in done.stdout
