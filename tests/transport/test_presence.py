"""The kiosk presence watch: which of two processes under one device id holds back, decided
from what the broker handed each (never from a clock); a dead process's presence stops nobody."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

import appliance.transport.presence as presence_module
from appliance.transport.broker import free_port
from appliance.transport.client import LinkSettings
from appliance.transport.presence import (
    UNANSWERED_LIMIT,
    DuplicateWatch,
    PresenceKeeper,
    holds_back,
)
from appliance.transport.presence_look import LookOutcome, PresenceLook
from appliance.transport.presence_messages import (
    PRESENCE_SCHEMA,
    Presence,
    probe_payload,
    read_answer,
    read_rival,
)


def presence(process: str, connection: int, found: list[str] | None = None) -> bytes:
    return json.dumps({"schema": PRESENCE_SCHEMA, "device_id": "kiosk-1", "site": "s",
                       "process": process, "pid": 4242, "host": "kiosk-host",
                       "connection": connection, "found": found or []}).encode()


def arrived(process: str) -> DuplicateWatch:
    """A watch whose process has connected once and heard its own presence come back."""
    watch = DuplicateWatch(Presence("kiosk-1", "s", process=process, host="first-host"))
    watch.connected()
    watch.heard(watch.own.payload(), retained=False)
    return watch


def test_a_dead_processes_presence_heard_at_every_connect_stops_nobody() -> None:
    """Killed with -9, a kiosk leaves its last presence retained: it never changes."""
    watch = DuplicateWatch(Presence("kiosk-1", "s", process="b" * 32))
    for _ in range(5):
        watch.connected()
        assert watch.heard(presence("a" * 32, 7), retained=True) is None
        watch.heard(watch.own.payload(), retained=False)
    assert watch.own.found == ["a" * 32]  # found on arrival, but never shown alive


def test_the_later_process_holds_back_and_the_first_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, later = arrived("f" * 32), DuplicateWatch(Presence("kiosk-1", "s", process="0" * 32))
    later.connected()  # its first connection finds the first one's presence there
    assert later.heard(first.own.payload(), retained=True) is None
    later.heard(later.own.payload(), retained=False)
    first.connected()  # the first connects again (the later one's connect dropped it)
    assert first.heard(later.own.payload(), retained=True) is None
    later.connected()
    rival = later.heard(first.own.payload(), retained=True)  # a new connection number: alive
    assert rival is not None
    assert rival.process == "f" * 32
    assert rival.host == "first-host"
    first.connected()
    with caplog.at_level(logging.WARNING):
        assert first.heard(later.own.payload(), retained=True) is None
    assert "it came later and holds back, this one goes on" in caplog.text


def test_live_copies_never_show_a_process_alive() -> None:
    """Only what the broker hands over as retained at a subscribe of ours counts: a live copy
    (or one the shared session kept from before) may be older than this process."""
    watch = arrived("b" * 32)
    watch.own.found = ["a" * 32]
    assert watch.heard(presence("a" * 32, 1), retained=False) is None
    assert watch.heard(presence("a" * 32, 2), retained=False) is None
    assert watch.heard(presence("a" * 32, 3), retained=True) is None
    assert watch.heard(presence("a" * 32, 4), retained=True) is not None


@pytest.mark.parametrize(("own_found", "rival_found"), [(True, False), (False, True),
                                                        (False, False), (True, True)])
def test_exactly_one_of_two_holds_back(own_found: bool, rival_found: bool) -> None:
    one = Presence("kiosk-1", "s", process="1" * 32)
    two = Presence("kiosk-1", "s", process="2" * 32)
    one.found = [two.process] if own_found else []
    two.found = [one.process] if rival_found else []
    one.connection = two.connection = 2
    one_rival, two_rival = read_rival(two.payload()), read_rival(one.payload())
    assert one_rival is not None
    assert two_rival is not None
    assert holds_back(one, one_rival) != holds_back(two, two_rival)
    if own_found != rival_found:  # the one that found the other came later
        assert holds_back(one, one_rival) == own_found


@pytest.mark.parametrize("payload", [b"\xff", b"[]", b"{}", b'{"schema": "x"}',
                                     presence("a", 0), presence("", 2),
                                     presence("a", 2, ["x"] * 5), b"[" * 100_000])
def test_what_is_no_presence_is_ignored_and_said_once(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    watch = arrived("b" * 32)
    with caplog.at_level(logging.WARNING):
        assert watch.heard(payload, retained=True) is None
        assert watch.heard(payload, retained=True) is None
    assert caplog.text.count("that is not one") == 1


class _Client:
    """Stands in for paho's client: message ids for what the keeper sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def subscribe(self, topic: str, options: object) -> tuple[int, int]:
        return 0, len(self.sent) + 1000

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> SimpleNamespace:
        self.sent.append((topic, payload))
        return SimpleNamespace(mid=len(self.sent))


