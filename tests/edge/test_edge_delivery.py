"""End-to-end delivery: a kiosk that measures before any back office exists loses nothing.

A broker PUBACKs a QoS 1 message that no session subscribes to and then drops it. These tests
run the real daemon (fast fake analyser) and the real ingest worker on the machine's mosquitto
and show that results leave the outbox only once the back office has committed them.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.schema import result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.config import PASSWORD_ENV, Config, config_from_mapping
from appliance.edge.daemon import EdgeDaemon, new_outbox
from appliance.edge.testing import FlakySource, fast_daemon, fast_source, wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.outbox_file import OutboxWriteError
from appliance.transport.payloads import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.broker
MEASUREMENTS = 50
FAST_FPS = 1000  # the synthetic camera's most: these tests are about delivery, not pace


def site_of(prefix: str) -> str:
    """The test's own site: the kiosk's MQTT client id (edge-SITE-DEVICE) is then its own too,
    where one shared by tests running at once (xdist, other checkouts on the same broker) made
    the broker take each one's session over by the other's."""
    return f"shop-{prefix[-10:]}"


def kiosk_config(
    tmp_path: Path, broker: Any, prefix: str, limit: int | None, resend_s: float = 0.5,
    *, username: str | None = None, **edge: float,
) -> Config:
    """The kiosk's config; ``edge`` overrides its edge settings."""
    data = {
        "device": {"id": "kiosk-early", "site": site_of(prefix)},
        "camera": {"source": "synthetic", "limit": limit},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix,
                 "username": username},
        "state_dir": str(tmp_path / "kiosk"),
        # short reconnect delays: the ACL tests' broker drops a connection at its presence
        # subscribe, and such a connection makes the delays grow to the cap
        "edge": {"synthetic_fps": 200, "ack_resend_initial_s": resend_s,
                 "ack_resend_cap_s": max(2.0, resend_s), "reconnect_initial_s": 0.2,
                 "reconnect_cap_s": 1.0, **edge},
    }
    return config_from_mapping(data, "test", environ={})


def backoffice(
    tmp_path: Path, broker: Any, prefix: str, username: str | None = None
) -> tuple[IngestWorker, Any]:
    config = config_from_mapping(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix,
                     "username": username},
            "state_dir": str(tmp_path / "backoffice"),
            "backoffice": {"client_id": f"bo-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60},
        },
        environ={},
    )
    store = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10)
    return worker, store


def run_in_thread(daemon: EdgeDaemon) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    return thread, codes


def count_stored(tmp_path: Path) -> int:
    store = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    try:
        return store.count_results()
    finally:
        store.close()


def test_kiosk_that_measured_and_stopped_before_any_back_office_delivers_all_50_later(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    config = kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=MEASUREMENTS,
                          synthetic_fps=FAST_FPS)
    kiosk = fast_daemon(config)
    thread, codes = run_in_thread(kiosk)
    assert wait_until(lambda: kiosk.committer.committed == MEASUREMENTS, 30)
    assert wait_until(lambda: kiosk.link.stats.broker_acked >= MEASUREMENTS, 30)
    assert kiosk.outbox.depth() == MEASUREMENTS  # the broker took them; nobody committed them
    assert codes == []  # camera.limit reached, but nothing confirmed: the kiosk does not exit
    kiosk.request_stop()
    thread.join(10)
    assert codes == [0]

    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    try:
        # a result sent now comes after any the broker had kept for the back office: once it
        # is stored, they would have been too
        probe = fleet.sample_result(random.Random(9), "shop-1", "kiosk-probe", 0)
        _publish(mqtt_broker, f"{topic_prefix}/shop-1/kiosk-probe/result", probe.to_json())
        assert wait_until(lambda: store.count_results() >= 1, 30)
        stored = [row[0] for row in store.select_results(["measurement_id"])]
        assert stored == [probe.measurement_id]  # the broker dropped what nobody subscribed to
        unplugged = FlakySource(fast_source(config))
        unplugged.failing.set()  # the kiosk comes back without its camera: no new results
        again = fast_daemon(config, source=unplugged)
        thread, codes = run_in_thread(again)
        assert wait_until(lambda: again.outbox.depth() == 0, 30)
        again.request_stop()
        thread.join(10)
    finally:
        worker.stop()
        store.close()
    assert count_stored(tmp_path) == MEASUREMENTS + 1  # and the probe
    assert again.link.stats.acked == MEASUREMENTS


