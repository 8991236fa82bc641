"""deploy/install.sh under a scratch root: layout, modes, enabled units, idempotence, removal.

``--root`` installs the same files under a folder (no user, no service start) and
``--skip-pip`` leaves the venv empty, so this runs in seconds without touching the host.
"""

from __future__ import annotations

import grp
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.transport.outbox import Outbox

INSTALL = Path(__file__).resolve().parent.parent / "deploy" / "install.sh"
NOBODY = 65534
NOBODY_GROUP = subprocess.run(["id", "-gn", "nobody"], capture_output=True, text=True,
                              check=True).stdout.strip()
CONSOLE = "appliance-console.service"
BACKUP_TIMER = "appliance-store-backup.timer"
REPO = INSTALL.parents[1]
SCREEN = "appliance-kiosk-screen.service"


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), *args, "--root", str(root), "--skip-pip"],
        capture_output=True, text=True, check=False, timeout=120,
    )


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every path outside the venv: its mode and its content hash (or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if "venv" in path.relative_to(root).parts:
            continue
        if path.is_symlink():
            found[str(path.relative_to(root))] = (0, str(path.readlink()))
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (path.stat().st_mode & 0o7777, digest)
    return found


@pytest.fixture
def secrets(tmp_path: Path) -> tuple[Path, Path]:
    password, ca = tmp_path / "pw", tmp_path / "ca.crt"
    password.write_text("s3cret\n")
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return password, ca


def test_edge_install_is_complete_idempotent_and_removable(
    tmp_path: Path, secrets: tuple[Path, Path]
) -> None:
    root = tmp_path / "root"
    password, ca = secrets
    first = install(root, "edge", "--password-file", str(password), "--ca", str(ca))
    assert first.returncode == 0, first.stderr
    files = snapshot(root)
    assert files["etc/appliance/credentials/mqtt-password"][0] == 0o600
    assert files["etc/appliance/config.yaml"][0] == 0o640
    assert "etc/systemd/system/appliance-edge.service" in files
    assert "etc/udev/rules.d/99-scalar-microscope.rules" in files
    assert "opt/appliance/models/skin-texture-grade.int8.onnx" in files
    # not enabled: its config is not checked (--skip-pip: no appliance in the venv)
    assert "etc/systemd/system/multi-user.target.wants/appliance-edge.service" not in files
    assert "not started: edit " in first.stderr
    assert (root / "opt/appliance/venv/bin/python").exists()
    (root / "etc/appliance/config.yaml").write_text("device: {id: k1, site: s1}\n")  # edited
    again = install(root, "edge")
    assert again.returncode == 0, again.stderr
    edited = snapshot(root)
    assert edited == {**files, "etc/appliance/config.yaml": edited["etc/appliance/config.yaml"]}
    assert (root / "etc/appliance/config.yaml").read_text().startswith("device: {id: k1")
    gone = install(root, "edge", "--uninstall")
    assert gone.returncode == 0, gone.stderr
    left = snapshot(root)
    assert sorted(left) == ["etc/appliance/ca.crt", "etc/appliance/config.yaml",
                            "etc/appliance/credentials/mqtt-password"]  # config and secrets kept
    assert not (root / "opt/appliance").exists()
    assert install(root, "edge", "--uninstall", "--purge").returncode == 0
    assert snapshot(root) == {}


def test_backoffice_install_installs_one_worker_instance_with_its_credential(
    tmp_path: Path, secrets: tuple[Path, Path]
) -> None:
    root = tmp_path / "root"
    password, _ca = secrets
    assert install(root, "backoffice").returncode == 2  # the worker name is required
    done = install(root, "backoffice", "--worker", "backoffice-1", "--password-file", str(password))
    assert done.returncode == 0, done.stderr
    files = snapshot(root)
    assert files["etc/appliance/credentials/backoffice-1.password"][0] == 0o600
    assert "etc/appliance/backoffice.yaml" in files
    assert "etc/systemd/system/appliance-backoffice@.service" in files
    wants = "etc/systemd/system/multi-user.target.wants/appliance-backoffice@backoffice-1.service"
    assert wants not in files  # not enabled before its config passes the check
    assert install(root, "backoffice", "--uninstall").returncode == 0
    assert not (root / wants).exists()
    assert not (root / "etc/systemd/system/appliance-backoffice@.service").exists()


def test_pathology_install_installs_one_server_instance_with_its_host_s_credential(
    tmp_path: Path, secrets: tuple[Path, Path]
) -> None:
    root = tmp_path / "root"
    password, ca = secrets
    assert install(root, "pathology").returncode == 2  # the instance is required
    done = install(root, "pathology", "--instance", "0", "--password-file", str(password),
                   "--ca", str(ca))
    assert done.returncode == 0, done.stderr
    assert "edit it (broker host, store.url, pathology.slide_roots, model)" in done.stderr
    files = snapshot(root)
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True,
                          check=True).stdout.strip()
    # the unit logs in as pathology-%l-%i and loads that login's password (%l: hostname -s)
    assert files[f"etc/appliance/credentials/pathology-{host}-0.password"][0] == 0o600
    unit = (root / "etc/systemd/system/appliance-pathology@.service").read_text()
    credential = "mqtt-password:/etc/appliance/credentials/pathology-%l-%i.password"
    assert f"LoadCredential={credential}" in unit
    assert "APPLIANCE__MQTT__USERNAME=pathology-%l-%i" in unit
    assert "--config /etc/appliance/pathology.yaml" in unit
    assert files["etc/appliance/pathology.yaml"][0] == 0o640
    wants = "etc/systemd/system/multi-user.target.wants/appliance-pathology@0.service"
    assert wants not in files  # not enabled before its config passes the check
    assert install(root, "pathology", "--instance", "0").returncode == 0
    assert snapshot(root) == files  # again: nothing changes
    assert install(root, "pathology", "--uninstall").returncode == 0
    assert not (root / wants).exists()
    assert not (root / "etc/systemd/system/appliance-pathology@.service").exists()


