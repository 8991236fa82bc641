"""The kiosk's answer to a forget request (the back office erased these results): a hostile or
malformed one (huge, 100,000 ids, ids of another form, more keys) is refused with a line saying
why and changes nothing; a valid one deletes the confirmed copies it names from the real
outbox file, durably, and never a result the back office did not confirm; over a real
mosquitto on a port of its own, also when a retained one waits on the broker; and a kiosk
killed (SIGKILL) while it deletes keeps a readable outbox with every waiting result."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.edge.testing import wait_until
from appliance.logsafe import LineBudget
from appliance.transport.broker import PrivateBroker
from appliance.transport.forget import (
    MAX_IDS,
    ForgetRequestError,
    ForgetRequests,
    parse_request,
)
from appliance.transport.outbox import Outbox
from appliance.transport.payloads import new_measurement_id
from tests.resend_kiosk import ResendKiosk

REPO = Path(__file__).resolve().parents[2]
PREFIX, SITE, DEVICE = "forgettest", "lab", "kiosk-1"
TOPIC = f"{PREFIX}/{SITE}/{DEVICE}/cmd/forget"


def ids(count: int, start: int = 0) -> list[str]:
    return [
        new_measurement_id(1_765_000_000_000 + n, seed=b"%d" % n)
        for n in range(start, start + count)
    ]


def request(named: list[str]) -> bytes:
    return json.dumps({"ids": named}).encode()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"ids": ["' + b"a" * (10 * 1024 * 1024) + b'"]}', "bytes, more than"),
        (request(ids(1)[:1] * 100_000), "bytes, more than"),
        (request(ids(MAX_IDS + 1)), f"{MAX_IDS + 1} ids, not 1 to {MAX_IDS}"),
        (request([]), "0 ids, not 1"),
        (request([ids(1)[0].upper()]), "1 of its 1 ids are not a result's id"),
        (request([*ids(2), "not-a-uuid"]), "1 of its 3 ids are not a result's id"),
        (request(["0190f0a1-0000-4000-8000-000000000000"]), "are not a result's id"),  # a UUIDv4
        (request([ids(1)[0] + "\n"]), "are not a result's id"),
        (json.dumps({"ids": [1, 2]}).encode(), "2 of its 2 ids"),
        (json.dumps({"ids": ids(1), "all": True}).encode(), 'not {"ids"'),
        (json.dumps(ids(1)).encode(), 'not {"ids"'),
        (json.dumps({"ids": ids(1)[0]}).encode(), 'not {"ids"'),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 15_000 + b"]" * 15_000, "not JSON"),
    ],
    ids=[
        "ten-mib",
        "100k-ids",
        "one-too-many",
        "none",
        "upper-case",
        "one-of-another-form",
        "uuid-v4",
        "trailing-newline",
        "numbers",
        "more-keys",
        "a-list",
        "a-string",
        "not-utf8",
        "nested-deep",
    ],
)
def test_a_request_that_is_none_is_refused_saying_why(raw: bytes, why: str) -> None:
    with pytest.raises(ForgetRequestError, match=why):
        parse_request(raw)


def kept_outbox(path: Path, kept: list[str], waiting: list[str]) -> Outbox:
    """An outbox keeping ``kept`` confirmed, with ``waiting`` never confirmed."""
    outbox = Outbox(path, keep_confirmed_s=48 * 3600.0)
    outbox.add_many([(mid, "t/result", b"{}") for mid in kept + waiting])
    outbox.remove_ids(kept)
    return outbox


def rows(path: Path) -> dict[str, bool]:
    """The outbox file's rows: measurement id -> whether the back office ever confirmed it."""
    with sqlite3.connect(path) as db:
        return dict(
            db.execute("SELECT measurement_id, first_confirmed_at_s IS NOT NULL FROM outbox")
        )


def test_hostile_requests_change_nothing_and_each_is_said_within_the_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = ids(5)
    outbox = kept_outbox(tmp_path / "o.db", kept, [])
    budget = LineBudget(logging.getLogger("test.forget"), "ignored messages", per_window=3)
    requests = ForgetRequests(budget, outbox.forget_confirmed)
    hostile = [
        b"x" * 10_000_000,
        request(kept * 20_000),
        request([m.upper() for m in kept]),
        json.dumps({"ids": kept, "since": "2020-01-01T00:00:00Z"}).encode(),
        b"{}",
    ]
    with caplog.at_level(logging.INFO):
        for raw in hostile:
            requests.handle(raw, TOPIC)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # the budget's lines; the rest counted, said after the window
    assert all(line.startswith(f"refused a forget request on {TOPIC}: ") for line in lines)
    assert all(line.endswith("; nothing changed") for line in lines)
    assert all(kept[0] not in line for line in lines)  # never the ids
    assert (outbox.depth(), outbox.kept_confirmed()) == (0, 5)
    outbox.close()