def _publish(broker: Any, topic: str, payload: bytes) -> None:
    sender = new_client(LinkSettings(broker.host, broker.port, ""))
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    sender.publish(topic, payload, qos=1).wait_for_publish(5)
    sender.disconnect()
    sender.loop_stop()


def test_a_running_kiosk_resends_until_a_late_back_office_confirms_then_exits_0(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    kiosk = fast_daemon(kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=MEASUREMENTS,
                          synthetic_fps=FAST_FPS))
    thread, codes = run_in_thread(kiosk)
    assert wait_until(lambda: kiosk.committer.committed == MEASUREMENTS, 30)
    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    try:
        thread.join(60)  # exits once every result is confirmed
        assert codes == [0]
        assert store.count_results() == MEASUREMENTS
        assert kiosk.link.stats.resent >= MEASUREMENTS
        assert kiosk.outbox.depth() == 0
        assert worker.stats.stored == MEASUREMENTS
    finally:
        worker.stop()
        store.close()


def refused_results(site: str, device: str) -> dict[str, bytes]:
    """Results a back office refuses: a kiosk clock far ahead (2999), a field it does not know."""
    rng = random.Random(5)
    clock_ahead = json.loads(fleet.sample_result(rng, site, device, 0).to_json())
    clock_ahead["captured_at"] = "2999-01-01T00:00:07Z"
    unknown_field = json.loads(fleet.sample_result(rng, site, device, 1).to_json())
    unknown_field["battery_pct"] = 80
    return {body["measurement_id"]: json.dumps(body).encode()
            for body in (clock_ahead, unknown_field)}


def test_a_result_the_back_office_dead_letters_is_acked_once_and_leaves_the_outbox(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    # no re-send while the first ack is on its way: each result reaches the back office once
    config = kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=None, resend_s=30.0)
    site = site_of(topic_prefix)
    topic = f"{topic_prefix}/{site}/kiosk-early/result"
    refused = refused_results(site, "kiosk-early")
    valid = fleet.sample_result(random.Random(6), site, "kiosk-early", 2)
    acked = _outbox_drained_by_a_back_office(
        config, mqtt_broker, tmp_path, topic_prefix,
        [(mid, topic, body) for mid, body in refused.items()]
        + [(valid.measurement_id, topic, valid.to_json())])
    assert acked == 3
    reader = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    letters = reader.dead_letters()
    assert sorted(json.loads(d.payload)["measurement_id"] for d in letters) == sorted(refused)
    assert any("2999-01-01" in d.reason for d in letters)
    assert any("Extra inputs" in d.reason for d in letters)
    assert [row[0] for row in reader.select_results(["measurement_id"])] == [
        valid.measurement_id]
    reader.close()


def test_a_refused_result_with_a_thumbnail_is_kept_whole_confirmed_and_leaves_the_outbox(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    """An opt-in thumbnail makes a result larger than 64 KiB; refused for a clock far ahead, it
    was kept cut, never confirmed, and sent again every few minutes for a month."""
    config = kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=None, resend_s=30.0)
    site = site_of(topic_prefix)
    topic = f"{topic_prefix}/{site}/kiosk-early/result"
    result = json.loads(fleet.sample_result(random.Random(7), site, "kiosk-early", 0).to_json())
    result["captured_at"] = "2999-01-01T00:00:07Z"
    result["thumbnail_jpeg_b64"] = base64.b64encode(random.Random(8).randbytes(49_152)).decode()
    body = json.dumps(result).encode()
    assert 65_536 < len(body) < MAX_PAYLOAD_BYTES
    acked = _outbox_drained_by_a_back_office(config, mqtt_broker, tmp_path, topic_prefix,
                                             [(result["measurement_id"], topic, body)])
    assert acked == 1
    reader = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    (letter,) = reader.dead_letters()
    reader.close()
    assert (letter.payload_bytes, letter.payload) == (len(body), body)
    assert "2999-01-01" in letter.reason
    assert "kept cut" not in letter.reason


