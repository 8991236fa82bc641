"""Broker identities: a private mosquitto running deploy/mosquitto (TLS, dynamic security).

A device credential may not join ``$share/...``, read other devices, take another client's
id or publish under another site; while one tries, the other kiosks' results all arrive.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import Store, open_store
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet as fleetsim
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.payloads import new_measurement_id
from appliance.transport.presence_look import NOBODY, PresenceLook
from appliance.transport.presence_messages import Presence
from tests.fleet_broker import FleetBroker, Probe, provisioned_broker
from tests.resend_kiosk import ResendKiosk

pytestmark = pytest.mark.broker
KIOSKS = [("shop-1", "kiosk-b"), ("shop-1", "kiosk-c"), ("shop-2", "kiosk-d")]
ATTACKER = ("shop-1", "kiosk-a")
PER_KIOSK = 100


@pytest.fixture
def fleet_broker() -> Iterator[FleetBroker]:
    devices = [f"--device={site}/{device}" for site, device in [*KIOSKS, ATTACKER]]
    with provisioned_broker([*devices, "--worker", "backoffice-1"]) as broker:
        yield broker


def kiosk_link(fleet: FleetBroker, tmp_path: Path, site: str, device: str) -> MqttLink:
    rng = random.Random(device)
    outbox = Outbox(tmp_path / f"{device}.sqlite3")
    topic = f"appliance/{site}/{device}/result"
    results = [fleetsim.sample_result(rng, site, device, i) for i in range(PER_KIOSK)]
    outbox.add_many([(r.measurement_id, topic, r.to_json()) for r in results])
    return MqttLink(
        fleet.settings(device, f"edge-{site}-{device}"),
        outbox,
        status_topic=f"appliance/{site}/{device}/status",
        status_payload=lambda state: b"",
        ack_topic=f"appliance/{site}/{device}/ack",
    )


def backoffice_worker(fleet: FleetBroker, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> tuple[Store, IngestWorker]:
    """A store and a started ingest worker logged in as backoffice-1 over TLS."""
    monkeypatch.setenv("APPLIANCE_MQTT_PASSWORD", fleet.password("backoffice-1"))
    config = config_from_mapping(
        {
            "mqtt": {"host": "127.0.0.1", "port": fleet.port, "username": "backoffice-1",
                     "tls": {"enabled": True, "ca_file": str(fleet.folder / "certs" / "ca.crt")}},
            "state_dir": str(tmp_path / "backoffice"),
            "backoffice": {"client_id": "backoffice-1"},
        },
        environ={},
    )
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    worker = IngestWorker(config, store)
    worker.start()
    return store, worker


def attack(fleet: FleetBroker) -> None:
    """Everything a stolen kiosk credential tries; each must be refused by the broker."""
    site, device = ATTACKER
    hijack = Probe(fleet, device, "backoffice-1")
    assert hijack.connack in (0x85, 0x87)  # not its client id: refused, session untouched
    hijack.close()
    probe = Probe(fleet, device, f"edge-{site}-{device}")
    assert probe.connack == 0
    own = f"appliance/{site}/{device}"
    assert probe.subscribe("$share/backoffice/appliance/+/+/result") == 0x87
    assert probe.subscribe("$share/x/appliance/shop-1/kiosk-b/result") == 0x87
    assert probe.subscribe("appliance/+/+/result") == 0x87
    assert probe.subscribe("appliance/shop-1/kiosk-b/cmd/#") == 0x87
    assert probe.subscribe("#") == 0x87
    assert probe.subscribe(f"{own}/cmd/#") == 1  # its own topics: granted QoS 1
    assert probe.subscribe(f"{own}/ack") == 1
    assert probe.publish(f"appliance/shop-2/{device}/result") == 0x87  # another site
    assert probe.publish(f"appliance/{site}/kiosk-b/result") == 0x87  # another device
    assert probe.publish(f"{own}/ack") == 0x87  # acks come only from the back office
    probe.close()


def test_device_credential_is_refused_shared_and_foreign_topics_and_ids_and_300_of_300_arrive(
    fleet_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, worker = backoffice_worker(fleet_broker, tmp_path, monkeypatch)
    links = [kiosk_link(fleet_broker, tmp_path, site, device) for site, device in KIOSKS]
    try:
        assert worker.subscribed.wait(10), worker.failed
        for link in links:
            link.start()
        attack(fleet_broker)
        assert wait_until(lambda: all(link.idle() for link in links), 60)
        assert worker.connected.is_set()  # the hijack attempt did not take its session
    finally:
        for link in links:
            link.stop_event.set()
            link.wake()
            link.join(5)
        worker.stop()
    assert store.count_results() == PER_KIOSK * len(KIOSKS)
    assert worker.failed is None
    store.close()


def test_a_refused_ack_subscription_is_logged_naming_the_topic_and_the_reason(
    fleet_broker: FleetBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A kiosk configured with another topic prefix than it was provisioned for connects, but
    may not read its ack topic: no result would ever be confirmed, and nothing said why."""
    site, device = KIOSKS[0]
    ack_topic = f"kiosks/{site}/{device}/ack"  # provisioned under "appliance/..."
    link = MqttLink(
        fleet_broker.settings(device, f"edge-{site}-{device}"),
        Outbox(tmp_path / "outbox.sqlite3"),
        status_topic=f"kiosks/{site}/{device}/status",
        status_payload=lambda state: b"",
        ack_topic=ack_topic,
    )
    with caplog.at_level(logging.ERROR, logger="appliance.transport"):
        link.start()
        try:
            assert wait_until(lambda: bool(caplog.records), timeout_s=10)
            assert link.connected  # the kiosk stays up: its results still go out
        finally:
            link.stop_event.set()
            link.wake()
            link.join(5)
    refusal = caplog.records[0].getMessage()
    assert f"refused the subscription of edge-{site}-{device} to {ack_topic}" in refusal
    assert "(reason code 0x87: Not authorized)" in refusal
    assert "never confirmed" in refusal