def test_the_pathology_config_template_is_a_valid_server_config(tmp_path: Path) -> None:
    template = INSTALL.parent / "config.pathology.yaml"
    subprocess.run([sys.executable, str(INSTALL.parent / "mosquitto" / "provision.py"), "--out",
                    str(tmp_path / "ids")], check=True, capture_output=True)
    ca = tmp_path / "ids" / "certs" / "ca.crt"
    slides = tmp_path / "slides"
    slides.mkdir()
    text = template.read_text().replace("/etc/appliance/ca.crt", str(ca))
    config = tmp_path / "pathology.yaml"
    text = text.replace("broker.example.org", "broker.fleet.internal")  # the operator's edit
    config.write_text(text.replace("/srv/slides", str(slides)))
    checked = subprocess.run([sys.executable, "-m", "appliance", "config", "check", str(config)],
                             capture_output=True, text=True, check=False,
                             cwd=INSTALL.parents[1])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_removing_one_role_keeps_what_another_role_on_the_host_still_runs_from(
    tmp_path: Path, secrets: tuple[Path, Path]
) -> None:
    """A back office and a pathology server on one host (the console reads the pictures where
    the server writes them) share /opt/appliance/venv, /etc/appliance and /var/lib/appliance."""
    root = tmp_path / "root"
    password, _ = secrets
    assert install(root, "backoffice", "--worker", "backoffice-1", "--password-file",
                   str(password)).returncode == 0
    assert install(root, "pathology", "--instance", "0").returncode == 0
    (root / "var/lib/appliance").mkdir(parents=True)
    (root / "var/lib/appliance/store.sqlite3").write_text("the back office's results")
    for args in (["--uninstall"], ["--uninstall", "--purge"]):
        gone = install(root, "pathology", *args)
        assert gone.returncode == 0, gone.stderr
        assert "appliance-backoffice@.service" in gone.stderr  # says why it kept them
        assert not (root / "etc/systemd/system/appliance-pathology@.service").exists()
        assert (root / "opt/appliance/venv").is_dir()  # the back office still runs from it
        assert (root / "etc/appliance/backoffice.yaml").exists()
        assert (root / "etc/appliance/credentials/backoffice-1.password").exists()
        assert (root / "var/lib/appliance/store.sqlite3").exists()
    assert install(root, "backoffice", "--uninstall", "--purge").returncode == 0
    assert not (root / "opt/appliance").exists()
    assert snapshot(root) == {}