def test_results_due_again_when_a_read_of_the_outbox_fails_are_sent_later(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    # the results due for a re-send left the resend list before the outbox was read; when that
    # read failed (an I/O error on the SD card), they were never sent again by this daemon: with
    # camera.limit it never exited, else they waited for a restart or their age limit
    kiosk = fast_daemon(kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=MEASUREMENTS,
                          synthetic_fps=FAST_FPS))
    read = kiosk.outbox.get
    failures: list[int] = []

    def failing_once(seqs: Any) -> Any:
        if not failures:
            failures.append(len(seqs))
            raise OutboxWriteError("disk I/O error (as from a failing SD card)")
        return read(seqs)

    kiosk.outbox.get = failing_once  # type: ignore[method-assign]
    thread, codes = run_in_thread(kiosk)
    assert wait_until(lambda: kiosk.committer.committed == MEASUREMENTS, 30)
    assert wait_until(lambda: bool(failures), 30)  # the first re-send round found the read failing
    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    try:
        thread.join(60)  # exits once every result is confirmed
        assert codes == [0]
        assert store.count_results() == MEASUREMENTS
    finally:
        worker.stop()
        store.close()


def kiosk_acl(prefix: str, *, may_send_results: bool) -> str:
    """The kiosk's ACL on a broker that asks for logins: its status, acks and commands, and its
    results only once an operator has mended the ACL; the back office may use every topic."""
    device = f"{prefix}/{site_of(prefix)}/kiosk-early"
    lines = ["user office", "topic readwrite #", "", "user kiosk",
             f"topic readwrite {device}/status", f"topic read {device}/ack",
             f"topic read {device}/cmd/#"]
    if may_send_results:
        lines.append(f"topic write {device}/result")
    return "\n".join(lines) + "\n"