def retained_on(fleet: FleetBroker, login: str, client_id: str, topic: str) -> list[bytes]:
    """What the broker keeps retained on ``topic``, read as ``login`` (its own subscribe)."""
    heard: list[bytes] = []
    probe = Probe(fleet, login, client_id)
    probe.client.on_message = lambda _c, _u, message: heard.append(bytes(message.payload))
    assert probe.subscribe(topic) == 1
    wait_until(lambda: bool(heard), timeout_s=2)
    probe.close()
    return heard


def test_a_kiosk_reads_and_writes_its_own_presence_and_no_other_kiosks(
    fleet_broker: FleetBroker,
) -> None:
    """Another kiosk's credential can neither read a kiosk's presence (who runs it, where) nor
    clear or forge it (which would hide a clone, or make a kiosk hold back)."""
    (site, device), (attacker_site, attacker) = KIOSKS[0], ATTACKER
    victim_presence = f"appliance/{site}/{device}/presence"
    owner = Probe(fleet_broker, device, f"edge-{site}-{device}")
    # PUBACK 0x10: taken, nobody subscribed (MQTT 5 spec 3.4.2.1)
    assert owner.publish(victim_presence, b'{"process": "victim"}', retain=True) in (0, 0x10)
    owner.close()
    probe = Probe(fleet_broker, attacker, f"edge-{attacker_site}-{attacker}")
    assert probe.subscribe(victim_presence) == 0x87
    assert probe.subscribe("appliance/+/+/presence") == 0x87
    assert probe.publish(victim_presence, b"", retain=True) == 0x87  # clear it
    assert probe.publish(victim_presence, b'{"process": "forged"}', retain=True) == 0x87
    own_presence = f"appliance/{attacker_site}/{attacker}/presence"
    assert probe.subscribe(own_presence) == 1
    assert probe.publish(own_presence, b'{"process": "own"}', retain=True) in (0, 0x10)
    probe.close()
    assert retained_on(fleet_broker, device, f"edge-{site}-{device}",
                       victim_presence) == [b'{"process": "victim"}']


def test_a_kiosks_look_login_reads_and_asks_on_its_own_presence_and_nothing_else(
    fleet_broker: FleetBroker,
) -> None:
    """A held-back kiosk looks again under its look login, with a client id of its own, so that
    the look never ends the live kiosk's connection; that login may do nothing else."""
    site, device = KIOSKS[0]
    own = f"appliance/{site}/{device}"
    assert Probe(fleet_broker, device, f"edge-{site}-{device}@look").connack in (0x85, 0x87)
    look = Probe(fleet_broker, f"{device}@look", f"edge-{site}-{device}@look")
    assert look.connack == 0
    assert look.subscribe(f"{own}/presence") == 1
    assert look.publish(f"{own}/presence", b'{"probe": "x"}') in (0, 0x10)
    for leaf in ("ack", "cmd/#", "model/update"):
        assert look.subscribe(f"{own}/{leaf}") == 0x87
    for leaf in ("result", "status", "model/state"):
        assert look.publish(f"{own}/{leaf}") == 0x87
    other_site, other = KIOSKS[1]
    assert look.subscribe(f"appliance/{other_site}/{other}/presence") == 0x87
    assert look.publish(f"appliance/{other_site}/{other}/presence") == 0x87
    look.close()
    assert Probe(fleet_broker, f"{device}@look", f"edge-{site}-{device}").connack in (0x85, 0x87)