def test_a_request_deletes_the_confirmed_copies_it_names_and_never_a_waiting_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    kept, waiting, resent, unknown = ids(4), ids(2, 10), ids(1, 20), ids(1, 30)
    outbox = kept_outbox(path, kept + resent, waiting)
    outbox.reopen_confirmed(0.0)  # everything kept waits again, as on a resend request
    outbox.remove_ids(kept)  # the kept ones confirmed again; `resent` still waits to go again
    requests = ForgetRequests(
        LineBudget(logging.getLogger("test.forget"), "ignored"), outbox.forget_confirmed
    )
    with caplog.at_level(logging.INFO):
        requests.handle(request([*kept[:3], *resent, *waiting, *unknown]), TOPIC)
    assert "erased 7 result(s) on request: 4 confirmed copy(ies) deleted" in caplog.text
    assert kept[0] not in caplog.text
    assert (outbox.depth(), outbox.kept_confirmed()) == (2, 1)
    assert [m.measurement_id for m in outbox.pending()] == waiting
    outbox.close()
    assert rows(path) == {kept[3]: True, waiting[0]: False, waiting[1]: False}  # on disk
    reopened = Outbox(path, keep_confirmed_s=48 * 3600.0)
    assert (reopened.depth(), reopened.kept_confirmed()) == (2, 1)
    reopened.close()


class Publisher:
    """The back office's side: publishes at QoS 1 and returns each PUBACK's reason code
    (0x10: no subscriber took it)."""

    def __init__(self, broker: PrivateBroker) -> None:
        self.codes: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="forget-publisher", protocol=mqtt.MQTTv5
        )
        self.client.on_publish = lambda _c, _u, _m, code, _p: self.codes.put(code.value)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, payload: bytes, retain: bool = False) -> int:
        self.client.publish(TOPIC, payload, qos=1, retain=retain)
        return self.codes.get(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as started:
        yield started


@pytest.mark.broker
def test_over_the_broker_a_kiosk_forgets_its_kept_copies_and_not_at_a_retained_request(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a request left retained on the broker (the back office's login may publish one) is not
    # taken at the kiosk's subscribe (retain handling 2, as a resend request): only what is
    # published while it is subscribed is
    kept, waiting = ids(6), ids(2, 10)
    client = Publisher(broker)
    assert client.publish(request(kept[:3]), retain=True) == 0x10  # no subscriber: retained
    kiosk = ResendKiosk(tmp_path, broker.host, broker.port, prefix=PREFIX, site=SITE, device=DEVICE)
    kiosk.add([(mid, b"{}") for mid in kept + waiting])
    kiosk.outbox.remove_ids(kept)  # confirmed: kept
    try:
        with caplog.at_level(logging.INFO):
            kiosk.start()
            # 0x10 until the kiosk's subscription is there (the retained one came before it)
            assert wait_until(lambda: client.publish(request(kept[3:])) == 0, 10)
            assert wait_until(lambda: kiosk.outbox.kept_confirmed() == 3, 10)
        assert "erased 3 result(s) on request: 3 confirmed copy(ies) deleted" in caplog.text
        assert kiosk.outbox.depth() == 2  # never confirmed: still to be delivered
    finally:
        kiosk.stop()
        client.publish(b"", retain=True)  # the broker holds it no more
        client.close()
    assert set(rows(tmp_path / "outbox.sqlite3")) == set(kept[:3] + waiting)


@pytest.mark.broker
def test_a_kiosk_killed_while_it_forgets_keeps_a_readable_outbox_and_every_waiting_result(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    kept, waiting = ids(20 * MAX_IDS), ids(50, 100_000)
    outbox = kept_outbox(tmp_path / "outbox.sqlite3", kept, waiting)
    outbox.close()
    log = tmp_path / "kiosk.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.resend_kiosk",
                str(tmp_path),
                broker.host,
                str(broker.port),
                PREFIX,
                SITE,
                DEVICE,
            ],
            cwd=REPO,
            stdout=out,
            stderr=out,
            env=env | {"PYTHONPATH": str(REPO)},
        )
    try:
        assert wait_until(lambda: "kiosk running" in log.read_text(), 30), log.read_text()
        client = Publisher(broker)
        assert wait_until(lambda: client.publish(request(kept[:MAX_IDS])) == 0, 10)
        for start in range(MAX_IDS, len(kept), MAX_IDS):
            client.client.publish(TOPIC, request(kept[start : start + MAX_IDS]), qos=1)
        assert wait_until(lambda: "copy(ies) deleted" in log.read_text(), 30), log.read_text()
        process.send_signal(signal.SIGKILL)  # while later requests are still being taken
        process.wait(10)
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    left = rows(tmp_path / "outbox.sqlite3")
    assert {mid for mid, confirmed in left.items() if not confirmed} == set(waiting)
    gone = len(kept) - sum(left.values())
    assert gone % MAX_IDS == 0
    assert gone >= MAX_IDS
    reopened = Outbox(tmp_path / "outbox.sqlite3", keep_confirmed_s=48 * 3600.0)
    assert reopened.depth() == len(waiting)
    reopened.close()