def test_results_the_broker_refuses_arrive_once_the_acl_is_mended_without_a_restart(
    tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a PUBACK with a reason code of 0x80 or higher (here 0x87, not authorised) left the
    # result out of every resend: it waited for a restart of the kiosk, or its age limit
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    with PrivateBroker(workdir=tmp_path / "broker", passwords={"kiosk": "secret",
                       "office": "secret"}, acl=kiosk_acl(topic_prefix,
                                                         may_send_results=False)) as broker:
        # mosquitto drops the kiosk at each publish its ACL refuses: many short rounds. It
        # writes PUBACK 0x87 first, but with the kiosk's later packets unread it closes with a
        # reset that can take the PUBACK with it (a loaded machine): a refusal either way
        config = kiosk_config(tmp_path, broker, topic_prefix, limit=3, resend_s=0.1,
                              username="kiosk", ack_resend_cap_s=0.5, reconnect_initial_s=0.02,
                              reconnect_cap_s=0.05)
        kiosk = fast_daemon(config)
        worker, store = backoffice(tmp_path, broker, topic_prefix, username="office")
        thread, codes = run_in_thread(kiosk)
        try:
            stats = kiosk.link.stats
            assert wait_until(lambda: stats.rejected + stats.dropped_unanswered >= 3
                              and kiosk.committer.committed == 3, 30)
            assert store.count_results() == 0
            assert kiosk.outbox.depth() == 3
            assert kiosk.status.metrics()["appliance_edge_results_refused"] >= 3
            broker.set_acl(kiosk_acl(topic_prefix, may_send_results=True))
            thread.join(30)  # exits once every result is confirmed
            assert codes == [0]
            assert store.count_results() == 3
        finally:
            kiosk.request_stop()
            thread.join(10)
            worker.stop()
            store.close()


def test_a_broker_acl_without_the_presence_topic_is_said_once_and_the_kiosk_delivers(
    tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker not provisioned again since kiosks publish a presence: mosquitto's acl_file
    refuses it and drops the connection each time, so a kiosk that kept publishing it would
    never stay connected for long (appliance/transport/presence.py)."""
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    with PrivateBroker(workdir=tmp_path / "broker", passwords={"kiosk": "secret",
                       "office": "secret"}, acl=kiosk_acl(topic_prefix,
                                                         may_send_results=True)) as broker:
        kiosk = fast_daemon(kiosk_config(tmp_path, broker, topic_prefix, limit=5,
                                         username="kiosk"))
        worker, store = backoffice(tmp_path, broker, topic_prefix, username="office")
        try:
            with caplog.at_level(logging.ERROR):
                thread, codes = run_in_thread(kiosk)
                thread.join(30)  # exits once every result is confirmed
            assert codes == [0]
            assert store.count_results() == 5
        finally:
            kiosk.request_stop()
            thread.join(10)
            worker.stop()
            store.close()
    said = [r.getMessage() for r in caplog.records if "/presence" in r.getMessage()]
    assert len(said) == 1
    assert f"presence on {topic_prefix}/{site_of(topic_prefix)}/kiosk-early/presence" in said[0]
    assert "runs on without its presence" in said[0]


def _outbox_drained_by_a_back_office(config: Any, mqtt_broker: Any, tmp_path: Path,
                                     topic_prefix: str, rows: list[tuple[str, str, bytes]]
                                     ) -> int:
    """A kiosk whose camera gives nothing sends what its outbox holds (``rows``) to a back
    office until the outbox is empty; the results acked. The store stays under tmp_path."""
    outbox = new_outbox(config)
    outbox.add_many(rows)
    outbox.close()
    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    unplugged = FlakySource(fast_source(config))
    unplugged.failing.set()  # no new results: only those in the outbox
    kiosk = fast_daemon(config, source=unplugged)
    thread, _codes = run_in_thread(kiosk)
    try:
        assert wait_until(lambda: kiosk.outbox.depth() == 0, timeout_s=20)
    finally:
        kiosk.request_stop()
        thread.join(10)
        worker.stop()
        store.close()
    # the link counts a confirmation just after the outbox removed it (transport/
    # confirmations.py): read at depth 0 it could still miss the last ack's (seen under load)
    assert wait_until(lambda: not kiosk.link.is_alive(), 10), "the kiosk's link did not end"
    return kiosk.link.stats.acked


def test_results_erased_before_their_ack_reached_the_kiosk_are_confirmed_not_stored_again(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    # stored once, but the ack never reached the kiosk: its outbox still holds them, and a
    # result of the subject it never delivered before the erasure
    config = kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=None, resend_s=30.0)
    site = site_of(topic_prefix)
    topic = f"{topic_prefix}/{site}/kiosk-early/result"
    rng = random.Random(8)
    withdrawn = [fleet.sample_result(rng, site, "kiosk-early", i, "subj-w") for i in range(3)]
    others = [fleet.sample_result(rng, site, "kiosk-early", 3 + i, "subj-k") for i in range(3)]
    url = f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}"
    store = open_store(url)
    store.write_batch(Batch(results=[result_row(r, "2026-11-02T00:00:00.000000Z",
                                                r.to_json().decode())
                                     for r in withdrawn[:2] + others]), 100, 2**30)
    store.close()
    assert main(["results", "erase", "--store", url, "--subject", "subj-w", "--yes"]) == 0
    assert main(["results", "erase", "--store", url, "--result", others[0].measurement_id,
                 "--yes"]) == 0

    acked = _outbox_drained_by_a_back_office(
        config, mqtt_broker, tmp_path, topic_prefix,
        [(r.measurement_id, topic, r.to_json()) for r in withdrawn + others])

    assert acked == 6  # every one confirmed: the kiosk keeps none of them
    reader = open_store(url)
    try:
        stored = {row[0] for row in reader.select_results(["measurement_id"])}
        assert stored == {others[1].measurement_id, others[2].measurement_id}
        assert reader.dead_letters() == []
    finally:
        reader.close()