def test_removing_the_kiosk_without_purge_deletes_the_confirmed_results_its_outbox_kept(
    tmp_path: Path, secrets: tuple[Path, Path]
) -> None:
    # the outbox keeps results the back office confirmed (to send again after a store
    # restore) until the daemon's expiry deletes them: once the daemon is removed nothing would,
    # and the kept personal data would stay on the kiosk's disk; what still waits is kept
    root = tmp_path / "root"
    password, ca = secrets
    assert install(root, "edge", "--password-file", str(password), "--ca", str(ca)).returncode == 0
    path = root / "var/lib/appliance/outbox.sqlite3"
    outbox = Outbox(path, keep_confirmed_s=48 * 3600.0)
    outbox.add_many([(f"m{i}", "t/result", f"subject-{i}-face".encode() * 40) for i in range(3)])
    outbox.remove_ids(["m0", "m1"])  # confirmed: kept
    outbox.close()
    gone = install(root, "edge", "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert "deleted the 2 result(s) the back office confirmed" in gone.stderr
    outbox = Outbox(path, keep_confirmed_s=48 * 3600.0)
    assert ([m.measurement_id for m in outbox.pending()], outbox.kept_confirmed()) == (["m2"], 0)
    outbox.close()
    on_disk = b"".join(p.read_bytes() for p in path.parent.glob("outbox.sqlite3*"))
    # nor left in a free page (secure_delete: this SQLite build zeroes them by default too)
    assert b"subject-0-face" not in on_disk
    assert b"subject-2-face" in on_disk


def test_removing_the_kiosk_removes_its_program_beside_the_kiosk_screen_s_unit(
    tmp_path: Path,
) -> None:
    """The kiosk screen's unit, copied to /etc/systemd/system by hand as its comment says, was
    taken for another role's: --uninstall edge kept /opt/appliance and said the screen still
    ran from it (the screen runs Chromium, nothing of the program)."""
    root = tmp_path / "root"
    assert install(root, "edge").returncode == 0
    shutil.copy(INSTALL.parent / SCREEN, root / "etc/systemd/system" / SCREEN)
    gone = install(root, "edge", "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not (root / "opt/appliance").exists()
    assert "removed the edge install (kept /etc/appliance and /var/lib/appliance)" in gone.stderr


def test_removing_the_kiosk_disables_the_kiosk_screen_s_unit_and_keeps_its_file(
    tmp_path: Path,
) -> None:
    """--uninstall edge left the screen's unit enabled: the next boot started Chromium on the
    page of an edge that was gone (offline here: `systemctl --root` removes the link)."""
    root = tmp_path / "root"
    assert install(root, "edge").returncode == 0
    units = root / "etc/systemd/system"
    shutil.copy(INSTALL.parent / SCREEN, units / SCREEN)
    enabled = subprocess.run(["systemctl", f"--root={root}", "enable", SCREEN],
                             capture_output=True, text=True, check=False, timeout=60)
    assert enabled.returncode == 0, enabled.stderr
    assert [link.name for link in units.rglob("*") if link.is_symlink()] == [SCREEN]
    gone = install(root, "edge", "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert [link.name for link in units.rglob("*") if link.is_symlink()] == []
    assert (units / SCREEN).exists()
    assert (f"stopped and disabled {SCREEN} (it shows the edge's page); kept its file, copied "
            f"by hand: rm {units / SCREEN} removes it") in gone.stderr


def _check_with_this_checkout(root: Path) -> None:
    """An ``appliance`` in the scratch root's venv that runs this checkout, as pip would have
    installed it: install.sh's start decision runs its ``config check``."""
    appliance = root / "opt/appliance/venv/bin/appliance"
    appliance.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m appliance "$@"\n')
    appliance.chmod(0o755)


def test_a_unit_is_enabled_only_once_its_config_passes_the_check_and_an_edit_is_kept(
    tmp_path: Path,
) -> None:
    """install.sh enabled and started the unit on the template it had just written: the kiosk
    exited 2 on CHANGE-ME, the back office and pathology server retried broker.example.org."""
    root = tmp_path / "root"
    assert install(root, "edge").returncode == 0
    _check_with_this_checkout(root)
    template = install(root, "edge")
    assert template.returncode == 0, template.stderr
    config = root / "etc/appliance/config.yaml"
    assert "device.id: got 'kiosk-CHANGE-ME', the template's placeholder" in template.stderr
    assert (f"not started: edit {config} until {root}/opt/appliance/venv/bin/appliance config "
            f"check {config} passes, then start: systemctl enable --now "
            "appliance-edge.service") in template.stderr
    wants = root / "etc/systemd/system/multi-user.target.wants/appliance-edge.service"
    assert not wants.is_symlink()
    subprocess.run([sys.executable, str(INSTALL.parent / "mosquitto" / "provision.py"), "--out",
                    str(tmp_path / "ids"), "--host", "broker.fleet.internal"],
                   check=True, capture_output=True, timeout=120)
    edited = config.read_text().replace("kiosk-CHANGE-ME", "kiosk-1").replace(
        "site-CHANGE-ME", "shop-1").replace("broker.example.org", "broker.fleet.internal")
    edited = edited.replace("/etc/appliance/ca.crt", str(tmp_path / "ids/certs/ca.crt"))
    edited = edited.replace("/opt/appliance/models/skin-texture-grade.int8.onnx",
                            str(shipped_path(SKIN_MODEL)))
    config.write_text(edited)  # the operator's edit, files of this host
    again = install(root, "edge")
    assert again.returncode == 0, again.stderr
    assert config.read_text() == edited  # kept, not the template again
    assert wants.readlink() == Path("/etc/systemd/system/appliance-edge.service")  # enabled
    assert "appliance-edge.service enabled" in again.stderr


def test_the_start_check_reads_the_config_with_the_unit_s_login(tmp_path: Path) -> None:
    """The back-office file names no login: its unit sets APPLIANCE__MQTT__USERNAME=%i. Checked
    without it, a file with TLS off to another host passed, and the worker it started was
    refused for sending that login's password in clear; checked as the unit runs it, it fails."""
    root = tmp_path / "root"
    assert install(root, "backoffice", "--worker", "backoffice-1").returncode == 0
    _check_with_this_checkout(root)
    config = root / "etc/appliance/backoffice.yaml"
    config.write_text("mqtt:\n  host: broker.fleet.internal\n  port: 8883\n")  # TLS left off
    refused = install(root, "backoffice", "--worker", "backoffice-1")
    assert refused.returncode == 0, refused.stderr
    assert "while mqtt.username 'backoffice-1' logs in" in refused.stderr
    assert "systemctl enable --now appliance-backoffice@backoffice-1.service" in refused.stderr
    wants = root / ("etc/systemd/system/multi-user.target.wants/"
                    "appliance-backoffice@backoffice-1.service")
    assert not wants.is_symlink()
    config.write_text("mqtt:\n  host: 127.0.0.1\n")  # a broker on this host: nothing in clear
    started = install(root, "backoffice", "--worker", "backoffice-1")
    assert "appliance-backoffice@backoffice-1.service enabled" in started.stderr, started.stderr
    assert wants.readlink() == Path("/etc/systemd/system/appliance-backoffice@.service")


# install.sh's live path (this host's systemd) with a systemctl that records its calls and says
# which units run: sourced, install.sh runs nothing, so its main runs here under a scratch root
# with live() true and the units' user named (a host here has no user appliance).
LIVE_RUN = 'source "$1"; live() { true; }; SERVICE_USER=$2; shift 2; main "$@"'
# The units' states are files of names, one a line: running, enabled, masked, failing (to
# restart); enable, start and restart change them as systemd would.
RECORDING_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$FAKE_DIR/systemctl.calls"
has() { grep -qx "$2" "$FAKE_DIR/$1" 2>/dev/null; }
add() { has "$1" "$2" || echo "$2" >> "$FAKE_DIR/$1"; }
drop() { grep -vx "$2" "$FAKE_DIR/$1" > "$FAKE_DIR/$1.new"; mv "$FAKE_DIR/$1.new" "$FAKE_DIR/$1"; }
case "$1" in
  list-units) for name in $(cat "$FAKE_DIR/running"); do echo "$name loaded active x"; done ;;
  is-enabled) if has masked "$2"; then echo masked; exit 1; fi
              if has enabled "$2"; then echo enabled; else echo disabled; exit 1; fi ;;
  enable) shift; now=; if [ "$1" = --now ]; then now=1; shift; fi
          if has masked "$1"; then echo "Unit $1 is masked." >&2; exit 1; fi
          add enabled "$1"; if [ -z "$now" ]; then exit 0; fi
          if has failing "$1"; then exit 1; fi; add running "$1" ;;
  disable) shift; now=; if [ "$1" = --now ]; then now=1; shift; fi
           drop enabled "$1"; if [ -n "$now" ]; then drop running "$1"; fi ;;
  is-active) if has running "$2"; then echo active; elif has failing "$2"; then echo failed
             else echo inactive; fi ;;
  start) add running "$2" ;;
  restart) if has failing "$2"; then exit 1; fi; add running "$2" ;;
