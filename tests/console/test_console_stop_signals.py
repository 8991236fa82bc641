"""``appliance console`` stops in order on Ctrl-C and on SIGTERM, exit 0, as the other servers.

uvicorn, run on the main thread, took both signals itself and raised them again once it had
stopped: Ctrl-C ended the console with 130 and SIGTERM with 143 (a one-shot command's codes),
where ``backoffice`` and ``pathology serve`` say 'received SIGTERM; stopping' and exit 0.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.backoffice.store import open_store
from appliance.transport.broker import free_port, port_open


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_the_console_in_order_with_exit_0(
    stop_signal: signal.Signals, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    open_store(url).close()
    port = free_port()
    (tmp_path / "backoffice.yaml").write_text(f"console:\n  port: {port}\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "appliance", "console", "--config", "backoffice.yaml", "--store",
         url], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()[0]
            time.sleep(0.1)
        assert port_open("127.0.0.1", port)
        server.send_signal(stop_signal)
        output = server.communicate(timeout=30)[0]
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, output
    assert f"received {stop_signal.name}; stopping" in output
    assert not port_open("127.0.0.1", port)


@pytest.mark.parametrize("words", [["user", "add", "x"], ["token", "list"],
                                   ["reference", "--out", "x.json"]])
def test_the_console_s_one_shot_actions_end_on_sigterm_as_other_commands(words: list[str]) -> None:
    """Only the server stops in order; its actions keep SIGTERM's exit 143 (cli.py)."""
    from appliance.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["console"]).own_stop_signals is True
    assert parser.parse_args(["console", *words]).own_stop_signals is False
