"""The systemd units: ``systemd-analyze verify`` passes (the kiosk screen's too), the exposure
scores stay low, the daemons' units are hardened alike, and each sets a file descriptor limit
above what its bounded servers may hold.

The units name the installed program (/opt/appliance/venv/bin/appliance); here that path is
replaced by this checkout's own ``appliance`` (the same program) so verify can check it.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from annotated_types import Le

from appliance import metricshttp
from appliance.config.pathology import PathologyConfig
from appliance.console import server as console_server
from appliance.console.db import StorePool
from appliance.edge import screen_server
from appliance.pathology import jobstore, server
from appliance.updates import defaults as update_defaults

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTALLED = "/opt/appliance/venv/bin/appliance"
UNITS = {  # file in deploy/ -> (name to verify it under, highest exposure allowed)
    "appliance-edge.service": ("appliance-edge.service", 2.0),
    "appliance-backoffice@.service": ("appliance-backoffice@backoffice-1.service", 2.0),
    # the GPU needs its device nodes, PyTorch's CPU convolutions writable executable memory
    "appliance-pathology@.service": ("appliance-pathology@0.service", 2.0),
    "appliance-console.service": ("appliance-console.service", 2.0),
    "appliance-models-repo.service": ("appliance-models-repo.service", 2.0),
}


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: apt-get install systemd (./dev installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False, timeout=60)


def local_copy(tmp_path: Path, source: str, name: str) -> Path:
    program = Path(sys.executable).parent / "appliance"
    assert program.exists(), program
    text = (DEPLOY / source).read_text().replace(INSTALLED, str(program))
    target = tmp_path / name
    target.write_text(text)
    return target


@pytest.mark.parametrize("source", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, source: str) -> None:
    unit = local_copy(tmp_path, source, UNITS[source][0])
    done = analyze("verify", str(unit))
    problems = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0, done.stderr
    assert problems == []


@pytest.mark.parametrize("source", sorted(UNITS))
def test_unit_exposure_is_at_most_its_limit(tmp_path: Path, source: str) -> None:
    name, limit = UNITS[source]
    unit = local_copy(tmp_path, source, name)
    done = analyze("security", "--offline=true", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout[-500:] + done.stderr[-500:]
    print(f"{name}: exposure {found.group(1)}")
    assert float(found.group(1)) <= limit


# The descriptors a quiet daemon holds, with room to spare: measured 17 for the edge daemon
# (outbox, lock, log, broker socket, listeners), 10 for the back office (the SQLite store's
# three files, the broker socket); a microscope, a model update or a PostgreSQL store add a few.
HELD_WHEN_QUIET = 64
# measured: 8 workers took 26 descriptors, the fork server's 2 included
PIPES_PER_PREPARATION_WORKER = 3
STORE_CONNECTIONS = inspect.signature(StorePool).parameters["size"].default
MOST_PREPARATION_WORKERS = next(rule.le for rule in PathologyConfig.model_fields[
    "prepare_workers"].metadata if isinstance(rule, Le))
WORST_CASE = {  # file in deploy/ -> the most descriptors its daemon may hold at once
    "appliance-edge.service": HELD_WHEN_QUIET + screen_server.DEFAULT_BOUNDS.max_connections
        + metricshttp.MAX_CONNECTIONS,
    "appliance-backoffice@.service": HELD_WHEN_QUIET,
    "appliance-pathology@.service": HELD_WHEN_QUIET + metricshttp.MAX_CONNECTIONS
        + PIPES_PER_PREPARATION_WORKER * MOST_PREPARATION_WORKERS,
    # every connection place taken, and each store connection the pool holds
    "appliance-console.service": HELD_WHEN_QUIET + console_server.MAX_CONNECTIONS
        + STORE_CONNECTIONS,
    # a socket and the file it sends for each connection served at once
    "appliance-models-repo.service": HELD_WHEN_QUIET + 2 * update_defaults.MAX_CONNECTIONS,
}


def service_settings(source: str, wanted: str = "Service") -> dict[str, list[str]]:
    """The [Service] section's settings (or another section's) of a unit in deploy/, each
    name's values in order (continued lines joined)."""
    text = (DEPLOY / source).read_text().replace("\\\n", " ")
    section, settings = "", {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == f"[{wanted}]" and line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings.setdefault(name.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize("source", sorted(UNITS))
def test_each_daemon_sets_a_descriptor_limit_above_its_worst_case(source: str) -> None:
    """Without LimitNOFILE a daemon had whatever the host's systemd gave (soft 1024 by
    default, DefaultLimitNOFILE= may say otherwise), and nothing checked that its bounded
    servers' connections fit in it."""
    assert sorted(UNITS) == sorted(WORST_CASE)
    limits = service_settings(source).get("LimitNOFILE")
    assert limits, f"{source} sets no LimitNOFILE"
    soft, _, hard = limits[-1].partition(":")
    assert int(soft) >= 2 * WORST_CASE[source], (source, limits[-1], WORST_CASE[source])
    assert int(hard or soft) >= int(soft)


def test_the_kiosk_screen_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Its compositor (cage) is installed on a kiosk only: here a program that exists stands
    in for it, so verify checks the rest of the unit; beside the edge's unit, which it needs
    (Requisite=: it does not start without it)."""
    stand_in = shutil.which("true")
    assert stand_in
    unit = tmp_path / "appliance-kiosk-screen.service"
    unit.write_text((DEPLOY / "appliance-kiosk-screen.service").read_text()
                    .replace("/usr/bin/cage ", f"{stand_in} "))
    edge = local_copy(tmp_path, "appliance-edge.service", "appliance-edge.service")
    done = analyze("verify", str(unit), str(edge))
    assert done.returncode == 0, done.stderr
    assert [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line] == []


HARDENED_ALIKE = {  # what every daemon's unit sets the same way
    "User": "appliance", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
    "AmbientCapabilities": "", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
}
STATE_FOLDER = {  # the one folder ProtectSystem=strict leaves writable, where config.state_dir
    # points; the model repository's server writes nothing at all
    "StateDirectory": "appliance", "WorkingDirectory": "/var/lib/appliance",
    "Environment": "APPLIANCE__STATE_DIR=/var/lib/appliance",
}
READ_ONLY = {"appliance-models-repo.service"}


@pytest.mark.parametrize("source", sorted(UNITS))
def test_every_daemon_unit_is_hardened_alike_and_writes_its_state_folder_only(
    source: str,
) -> None:
    settings = service_settings(source)
    for name, value in HARDENED_ALIKE.items():
        assert value in settings.get(name, []), (source, name, settings.get(name))
    for name, value in STATE_FOLDER.items():
        assert (value in settings.get(name, [])) == (source not in READ_ONLY), (source, name)
    assert "ReadWritePaths" not in settings  # nothing writable beside the state folder


def test_the_pathology_unit_leaves_its_stop_the_time_it_waits_for_its_threads() -> None:
    """The server's stop waits for the slide its finisher holds, up to a store call's deadline
    and a margin (docs/pathology-server.md, "Stopping"); a TimeoutStopSec under that had
    systemd SIGKILL it in the middle of that write (30 s against 35)."""
    (timeout,) = service_settings("appliance-pathology@.service")["TimeoutStopSec"]
    assert float(timeout) > jobstore.ANSWER_DEADLINE_S + server.THREADS_MARGIN_S


# The settings systemd-analyze security weighs, as the daemons' units write them.
HARDENING = (
    "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem",
    "ProtectHome", "PrivateTmp", "PrivateMounts", "RemoveIPC", "PrivateDevices", "DevicePolicy",
    "DeviceAllow", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset",
    "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
    "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter",
    "SystemCallErrorNumber", "UMask",
)
PATHOLOGY_DIFFERS = {  # from the back office's unit: why (the unit's comment says more)
    "PrivateDevices": "the GPU's device nodes",
    "DevicePolicy": "the GPU's device nodes",
    # before systemd 252 it implied DeviceAllow=char-rtc r, which shut the GPU's nodes too
    "ProtectClock": "the GPU's device nodes",
    "ProcSubset": "ONNX Runtime reads /proc/cpuinfo",
    "SystemCallFilter": "ONNX Runtime pins its threads to cores (@resources)",
    "UMask": "the console reads the pictures in the results folder (group appliance)",
}


def test_the_pathology_unit_is_hardened_as_the_back_office_but_where_it_says_why() -> None:
    """It had no system call filter, no ProtectProc=, PrivateMounts= or RemoveIPC=: exposure
    3.5 against the back office's 1.3."""
    backoffice = service_settings("appliance-backoffice@.service")
    pathology = service_settings("appliance-pathology@.service")
    for name in HARDENING:
        if name in PATHOLOGY_DIFFERS:
            assert pathology.get(name) != backoffice.get(name), f"{name} is alike now: drop it"
        else:
            assert pathology.get(name) == backoffice.get(name), name
    assert pathology["SystemCallFilter"] == ["@system-service", "~@privileged"]
    assert "MemoryDenyWriteExecute" not in pathology  # torch-cpu: below


CPU_BACKEND_RUN = """
import os, sys
import numpy as np
from appliance.config.pathology import PathologyConfig
from appliance.pathology.backends import open_backend
from appliance.pathology.workerpool import PreparationWorkers
try:
    os.setuid(os.getuid())  # @privileged: refused under the unit's filter
except PermissionError:
    print("setuid refused")
backend = open_backend(PathologyConfig(backends=[sys.argv[1]]))
px = backend.info.tile_px
tiles = np.random.default_rng(1).integers(0, 256, (4, px, px, 3), dtype=np.uint8)
print("probabilities", backend.infer(tiles).probability.tolist())
with PreparationWorkers(2) as workers:
    answers = {workers.submit(os.getpid).result(60) for _ in range(4)}
    print("workers", sorted(answers - {os.getpid()}))
"""


@pytest.mark.parametrize("backend", ["onnx-cpu", "torch-cpu"])
def test_the_pathology_cpu_backends_run_under_the_units_system_call_filter(backend: str) -> None:
    """The server's CPU backends and its preparation workers (a fork server) under the unit's
    SystemCallFilter=, SystemCallErrorNumber= and MemoryDenyWriteExecute=, as systemd loads
    them (tests/unit_syscalls.py): they score tiles, and nothing they call is refused. Under
    MemoryDenyWriteExecute=yes torch-cpu failed ("could not create a primitive"), with
    ~@resources ONNX Runtime logged an error for each thread it could not pin to a core."""
    if backend == "torch-cpu":
        pytest.importorskip("torch")
    unit = DEPLOY / "appliance-pathology@.service"
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit_syscalls", str(unit), "--",
         sys.executable, "-c", CPU_BACKEND_RUN, backend],
        cwd=DEPLOY.parent, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "setuid refused" in done.stdout  # the filter is in place
    assert "probabilities" in done.stdout
    assert re.search(r"workers \[\d+", done.stdout), done.stdout  # a worker process answered
    assert "not permitted" not in done.stderr.lower(), done.stderr[-3000:]