def test_holding_back_again_and_again_never_counts_as_a_refused_presence() -> None:
    """A rival quicker than the broker's answers: each look's first connection is dropped
    before its presence is answered, and the second leaves before it is. A broker that takes
    the rival's presence is no broker that refuses the presence."""
    keeper = PresenceKeeper("p/s/kiosk-1/presence", Presence("kiosk-1", "s", process="b" * 32),
                            "edge-s-kiosk-1", retry_s=0.0, probe_s=60.0)
    keeper.own.found = ["a" * 32]
    client = _Client()
    for look in range(2 * UNANSWERED_LIMIT):
        assert keeper.may_connect()
        for connection in (1, 2):  # the rival connects again in between
            keeper.announce(client)  # type: ignore[arg-type]
            held = keeper.heard(presence("a" * 32, 2 * look + connection), retained=True)
            keeper.lost()
        assert held
    assert not keeper.refused
    keeper.announce(client)  # type: ignore[arg-type]
    for _ in range(UNANSWERED_LIMIT):  # a broker that drops every connection it gets
        keeper.lost()
        keeper.announce(client)  # type: ignore[arg-type]
    assert keeper.refused


class _LookThatCannotTell:
    """A look under a login the broker refuses (provisioned before looks existed)."""

    def __init__(self, closed: list[bool]) -> None:
        self.closed = closed

    def step(self) -> LookOutcome:
        return LookOutcome(unusable="the broker b:1 refused it for the look login k@look")

    def close(self) -> None:
        self.closed.append(True)


def hold_back(keeper: PresenceKeeper, rival_connection: int) -> None:
    """Connect, hear its own presence, then a live rival that came first (two connections)."""
    keeper.announce(_Client())  # type: ignore[arg-type]
    keeper.heard(keeper.own.payload(), retained=False)
    assert not keeper.heard(presence("a" * 32, rival_connection), retained=True)
    assert keeper.heard(presence("a" * 32, rival_connection + 1), retained=True)


def test_a_look_that_cannot_tell_looks_the_old_way_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[bool] = []
    keeper = PresenceKeeper("p/s/kiosk-1/presence", Presence("kiosk-1", "s", process="b" * 32),
                            "edge-s-kiosk-1", retry_s=0.0, probe_s=60.0,
                            new_look=lambda: _LookThatCannotTell(closed))
    with caplog.at_level(logging.ERROR):
        for look in range(2):
            hold_back(keeper, 2 * look + 1)
            assert keeper.may_connect()  # connects with its own client id to look
    assert caplog.text.count("looks with its own client id edge-s-kiosk-1") == 1
    assert "k@look" in caplog.text
    assert len(closed) == 2