esac
"""
# the venv's python "installs" by writing a RECORD file: its content stands for the code; it
# has pip once the venv is built (bin/pip), and the test may kill the run while it installs
INSTALLING_PYTHON = """#!/bin/sh
echo "$*" >> "$FAKE_DIR/python.calls"
if [ ! -e "$(dirname "$0")/pip" ]; then echo "No module named pip" >&2; exit 1; fi
if [ "$3" = --version ]; then exit 0; fi
record=$(dirname "$0")/../lib/python3.11/site-packages/appliance-0.1.0.dist-info/RECORD
mkdir -p "$(dirname "$record")" && cp "$FAKE_DIR/code" "$record"
cp "$FAKE_DIR/venv-appliance" "$(dirname "$0")/appliance"
if [ -e "$FAKE_DIR/kill-in-pip" ]; then rm "$FAKE_DIR/kill-in-pip"; kill -9 "$PPID" $$; fi
"""
# rm, as a kill finds it partway through removing the program folder: its venv's pip gone
KILLING_RM = """#!/bin/sh
if [ -e "$FAKE_DIR/kill-in-rm" ] && [ "$1" = -rf ] && [ -d "$2/venv" ]; then
  /bin/rm -f "$FAKE_DIR/kill-in-rm" "$2/venv/bin/pip"; kill -9 "$PPID" $$
fi
exec /bin/rm "$@"
"""
# the host's python3 builds a venv: its python first, then pip (ensurepip), where the test may
# kill the run
BUILDING_PYTHON3 = """#!/bin/sh
[ "$1" = -m ] || exit 0
echo "$*" >> "$FAKE_DIR/python3.calls"
for venv; do :; done
if [ "$3" = --clear ]; then rm -rf "$venv"; fi
mkdir -p "$venv/bin" && cp "$FAKE_DIR/venv-python" "$venv/bin/python"
if [ -e "$FAKE_DIR/kill-in-venv" ]; then rm "$FAKE_DIR/kill-in-venv"; kill -9 "$PPID" $$; fi
touch "$venv/bin/pip"
"""
# passes a config it may read that does not say "refuse", and whose files it names (a line
# "file: PATH") it may read, as the real check would refuse it
CHECKING_APPLIANCE = """#!/bin/sh
if [ ! -r "$3" ]; then echo "$3: not readable by $(id -un)" >&2; exit 2; fi
for named in $(sed -n 's/^file: //p' "$3"); do
  if [ ! -r "$named" ]; then echo "$named: not readable by $(id -un)" >&2; exit 2; fi
done
if grep -q refuse "$3"; then echo "$3: refused" >&2; exit 2; fi
echo "$3 passes for $(id -un) with $APPLIANCE__STATE_DIR ${APPLIANCE__MQTT__USERNAME:-}" >&2
"""


class LiveHost:
    """A scratch root with the recording systemctl, the venv's stand-ins and the units that
    run (``running``), in a folder anyone may enter (the check may run as another user)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root = folder / "root"
        fakes = folder / "bin"
        fakes.mkdir()
        for name, text in (("systemctl", RECORDING_SYSTEMCTL), ("udevadm", "#!/bin/sh\n"),
                           ("python3", BUILDING_PYTHON3), ("rm", KILLING_RM)):
            (fakes / name).write_text(text)
            (fakes / name).chmod(0o755)
        for name, text in (("venv-python", INSTALLING_PYTHON),
                           ("venv-appliance", CHECKING_APPLIANCE)):
            (folder / name).write_text(text)
            (folder / name).chmod(0o755)
        venv = self.root / "opt/appliance/venv/bin"
        venv.mkdir(parents=True)
        for name, text in (("python", INSTALLING_PYTHON), ("appliance", CHECKING_APPLIANCE),
                           ("pip", "")):
            (venv / name).write_text(text)
            (venv / name).chmod(0o755)
        record = self.root / "opt/appliance/venv/lib/python3.11/site-packages"
        (record / "appliance-0.1.0.dist-info").mkdir(parents=True)
        (record / "appliance-0.1.0.dist-info/RECORD").write_text("version 1")  # installed
        self.code("version 1")
        self.running()

    def code(self, text: str) -> None:
        """What pip installs on the next run."""
        (self.folder / "code").write_text(text)

    def running(self, *names: str) -> None:
        """The units systemctl says run."""
        self.units("running", *names)

    def units(self, state: str, *names: str) -> None:
        """The units in a state: running, enabled, masked or failing."""
        (self.folder / state).write_text("".join(f"{name}\n" for name in names))

    def said(self, state: str) -> list[str]:
        """The units in a state now."""
        path = self.folder / state
        return sorted(path.read_text().split()) if path.exists() else []

    def install(self, *args: str, user: str = "root", finishes: bool = True,
                path: str | None = None) -> tuple[str, list[str]]:
        """install.sh's main as on a live host: its messages and its systemctl calls;
        ``path``: the host's programs (PATH), after the stand-ins."""
        calls = self.folder / "systemctl.calls"
        calls.unlink(missing_ok=True)
        done = subprocess.run(
            ["bash", "-c", LIVE_RUN, "live-install", str(INSTALL), user, *args,
             "--root", str(self.root)],
            capture_output=True, text=True, check=False, timeout=120,
            env={**os.environ, "FAKE_DIR": str(self.folder),
                 "PATH": f"{self.folder / 'bin'}:{path or os.environ['PATH']}"})
        assert (done.returncode == 0) == finishes, done.stderr
        return done.stderr, calls.read_text().splitlines() if calls.exists() else []


