"""``./dev demo`` (the README's first command) runs the demo and nothing else first: no config
check of a broker and state folder the demo does not use; ``--throwaway`` keeps nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_dev_demo_starts_with_the_demo_itself() -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("APPLIANCE__")}
    done = subprocess.run(
        [str(REPO / "dev"), "demo", "--throwaway", "--devices", "1", "--count", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("demo: mosquitto on 127.0.0.1:")
    assert "config.yaml: ok" not in done.stdout
    assert "1 result(s) stored" in done.stdout
    assert "throw-away run; its store was deleted" in done.stdout
