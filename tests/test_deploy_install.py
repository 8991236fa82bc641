"""deploy/install.sh under a scratch root: layout, modes, enabled units, idempotence, removal.

``--root`` installs the same files under a folder (no user, no service start) and
``--skip-pip`` leaves the venv empty, so this runs in seconds without touching the host.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

INSTALL = Path(__file__).resolve().parent.parent / "deploy" / "install.sh"


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
    wants = "etc/systemd/system/multi-user.target.wants/appliance-edge.service"
    assert files[wants] == (0, "/etc/systemd/system/appliance-edge.service")  # enabled
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


def test_backoffice_install_enables_one_worker_instance_with_its_credential(
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
    wants = "etc/systemd/system/multi-user.target.wants/appliance-backoffice@backoffice-1.service"
    assert files[wants] == (0, "/etc/systemd/system/appliance-backoffice@.service")
    assert install(root, "backoffice", "--uninstall").returncode == 0
    assert not (root / wants).exists()
    assert not (root / "etc/systemd/system/appliance-backoffice@.service").exists()