@pytest.fixture
def live_host() -> Iterator[LiveHost]:
    """A live host's stand-in, removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="install-live-"))
    folder.chmod(0o755)
    try:
        yield LiveHost(folder)
    finally:
        shutil.rmtree(folder)


def _restarts(calls: list[str]) -> list[str]:
    """The units systemctl was told to restart."""
    return sorted(call.removeprefix("restart ") for call in calls if call.startswith("restart "))


def test_a_rerun_restarts_the_running_units_that_run_from_what_it_changed_and_only_those(
    live_host: LiveHost, secrets: tuple[Path, Path],
) -> None:
    """A re-run after an upgrade installed the new code and left the old process running it
    had (and one edited config, one new CA) until someone restarted it by hand."""
    password, ca = secrets
    this, sibling, other = ("appliance-backoffice@backoffice-1.service",
                            "appliance-backoffice@backoffice-2.service",
                            "appliance-pathology@0.service")
    live_host.running(this, sibling, other)  # appliance-backoffice@backoffice-3: stopped
    (live_host.root / "etc/appliance").mkdir(parents=True)
    (live_host.root / "etc/appliance/pathology.yaml").write_text("pathology: {}\n")
    worker = ("backoffice", "--worker", "backoffice-1")
    said, calls = live_host.install(*worker, "--password-file", str(password))
    assert f"enable --now {this}" in calls
    assert f"enable --now {CONSOLE}" in calls  # the back office's console, started with it
    assert f"enable --now {BACKUP_TIMER}" in calls  # and the store's nightly backup
    assert _restarts(calls) == [this, sibling]  # the role's config and unit were written
    assert f"restarted {this} {sibling}: they ran the install before this one" in said
    said, calls = live_host.install(*worker)
    assert _restarts(calls) == []  # nothing changed
    assert "restarted" not in said
    live_host.code("version 2")
    said, calls = live_host.install(*worker)
    assert _restarts(calls) == [this, sibling, CONSOLE, other]  # every daemon runs from the venv
    said, calls = live_host.install(*worker, "--ca", str(ca))
    assert _restarts(calls) == [this, sibling, CONSOLE, other]  # every daemon reads the fleet CA
    (live_host.root / "etc/appliance/pathology.yaml").write_text("refuse\n")
    live_host.code("version 3")
    said, calls = live_host.install(*worker)
    assert _restarts(calls) == [this, sibling, CONSOLE]
    assert (f"not restarted: {other} keep running the install before this one until their "
            f"config passes the check; then: systemctl restart {other}") in said
    live_host.running()
    live_host.code("version 4")
    said, calls = live_host.install(*worker)
    assert _restarts(calls) == []  # what does not run is not restarted
    assert not [call for call in calls if call.startswith(("enable", "start"))]  # nor started
    live_host.running(this, sibling)
    (live_host.folder / "failing").write_text(f"{this}\n")
    live_host.code("version 5")
    said, calls = live_host.install(*worker)  # one that fails to start again ends no install
    assert _restarts(calls) == [this, sibling]
    assert f"{this} did not start again: journalctl -u {this} says why" in said
    assert f"restarted {sibling}: they ran" in said


def test_the_start_check_runs_as_the_units_user(live_host: LiveHost) -> None:
    """It ran as root: a config naming a file only root may read passed, and the unit
    (User=appliance) failed at start; checked as the unit's user, it is not started and the
    message says how to check it so by hand."""
    secret = live_host.folder / "client.key"
    secret.write_text("key\n")
    secret.chmod(0o600)
    config = live_host.root / "etc/appliance/config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"file: {secret}\n")
    said, calls = live_host.install("edge", user="nobody")
    assert f"{secret}: not readable by nobody" in said
    assert not [call for call in calls if call.startswith("enable")]
    assert (f"until runuser -u nobody -- {live_host.root}/opt/appliance/venv/bin/appliance "
            f"config check {config} passes") in said
    secret.chmod(0o644)
    said, calls = live_host.install("edge", user="nobody")
    assert f"{config} passes for nobody with /var/lib/appliance" in said
    assert "enable --now appliance-edge.service" in calls


def test_the_config_install_sh_writes_is_readable_by_the_units_user(live_host: LiveHost) -> None:
    """Under --root on a host where the units' user exists, the check ran as that user on a
    config left root's alone (0640 root:root: its group was set under / only): "permission
    denied", and the unit was never started (docs/experiments/README.md, "deploywalk")."""
    said, calls = live_host.install("edge", user="nobody")
    config = live_host.root / "etc/appliance/config.yaml"
    assert f"{config} passes for nobody with /var/lib/appliance" in said
    assert "enable --now appliance-edge.service" in calls
    written = config.stat()
    assert (written.st_uid, written.st_gid, written.st_mode & 0o7777) == (
        0, grp.getgrnam(NOBODY_GROUP).gr_gid, 0o640)  # read by the group, written by root
    # made as StateDirectory= makes it: the pathology server's results folder in it was
    # "cannot be made (/var/lib is not writable)" for the units' user before its first start
    state = (live_host.root / "var/lib/appliance").stat()
    assert (state.st_uid, state.st_mode & 0o7777) == (NOBODY, 0o750)


