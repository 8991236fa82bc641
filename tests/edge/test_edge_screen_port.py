"""A kiosk screen port another program holds: the kiosk goes on without its screen, and says
how to give it one."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from appliance.config import config_from_mapping
from appliance.edge.kiosk import KioskDisplay


def test_a_screen_port_in_use_is_said_with_the_setting_that_moves_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before, the log said only "cannot listen on 127.0.0.1:PORT: [Errno 98] Address already
    in use", where the console's refusal names console.port and its variable."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = config_from_mapping({"screen": {"port": port}}, "test", environ={})
        display = KioskDisplay(config.screen, config.edge.burst_frames, tmp_path)
        with caplog.at_level(logging.ERROR, logger="appliance.edge.kiosk"):
            display.start()
        display.stop()
    assert display.server is None
    said = caplog.text
    assert f"cannot listen on 127.0.0.1:{port}" in said
    assert "screen.port" in said
    assert f"APPLIANCE__SCREEN__PORT={port + 1}" in said
    assert "without it" in said
