"""The store's nightly backup (appliance-store-backup.timer and .service): hardened as the
workers' unit, the store found where the workers keep it, the backup in a folder systemd makes
for it, a run each night (and at boot after a night the host was off), and ``store backup`` run
under the unit's system call filters as systemd loads them (tests/unit_syscalls.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store_helpers import store_with_results
from tests.test_deploy_backoffice_units import confined
from tests.test_deploy_units import DEPLOY, HARDENING, analyze, local_copy, service_settings

SERVICE = "appliance-store-backup.service"
TIMER = "appliance-store-backup.timer"
WORKER = "appliance-backoffice@.service"


def test_the_backup_is_hardened_as_the_workers_and_reads_their_config_and_store() -> None:
    worker = service_settings(WORKER)
    settings = service_settings(SERVICE)
    for name in (*HARDENING, "User", "Group", "UMask"):
        assert settings.get(name) == worker.get(name), name
    command = settings["ExecStart"][0].split()
    assert command[1:4] == ["store", "backup", "--config"]
    assert command[4] == worker["ExecStart"][0].split()[3]  # the workers' config file
    assert "APPLIANCE__STATE_DIR=/var/lib/appliance" in worker["Environment"]
    assert "APPLIANCE__STATE_DIR=/var/lib/appliance" in settings["Environment"]
    out = Path(command[command.index("--out") + 1])
    (folders,) = settings["StateDirectory"]
    assert f"/var/lib/{out.parent.name}" == str(out.parent)  # a folder systemd makes for it
    assert out.parent.name in folders.split()
    assert "appliance" in folders.split()
    assert int(command[command.index("--keep") + 1]) >= 7  # a week of nights to go back to


def test_the_timer_runs_the_backup_every_night_and_after_a_night_the_host_was_off() -> None:
    timer = service_settings(TIMER, "Timer")
    (calendar,) = timer["OnCalendar"]
    done = analyze("calendar", "--iterations=3", calendar)
    assert done.returncode == 0, done.stderr
    days = re.findall(r"(\d{4}-\d{2}-\d{2}) \d{2}:\d{2}:\d{2}", done.stdout)
    assert len(set(days)) >= 3  # once a day at least: three runs on three days
    assert timer["Persistent"] == ["true"]
    assert service_settings(TIMER, "Install")["WantedBy"] == ["timers.target"]
    assert service_settings(SERVICE, "Install") == {}  # the timer starts it, never boot


def test_the_backup_and_its_timer_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    service = local_copy(tmp_path, SERVICE, SERVICE)
    timer = local_copy(tmp_path, TIMER, TIMER)
    done = analyze("verify", str(timer), str(service))
    assert done.returncode == 0, done.stderr
    assert [line for line in (done.stdout + done.stderr).splitlines()
            if SERVICE in line or TIMER in line] == []


def test_the_backup_runs_under_its_unit_s_filters(tmp_path: Path) -> None:
    store = tmp_path / "backoffice.sqlite3"
    store_with_results(f"sqlite:///{store}", {"kiosk-1": 2}, "2026-12-01T10:00:00.000000Z")
    out = tmp_path / "backup" / "backoffice.sqlite3"
    out.parent.mkdir()
    done = subprocess.run(
        confined(SERVICE, "store", "backup", "--store", f"sqlite:///{store}", "--out", str(out),
                 "--keep", "7"),
        capture_output=True, text=True, check=False, timeout=120, cwd=DEPLOY.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 result(s) of 1 kiosk(s)" in done.stdout
    (written,) = out.parent.iterdir()
    assert written.name.startswith("backoffice-")
    assert written.stat().st_size > 0
    assert "not permitted" not in done.stderr.lower()


def _appliance(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *command], capture_output=True,
                          text=True, check=False, timeout=120, cwd=DEPLOY.parent)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on the suite's server; dropped after."""
    import psycopg

    name = f"backup_unit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test",
                             autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="no pg_dump here")
def test_the_unit_s_backup_of_a_postgresql_store_is_named_dump_and_rotates_the_old_names(
        pg_database: str, tmp_path: Path) -> None:
    """Before, the unit's --out backoffice.sqlite3 --keep 7 named a pg_dump archive
    backoffice-TIME.sqlite3. Now it is backoffice-TIME.dump, and the .sqlite3-named archives an
    older appliance wrote in that folder are counted and removed with the rest, never the one
    taken by hand; `store restore` takes either name."""
    command = service_settings(SERVICE)["ExecStart"][0].split()
    unit_out = Path(command[command.index("--out") + 1])
    keep = int(command[command.index("--keep") + 1])
    store_with_results(pg_database, {"kiosk-1": 2}, "2026-12-01T10:00:00.000000Z")
    folder = tmp_path / "backup"
    folder.mkdir()
    out = folder / unit_out.name
    by_hand = folder / unit_out.name  # README's hand-taken backup under the plain name
    done = _appliance("store", "backup", "--store", pg_database, "--out", str(by_hand))
    assert done.returncode == 0, done.stderr
    old = [folder / f"{unit_out.stem}-202611{day:02d}T030000.000000Z{unit_out.suffix}"
           for day in range(1, keep + 1)]  # an older appliance's nights, oldest first
    for path in old:
        shutil.copyfile(by_hand, path)
    done = _appliance("store", "backup", "--store", pg_database, "--out", str(out),
                     "--keep", str(keep))
    assert done.returncode == 0, done.stderr
    (name,) = re.findall(r"to (\S+): ", done.stdout)
    written = Path(name)
    assert re.fullmatch(rf"{unit_out.stem}-\d{{8}}T\d{{6}}\.\d{{6}}Z\.dump", written.name)
    assert written.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    assert f"removed 1 older backup(s) beyond the {keep} newest: {old[0].name}" in done.stdout
    assert sorted(folder.iterdir()) == sorted([by_hand, written, *old[1:]])
    for backup in (written, old[-1]):
        done = _appliance("store", "restore", str(backup), "--store", pg_database, "--force")
        assert done.returncode == 0, done.stderr
        assert "It holds 2 result(s) of 1 kiosk(s)" in done.stdout