def test_a_live_kiosk_answers_a_looks_probe_and_a_held_back_one_does_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keeper = PresenceKeeper("p/s/kiosk-1/presence", Presence("kiosk-1", "s", process="b" * 32),
                            "edge-s-kiosk-1", retry_s=600.0, probe_s=60.0)
    keeper.announce(_Client())  # type: ignore[arg-type]
    answer = keeper.answer(probe_payload("q1"), retained=False)
    assert answer is not None
    rival = read_answer(answer, "q1")
    assert rival is not None
    assert rival.process == "b" * 32
    assert read_answer(answer, "q2") is None
    assert keeper.answer(probe_payload("q1"), retained=True) is None  # no look's question now
    assert keeper.answer(presence("a" * 32, 1), retained=False) is None
    with caplog.at_level(logging.WARNING):
        assert not keeper.heard(probe_payload("q1"), retained=False)
    assert "not one" not in caplog.text  # a probe is no bad presence
    keeper.rival = read_rival(presence("a" * 32, 2))  # holding back: it has not the id now
    assert keeper.answer(probe_payload("q1"), retained=False) is None


def test_a_look_at_a_broker_out_of_reach_holds_back_on_and_looks_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A network that is down is no broker that refuses the look login: the kiosk does not
    fall back to looking with its own client id, it looks again."""
    own = Presence("kiosk-1", "s", process="b" * 32)
    settings = LinkSettings("127.0.0.1", free_port(), "edge-s-kiosk-1", username="kiosk-1")
    looks: list[PresenceLook] = []

    def new_look() -> PresenceLook:
        looks.append(PresenceLook(settings, "p/s/kiosk-1/presence", own, 5.0))
        return looks[-1]

    keeper = PresenceKeeper("p/s/kiosk-1/presence", own, "edge-s-kiosk-1", retry_s=0.0,
                            probe_s=0.0, new_look=new_look)
    hold_back(keeper, 1)
    with caplog.at_level(logging.WARNING):
        assert not keeper.may_connect()
        assert not keeper.may_connect()
    assert len(looks) == 2
    assert looks[0].settings.client_id == "edge-s-kiosk-1@look"
    assert looks[0].settings.username == "kiosk-1@look"
    assert caplog.text.count("could not look whether another kiosk still uses it") == 1
    assert f"127.0.0.1:{settings.port} could not be reached" in caplog.text
    assert "looks with its own client id" not in caplog.text
    assert keeper.held.is_set()


class _LookAtABrokerDown:
    """A look at a broker that is out of reach while ``down`` holds, else finds the rival."""

    def __init__(self, down: list[bool]) -> None:
        self.down = down

    def step(self) -> LookOutcome:
        if self.down[0]:
            return LookOutcome(retry="the broker b:1 could not be reached (refused)")
        return LookOutcome(rival=read_rival(presence("a" * 32, 9)))

    def close(self) -> None:
        pass


def test_looks_at_a_broker_down_are_said_once_then_hourly_and_when_it_is_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A held-back kiosk looks every minute; a night with the broker down is a few lines."""
    clock_s = [1000.0]
    monkeypatch.setattr(presence_module, "time", SimpleNamespace(monotonic=lambda: clock_s[0]))
    down = [True]
    keeper = PresenceKeeper("p/s/kiosk-1/presence", Presence("kiosk-1", "s", process="b" * 32),
                            "edge-s-kiosk-1", retry_s=600.0, probe_s=60.0,
                            new_look=lambda: _LookAtABrokerDown(down))
    hold_back(keeper, 1)
    caplog.clear()  # the holding back itself is said
    clock_s[0] += 600.0
    with caplog.at_level(logging.WARNING, logger="appliance.transport.presence"):
        for _ in range(150):  # two and a half hours, a look a minute
            assert not keeper.may_connect()
            clock_s[0] += 60.0
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 3
        assert "could not look whether another kiosk still uses it" in said[0]
        assert "b:1 could not be reached" in said[0]
        assert "60 more look(s) could not tell" in said[1]  # an hour later
        assert "(61 in a row" in said[1]
        assert "60 more look(s) could not tell" in said[2]
        assert "(121 in a row" in said[2]
        down[0] = False
        assert not keeper.may_connect()  # the rival still has the id
        assert keeper.held.is_set()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 4
    assert "a look can tell again after 150 look(s) that could not" in said[3]
