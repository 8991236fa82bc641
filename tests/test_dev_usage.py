"""``./dev`` with a mistyped or missing command says its usage at once, exit 2, before any of
its set-up: no system package installed, no virtual environment made, no pip run (on a fresh
clone that set-up takes minutes, and ``./dev demoo`` used to sit through it first)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECORDER = "#!/bin/sh\necho \"$0 $*\" >> \"$DEV_CALLS\"\nexit 1\n"


def _stub(folder: Path, name: str) -> Path:
    """An executable ``name`` in ``folder`` that records its call and fails."""
    path = folder / name
    path.write_text(RECORDER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("words", [["demoo"], ["tset", "-x"], []])
def test_a_wrong_command_is_refused_before_any_set_up(tmp_path: Path, words: list[str]) -> None:
    clone, stubs = tmp_path / "clone", tmp_path / "stubs"
    clone.mkdir()
    stubs.mkdir()
    shutil.copy2(REPO / "dev", clone / "dev")
    for name in ("apt-get", "pip"):
        _stub(stubs, name)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{stubs}:/usr/bin:/bin", "DEV_CALLS": str(calls),
           "PYTHON": str(_stub(stubs, "python3"))}
    done = subprocess.run([str(clone / "dev"), *words], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "usage: ./dev demo | ./dev test [pytest args]\n"
    assert not calls.exists(), calls.read_text()
    assert not (clone / ".venv").exists()
