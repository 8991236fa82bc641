"""deploy/mosquitto/provision.py run again on a provisioned folder: a run that names less than
the folder holds is refused unless it revokes what it leaves out; ``--revoke`` and ``--rotate``
(docs/broker-identity.md, "Rotate a password, revoke a login")."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROVISION = REPO / "deploy" / "mosquitto" / "provision.py"


def provision(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROVISION), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def clients(out: Path) -> dict[str, dict[str, object]]:
    state = json.loads((out / "dynamic-security.json").read_text())
    return {client["username"]: client for client in state["clients"]}


def password(out: Path, login: str) -> str:
    return (out / "credentials" / f"{login}.password").read_text().strip()


def hash_matches(client: dict[str, object], secret: str) -> bool:
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(str(client["salt"])),
                                 int(str(client["iterations"])))
    return base64.b64encode(digest).decode() == client["password"]


FLEET = ("--device", "shop-1/kiosk-1", "--device", "shop-1/kiosk-2", "--worker", "backoffice-1")


def test_a_run_naming_only_a_new_kiosk_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """README's provisioning line names one kiosk; run so for a second kiosk it dropped the
    first kiosk's login (and its look login) from the broker's state, saying nothing."""
    out = tmp_path / "appliance"
    assert provision(out, *FLEET).returncode == 0
    before = (out / "dynamic-security.json").read_bytes()
    done = provision(out, "--device", "shop-1/kiosk-3", "--worker", "backoffice-1")
    assert done.returncode != 0
    assert "kiosk-1, kiosk-2" in done.stderr
    assert "--revoke" in done.stderr
    assert (out / "dynamic-security.json").read_bytes() == before
    assert not (out / "credentials" / "kiosk-3.password").exists()
    assert provision(out, *FLEET, "--device", "shop-1/kiosk-3", "--worker", "backoffice-2"
                     ).returncode == 0
    assert {"kiosk-1", "kiosk-2", "kiosk-3", "kiosk-3@look", "backoffice-2"} <= set(clients(out))
    done = provision(out, *FLEET, "--device", "shop-1/kiosk-3")  # a worker left out
    assert done.returncode != 0
    assert "backoffice-2" in done.stderr


def test_revoke_removes_the_login_its_look_login_and_its_password(tmp_path: Path) -> None:
    out = tmp_path / "appliance"
    assert provision(out, *FLEET).returncode == 0
    kept = password(out, "kiosk-1")
    done = provision(out, "--device", "shop-1/kiosk-1", "--worker", "backoffice-1",
                     "--revoke", "kiosk-2")
    assert done.returncode == 0, done.stderr
    assert "revoked: kiosk-2" in done.stdout
    assert not {"kiosk-2", "kiosk-2@look"} & set(clients(out))
    assert not any(r["rolename"].startswith("device-kiosk-2")
                   for r in json.loads((out / "dynamic-security.json").read_text())["roles"])
    assert not (out / "credentials" / "kiosk-2.password").exists()
    assert password(out, "kiosk-1") == kept
    # provisioned again later, it gets a new password, not the revoked one
    assert provision(out, *FLEET).returncode == 0
    assert hash_matches(clients(out)["kiosk-2"], password(out, "kiosk-2"))
    outside = tmp_path / "outside.password"
    outside.write_text("x\n")
    refused = provision(out, *FLEET, "--revoke", "../../outside")
    assert refused.returncode != 0
    assert outside.exists()
    refused = provision(out, *FLEET, "--revoke", "kiosk-2")
    assert refused.returncode != 0
    assert "also named to keep" in refused.stderr


def test_rotate_gives_one_login_a_new_password_and_keeps_the_others(tmp_path: Path) -> None:
    out = tmp_path / "appliance"
    assert provision(out, *FLEET).returncode == 0
    old, other = password(out, "kiosk-1"), password(out, "kiosk-2")
    done = provision(out, *FLEET, "--rotate", "kiosk-1")
    assert done.returncode == 0, done.stderr
    new = password(out, "kiosk-1")
    assert new != old
    assert password(out, "kiosk-2") == other
    state = clients(out)
    assert hash_matches(state["kiosk-1"], new)
    assert not hash_matches(state["kiosk-1"], old)
    assert hash_matches(state["kiosk-1@look"], new)  # the look login has the device's
    assert hash_matches(state["kiosk-2"], other)
    refused = provision(out, *FLEET, "--rotate", "kiosk-9")
    assert refused.returncode != 0
    assert "kiosk-9" in refused.stderr


def _doc_provision_lines(heading: str) -> list[str]:
    """docs/broker-identity.md's provision.py command lines under ``heading``, continuations
    joined, in order."""
    text = (REPO / "docs" / "broker-identity.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = section.replace("\\\n", " ").splitlines()
    return [" ".join(line.split()) for line in lines
            if line.startswith("    ") and "provision.py" in line]


def test_the_rotate_and_revoke_lines_of_broker_identity_do_what_it_says(tmp_path: Path) -> None:
    """The doc's two lines, run as written (its /etc under a folder of the test's, its
    fleet.txt the test's: kiosk-2 taken out of it before the revocation, as the doc says)."""
    rotate, revoke = _doc_provision_lines("Rotate a password, revoke a login")
    assert "--rotate kiosk-1" in rotate
    assert "--revoke kiosk-2" in revoke
    out = tmp_path / "etc" / "mosquitto" / "appliance"
    assert provision(out, *FLEET).returncode == 0
    first, other = password(out, "kiosk-1"), password(out, "kiosk-2")
    fleet = tmp_path / "fleet.txt"

    def run(line: str) -> None:
        line = (line.replace("python3 ", f"{sys.executable} ", 1)
                .replace("/etc/", f"{tmp_path}/etc/").replace("fleet.txt", str(fleet)))
        done = subprocess.run(["bash", "-ec", line], cwd=REPO, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    fleet.write_text("shop-1/kiosk-1\nshop-1/kiosk-2\n")
    run(rotate)
    assert password(out, "kiosk-1") != first
    assert password(out, "kiosk-2") == other
    fleet.write_text("shop-1/kiosk-1\n")
    run(revoke)
    assert "kiosk-2" not in clients(out)
    assert "kiosk-1" in clients(out)
    assert not (out / "credentials" / "kiosk-2.password").exists()
