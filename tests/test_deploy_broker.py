"""README.md "Install a kiosk": its broker lines, run as written on Debian's stock mosquitto.

The lines run as root in a folder standing for `/` (every `/etc/`, `/var/` and `/run/` path
moved under it), beside the `mosquitto.conf` Debian 12's mosquitto 2.0.11 package installs;
`systemctl restart mosquitto` is mosquitto started on that file, as the package's unit starts it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from appliance.transport.broker import free_port, port_open
from tests.fleet_broker import FleetBroker, Probe

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[1]

# /etc/mosquitto/mosquitto.conf of Debian 12's mosquitto 2.0.11-1.2+deb12u2, comments left out
DEBIAN_MOSQUITTO_CONF = """\
pid_file /run/mosquitto/mosquitto.pid
persistence true
persistence_location /var/lib/mosquitto/
log_dest file /var/log/mosquitto/mosquitto.log
include_dir /etc/mosquitto/conf.d
"""
SYSTEM_PATH = re.compile(r"(?<![\w./-])/(etc|var|run)/")


def _broker_lines() -> list[str]:
    """The shell lines of the README's broker block, continuations joined."""
    section = (REPO / "README.md").read_text().split("### Install a kiosk", 1)[1]
    block = section.split("\n\n    ", 1)[1].split("\n\n", 1)[0]
    return ("    " + block).replace("\\\n", " ").splitlines()


@pytest.fixture
def system_root() -> Iterator[Path]:
    """A folder standing for `/`, with the folders Debian's mosquitto package makes."""
    if os.geteuid() != 0 or shutil.which("mosquitto") is None:
        pytest.skip("needs root and mosquitto, as the README's broker host")
    try:
        owner = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no user mosquitto (Debian's mosquitto package makes it)")
    root = Path(tempfile.mkdtemp(prefix="appliance-broker-root-"))
    root.chmod(0o755)
    for folder in ("etc/mosquitto/conf.d", "var/lib/mosquitto", "var/log/mosquitto",
                   "run/mosquitto"):
        (root / folder).mkdir(parents=True)
    for folder in ("var/lib/mosquitto", "var/log/mosquitto", "run/mosquitto"):
        os.chown(root / folder, owner.pw_uid, owner.pw_gid)
    (root / "etc/mosquitto/mosquitto.conf").write_text(_moved(DEBIAN_MOSQUITTO_CONF, root))
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _moved(text: str, root: Path) -> str:
    return SYSTEM_PATH.sub(lambda found: f"{root}/{found.group(1)}/", text)


def test_the_readme_broker_lines_start_a_broker_a_kiosk_logs_in_to(system_root: Path) -> None:
    """As written, mosquitto did not start: it reads the provisioned files as user mosquitto
    (root's, 0600: "File is not readable", "Unable to load server key file"), and the
    shipped appliance.conf named a second persistence_location beside Debian's
    ("Duplicate persistence_location value in configuration")."""
    lines = [line.replace("python3 ", f"{sys.executable} ", 1)
             .replace("&& systemctl restart mosquitto", "") for line in _broker_lines()]
    assert any("provision.py" in line for line in lines)
    done = subprocess.run(["bash", "-ec", _moved("\n".join(lines), system_root)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    port = free_port()
    part = system_root / "etc/mosquitto/conf.d/appliance.conf"
    part.write_text(_moved(part.read_text(), system_root)
                    .replace("listener 8883", f"listener {port} 127.0.0.1"))
    main_conf = system_root / "etc/mosquitto/mosquitto.conf"
    broker = subprocess.Popen(["mosquitto", "-c", str(main_conf)], stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_until(lambda: port_open("127.0.0.1", port) or broker.poll() is not None, 10)
        log = system_root / "var/log/mosquitto/mosquitto.log"
        assert broker.poll() is None, (broker.stderr.read() if broker.stderr else "") + (
            log.read_text() if log.exists() else "")
        kiosk = Probe(FleetBroker(port, system_root / "etc/mosquitto/appliance"), "kiosk-1",
                      "edge-shop-1-kiosk-1")
        try:
            assert kiosk.connack == 0
        finally:
            kiosk.close()
    finally:
        broker.terminate()
        broker.wait(10)
