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