EDGE = "appliance-edge.service"


def _starts(calls: list[str]) -> list[str]:
    """The calls that would start or enable a unit."""
    return [call for call in calls if call.startswith(("enable", "start", "restart", "unmask"))]


def test_a_rerun_leaves_a_unit_stopped_disabled_or_masked_by_hand_as_it_was(
    live_host: LiveHost,
) -> None:
    """An upgrade ran `systemctl enable --now` on every run whose config passed: a kiosk stopped
    for maintenance came back up, and a masked one ended the install before its restarts."""
    said, calls = live_host.install("edge")
    assert f"enable --now {EDGE}" in calls  # the first run whose config passes starts it
    assert live_host.said("running") == [EDGE]
    live_host.units("enabled")  # systemctl disable, while it runs on
    said, calls = live_host.install("edge")
    assert _starts(calls) == []
    assert f"installed the edge (under {live_host.root}): {EDGE} running" in said
    live_host.units("enabled", EDGE)
    live_host.running()  # systemctl stop, for maintenance
    live_host.code("version 2")
    said, calls = live_host.install("edge")
    assert _starts(calls) == []
    assert (f"{EDGE} was stopped before this run and stays so: systemctl start {EDGE} starts it"
            in said)
    assert f"installed the edge (under {live_host.root}): {EDGE} installed, left stopped" in said
    live_host.units("enabled")  # systemctl disable
    said, calls = live_host.install("edge")
    assert _starts(calls) == []
    assert (f"{EDGE} was disabled before this run and stays so: systemctl enable --now {EDGE} "
            "starts it") in said
    live_host.units("masked", EDGE)
    said, calls = live_host.install("edge")
    assert _starts(calls) == []
    assert (f"{EDGE} was masked before this run and stays so: systemctl unmask {EDGE} && "
            f"systemctl enable --now {EDGE} starts it") in said
    live_host.units("masked")
    said, calls = live_host.install("edge", "--uninstall")  # kept: config, password, state
    said, calls = live_host.install("edge")
    assert f"enable --now {EDGE}" in calls  # installed again: a first install, started
    assert live_host.said("running") == [EDGE]


def test_a_unit_enabled_by_hand_then_disabled_stays_disabled_on_a_rerun(
    live_host: LiveHost,
) -> None:
    """README's way: the first run writes the template, the operator edits it and enables the
    unit by hand; a run that has seen it enabled knows a later disable for the operator's."""
    config = live_host.root / "etc/appliance/config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("refuse\n")
    said, calls = live_host.install("edge")
    assert f"then start: systemctl enable --now {EDGE}" in said
    config.write_text("device: {id: k1}\n")  # edited, then systemctl enable --now by hand
    live_host.units("enabled", EDGE)
    live_host.running(EDGE)
    said, calls = live_host.install("edge")
    assert _starts(calls) == []  # it runs what this run would have installed
    live_host.units("enabled")  # systemctl disable --now
    live_host.running()
    said, calls = live_host.install("edge")
    assert _starts(calls) == []
    assert f"{EDGE} was disabled before this run and stays so" in said


def test_a_rerun_whose_config_now_fails_says_the_running_unit_keeps_the_install_before(
    live_host: LiveHost,
) -> None:
    """It said "not started: edit ... then start" of a kiosk that was running, and checked the
    config twice, printing the check's complaint twice."""
    live_host.install("edge")
    (live_host.root / "etc/appliance/config.yaml").write_text("refuse\n")  # an edit gone wrong
    live_host.code("version 2")
    said, calls = live_host.install("edge")
    assert _starts(calls) == []
    assert "not started" not in said
    assert said.count(": refused") == 1
    assert (f"not restarted: {EDGE} keep running the install before this one until their config "
            f"passes the check; then: systemctl restart {EDGE}") in said
    assert f"{EDGE} kept running the install before this one" in said
    (live_host.root / "etc/appliance/config.yaml").write_text("device: {id: k1}\n")
    said, calls = live_host.install("edge")
    assert said.count("passes for root") == 1
    assert _starts(calls) == [f"restart {EDGE}"]  # its config changed since it started


def test_a_run_killed_while_building_the_venv_is_finished_by_the_next(
    live_host: LiveHost,
) -> None:
    """Killed after `python3 -m venv` made bin/python and before pip was in, every later run
    skipped the venv it took as built and ended on "No module named pip"."""
    shutil.rmtree(live_host.root / "opt/appliance/venv")  # a fresh host
    (live_host.folder / "kill-in-venv").touch()
    live_host.install("edge", finishes=False)
    assert (live_host.root / "opt/appliance/venv/bin/python").exists()
    said, calls = live_host.install("edge")
    assert "the venv build of a run before this one did not finish: repairing" in said
    venv = str(live_host.root / "opt/appliance/venv")
    assert (live_host.folder / "python3.calls").read_text().splitlines() == [
        f"-m venv {venv}", f"-m venv --clear {venv}"]  # no pip in it: made again
    pip = (live_host.folder / "python.calls").read_text().splitlines()
    assert pip[-1].startswith("-m pip install --quiet --force-reinstall ")
    assert f"enable --now {EDGE}" in calls
    said, calls = live_host.install("edge")
    assert "did not finish" not in said  # finished: the next run is an ordinary one
    pip = (live_host.folder / "python.calls").read_text().splitlines()
    assert "--force-reinstall" not in pip[-1]