def test_a_look_with_the_kiosks_own_settings_finds_nobody_on_an_empty_presence(
    fleet_broker: FleetBroker,
) -> None:
    """The look derives its login and client id from the kiosk's, over the kiosk's TLS."""
    site, device = KIOSKS[0]
    look = PresenceLook(fleet_broker.settings(device, f"edge-{site}-{device}"),
                        f"appliance/{site}/{device}/presence", Presence(device, site), 30.0)
    try:
        outcome = look.step()
        deadline_s = time.monotonic() + 15
        while outcome.looking and time.monotonic() < deadline_s:
            outcome = look.step()
    finally:
        look.close()
    assert outcome == NOBODY


def test_a_kiosk_whose_client_id_someone_else_keeps_taking_says_so_once(
    fleet_broker: FleetBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone with a kiosk's login connecting again and again under its client id (no
    presence of its own) made the kiosk log only 'lost the broker (reason 128)' each time:
    nothing said that another client was taking its connection, nor what to do."""
    monkeypatch.setattr("appliance.transport.churn.SHORT_S", 600.0)  # however slow the host
    site, device = KIOSKS[0]
    link = kiosk_link(fleet_broker, tmp_path, site, device)
    with caplog.at_level(logging.WARNING, logger="appliance.transport"):
        link.start()
        try:
            for taken in range(1, 5):
                assert wait_until(lambda: link.connected, timeout_s=10)
                Probe(fleet_broker, device, f"edge-{site}-{device}").close()
                assert wait_until(lambda n=taken: link.stats.reconnects >= n, timeout_s=10)
            assert wait_until(lambda: link.connected, timeout_s=10)  # it still comes back
        finally:
            link.stop_event.set()
            link.wake()
            link.join(5)
    said = [r.getMessage() for r in caplog.records if "times in a row" in r.getMessage()]
    assert len(said) == 1
    assert f"client id edge-{site}-{device} (login {device})" in said[0]
    assert "provision.py" in said[0]


def test_a_connection_that_lasts_or_that_the_kiosk_ends_breaks_the_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from appliance.transport.churn import ConnectionChurn

    now = [0.0]
    churn = ConnectionChurn("edge-s-d", "d", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="appliance.transport"):
        for lasted_s, code in [(1, 128), (1, 128), (60, 128), (1, 128), (1, 0), (1, 128),
                               (1, 128), (1, 128), (1, 128)]:
            churn.connected()
            now[0] += lasted_s
            churn.lost(code)
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "the broker dropped this kiosk's connecti"]


def test_each_login_subscribes_only_the_filters_it_uses_as_written(
    fleet_broker: FleetBroker,
) -> None:
    """mosquitto 2.0 bounds neither how many subscriptions a session holds nor their length.
    A device's `cmd/#` was a pattern ACL, which granted any filter under it: a stolen kiosk
    login subscribed `cmd/<65,000 characters>` 1,600 times (400 SUBSCRIBEs) and the broker
    held 209 MB more, kept in the kiosk's persistent session (14 days) and written to a 104 MB
    persistence file (docs/experiments/README.md, aclattack). Now each login's subscriptions
    are the filters its client subscribes, literal: anything under them is refused (SUBACK
    0x87; on main 0x01), the filters themselves granted; the worker's and the rollout's fleet
    filters likewise."""
    site, device = ATTACKER
    own = f"appliance/{site}/{device}"
    kiosk = Probe(fleet_broker, device, f"edge-{site}-{device}")
    worker = Probe(fleet_broker, "backoffice-1", "backoffice-1")
    rollout = Probe(fleet_broker, "rollout", "rollout")
    try:
        for topic in (f"{own}/cmd/measure", f"{own}/cmd/+", f"{own}/cmd/a/b/c/#",
                      f"{own}/cmd/" + "x" * 60_000):
            assert kiosk.subscribe(topic) == 0x87, topic[:80]
        for leaf in ("cmd/#", "model/update", "ack", "presence"):  # what a kiosk subscribes
            assert kiosk.subscribe(f"{own}/{leaf}") == 1, leaf
        for probe in (worker, rollout):
            for leaf in ("status", "model/state"):
                for topic in (f"{own}/{leaf}", f"appliance/{'y' * 60_000}/+/{leaf}",
                              f"appliance/{site}/+/{leaf}"):
                    assert probe.subscribe(topic) == 0x87, topic[:80]
                assert probe.subscribe(f"appliance/+/+/{leaf}") == 1, leaf
        assert worker.subscribe("$share/backoffice/appliance/+/+/result") == 1
        heard: list[str] = []  # and what its own filters stand for still reaches it
        kiosk.client.on_message = lambda _c, _u, message: heard.append(message.topic)
        assert worker.publish(f"{own}/cmd/measure") in (0, 0x10)
        assert rollout.publish(f"{own}/model/update") in (0, 0x10)
        assert wait_until(lambda: len(heard) == 2, 5), heard
        assert sorted(heard) == [f"{own}/cmd/measure", f"{own}/model/update"]
    finally:
        for probe in (kiosk, worker, rollout):
            probe.close()


def test_only_the_back_office_side_may_ask_a_kiosk_to_resend(
    fleet_broker: FleetBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a kiosk's login makes no other kiosk (nor itself) send again what it keeps; the rollout
    # login (`appliance fleet resend`) does, and a request the kiosk refuses (not in UTC) changes
    # nothing
    site, device = KIOSKS[0]
    kiosk = ResendKiosk(tmp_path, "127.0.0.1", fleet_broker.port, prefix="appliance", site=site,
                        device=device, settings=fleet_broker.settings(device,
                                                                      f"edge-{site}-{device}"))
    kiosk.add([(f"m{i}", b"{}") for i in range(5)])
    kiosk.outbox.remove_ids([f"m{i}" for i in range(5)])  # confirmed: kept
    kiosk.start()
    cmd = f"appliance/{site}/{device}/cmd/resend"
    valid = json.dumps({"since": "2020-01-01T00:00:00Z"}).encode()
    try:
        assert wait_until(lambda: kiosk.link.connected, 10)
        attacker = Probe(fleet_broker, ATTACKER[1], f"edge-{ATTACKER[0]}-{ATTACKER[1]}")
        assert attacker.publish(cmd, valid) == 0x87
        own = f"appliance/{ATTACKER[0]}/{ATTACKER[1]}/cmd/resend"
        assert attacker.publish(own, valid) == 0x87
        attacker.close()
        rollout = Probe(fleet_broker, "rollout", "rollout")
        with caplog.at_level(logging.WARNING):
            assert rollout.publish(cmd, b'{"since": "2026-12-07T03:00:00+01:00"}') == 0
            assert wait_until(lambda: "refused a resend request" in caplog.text, 10)
        assert (kiosk.outbox.depth(), kiosk.outbox.kept_confirmed()) == (0, 5)
        assert rollout.publish(cmd, valid) == 0
        assert wait_until(lambda: kiosk.outbox.depth() == 5, 10)
        rollout.close()
    finally:
        kiosk.stop()


def test_a_retained_resend_request_is_not_taken_at_each_subscribe(
    fleet_broker: FleetBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a request published with retain (the rollout login may) stays on the broker; were it
    # sent at each subscribe, every reconnect and restart would send all the kiosk keeps again
    # and keep it a window longer. The kiosk subscribes with retain handling 2: only a request
    # published while it is subscribed is taken (the one below; a retained one taken at the
    # subscribe would have it refused as the second within a minute)
    site, device = KIOSKS[1]
    cmd = f"appliance/{site}/{device}/cmd/resend"
    valid = b'{"since": "2020-01-01T00:00:00Z"}'
    rollout = Probe(fleet_broker, "rollout", "rollout")
    assert rollout.publish(cmd, valid, retain=True) == 0x10  # no subscriber: kept retained
    kiosk = ResendKiosk(tmp_path, "127.0.0.1", fleet_broker.port, prefix="appliance", site=site,
                        device=device, settings=fleet_broker.settings(device,
                                                                      f"edge-{site}-{device}"))
    kiosk.add([(f"r{i}", b"{}") for i in range(5)])
    kiosk.outbox.remove_ids([f"r{i}" for i in range(5)])  # confirmed: kept
    try:
        with caplog.at_level(logging.WARNING):
            kiosk.start()
            # 0x10 until the kiosk's subscription is there (the retained one came before it)
            assert wait_until(lambda: rollout.publish(cmd, valid) == 0, 10)
            assert wait_until(lambda: kiosk.outbox.depth() == 5, 10)
        assert "refused a resend request" not in caplog.text
    finally:
        kiosk.stop()
        rollout.publish(cmd, b"", retain=True)  # the broker holds it no more
        rollout.close()


def test_only_the_back_office_workers_may_ask_a_kiosk_to_forget(
    fleet_broker: FleetBroker, tmp_path: Path
) -> None:
    # cmd/forget deletes a kiosk's kept copies of results (appliance results erase): a kiosk's
    # login (its own topic or another kiosk's), its look login and the rollout's are refused by
    # the broker (PUBACK 0x87) and change nothing; the back-office worker's login is taken
    site, device = KIOSKS[2]
    kiosk = ResendKiosk(tmp_path, "127.0.0.1", fleet_broker.port, prefix="appliance", site=site,
                        device=device, settings=fleet_broker.settings(device,
                                                                      f"edge-{site}-{device}"))
    ids = [new_measurement_id(1_765_000_000_000 + n) for n in range(5)]
    kiosk.add([(mid, b"{}") for mid in ids])
    kiosk.outbox.remove_ids(ids)  # confirmed: kept
    kiosk.start()
    cmd = f"appliance/{site}/{device}/cmd/forget"
    forget = json.dumps({"ids": ids}).encode()
    try:
        assert wait_until(lambda: kiosk.link.connected, 10)
        for login, client_id, topic in [
            (ATTACKER[1], f"edge-{ATTACKER[0]}-{ATTACKER[1]}", cmd),
            (ATTACKER[1], f"edge-{ATTACKER[0]}-{ATTACKER[1]}",
             f"appliance/{ATTACKER[0]}/{ATTACKER[1]}/cmd/forget"),
            (f"{device}@look", f"edge-{site}-{device}@look", cmd),
            ("rollout", "rollout", cmd),
        ]:
            probe = Probe(fleet_broker, login, client_id)
            assert probe.connack == 0, (login, client_id)
            assert probe.publish(topic, forget) == 0x87, (login, topic)
            probe.close()
        assert not wait_until(lambda: kiosk.outbox.kept_confirmed() < 5, 1.0)
        worker = Probe(fleet_broker, "backoffice-1", "backoffice-1")
        assert wait_until(lambda: worker.publish(cmd, forget) == 0, 10)
        assert wait_until(lambda: kiosk.outbox.kept_confirmed() == 0, 10)
        worker.close()
    finally:
        kiosk.stop()


def test_a_kiosk_login_cannot_say_another_kiosks_window_and_its_own_is_bounded(
    fleet_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a kiosk's status says how long it keeps confirmed results (keep_confirmed_h), which the
    # back office asks it to forget erased ones for (kiosk_forgets.py): a kiosk's login saying
    # 720 h for ANOTHER kiosk is refused by the broker (PUBACK 0x87, retained or not) and
    # stores nothing; its own status may say 720, and one saying 10**9 reaches the back office
    # and is a dead letter naming the field, its stored window unchanged
    store, worker = backoffice_worker(fleet_broker, tmp_path, monkeypatch)
    site, device = ATTACKER
    victim = KIOSKS[0]

    def status(of: tuple[str, str], keep: bytes) -> bytes:
        body = fleetsim.online_status(*of).to_json()
        return body[:-1] + b',"keep_confirmed_h":' + keep + b"}"

    def windows() -> list[tuple[object, ...]]:
        return store.query("SELECT site, device_id, keep_confirmed_h FROM devices")

    try:
        assert worker.subscribed.wait(10), worker.failed
        probe = Probe(fleet_broker, device, f"edge-{site}-{device}")
        assert probe.connack == 0
        foreign = f"appliance/{victim[0]}/{victim[1]}/status"
        assert probe.publish(foreign, status(victim, b"720"), retain=True) == 0x87
        assert probe.publish(foreign, status(victim, b"720")) == 0x87
        own = f"appliance/{site}/{device}/status"
        assert probe.publish(own, status(ATTACKER, b"720")) == 0
        assert wait_until(lambda: windows() == [(site, device, 720.0)], 10), windows()
        assert probe.publish(own, status(ATTACKER, b"1000000000")) == 0
        assert wait_until(lambda: store.count_dead_letters() == 1, 10)
        probe.close()
    finally:
        worker.stop()
    (reason,) = [row[0] for row in store.query("SELECT reason FROM dead_letters")]
    assert "keep_confirmed_h" in str(reason)
    assert windows() == [(site, device, 720.0)]
    store.close()
