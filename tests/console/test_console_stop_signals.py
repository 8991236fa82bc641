"""``appliance console`` stops in order on Ctrl-C and on SIGTERM, exit 0, as the other servers.

uvicorn, run on the main thread, took both signals itself and raised them again once it had
stopped: Ctrl-C ended the console with 130 and SIGTERM with 143 (a one-shot command's codes),
where ``backoffice`` and ``pathology serve`` say 'received SIGTERM; stopping' and exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from appliance.backoffice.store import open_store
from appliance.console.server import listening_socket, serve_until_stopped
from appliance.transport.broker import free_port, port_open


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_ends_the_console_in_order_with_exit_0(
    stop_signal: signal.Signals, tmp_path: Path
) -> None:
    """SIGHUP (its terminal closed, an ssh connection lost) killed it where it stood."""
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


def test_a_second_stop_signal_ends_the_requests_the_console_still_answers() -> None:
    """A first stop lets the requests being answered finish; a second ends them at once, as
    uvicorn's own handlers did when it ran on the main thread."""
    answering = threading.Event()

    async def never_answers(scope: dict[str, Any], receive: Any, send: Any) -> None:
        answering.set()
        await asyncio.Event().wait()

    server = uvicorn.Server(uvicorn.Config(never_answers, log_level="warning", lifespan="off"))
    listener = listening_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    stop, received = threading.Event(), list[int]()
    serving = threading.Thread(target=serve_until_stopped,
                               args=(server, listener, stop, received), daemon=True)
    serving.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    asking = socket.create_connection(("127.0.0.1", port), timeout=60)
    asking.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answering.wait(60)
    received.append(signal.SIGTERM)
    stop.set()
    serving.join(2)
    assert serving.is_alive()  # the request is never answered: it waits for it
    received.append(signal.SIGTERM)
    serving.join(60)
    assert not serving.is_alive()
    asking.close()
    listener.close()