def test_a_run_killed_while_installing_the_code_leaves_its_restarts_to_the_next(
    live_host: LiveHost, secrets: tuple[Path, Path],
) -> None:
    """Killed after pip installed the new code and before the restarts, the next run found the
    code as it left it, restarted nothing, and the kiosk ran the old code until restarted."""
    _password, ca = secrets
    live_host.install("edge")
    live_host.code("version 2")
    (live_host.folder / "kill-in-pip").touch()
    live_host.install("edge", "--ca", str(ca), finishes=False)
    said, calls = live_host.install("edge")
    assert "a run before this one did not finish: finishing it" in said
    assert _starts(calls) == [f"restart {EDGE}"]
    said, calls = live_host.install("edge")
    assert _starts(calls) == []  # done: nothing is owed any more


def test_a_second_role_on_the_host_keeps_the_first_role_s_packages_in_the_shared_venv(
    live_host: LiveHost,
) -> None:
    """The edge role's run installed the package without the back office's extras: on a host
    with a back office too, an upgrade run as edge left its packages at the older release."""
    live_host.install("backoffice", "--worker", "backoffice-1")
    live_host.install("edge")
    pip = (live_host.folder / "python.calls").read_text().splitlines()
    assert pip[-1].endswith(f"{REPO}[backoffice,systemd]")
    live_host.install("backoffice", "--uninstall")
    live_host.install("edge")
    pip = (live_host.folder / "python.calls").read_text().splitlines()
    assert pip[-1].endswith(f"{REPO}[systemd]")


def test_uninstall_stops_the_role_s_instances_that_run_without_being_enabled(
    live_host: LiveHost,
) -> None:
    """--uninstall stopped the instances it found enabled only: one started by hand, or
    disabled while it ran, ran on from a venv and a unit file it had just removed."""
    one, two = ("appliance-backoffice@backoffice-1.service",
                "appliance-backoffice@backoffice-2.service")
    live_host.install("backoffice", "--worker", "backoffice-1")
    live_host.running(one, two, EDGE)  # backoffice-2 started by hand; a kiosk beside them
    live_host.units("enabled", one)
    _said, calls = live_host.install("backoffice", "--uninstall")
    assert f"disable --now {two}" in calls
    assert live_host.said("running") == [EDGE]  # the other role's unit runs on


def test_uninstalling_the_edge_stops_and_disables_the_kiosk_screen(live_host: LiveHost) -> None:
    """The screen's unit, copied by hand, ran on after --uninstall edge, Chromium on the page of
    a daemon that was gone, and started again at the next boot; a host without it is left as
    it was."""
    live_host.install("edge")
    units = live_host.root / "etc/systemd/system"
    said, calls = live_host.install("edge", "--uninstall")
    assert [call for call in calls if SCREEN in call] == []  # not installed: not touched
    assert "stopped and disabled" not in said
    live_host.install("edge")
    shutil.copy(INSTALL.parent / SCREEN, units / SCREEN)
    live_host.running(EDGE, SCREEN)
    live_host.units("enabled", EDGE, SCREEN)
    said, calls = live_host.install("edge", "--uninstall")
    assert f"disable --now {SCREEN}" in calls
    assert live_host.said("running") == []
    assert live_host.said("enabled") == []
    assert (units / SCREEN).exists()  # the operator's copy
    assert f"stopped and disabled {SCREEN} (it shows the edge's page)" in said


def test_an_install_after_an_uninstall_cut_short_builds_the_venv_again(
    live_host: LiveHost,
) -> None:
    """Killed while it removed /opt/appliance, --uninstall left the venv's python without its
    pip: every install after it took the venv as built and ended on "No module named pip"."""
    live_host.install("edge")
    (live_host.folder / "kill-in-rm").touch()
    live_host.install("edge", "--uninstall", finishes=False)
    _said, calls = live_host.install("edge")
    assert f"enable --now {EDGE}" in calls  # installed again, as a first install
    assert not (live_host.root / "opt/.appliance.removed").exists()


def test_a_first_start_that_fails_is_named_and_ends_no_install(live_host: LiveHost) -> None:
    """`systemctl enable --now` fails when the kiosk (Type=notify) exits before it is ready (a
    broker that refuses its login): under `set -e` that ended the install there, before its
    restarts and its closing line, with systemctl's words only."""
    live_host.units("failing", EDGE)
    said, calls = live_host.install("edge")
    assert f"enable --now {EDGE}" in calls
    assert f"{EDGE} did not start: journalctl -u {EDGE} says why" in said
    assert f"{EDGE} enabled, did not start" in said
    said, calls = live_host.install("edge")  # again: a failed unit is not a stopped one
    assert _starts(calls) == []
    assert (f"{EDGE} had failed before this run and is not started: journalctl -u {EDGE} says "
            f"why; systemctl start {EDGE} starts it") in said


REPO_UNITS = ("appliance-models-repo.service", "appliance-models-refresh.timer")


