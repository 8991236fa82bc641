"""TLS to the broker: CA verification and the optional client certificate, on a real mosquitto."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.edge.testing import wait_until
from appliance.transport.broker import free_port, port_open
from appliance.transport.client import LinkSettings
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox

pytestmark = pytest.mark.broker


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(folder: Path) -> None:
    """A CA, a broker and a kiosk certificate signed by it, and an unrelated CA."""
    keys = {
        name: ec.generate_private_key(ec.SECP256R1()) for name in ("ca", "other", "broker", "kiosk")
    }
    _write(
        folder, "ca", _certificate("test CA", keys["ca"], "test CA", keys["ca"], True), keys["ca"]
    )
    _write(
        folder,
        "other",
        _certificate("other", keys["other"], "other", keys["other"], True),
        keys["other"],
    )
    for leaf in ("broker", "kiosk"):
        _write(
            folder, leaf, _certificate(leaf, keys[leaf], "test CA", keys["ca"], False), keys[leaf]
        )


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[tuple[int, Path]]:
    """mosquitto with a TLS listener that requires a client certificate from the test CA."""
    folder = Path(tempfile.mkdtemp(prefix="appliance-tls-"))
    make_pki(folder)
    port = free_port()
    (folder / "tls.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {folder / 'ca.crt'}\ncertfile {folder / 'broker.crt'}\n"
        f"keyfile {folder / 'broker.key'}\nrequire_certificate true\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(folder / "tls.conf")])
    wait_until(lambda: port_open("127.0.0.1", port), 5)
    try:
        yield port, folder
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(folder)


def run_link(tmp_path: Path, port: int, ca_file: Path, pki: Path, seconds: float) -> MqttLink:
    outbox = Outbox(tmp_path / f"outbox-{ca_file.stem}.db")
    outbox.add_many([(f"m{i}", "tls/result", b"{}") for i in range(3)])
    settings = LinkSettings(
        "127.0.0.1",
        port,
        f"tls-{ca_file.stem}",
        tls_enabled=True,
        ca_file=str(ca_file),
        cert_file=str(pki / "kiosk.crt"),
        key_file=str(pki / "kiosk.key"),
        reconnect_initial_s=0.2,
        reconnect_cap_s=0.5,
    )
    link = MqttLink(
        settings,
        outbox,
        status_topic="tls/status",
        status_payload=lambda s: s.encode(),
        ack_topic="tls/ack",
    )
    link.start()
    wait_until(lambda: link.stats.broker_acked >= 3, seconds)
    link.stop_event.set()
    link.wake()
    link.join(5)
    return link


def test_tls_with_the_right_ca_and_a_client_certificate_delivers(
    tls_broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, pki = tls_broker
    link = run_link(tmp_path, port, pki / "ca.crt", pki, seconds=10)
    assert link.stats.broker_acked == 3
    assert link.outbox.depth() == 3  # kept until a back office confirms them


def test_a_broker_the_ca_does_not_vouch_for_gets_nothing(
    tls_broker: tuple[int, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, pki = tls_broker
    link = run_link(tmp_path, port, pki / "other.crt", pki, seconds=1.5)
    assert link.stats.published == 0
    assert link.outbox.depth() == 3  # kept for when the configuration is fixed
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
