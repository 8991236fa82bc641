#!/usr/bin/env python3
"""Provision broker identities: a test CA, the broker's certificate, and one login per client.

    provision.py --out DIR --device shop-1/kiosk-1 --device shop-2/kiosk-7 [--devices FILE]
                 [--worker backoffice-1 ...] [--prefix appliance] [--host broker.example]
                 [--pathology-server pathology-lab1-0 ...] [--pathology-client lab-user ...]
                 [--revoke LOGIN ...] [--rotate LOGIN ...]

FILE holds one ``site/device`` per line. Each run names the whole fleet: a login DIR holds
that the run does not name is refused (nothing written) unless ``--revoke`` names it, which
removes it and its password file; ``--rotate`` gives a login of the run a new password.
Writes into DIR (re-running keeps the CA, the keys and every password already made, and adds
what is new); mosquitto reads it at its start (restart it after a run):

    certs/ca.crt, certs/ca.key         the CA kiosks trust (mqtt.tls.ca_file)
    certs/broker.crt, certs/broker.key the broker's TLS certificate (SAN: --host, localhost)
    dynamic-security.json              mosquitto's dynamic-security plugin state: every client,
                                       its password hash, its client id and its role
    credentials/NAME.password          one password per login (0600), for LoadCredential=

Identity rules (docs/broker-identity.md): a device logs in as its device id, must use the
client id ``edge-SITE-DEVICE`` (the broker refuses any other), may publish only its own
``result``, ``status``, ``model/state`` and ``presence`` topics under the site it was
provisioned for, and may subscribe only to its own ``cmd/#``, ``model/update``, ``ack`` and
``presence``, each filter as written (``cmd/#``, not ``cmd/x``: mosquitto 2.0 bounds no
session's subscriptions); nothing else, no ``$share``. Its look login ``DEVICE@look`` (the same
password, client id ``edge-SITE-DEVICE@look``) may only publish and subscribe to that
``presence``: a kiosk that holds back for another one with its device id looks again under it.
Back-office workers log in as their own name with that name as client id.
Pathology servers likewise (``pathology.client_id``, their server id): each may read every
job's requests and cancels, publish job states, clear requests and cancels, answer on and
read the errors topics, and publish only its own presence. Its probe login ``SERVER@probe``
(the same password, client id ``SERVER@probe``) may publish and subscribe to nothing: the
server asks under it, when a CONNECT was dropped before its CONNACK, the largest packet the
broker takes (its CONNACK says). Pathology clients (``appliance pathology job`` submit, list,
cancel; their login is their client id) each get a role of their own: a job's id starts with
its submitter's login (``jobs/LOGIN/NAME/...``), and a client may publish requests and
cancels, and read states and waiting requests, under its own login only, besides the
servers' presences and its own errors topic (``errors/LOGIN``). One lab's login can thus
neither cancel, withdraw nor replace another's job, nor read its results or its refusals.
Nothing else reaches the pathology topics: not a device, not a worker
(docs/pathology-server.md).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PBKDF2_ITERATIONS = 101  # what mosquitto_ctrl writes; the plugin reads the count per client
CERT_DAYS = 825
LOOK = "@look"  # a device's look login and client id: its own with this (presence_look.py)
PROBE = "@probe"  # a pathology server's probe login and client id (pathology/serverlink.py)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), f"{path}: not an EC key"
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(path, pem)
    return key


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer_key: Any,
                 issuer: str, hosts: list[str] | None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=hosts is None, path_length=None), critical=True)
    )
    if hosts is not None:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(out: Path, hosts: list[str]) -> None:
    """The CA (kept when present) and a broker certificate for ``hosts`` signed by it."""
    certs = out / "certs"
    ca_key = _key(certs / "ca.key")
    ca_path = certs / "ca.crt"
    if not ca_path.exists():
        ca = _certificate("appliance fleet CA", ca_key, ca_key, "appliance fleet CA", None)
        ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    broker_key = _key(certs / "broker.key")
    broker = _certificate(hosts[0], broker_key, ca_key, "appliance fleet CA", hosts)
    (certs / "broker.crt").write_bytes(broker.public_bytes(serialization.Encoding.PEM))


def password_for(out: Path, login: str) -> str:
    """The login's password: kept from an earlier run, or a new random one (saved 0600)."""
    path = out / "credentials" / f"{login}.password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    _write_private(path, (password + "\n").encode())
    return password


