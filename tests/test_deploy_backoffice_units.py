"""The back office's units beside its workers': the console, the model repository's server
(``models repo serve``) and the timer and service of ``models repo refresh``: hardened as the
workers' unit (the refresh as root without a capability: the repository's keys are root's),
the timer well inside the timestamp's validity, and each program run under its unit's system
call filters as systemd loads them (tests/unit_syscalls.py), without a capability (as root:
this host's python lies in /root, which no other user may enter, so the units' user cannot be
stood in for here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance.backoffice.storeurl import DEFAULT_SQLITE_NAME
from appliance.updates.defaults import DEFAULT_EXPIRY_S
from tests.console.console_helpers import free_port
from tests.test_deploy_units import DEPLOY, HARDENING, analyze, local_copy, service_settings

CONSOLE = "appliance-console.service"
REPO_SERVER = "appliance-models-repo.service"
REFRESH = "appliance-models-refresh.service"
TIMER = "appliance-models-refresh.timer"
REPOSITORY = "/srv/models"  # where the units serve and sign (README "Updating models")


@pytest.mark.parametrize("source", [CONSOLE, REPO_SERVER])
def test_the_console_and_the_repository_server_are_hardened_as_the_workers(source: str) -> None:
    worker = service_settings("appliance-backoffice@.service")
    settings = service_settings(source)
    for name in (*HARDENING, "User", "Group", "Restart", "LimitNOFILE"):
        assert settings.get(name) == worker.get(name), (source, name)


def test_the_refresh_and_its_timer_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    service = local_copy(tmp_path, REFRESH, REFRESH)
    timer = local_copy(tmp_path, TIMER, TIMER)
    done = analyze("verify", str(timer), str(service))
    assert done.returncode == 0, done.stderr
    assert [line for line in (done.stdout + done.stderr).splitlines()
            if REFRESH in line or TIMER in line] == []


def test_the_refresh_runs_as_root_without_a_capability_writing_the_repository_only(
    tmp_path: Path,
) -> None:
    """Root because `models repo init` (as root) leaves the keys root's and 0600; with no
    capability that root reads and writes only root's files, and of those only the
    repository's are writable; no network."""
    settings = service_settings(REFRESH)
    assert settings["User"] == ["root"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["AmbientCapabilities"] == [""]
    assert settings["ReadWritePaths"] == [REPOSITORY]
    assert settings["ExecStart"][0].endswith(f"models repo refresh {REPOSITORY}")
    assert service_settings(REPO_SERVER)["ExecStart"][0].split()[4] == REPOSITORY
    assert settings["PrivateNetwork"] == ["yes"]
    unit = local_copy(tmp_path, REFRESH, REFRESH)
    done = analyze("security", "--offline=true", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout[-500:] + done.stderr[-500:]
    assert float(found.group(1)) <= 1.0


def seconds(timespan: str) -> float:
    """A systemd time span (``1h``, ``30min``) in seconds, as systemd reads it."""
    done = analyze("timespan", timespan)
    found = re.search(r"μs: (\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return int(found.group(1)) / 1e6


def test_the_timer_refreshes_well_inside_the_timestamp_s_validity() -> None:
    """docs/model-updates.md: the timestamp expires a day after it is signed; the timer runs
    the refresh at least four times within that, and first soon after it starts (at boot)."""
    timer = service_settings(TIMER, "Timer")
    (every,) = timer["OnUnitActiveSec"]
    (delay,) = timer.get("RandomizedDelaySec", ["0"])
    assert seconds(every) + seconds(delay) <= DEFAULT_EXPIRY_S["timestamp"] / 4
    (first,) = timer["OnActiveSec"]
    assert seconds(first) <= 600
    assert service_settings(TIMER, "Install")["WantedBy"] == ["timers.target"]
    assert service_settings(REFRESH, "Install") == {}  # the timer starts it, never boot


NO_CAPABILITY = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]  # root: none at exec


def confined(unit: str, *command: str) -> list[str]:
    """``command`` (an appliance command) under the unit's filters, without a capability."""
    return [*NO_CAPABILITY, sys.executable, "-m", "tests.unit_syscalls", str(DEPLOY / unit),
            "--", sys.executable, "-m", "appliance", *command]


def appliance(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *command], capture_output=True,
                          text=True, check=False, timeout=120, cwd=DEPLOY.parent)


def test_the_refresh_signs_under_its_unit_s_filters_as_root_without_capabilities(
    tmp_path: Path,
) -> None:
    """The keys are root's, 0600: root without CAP_DAC_OVERRIDE reads them as their owner."""
    repository = tmp_path / "models"
    made = appliance("models", "repo", "init", str(repository))
    assert made.returncode == 0, made.stderr
    done = subprocess.run(confined(REFRESH, "models", "repo", "refresh", str(repository)),
                          capture_output=True, text=True, check=False, timeout=120,
                          cwd=DEPLOY.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "timestamp version 2 signed" in done.stdout
    timestamp = json.loads((repository / "public/metadata/timestamp.json").read_text())
    assert timestamp["signed"]["version"] == 2
    assert "not permitted" not in done.stderr.lower()


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, as systemd stops a unit: the exit status and what it said."""
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=30)
    return process.returncode, err


def test_the_repository_server_serves_under_its_unit_s_filters(tmp_path: Path) -> None:
    """It serves a file of `repo init`'s, and SIGTERM stops it in order, exit 0 (143, as one-shot
    commands end, would show the unit failed after every `systemctl stop`)."""
    repository = tmp_path / "models"
    assert appliance("models", "repo", "init", str(repository)).returncode == 0
    port = free_port()
    server = subprocess.Popen(
        confined(REPO_SERVER, "models", "repo", "serve", str(repository), "--port", str(port)),
        cwd=DEPLOY.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert "serving" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}/metadata/timestamp.json"
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert json.loads(answer.read())["signed"]["_type"] == "timestamp"
    finally:
        code, said = stop(server)
    assert code == 0, said
    assert "not permitted" not in said.lower()


def login_page(port: int) -> tuple[int, bytes]:
    """The console's login page, once it takes connections (its socket is bound before it
    says where, and listens once its server thread runs)."""
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login",
                                        timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError):
                raise
            time.sleep(0.1)
    raise AssertionError(f"no console on port {port}")


def test_the_console_serves_under_its_unit_s_filters(tmp_path: Path) -> None:
    """Its login page, from its store in the state folder; SIGTERM ends it with 0."""
    state = tmp_path / "state"
    state.mkdir()
    port = free_port()
    environment = {**os.environ, "APPLIANCE__STATE_DIR": str(state),
                   "APPLIANCE__CONSOLE__PORT": str(port),
                   "APPLIANCE__PATHOLOGY__RESULTS_DIR": str(state / "pathology")}
    console = subprocess.Popen(confined(CONSOLE, "console"), cwd=DEPLOY.parent,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert console.stdout is not None
        assert f"console on http://127.0.0.1:{port}/" in console.stdout.readline()
        status, page = login_page(port)
        assert status == 200
        assert b"<form" in page
    finally:
        code, said = stop(console)
    assert code == 0, said[-3000:]
    assert "not permitted" not in said.lower()
    assert (state / DEFAULT_SQLITE_NAME).exists()  # its store, in the state folder it was given
