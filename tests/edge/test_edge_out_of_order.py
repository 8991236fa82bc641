"""The kiosk screen once the edge daemon is down for good: out of order, never "starting again".

The daemon serves the screen itself; when it stayed down (an exit systemd does not restart, a
restart loop) the page said "This kiosk is starting again" for as long as it did. Now systemd's
OnFailure= unit serves the page saying the kiosk is out of order and why (``appliance edge
--out-of-order``), and the page says so itself when nothing answers for minutes.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from appliance.browser import chromium_page
from appliance.edge import screen_server
from appliance.edge.out_of_order import configured_language, failure_detail
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_server import ScreenServer
from appliance.edge.screen_state import ScreenState
from appliance.edge.testing import wait_until
from appliance.transport.broker import free_port

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = json.loads((REPO / "appliance/edge/screen_static/messages.json").read_text())


@pytest.mark.parametrize(("environ", "key"), [
    ({"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_CODE": "exited",
      "MONITOR_EXIT_STATUS": "2"}, "down_config"),
    ({"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_CODE": "exited",
      "MONITOR_EXIT_STATUS": "3"}, "down_credentials"),
    ({"MONITOR_SERVICE_RESULT": "start-limit-hit", "MONITOR_EXIT_CODE": "exited",
      "MONITOR_EXIT_STATUS": "1"}, "down_failed"),
    ({"MONITOR_SERVICE_RESULT": "watchdog", "MONITOR_EXIT_CODE": "killed",
      "MONITOR_EXIT_STATUS": "ABRT"}, "down_failed"),
    ({}, "down_failed"),
])
def test_why_the_daemon_is_down_is_told_in_systemds_words(environ: dict[str, str],
                                                         key: str) -> None:
    detail = failure_detail(environ)
    assert detail["key"] == key
    assert detail["status"] == environ.get("MONITOR_EXIT_STATUS", "unknown")
    for language in ("en", "ja"):
        assert key in CATALOGUE[language]
        assert "guide_out_of_order" in CATALOGUE[language]


def get_state(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5) as reply:
        state: dict[str, Any] = json.loads(reply.read())
    return state


def answers(port: int) -> bool:
    try:
        get_state(port)
    except OSError:
        return False
    return True


@pytest.fixture
def out_of_order(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``appliance edge --out-of-order`` as systemd's OnFailure= starts it after an exit 2."""
    port = free_port()
    environ = {**os.environ, "PYTHONPATH": str(REPO), "MONITOR_SERVICE_RESULT": "exit-code",
               "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "2"}
    command = [sys.executable, "-m", "appliance", "edge", "--out-of-order", "--screen-port",
               str(port)]
    process = subprocess.Popen(command, env=environ, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: answers(port), 30, poll_s=0.1)
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


def test_the_out_of_order_screen_says_why_and_stops_on_sigterm(
    out_of_order: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, process = out_of_order
    state = get_state(port)
    assert state["guidance"] == "guide_out_of_order"
    assert state["staff"] == "ask"
    assert state["detail"] == {"key": "down_config", "result": "exit-code", "code": "exited",
                               "status": "2"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert process.stderr is not None
    said = process.stderr.read().decode()
    assert "the edge daemon is down for good (systemd: exit-code, exited, status 2)" in said


def test_the_out_of_order_screen_stops_in_order_when_its_terminal_closes(
    out_of_order: tuple[int, subprocess.Popen[bytes]],
) -> None:
    """Run by hand in a terminal (systemd sends it no SIGHUP: its unit has no ExecReload),
    SIGHUP killed it where it stood; it stops as on SIGTERM."""
    port, process = out_of_order
    process.send_signal(signal.SIGHUP)
    assert process.wait(15) == 0
    assert process.stderr is not None
    assert "received SIGHUP; stopping" in process.stderr.read().decode()
    assert not answers(port)


@pytest.mark.parametrize(("config", "language", "warned"), [
    ("screen:\n  port: 8090\n  language: en\n", "en", ""),
    # the config the daemon refused (an unknown key, a bad port): its language still holds
    ("mqtt:\n  prot: 1883\nscreen:\n  port: -1\n  language: en\n", "en", ""),
    ("screen:\n  language: ja\n", "ja", ""),
    ("screen:\n  port: 8090\n", "ja", ""),  # what the screen itself starts in
    ("screen:\n  language: fr\n", "ja", "'fr', not one of ja, en"),
    ("screen: [en]\n", "ja", ""),
    ("screen:\n  language: en\n  port: [8090\n", "ja", "broken YAML at line"),
])
def test_the_out_of_order_screen_starts_in_the_kiosk_s_configured_language(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: str, language: str, warned: str,
) -> None:
    """It started in Japanese whatever the kiosk's screen.language: it read no config."""
    path = tmp_path / "config.yaml"
    path.write_text(config)
    assert configured_language(path, {}) == language
    said = " ".join(record.getMessage() for record in caplog.records)
    if warned:
        assert "the out-of-order screen starts in ja (screen.language's default)" in said
        assert warned in said
    else:
        assert not said


def test_without_its_config_the_out_of_order_screen_says_it_starts_in_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    assert configured_language(tmp_path / "gone.yaml", {}) == "ja"
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "starts in ja (screen.language's default): its config was not read" in said
    assert "gone.yaml: config file not found" in said


def test_the_screen_s_language_override_holds_for_the_out_of_order_screen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("screen:\n  language: ja\n")
    assert configured_language(path, {"APPLIANCE__SCREEN__LANGUAGE": "en"}) == "en"
    assert configured_language(path, {"APPLIANCE__SCREEN__LANGUAGE": "de"}) == "ja"
    assert "APPLIANCE__SCREEN__LANGUAGE is 'de'" in caplog.text


def test_appliance_edge_out_of_order_serves_the_config_s_language(tmp_path: Path) -> None:
    """The command the out-of-order unit runs, with the kiosk's config (refused by the daemon:
    an unknown key) naming English: the page's state starts in English."""
    config = tmp_path / "config.yaml"
    config.write_text("mqtt:\n  prot: 1883\nscreen:\n  language: en\n")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "appliance", "edge", "--out-of-order",
                                "--config", str(config), "--screen-port", str(port)],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    try:
        assert wait_until(lambda: answers(port), 30, poll_s=0.1)
        state = get_state(port)
        assert state["language"] == "en"
        assert state["guidance"] == "guide_out_of_order"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


class StandInDaemon:
    """The daemon's screen server on a fresh state, on ``port``: what the page first shows."""

    def __init__(self, port: int, folder: Path) -> None:
        state = ScreenState(burst_frames=5, idle_s=60.0, language="en")
        self.server = ScreenServer(port, state, PreviewFeed(640), folder, 15.0)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page(1280, 800) as opened:
        yield opened


def test_a_page_whose_daemon_failed_for_good_says_out_of_order_and_why(
    tmp_path: Path, page: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(screen_server, "KEEPALIVE_S", 0.5)  # a dead daemon's stream ends soon
    port = free_port()
    daemon = StandInDaemon(port, tmp_path)
    try:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")  # no preview
        expect(page.locator("body")).to_have_attribute("data-phase", "welcome")
        # the words come from /messages.json, fetched beside the event stream: a daemon gone
        # before they arrive leaves the page without words (it failed so 1 run in 5 here); and
        # the daemon's first event sets the language (before it, the page's own: Japanese; a
        # loaded CI run at -n 4 stopped the daemon before it, and the page stayed blank)
        assert wait_until(lambda: page.evaluate("Object.keys(messages).length > 0"), 15)
        assert wait_until(lambda: page.evaluate("state !== null"), 15)
    finally:
        daemon.stop()  # exit 2: systemd does not restart it, and starts the unit below
    expect(page.locator("#guidance")).to_have_text(CATALOGUE["en"]["guide_kiosk_away"],
                                                   timeout=15_000)
    environ = {**os.environ, "PYTHONPATH": str(REPO), "MONITOR_SERVICE_RESULT": "exit-code",
               "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "appliance", "edge", "--out-of-order",
                                "--screen-port", str(port)], env=environ, cwd=tmp_path)
    try:
        expect(page.locator("#guidance")).to_have_text(  # no config.yaml: the default language
            CATALOGUE["ja"]["guide_out_of_order"] + CATALOGUE["ja"]["staff_ask"], timeout=30_000)
        page.locator("#lang-en").click()
        expect(page.locator("#guidance")).to_have_text(
            CATALOGUE["en"]["guide_out_of_order"] + " " + CATALOGUE["en"]["staff_ask"])
        detail = page.locator("#staff-detail")
        expect(detail).to_contain_text("its configuration or model was refused")
        expect(detail).to_contain_text("(systemd: exit-code, exited, status 2)")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def test_a_page_whose_daemon_never_comes_back_says_out_of_order_not_starting_again(
    tmp_path: Path, page: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing serves the page any more (a restart loop that never serves it, no out-of-order
    unit): after minutes the page says the kiosk is out of order and asks for staff."""
    monkeypatch.setattr(screen_server, "KEEPALIVE_S", 0.5)
    port = free_port()
    page.clock.install()
    daemon = StandInDaemon(port, tmp_path)
    try:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")  # no preview
        expect(page.locator("body")).to_have_attribute("data-phase", "welcome")
        # the words come from /messages.json, fetched beside the event stream: a daemon gone
        # before they arrive leaves the page without words (it failed so 1 run in 5 here); and
        # the daemon's first event sets the language (before it, the page's own: Japanese; a
        # loaded CI run at -n 4 stopped the daemon before it, and the page stayed blank)
        assert wait_until(lambda: page.evaluate("Object.keys(messages).length > 0"), 15)
        assert wait_until(lambda: page.evaluate("state !== null"), 15)
    finally:
        daemon.stop()
    assert wait_until(lambda: page.evaluate("lost"), 15)  # the stream dropped
    page.clock.run_for(6_000)
    expect(page.locator("#guidance")).to_have_text(CATALOGUE["en"]["guide_kiosk_away"])
    page.clock.run_for(10 * 60_000)
    expect(page.locator("#guidance")).to_have_text(
        CATALOGUE["en"]["guide_out_of_order"] + " " + CATALOGUE["en"]["staff_ask"])
    expect(page.locator("#staff-detail")).to_have_text(CATALOGUE["en"]["down_unreachable"])


def test_a_page_that_could_not_fetch_its_words_asks_again(
    tmp_path: Path, page: Any,
) -> None:
    """The daemon went away while the page was fetching /messages.json: once it answers again
    the page has its words and its buttons, without a reload."""
    port = free_port()
    daemon = StandInDaemon(port, tmp_path)
    try:
        page.route("**/messages.json", lambda route: route.abort())
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")  # no preview
        expect(page.locator("body")).to_have_attribute("data-phase", "welcome")
        assert page.evaluate("Object.keys(messages).length") == 0
        expect(page.locator("#bands button")).to_have_count(0)
        page.unroute("**/messages.json")
        expect(page.locator("#bands button")).to_have_count(9, timeout=10_000)
        assert wait_until(lambda: page.evaluate("Object.keys(messages).length > 0"), 10)
        page.locator("#lang-en").click()
        expect(page.locator('#bands button[data-msg="age_none"]')).to_have_text(
            CATALOGUE["en"]["age_none"])
    finally:
        daemon.stop()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the base's names
        pass


def test_a_page_whose_daemon_is_gone_before_its_first_event_says_the_kiosk_is_away(
    page: Any,
) -> None:
    """The page's files served, but no daemon behind them (it went before the page heard its
    first event: a crash at once, a restart loop): the page stayed blank for good, as what it
    shows while the daemon is away was built on a state it never had. It says the kiosk is
    starting again, in the page's own language (it heard no other)."""
    handler = functools.partial(_QuietFiles, directory=str(REPO / "appliance/edge/screen_static"))
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=files.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{files.server_address[1]}/", wait_until="domcontentloaded")
        expect(page.locator("#guidance")).to_have_text(CATALOGUE["ja"]["guide_kiosk_away"],
                                                       timeout=15_000)
        assert page.evaluate("document.body.dataset.phase") == "guiding"
    finally:
        files.shutdown()
        files.server_close()
        thread.join(5)