def dynsec_client(login: str, password: str, client_id: str, role: str) -> dict[str, Any]:
    """A dynamic-security client: PBKDF2-SHA512 hash as mosquitto_ctrl writes it, bound id.

    Every login is bound to one client id: the plugin does not reserve a bound id for its
    login, so a login free to pick any id could take over a kiosk's, a worker's or a server's
    connection, and its persistent session with the results queued for it."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {
        "username": login,
        "clientid": client_id,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
        "roles": [{"rolename": role}],
    }


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def device_role(prefix: str, site: str, device: str) -> dict[str, Any]:
    """What one device may do: its own topics under its provisioned site, nothing else. It
    reads back its own presence (another kiosk started with its device id shows there:
    appliance/transport/presence.py).

    Its subscriptions are literal, the four filters a kiosk subscribes as written
    (appliance/edge/daemon.py): mosquitto 2.0 bounds neither how many subscriptions a session
    holds nor their length, so a pattern ``cmd/#`` would grant ``cmd/<64 KiB name>`` without
    end, each kept in its persistent session, in memory and in the persistence file."""
    own = f"{prefix}/{site}/{device}"
    acls = [_acl("publishClientSend", f"{own}/{leaf}")
            for leaf in ("result", "status", "model/state", "presence")]
    acls += [_acl("subscribeLiteral", f"{own}/{leaf}")
             for leaf in ("cmd/#", "model/update", "ack", "presence")]
    return {"rolename": f"device-{device}", "acls": acls}


def device_look_role(prefix: str, site: str, device: str) -> dict[str, Any]:
    """What a device's look login may do: read and ask on its own presence topic, nothing
    else. A kiosk that holds back (another live kiosk has its device id) looks again under
    this login, so that its look never takes the live kiosk's client id and connection
    (appliance/transport/presence_look.py)."""
    presence = f"{prefix}/{site}/{device}/presence"
    return {"rolename": f"device-{device}{LOOK}",
            "acls": [_acl("publishClientSend", presence), _acl("subscribeLiteral", presence)]}


def _not_pathology(prefix: str) -> list[dict[str, Any]]:
    """Denials that come first (priority 1) for the fleet's roles: their ``{p}/+/+/...``
    patterns also match the pathology topics (site "pathology", device "jobs" or "servers":
    ``{p}/pathology/jobs/cmd/j1/request`` is a job of a login named "cmd",
    ``{p}/pathology/servers/ack`` a server named "ack")."""
    return [{"acltype": kind, "topic": f"{prefix}/pathology/#", "priority": 1, "allow": False}
            for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")]


def backoffice_role(prefix: str, group: str) -> dict[str, Any]:
    """Back-office workers: read the fleet (shared for results), send acks and commands (the
    only login that may send ``cmd/forget``, an erasure reaching a kiosk's kept copies:
    appliance/backoffice/kiosk_forgets.py; the rollout's may send ``cmd/resend`` only). Its
    subscriptions are the three filters a worker subscribes, literal (as a device's: no
    ``{p}/<64 KiB>/x/status`` without end; appliance/backoffice/ingest.py)."""
    fleet = f"{prefix}/+/+"
    acls = [*_not_pathology(prefix), _acl("subscribeLiteral", f"$share/{group}/{fleet}/result")]
    acls += [_acl("subscribeLiteral", f"{fleet}/{leaf}") for leaf in ("status", "model/state")]
    acls += [_acl("publishClientSend", f"{fleet}/{leaf}") for leaf in ("ack", "cmd/#")]
    return {"rolename": "backoffice", "acls": acls}


def rollout_role(prefix: str) -> dict[str, Any]:
    """The model rollout: the only publisher of model updates, and the operator's login that
    asks the kiosks to send again what the back office confirmed since a time (``appliance
    fleet resend``, after a store restore: ``cmd/resend``, no other command). It subscribes the
    fleet's two filters as written, literal (appliance/updates/fleetwatch.py)."""
    fleet = f"{prefix}/+/+"
    return {
        "rolename": "rollout",
        "acls": [
            *_not_pathology(prefix),
            _acl("publishClientSend", f"{fleet}/model/update"),
            _acl("publishClientSend", f"{fleet}/cmd/resend"),
            _acl("subscribeLiteral", f"{fleet}/model/state"),
            _acl("subscribeLiteral", f"{fleet}/status"),  # which devices exist (deploy --all)
        ],
    }


def pathology_server_role(prefix: str, login: str) -> dict[str, Any]:
    """A pathology server: reads every job request and cancel (``jobs/LOGIN/NAME/...``: every
    job client's), publishes job states, clears the requests and cancels it has dealt with (an
    empty retained message), answers on each login's errors topic (``errors/LOGIN``) and on
    the servers' own (``errors``: topics that name no login), which it may read, and publishes
    its own presence only, which it also reads (another process under its name shows there:
    appliance/pathology/presence.py). Its subscriptions are literal, the filters as written
    (appliance/pathology/serverlink.py), as a device's: no ``jobs/+/<64 KiB>/request``
    without end in its session."""
    jobs = f"{prefix}/pathology/jobs/+/+"
    acls = [_acl("subscribeLiteral", f"{jobs}/{leaf}") for leaf in ("request", "cancel")]
    acls += [_acl("publishClientSend", f"{jobs}/{leaf}") for leaf in ("request", "state",
                                                                       "cancel")]
    errors = f"{prefix}/pathology/errors"
    acls += [_acl("publishClientSend", errors), _acl("publishClientSend", f"{errors}/+"),
             _acl("subscribeLiteral", f"{errors}/#"),
             _acl("publishClientSend", f"{prefix}/pathology/servers/{login}"),
             _acl("subscribeLiteral", f"{prefix}/pathology/servers/{login}")]
    return {"rolename": f"pathology-server-{login}", "acls": acls}


def pathology_probe_role() -> dict[str, Any]:
    """What a pathology server's probe login may do: nothing but connect. The server asks
    under it the broker's maximum packet size (in the CONNACK), never under its own client id,
    whose connection the broker would close for the probe (appliance/pathology/serverlink.py).
    """
    return {"rolename": f"pathology-server{PROBE}", "acls": []}


def pathology_client_role(prefix: str, login: str) -> dict[str, Any]:
    """One login that submits, lists and cancels pathology jobs: publishes requests and cancels
    of its own jobs only (a job id starts with its submitter's login, appliance/pathology/
    jobs.py), reads their states and waiting requests, the servers' presence and its own
    errors topic (``errors/LOGIN``: the refusals of its requests and cancels; another login's
    name its jobs). A role per login, as for devices: mosquitto 2.0's dynamic-security ACLs
    substitute no ``%u`` (2.1 adds it; docs/broker-identity.md)."""
    own = f"{prefix}/pathology/jobs/{login}/+"
    acls = [_acl("publishClientSend", f"{own}/{leaf}") for leaf in ("request", "cancel")]
    acls += [_acl("subscribePattern", f"{own}/{leaf}") for leaf in ("request", "state")]
    acls += [_acl("subscribePattern", f"{prefix}/pathology/servers/+"),
             _acl("subscribeLiteral", f"{prefix}/pathology/errors/{login}")]
    return {"rolename": f"pathology-client-{login}", "acls": acls}


def dynsec_state(out: Path, devices: list[tuple[str, str]], workers: list[str],
                 prefix: str, group: str, *, pathology_servers: tuple[str, ...] = (),
                 pathology_clients: tuple[str, ...] = ()) -> dict[str, Any]:
    """The plugin's JSON: every client with its bound client id and its role."""
    clients = [
        dynsec_client(dev, password_for(out, dev), f"edge-{site}-{dev}", f"device-{dev}")
        for site, dev in devices
    ]
    # the look login: the device's password, its own client id (LOOK: '@' is in no name)
    clients += [dynsec_client(f"{dev}{LOOK}", password_for(out, dev), f"edge-{site}-{dev}{LOOK}",
                              f"device-{dev}{LOOK}") for site, dev in devices]
    clients += [dynsec_client(w, password_for(out, w), w, "backoffice") for w in workers]
    clients.append(dynsec_client("rollout", password_for(out, "rollout"), "rollout", "rollout"))
    clients += [dynsec_client(s, password_for(out, s), s, f"pathology-server-{s}")
                for s in pathology_servers]
    clients += [dynsec_client(f"{s}{PROBE}", password_for(out, s), f"{s}{PROBE}",
                              f"pathology-server{PROBE}") for s in pathology_servers]
    clients += [dynsec_client(c, password_for(out, c), c, f"pathology-client-{c}")
                for c in pathology_clients]
    roles = [device_role(prefix, site, dev) for site, dev in devices]
    roles += [device_look_role(prefix, site, dev) for site, dev in devices]
    roles += [backoffice_role(prefix, group), rollout_role(prefix)]
    roles += [pathology_server_role(prefix, s) for s in pathology_servers]
    if pathology_servers:
        roles.append(pathology_probe_role())
    roles += [pathology_client_role(prefix, c) for c in pathology_clients]
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,  # receiving is gated by what a client may subscribe
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def provisioned_logins(out: Path) -> set[str]:
    """The logins DIR's dynamic-security state holds now, the derived ``@look`` and ``@probe``
    ones left out (they come and go with their device or server)."""
    path = out / "dynamic-security.json"
    if not path.exists():
        return set()
    try:
        state = json.loads(path.read_text())
        return {c["username"] for c in state["clients"] if "@" not in c["username"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: cannot read the logins it holds ({exc}); "
                         "nothing written") from exc


def check_changes(out: Path, logins: list[str], revoke: list[str], rotate: list[str]) -> None:
    """Refuse a run that would drop a login without ``--revoke`` naming it: a run writes the
    broker's whole state from its arguments, so one naming only a new kiosk (or no
    ``--worker``) removed every other login at the next broker restart, saying nothing.
    Nothing is written when refused."""
    named = set(logins)
    if odd := [login for login in revoke if not NAME.match(login)]:  # names a file: no path
        raise SystemExit(f"--revoke {odd[0]!r}: not a login name; nothing written")
    if kept := sorted(named & set(revoke)):
        raise SystemExit(f"--revoke {', '.join(kept)}: also named to keep; nothing written")
    if unknown := sorted(set(rotate) - named):
        raise SystemExit(f"--rotate {', '.join(unknown)}: not a login this run keeps (name it "
                         "with --device, --worker, ... as well); nothing written")
    if dropped := sorted(provisioned_logins(out) - named - set(revoke)):
        raise SystemExit(
            f"{out / 'dynamic-security.json'} holds login(s) this run does not name: "
            f"{', '.join(dropped)}. Each run writes the whole fleet: name every device "
            "(--devices FILE), --worker and pathology login each time, or --revoke LOGIN "
            "to remove one; nothing written")


def read_devices(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(site, device) pairs from --device and --devices; unique device ids, valid names."""
    lines = list(args.device)
    if args.devices:
        lines += [ln.strip() for ln in Path(args.devices).read_text().splitlines()]
    pairs: dict[str, str] = {}
    for line in filter(None, (ln.split("#")[0].strip() for ln in lines)):
        site, _, device = line.partition("/")
        if not (NAME.match(site) and NAME.match(device)):
            raise SystemExit(f"device {line!r}: expected SITE/DEVICE (letters, digits, _ . -)")
        if site == "pathology":  # {prefix}/pathology/... are the pathology server's topics
            raise SystemExit(f"device {line!r}: the site name 'pathology' is reserved")
        if pairs.setdefault(device, site) != site:
            raise SystemExit(f"device {device!r} listed under two sites; device ids are unique")
    return [(site, device) for device, site in pairs.items()]


def main(argv: list[str]) -> int:
    """Write certificates, passwords and the dynamic-security state for the given fleet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", action="append", default=[], help="SITE/DEVICE")
    parser.add_argument("--devices", help="file with one SITE/DEVICE per line")
    parser.add_argument("--worker", action="append", default=[], help="back-office worker login")
    parser.add_argument("--prefix", default="appliance")
    parser.add_argument("--share-group", default="backoffice")
    parser.add_argument("--host", action="append", default=[], help="broker host name(s)")
    parser.add_argument("--pathology-server", action="append", default=[],
                        help="pathology server login, also its client id (pathology.client_id)")
    parser.add_argument("--pathology-client", action="append", default=[],
                        help="login of whoever submits, lists and cancels pathology jobs")
    parser.add_argument("--revoke", action="append", default=[], metavar="LOGIN",
                        help="remove this login (and its @look or @probe one) and its password")
    parser.add_argument("--rotate", action="append", default=[], metavar="LOGIN",
                        help="give this login (named in this run) a new password")
    args = parser.parse_args(argv)
    devices = read_devices(args)
    workers = args.worker or ["backoffice-1"]
    servers, users = tuple(args.pathology_server), tuple(args.pathology_client)
    logins = [*(d for _, d in devices), *workers, "rollout", *servers, *users]
    if any(not NAME.match(login) for login in logins) or len(set(logins)) != len(logins):
        raise SystemExit("logins (devices, workers, rollout, pathology servers and clients): "
                         "letters, digits, _ . -, each used once")
    check_changes(args.out, logins, args.revoke, args.rotate)
    for login in args.rotate:  # password_for makes a new one
        (args.out / "credentials" / f"{login}.password").unlink(missing_ok=True)
    make_certificates(args.out, [*args.host, "localhost", "127.0.0.1"])
    state = dynsec_state(args.out, devices, workers, args.prefix, args.share_group,
                         pathology_servers=servers, pathology_clients=users)
    _write_private(args.out / "dynamic-security.json", json.dumps(state, indent=1).encode())
    for login in args.revoke:  # a login provisioned again later gets a new password
        (args.out / "credentials" / f"{login}.password").unlink(missing_ok=True)
    for what, names in (("revoked", args.revoke), ("new password for", args.rotate)):
        if names:
            print(f"{what}: {', '.join(names)} (mosquitto reads this at its start: restart it)")
    print(f"{args.out}: {len(devices)} device(s), {len(workers)} worker(s), rollout, "
          f"{len(servers)} pathology server(s), {len(users)} pathology client(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
