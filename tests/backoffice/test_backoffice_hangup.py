"""`appliance backoffice` run in a terminal stops in order when the terminal closes (SIGHUP), as
it does on Ctrl-C and SIGTERM: its stop line, exit 0. SIGHUP's default action killed it where
it stood, without its stop (nothing lost: it acknowledges only what it committed). The worker
runs in a child against a private mosquitto on a free port, on a topic prefix of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import yaml

from appliance.edge.testing import wait_until
from appliance.transport.broker import PrivateBroker

REPO = Path(__file__).resolve().parents[2]
EXIT_S = 60.0  # what the child may take to start or stop under a busy machine


def test_the_back_office_stops_in_order_when_its_terminal_closes(
    private_broker: PrivateBroker, tmp_path: Path,
) -> None:
    client_id = f"bo-hangup-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "backoffice.yaml"
    config.write_text(yaml.safe_dump({
        "mqtt": {"port": private_broker.port, "topic_prefix": "sighup-bo"},
        "state_dir": str(tmp_path / "state"), "backoffice": {"client_id": client_id}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE__")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    child = subprocess.Popen([sys.executable, "-m", "appliance", "backoffice", "--config",
                              str(config)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stderr or ()), daemon=True)
    reader.start()
    joined = f"{client_id} connected to 127.0.0.1:{private_broker.port}"
    try:
        assert wait_until(lambda: any(joined in line for line in list(lines)), EXIT_S), lines
        child.send_signal(signal.SIGHUP)
        child.wait(EXIT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(EXIT_S)
        reader.join(EXIT_S)
    said = "".join(lines)
    assert child.returncode == 0, said
    assert "received SIGHUP; stopping" in said
    assert "stopped; ingest:" in said
