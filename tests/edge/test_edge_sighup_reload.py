"""The edge daemon still takes SIGHUP as "read the config again" (deploy/appliance-edge.service:
``ExecReload=/bin/kill -HUP $MAINPID``), where the services stop on it: the running
``appliance edge`` reloads and runs on, and stops on SIGTERM afterwards, exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from appliance.edge.testing import wait_until
from appliance.transport.broker import free_port

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # what the child may take to start, reload or stop under a busy machine


def test_sighup_reloads_the_running_edge_daemon_and_does_not_stop_it(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump({
        "device": {"id": "kiosk-hangup", "site": "lab"}, "camera": {"source": "synthetic"},
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "sighup-edge"},
        "state_dir": str(tmp_path / "state"), "screen": {"port": free_port()}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE__")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    child = subprocess.Popen([sys.executable, "-m", "appliance", "edge", "--config",
                              str(config)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stderr or ()), daemon=True)
    reader.start()

    def said(words: str) -> bool:
        return any(words in line for line in list(lines))

    try:
        assert wait_until(lambda: said("edge daemon running"), WAIT_S), lines
        child.send_signal(signal.SIGHUP)
        assert wait_until(lambda: said(f"config reloaded from {config}"), WAIT_S), lines
        assert child.poll() is None, lines
        child.send_signal(signal.SIGTERM)
        child.wait(WAIT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(WAIT_S)
        reader.join(WAIT_S)
    assert child.returncode == 0, "".join(lines)
    assert not said("received SIGHUP")
