"""The kiosk screen's unit (cage + Chromium on the local display) is hardened as far as
Chromium allows, and Chromium shows a page, its sandbox in place, under the unit's filters.

cage needs a display and a seat, which this machine has not: only Chromium is run here
(headless), under the unit's system call, namespace and address family filters as systemd
loads them (tests/unit_syscalls.py), as an unprivileged user without capabilities.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.test_deploy_units import analyze, service_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = "appliance-kiosk-screen.service"
NOBODY = 65534
HARDENED = {  # what the unit sets (its comment says why each other setting is left out)
    "NoNewPrivileges": ["yes"], "CapabilityBoundingSet": [""], "AmbientCapabilities": [""],
    "ProtectSystem": ["full"], "PrivateTmp": ["yes"], "PrivateMounts": ["yes"],
    "RemoveIPC": ["yes"], "ProtectKernelTunables": ["yes"], "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"], "ProtectControlGroups": ["yes"], "ProtectHostname": ["yes"],
    "ProtectProc": ["invisible"],
    "RestrictAddressFamilies": ["AF_UNIX AF_NETLINK AF_INET AF_INET6"],
    "IPAddressDeny": ["any"], "IPAddressAllow": ["localhost"],
    "RestrictNamespaces": ["user pid net"], "RestrictRealtime": ["yes"],
    "RestrictSUIDSGID": ["yes"], "LockPersonality": ["yes"], "SystemCallArchitectures": ["native"],
    "SystemCallFilter": ["~@clock @cpu-emulation @debug @module @obsolete @raw-io @reboot @swap"],
    "SystemCallErrorNumber": ["EPERM"], "UMask": ["0077"],
}
# Chromium's JavaScript compiler, its sandbox's chroot and the display's devices
LEFT_OUT = ("MemoryDenyWriteExecute", "PrivateDevices", "DevicePolicy", "ProtectClock",
            "ProtectHome", "ProcSubset", "PrivateNetwork")
PAGE = (b"<!doctype html><p id=shown>loading</p>"
        b"<script>document.getElementById('shown').textContent = 'script ran'</script>")


def test_the_kiosk_screen_unit_is_hardened() -> None:
    """It had no hardening at all: exposure 9.2 ("UNSAFE")."""
    settings = service_settings(UNIT)
    for name, values in HARDENED.items():
        assert settings.get(name) == values, (name, settings.get(name))
    assert [name for name in LEFT_OUT if name in settings] == []


def test_the_kiosk_screen_unit_exposure_is_at_most_3(tmp_path: Path) -> None:
    """cage is installed on a kiosk only: a program that exists stands in for it."""
    stand_in = shutil.which("true")
    assert stand_in
    unit = tmp_path / UNIT
    unit.write_text((DEPLOY / UNIT).read_text().replace("/usr/bin/cage ", f"{stand_in} "))
    done = analyze("security", "--offline=true", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout[-500:] + done.stderr[-500:]
    print(f"{UNIT}: exposure {found.group(1)}")
    assert float(found.group(1)) <= 3.0


EDGE = "appliance-edge.service"
# systemd.unit(5): each of these starts the units it names whenever this unit starts
STARTS_THE_NAMED_UNIT = ("Wants", "Requires", "BindsTo", "Upholds")


def _named(settings: dict[str, list[str]], name: str) -> list[str]:
    """The units a dependency setting names, over all its lines."""
    return [unit for value in settings.get(name, []) for unit in value.split()]


def test_the_kiosk_screen_never_starts_the_edge_and_goes_with_it(tmp_path: Path) -> None:
    """It had Wants=appliance-edge.service and Restart=always: an edge stopped for maintenance
    was started again by the screen's next start (its restart, a start by hand, the boot),
    and stopping the edge left Chromium on a dead page. Now it runs only beside the edge:
    started without it, its start fails (Requisite=, ordered After=); the edge's stop and
    restart are its own (PartOf=); enabled, it starts with the edge (WantedBy=), which the
    offline `systemctl --root enable` shows by the link it makes."""
    unit = service_settings(UNIT, "Unit")
    assert [name for name in STARTS_THE_NAMED_UNIT if EDGE in _named(unit, name)] == []
    assert EDGE in _named(unit, "Requisite")
    assert EDGE in _named(unit, "PartOf")
    assert EDGE in _named(unit, "After")
    assert service_settings(UNIT, "Install") == {"WantedBy": [EDGE]}
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for name in (UNIT, EDGE):
        shutil.copy(DEPLOY / name, units / name)
    tool = shutil.which("systemctl")
    assert tool, "systemctl missing: apt-get install systemd (./dev installs it)"
    enabled = subprocess.run([tool, f"--root={tmp_path}", "enable", UNIT], capture_output=True,
                             text=True, check=False, timeout=60)
    assert enabled.returncode == 0, enabled.stderr
    links = sorted(str(link.relative_to(units)) for link in units.rglob("*") if link.is_symlink())
    assert links == [f"{EDGE}.wants/{UNIT}"]


class _Page(BaseHTTPRequestHandler):
    """PAGE, whatever the path."""

    def do_GET(self) -> None:
        """The page and its length."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *_: object) -> None:
        """Quiet: the test reads Chromium's output, not the server's."""


@pytest.fixture
def loopback_page() -> Iterator[str]:
    """A page with a script, served on 127.0.0.1 as the edge daemon serves the screen."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser_home() -> Iterator[Path]:
    """Chromium's home folder, reachable by the user it runs as (pytest's own temporary
    folders are its user's alone)."""
    home = Path(tempfile.mkdtemp(prefix="kiosk-screen-home-"))
    try:
        yield home
    finally:
        shutil.rmtree(home)


def chromium_command(home: Path, url: str) -> list[str]:
    """The unit's Chromium with its own flags, headless (no display here) on ``url``; run as
    an unprivileged user without capabilities when this test runs as root (Chromium refuses
    to sandbox itself as root)."""
    (words,) = service_settings(UNIT)["ExecStart"]
    chromium = shlex.split(words)
    chromium = chromium[chromium.index("--") + 1:]
    assert Path(chromium[0]).exists(), f"{chromium[0]} missing: ./dev installs chromium"
    flags = [flag for flag in chromium[1:] if not flag.startswith(("--app=", "--kiosk"))]
    as_user: list[str] = []
    if os.geteuid() == 0:
        os.chown(home, NOBODY, NOBODY)
        as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                   "--bounding-set=-all", "--inh-caps=-all"]
    return [*as_user, chromium[0], *flags, "--headless", "--disable-gpu",
            f"--user-data-dir={home / 'profile'}", "--dump-dom", url]


def run(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120,
                          cwd=DEPLOY.parent, env={**os.environ, "HOME": str(home)})


def test_chromium_shows_the_page_sandboxed_under_the_kiosk_screen_units_filters(
    browser_home: Path, loopback_page: str,
) -> None:
    """Without user, pid or net namespaces Chromium said "No usable sandbox!" or its zygote
    died, under @system-service its sandbox's chroot was refused, under
    MemoryDenyWriteExecute=yes it crashed: each of those would fail here."""
    command = chromium_command(browser_home, loopback_page)
    confined = run([sys.executable, "-m", "tests.unit_syscalls", str(DEPLOY / UNIT), "--",
                    *command], browser_home)
    if "script ran" not in confined.stdout:
        unconfined = run(command, browser_home)
        if "No usable sandbox" in unconfined.stderr:
            pytest.skip("this host gives Chromium no sandbox (no user namespaces for this user)")
    assert "script ran" in confined.stdout, confined.stderr[-3000:]
