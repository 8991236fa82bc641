"""The commands with their own stop handlers (``demo``, ``backoffice``, ``pathology serve``,
``edge``, and the test kiosks' ``run_daemon``) put back the handlers they found when they end.
They left theirs in place: a library caller of ``cli.main([...])`` (and the test process) was
left with a Ctrl-C that only set an Event nobody waited on any more."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml

from appliance.backoffice import demo, service
from appliance.cli import main
from appliance.edge import service as edge_service
from appliance.edge import testing
from appliance.pathology import service_main

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _callers_handler(signum: int, frame: FrameType | None) -> None:
    """The handler of the program that calls ``main`` (never called here)."""


class Handlers:
    """What handled the stop signals (and SIGHUP) while the command ran."""

    def __init__(self) -> None:
        self.while_running: dict[int, Any] = {}

    def note(self, *signals: int) -> None:
        self.while_running = {signum: signal.getsignal(signum) for signum in signals}

    def noted(self, *args: object, **kwargs: object) -> int:
        """A stand-in for the command's run: notes the stop handlers, then ends it with 0."""
        self.note(*STOP_SIGNALS)
        return 0


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    """The caller's own handler on SIGINT, SIGTERM and SIGHUP for the test; Python's back after."""
    before = {signum: signal.signal(signum, _callers_handler)
              for signum in (*STOP_SIGNALS, signal.SIGHUP)}
    yield Handlers()
    for signum, handler in before.items():
        signal.signal(signum, handler)


def _assert_put_back(handlers: Handlers, *signals: int) -> None:
    """The command had its own handler on each of ``signals`` and the caller's is back."""
    assert set(handlers.while_running) == set(signals)
    for signum in signals:
        assert handlers.while_running[signum] is not _callers_handler
        assert signal.getsignal(signum) is _callers_handler, signal.Signals(signum).name


def _config(tmp_path: Path, **settings: object) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "mqtt": {"port": 1},
                                    **settings}))
    return str(path)


def test_the_demo_puts_back_the_stop_handlers_it_found(
        handlers: Handlers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "run_demo", handlers.noted)
    assert main(["demo", "--devices", "1", "--count", "1", "--throwaway"]) == 0
    _assert_put_back(handlers, *STOP_SIGNALS)


def test_the_back_office_puts_back_the_stop_handlers_it_found(
        handlers: Handlers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(service, "run_backoffice", handlers.noted)
    assert main(["backoffice", "--config", _config(tmp_path)]) == 0
    _assert_put_back(handlers, *STOP_SIGNALS)


def test_the_pathology_server_puts_back_the_stop_handlers_it_found(
        handlers: Handlers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(service_main, "run_server", handlers.noted)
    assert main(["pathology", "serve", "--config", _config(tmp_path)]) == 0
    _assert_put_back(handlers, *STOP_SIGNALS)


def test_the_edge_puts_back_the_stop_and_reload_handlers_it_found(
        handlers: Handlers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """It ends at its state_dir, a file: a config error once its handlers are in place."""
    (tmp_path / "state").write_text("")
    monkeypatch.setattr(edge_service, "keep_frame_buffers",
                        lambda: handlers.note(*STOP_SIGNALS, signal.SIGHUP))
    with caplog.at_level(logging.INFO):  # the edge sets the root logger's level: put back
        assert main(["edge", "--config", _config(tmp_path)]) == 2
    assert "is a file, not a folder" in caplog.text
    _assert_put_back(handlers, *STOP_SIGNALS, signal.SIGHUP)


def test_a_test_kiosk_puts_back_the_stop_and_reload_handlers_it_found(
        handlers: Handlers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its daemon cannot be built (exit 2); the process is not ended here, whatever threads
    other tests left running."""

    def not_built(*args: object) -> Any:
        handlers.note(*STOP_SIGNALS, signal.SIGHUP)
        raise ValueError("no daemon in this test")

    monkeypatch.setattr(testing, "exit_code_after_stop", lambda code: code)
    assert testing.run_daemon(_config(tmp_path), not_built) == 2
    _assert_put_back(handlers, *STOP_SIGNALS, signal.SIGHUP)