def test_the_back_office_installs_its_console_and_the_model_repository_s_units(
    tmp_path: Path,
) -> None:
    """The console, `models repo serve` and the timer of `models repo refresh` shipped no unit:
    the operator wrote their own (docs/experiments/README.md, "deploywalk"). The console is
    enabled with the worker once the config passes; the repository's two once /srv/models
    holds a repository; --uninstall removes them all."""
    root = tmp_path / "root"
    worker = ("backoffice", "--worker", "backoffice-1")
    assert install(root, *worker).returncode == 0
    units = root / "etc/systemd/system"
    for name in (CONSOLE, *REPO_UNITS, "appliance-models-refresh.service"):
        assert (units / name).read_text() == (INSTALL.parent / name).read_text()
    _check_with_this_checkout(root)
    (root / "etc/appliance/backoffice.yaml").write_text("mqtt:\n  host: 127.0.0.1\n")
    done = install(root, *worker)
    assert done.returncode == 0, done.stderr
    assert f"{CONSOLE} enabled" in done.stderr
    assert (units / "multi-user.target.wants" / CONSOLE).is_symlink()
    assert (f"not started: no model repository in {root}/srv/models yet: make it (as root, "
            f"README \"Updating models\"): {root}/opt/appliance/venv/bin/appliance models repo "
            f"init {root}/srv/models, then start: systemctl enable --now "
            "appliance-models-repo.service") in done.stderr
    assert not [link for link in units.rglob("appliance-models-*") if link.is_symlink()]
    metadata = root / "srv/models/public/metadata"
    metadata.mkdir(parents=True)
    (metadata / "timestamp.json").write_text("{}")  # `models repo init /srv/models` ran
    done = install(root, *worker)
    assert done.returncode == 0, done.stderr
    assert "appliance-models-repo.service enabled; appliance-models-refresh.timer enabled" in (
        done.stderr)
    assert (units / "multi-user.target.wants/appliance-models-repo.service").is_symlink()
    assert (units / "timers.target.wants/appliance-models-refresh.timer").is_symlink()
    gone = install(root, "backoffice", "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert [path.name for path in units.rglob("*")] == []  # every unit and link removed


def test_the_refresh_timer_on_a_rerun_is_running_not_stopped(live_host: LiveHost) -> None:
    """A timer is active, not a running service: a rerun must find it so and leave it, and
    restart the repository's server after an upgrade as it does the workers."""
    metadata = live_host.root / "srv/models/public/metadata"
    metadata.mkdir(parents=True)
    (metadata / "timestamp.json").write_text("{}")
    worker = ("backoffice", "--worker", "backoffice-1")
    _said, calls = live_host.install(*worker)
    assert [f"enable --now {name}" for name in REPO_UNITS] == [
        call for call in calls if call.startswith("enable") and "models" in call]
    live_host.code("version 2")
    said, calls = live_host.install(*worker)
    assert "stays so" not in said
    assert "appliance-models-refresh.timer running" in said
    assert "restart appliance-models-repo.service" in calls


def test_a_refused_back_office_config_is_said_once_for_the_worker_and_the_console(
    live_host: LiveHost,
) -> None:
    """The console reads the worker's file: its check repeated every complaint the worker's had
    just printed."""
    config = live_host.root / "etc/appliance/backoffice.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("refuse\n")
    said, calls = live_host.install("backoffice", "--worker", "backoffice-1")
    assert said.count(": refused") == 1
    assert f"then start: systemctl enable --now {CONSOLE}" in said  # not started all the same
    assert not [call for call in calls if call.startswith("enable")]


# apt-get records what it was asked to install; it fails where the test left a file apt-fails
RECORDING_APT_GET = """#!/bin/sh
echo "$*" >> "$FAKE_DIR/apt-get.calls"
if [ -e "$FAKE_DIR/apt-fails" ]; then echo "E: Unable to locate package" >&2; exit 100; fi
"""


def _path_without_pg_dump(folder: Path) -> str:
    """A PATH of this host's programs, pg_dump and pg_restore left out (postgresql-client not
    installed)."""
    folder.mkdir()
    for where in os.environ["PATH"].split(":"):
        for program in Path(where).glob("*") if Path(where).is_dir() else []:
            link = folder / program.name
            if program.name not in ("pg_dump", "pg_restore") and not link.exists():
                link.symlink_to(program)
    return str(folder)


def test_a_back_office_on_postgresql_gets_pg_dump_for_its_nightly_backup(
    live_host: LiveHost,
) -> None:
    """Before, install.sh installed the backup's timer on a PostgreSQL back office without
    postgresql-client: the backup failed every night ("pg_dump is not installed here")."""
    apt_get = live_host.folder / "bin/apt-get"
    apt_get.write_text(RECORDING_APT_GET)
    apt_get.chmod(0o755)
    calls = live_host.folder / "apt-get.calls"
    path = _path_without_pg_dump(live_host.folder / "host-bin")
    config = live_host.root / "etc/appliance/backoffice.yaml"
    config.parent.mkdir(parents=True)
    worker = ("backoffice", "--worker", "backoffice-1")
    config.write_text("store:\n  url: null\n")  # SQLite: no client needed
    said, _ = live_host.install(*worker, path=path)
    assert not calls.exists()
    assert "pg_dump" not in said
    config.write_text("store:\n  url: 'postgresql://appliance@db.example.org/appliance'\n")
    said, _ = live_host.install(*worker, path=path)
    assert calls.read_text().split("\n")[0].split()[-1] == "postgresql-client"
    assert "installed postgresql-client" in said
    (live_host.folder / "apt-fails").touch()
    said, _ = live_host.install(*worker, path=path)  # the install goes on, saying so
    assert ("no pg_dump here, and store.url in " f"{config} is PostgreSQL: "
            "appliance-store-backup fails each night until it is installed: apt-get install "
            "postgresql-client") in said
    calls.unlink()
    said, _ = live_host.install(*worker)  # pg_dump there already: nothing installed
    assert not calls.exists()
    assert "pg_dump" not in said
