"""A kiosk's backlog beyond its back office's bucket drains at the pace the back office
confirms (appliance/transport/pacing.py), and a new result does not wait behind it.

Against a real mosquitto and a real back-office worker whose token bucket a kiosk
(appliance/backoffice/kiosk_rate.py) is small: the backlog is all stored, with few messages
sent for it, and a result measured during the drain is stored while most of it still waits.
"""

from __future__ import annotations

import random
import threading
import uuid
from pathlib import Path

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.acks import ack_topic
from appliance.transport.client import LinkSettings
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.pacing import ResendPace
from appliance.transport.payloads import Result
from appliance.transport.unconfirmed import Unconfirmed

BACKLOG = 200
BURST = 20
PER_S = 10.0
FRESH_AFTER = 40  # backlog results stored before the kiosk measures a new one
STILL_WAITING = 80  # backlog results that must still wait when the new one is stored


def _round(pace: ResendPace, confirmed: int) -> int:
    """The back office confirms ``confirmed`` results, then a round sends what it may."""
    pace.confirmed(confirmed)
    size = pace.round_size()
    pace.sent(size)
    return size


def test_a_round_doubles_until_some_are_turned_away_then_follows_the_confirmations() -> None:
    pace = ResendPace()
    assert pace.round_size() == 1  # nothing confirmed yet: one result
    pace.sent(1)
    assert [_round(pace, n) for n in (1, 2, 4)] == [2, 4, 8]  # all confirmed: doubling
    assert _round(pace, 5) == 5  # 3 of 8 turned away: what was confirmed
    assert _round(pace, 5) == 6  # all 5 confirmed: one more, no doubling
    assert _round(pace, 5) == 5  # 1 of 6 turned away
    assert _round(pace, 0) == 1  # none confirmed: one result
    assert _round(pace, 1) == 2  # it was: the back office's room is unknown again, doubling


def test_a_round_sends_the_newest_due_results_first_within_its_size() -> None:
    unconfirmed = Unconfirmed(0.0, 0.0)  # every result due at once
    for seq in range(1, 11):
        unconfirmed.broker_took(seq)
    assert unconfirmed.due(room=20) == [10]  # nothing confirmed yet: one, the newest
    unconfirmed.confirmed([10])
    assert unconfirmed.due(room=20) == [9, 8]
    unconfirmed.confirmed([9, 8])
    assert unconfirmed.due(room=3) == [7, 6, 5]  # the broker's window bounds it too
    assert unconfirmed.quiet_rounds == 1


class _Drain:
    """What the worker stored: how many of the backlog, and how many when the new one came."""

    def __init__(self, fresh_id: str) -> None:
        self.fresh_id = fresh_id
        self.backlog_stored = 0
        self.backlog_stored_before_fresh: int | None = None
        self.time_for_fresh = threading.Event()
        self.fresh_stored = threading.Event()
        self._lock = threading.Lock()

    def on_stored(self, results: list[Result]) -> None:
        with self._lock:
            for result in results:
                if result.measurement_id == self.fresh_id:
                    self.backlog_stored_before_fresh = self.backlog_stored
                    self.fresh_stored.set()
                else:
                    self.backlog_stored += 1
            if self.backlog_stored >= FRESH_AFTER:
                self.time_for_fresh.set()


@pytest.mark.broker
def test_a_backlog_drains_at_the_back_office_s_pace_and_a_new_result_goes_ahead(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path,
) -> None:
    """On main the kiosk sent 20 results a resend check (the broker's window) whatever the back
    office confirmed (819 and 838 messages for these 201 results), and took the oldest first,
    so a new result the bucket turned away waited behind the backlog (stored after all 200 in
    one run of two). Now each round sends about what the back office confirmed since the
    previous one (appliance/transport/pacing.py), newest first."""
    rng = random.Random(7)
    topic = f"{topic_prefix}/lab/kiosk-p/result"
    backlog = [fleet.sample_result(rng, "lab", "kiosk-p", i) for i in range(BACKLOG)]
    fresh = fleet.sample_result(rng, "lab", "kiosk-p", BACKLOG)
    drain = _Drain(fresh.measurement_id)
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path),
        "backoffice": {"client_id": f"pace-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60,
                       "kiosk_results_per_s": PER_S, "kiosk_results_burst": BURST},
    }, environ={})
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    worker = IngestWorker(config, store, on_stored=drain.on_stored)
    worker.start()
    assert worker.subscribed.wait(10), worker.failed
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add_many([(r.measurement_id, topic, r.to_json()) for r in backlog])
    kiosk = MqttLink(
        LinkSettings("127.0.0.1", 1883, f"edge-{topic_prefix}-p", ack_resend_initial_s=0.5,
                     ack_resend_cap_s=2.0),
        outbox, status_topic=f"{topic_prefix}/lab/kiosk-p/status",
        status_payload=lambda state: b"", ack_topic=ack_topic(topic_prefix, "lab", "kiosk-p"))
    kiosk.start()
    try:
        assert drain.time_for_fresh.wait(60), kiosk.stats
        outbox.add_many([(fresh.measurement_id, topic, fresh.to_json())])
        kiosk.wake()
        assert drain.fresh_stored.wait(60), kiosk.stats
        assert wait_until(kiosk.idle, 120), kiosk.stats
    finally:
        kiosk.stop_event.set()
        kiosk.wake()
        kiosk.join(5)
        worker.stop()
    assert store.count_results() == BACKLOG + 1  # nothing lost
    assert worker.stats.over_rate > 0  # the bucket was met
    # the new result went ahead: most of the backlog still waited when it was stored
    assert drain.backlog_stored_before_fresh is not None
    assert drain.backlog_stored_before_fresh <= BACKLOG - STILL_WAITING, drain.__dict__
    # Each result goes once at first; a round then sends at most twice what the back office
    # confirmed since the previous round, or one result after a span with none confirmed (a
    # quiet round). Each result is confirmed once: BACKLOG + 1 first sends, at most
    # 2 x (BACKLOG + 1) in rounds that follow confirmations, one in each quiet round.
    sent = kiosk.stats.published
    assert sent <= 3 * (BACKLOG + 1) + kiosk.stats.quiet_rounds, kiosk.stats
    store.close()
    outbox.close()
