"""Hostile payloads at the back office: clocks, re-used ids, dead-letter bytes, CSV, logs."""

from __future__ import annotations

import csv
import json
import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.backoffice.export import export_results
from appliance.backoffice.store import Batch, Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.synthetic import fleet as fleetsim
from appliance.transport.payloads import Result, Status


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield opened
    opened.close()


def result(index: int = 0, **changes: object) -> Result:
    base = fleetsim.sample_result(random.Random(index), "lab", "k1", index)
    return base.model_copy(update=changes)


def sort(*messages: tuple[str, bytes], retained: bool = False) -> Batch:
    inbound = [Inbound(topic, raw, i, 1, retained) for i, (topic, raw) in enumerate(messages)]
    batch, _results = Triage("p", 1000).sort(inbound)
    return batch


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (datetime(9999, 1, 1, tzinfo=UTC), "ahead of the receiver's clock"),
        (datetime.now(UTC) + timedelta(hours=1), "ahead of the receiver's clock"),
    ],
)
def test_captured_at_outside_the_receiver_s_clock_is_a_dead_letter(
    when: datetime, reason: str
) -> None:
    batch = sort(("p/lab/k1/result", result(captured_at=when).to_json()))
    assert batch.results == []
    assert reason in batch.dead_letters[0].reason
    assert batch.dead_letters[0].reason.startswith("captured_at: ")


def test_a_retained_status_from_the_future_cannot_freeze_last_seen() -> None:
    future = fleetsim.online_status("lab", "k1").model_copy(
        update={"at": datetime(2999, 1, 1, tzinfo=UTC)}
    )
    batch = sort(("p/lab/k1/status", future.to_json()), retained=True)
    assert batch.statuses == []
    assert batch.dead_letters[0].reason.startswith("at: ")
    fine = sort(("p/lab/k1/status", fleetsim.online_status("lab", "k1").to_json()))
    assert len(fine.statuses) == 1
    assert Status.model_validate_json(fleetsim.online_status("a", "b").to_json()).site == "a"


def test_a_reused_measurement_id_with_other_content_is_dead_lettered(store: Store) -> None:
    first = result(1)
    forged = first.model_copy(update={"software_version": "forged"})
    store.write_batch(sort(("p/lab/k1/result", first.to_json())), 100)
    again = sort(("p/lab/k1/result", first.to_json()), ("p/lab/k1/result", forged.to_json()))
    assert store.write_batch(again, 100) == []  # the identical re-send is a plain duplicate
    assert store.count_results() == 1
    (letter,) = store.dead_letters()
    assert f"measurement_id {first.measurement_id} already stored with other content" in (
        letter.reason
    )
    assert letter.topic == "p/lab/k1/result"
    stored = list(store.select_results(["software_version"]))
    assert stored == [(first.software_version,)]  # the first content stays


def test_dead_letters_are_bounded_in_bytes_keeping_the_newest(store: Store) -> None:
    for index in range(40):
        junk = json.dumps({"n": index, "pad": "x" * 10_000}).encode()
        store.write_batch(sort(("p/lab/k1/result", junk)), 1000, 10_000)
    kept = store.dead_letters(limit=1000)
    total = sum(len(d.payload) + len(d.reason) + len(d.topic) for d in kept)
    assert total <= 10_000
    assert 5 <= len(kept) < 40
    assert kept[0].payload.startswith(b"{\"n\": 39,")  # the newest is kept


def test_csv_export_neutralises_formula_cells(store: Store, tmp_path: Path) -> None:
    formula = result(2, software_version="=cmd|' /C calc'!A0")
    store.write_batch(sort(("p/lab/k1/result", formula.to_json())), 100)
    out = tmp_path / "export.csv"
    assert export_results(store, "csv", str(out)) == 1
    with out.open(newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["software_version"] == "'=cmd|' /C calc'!A0"
    assert float(row["lab_l"]) == formula.features.lab_l  # numbers stay numbers


def test_control_characters_in_payload_text_are_escaped_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from appliance import logsafe

    logsafe.install()
    caplog.set_level(logging.WARNING)
    forged = b'{"x": "ok\n2026-01-01 INFO forged line \x1b[31mred"}'
    sort(("p/lab/k1/result", forged))
    (line,) = [r.getMessage() for r in caplog.records if "dead letter" in r.getMessage()]
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\\x1b[31mred" in line


def test_a_kiosk_s_status_text_cannot_drive_the_operator_s_terminal(store: Store) -> None:
    """A version or model name holding controls is refused (payloads.Drawn): it reaches no
    fleet row, and the dead letter that keeps it is shown escaped. A row stored before the
    contract refused them is shown escaped too (tests/test_logsafe_invisible.py)."""
    from appliance.backoffice.export import dead_letter_table
    from appliance.backoffice.fleet import fleet_table
    from appliance.transport.payloads import ModelInfo

    hostile = fleetsim.online_status("lab", "k1").model_copy(update={
        "software_version": "0.1\u202e0.9",  # shown reversed: "0.9.0.1"
        "model": ModelInfo.model_construct(name="\x1b[2Jgrader\x1b]0;title\x07", version="1"),
    })
    batch = sort(("p/lab/k1/status", hostile.to_json()), retained=True)
    assert batch.statuses == []
    (letter,) = batch.dead_letters
    assert letter.reason.startswith("software_version: Value error, holds \\u202e at character 4")
    store.write_batch(batch, 100)
    assert fleet_table(store).startswith("no devices known yet")
    letters = dead_letter_table(store, 10)
    assert not set(letters) & {"\x1b", "\x07", "\u202e"}
    assert "reason: software_version: Value error, holds \\u202e at character 4" in letters


def test_a_count_larger_than_any_store_holds_is_a_dead_letter_its_device_may_drop(
    store: Store,
) -> None:
    good, huge = result(3), json.loads(result(4).to_json())
    huge["features"]["pore_count"] = 10**30  # valid JSON; no 64-bit column holds it
    status = json.loads(fleetsim.online_status("lab", "k1").to_json())
    status["dropped"] = 10**30
    triage = Triage("p", 65536)
    batch, _results = triage.sort([
        Inbound("p/lab/k1/result", good.to_json(), 1, 1),
        Inbound("p/lab/k1/result", json.dumps(huge).encode(), 2, 1),
        Inbound("p/lab/k1/status", json.dumps(status).encode(), 3, 1),
    ])
    assert [letter.reason.split(":")[0] for letter in batch.dead_letters] == [
        "features.pore_count", "dropped"]
    assert store.write_batch(batch, 100) == [good.measurement_id]  # the batch commits whole
    assert triage.refused_results(batch.dead_letters) == [
        ("lab", "k1", huge["measurement_id"])]  # kept in full: the kiosk stops sending it


@pytest.mark.parametrize("where", ["software_version", "label", "probability key"])
def test_a_result_holding_a_lone_surrogate_is_dead_lettered_and_confirmed(
    store: Store, where: str
) -> None:
    # valid JSON to Python, refused by pydantic's parser ("unexpected end of hex escape"): the
    # dead letter was kept but never confirmed, so the kiosk sent it again until it aged out
    sent = json.loads(result(5).to_json())
    if where == "software_version":
        sent["software_version"] = "1.0\ud800"
    elif where == "label":
        sent["classification"]["label"] = "fine\udfff"
    else:
        sent["classification"]["probabilities"]["x\ud800"] = 0.0
    raw = json.dumps(sent).encode()
    assert b"\\ud" in raw  # the escape itself travels: json.dumps writes ASCII
    triage = Triage("p", 65536)
    batch, _results = triage.sort([Inbound("p/lab/k1/result", raw, 1, 1)])
    assert batch.results == []
    (letter,) = batch.dead_letters
    assert "a string holds a lone UTF-16 surrogate escape" in letter.reason
    assert store.write_batch(batch, 100) == []
    assert store.dead_letters()[0].payload == raw  # kept whole, as sent
    assert triage.refused_results(batch.dead_letters) == [
        ("lab", "k1", sent["measurement_id"])]  # confirmed: the kiosk drops it


def test_a_dead_letter_naming_no_valid_id_is_not_confirmed() -> None:
    triage = Triage("p", 65536)
    for raw in (b'{"measurement_id": "bad id\\ud800"}', b'{"measurement_id": 7}', b"[1]",
                b"\xff\xfe", b'{"x": "\\ud800"}'):
        batch, _results = triage.sort([Inbound("p/lab/k1/result", raw, 1, 1)])
        assert triage.refused_results(batch.dead_letters) == [], raw


def test_results_dead_lettered_for_a_clock_ahead_are_stored_by_retry_once_time_caught_up(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A kiosk whose clock ran 20 minutes ahead: its result was dead-lettered and confirmed,
    so the dead letter is its only copy. `appliance results retry` stores it once the time
    has caught up; garbage stays a dead letter; --dry-run changes nothing."""
    from appliance import backoffice
    from appliance.cli import main

    ahead = result(1, captured_at=datetime.now(UTC) + timedelta(minutes=20))
    letters = [("p/lab/k1/result", ahead.to_json()), ("p/lab/k1/result", b"{not json"),
               ("p/lab/k1/status", b"{}")]
    inbound = [Inbound(topic, raw, i, 1, False) for i, (topic, raw) in enumerate(letters)]
    store.write_batch(Triage("p", 65536).sort(inbound)[0], 100)  # kept whole
    assert store.count_dead_letters() == 3
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    assert main(["results", "retry", "--store", url]) == 0
    assert "stored 0 result(s) from the dead letters; 2 dead-lettered result(s) are still " \
           "refused" in capsys.readouterr().out  # still ahead of the clock
    later = datetime.now(UTC) + timedelta(minutes=30)
    monkeypatch.setattr(backoffice.triage, "utc_now", lambda: later)
    assert main(["results", "retry", "--store", url, "--dry-run"]) == 0
    assert "would store 1 result(s)" in capsys.readouterr().out
    assert (store.count_results(), store.count_dead_letters()) == (0, 3)
    assert main(["results", "retry", "--store", url]) == 0
    assert "stored 1 result(s) from the dead letters; 1 dead-lettered result(s) are still " \
           "refused" in capsys.readouterr().out
    assert store.count_results() == 1
    assert sorted(d.payload for d in store.dead_letters()) == [b"{not json", b"{}"]
    assert main(["results", "retry", "--store", url]) == 0
    assert "stored 0 result(s)" in capsys.readouterr().out


def test_a_dry_run_counts_what_the_retry_stores_not_letters_that_conflict_or_are_stored(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A letter re-using a stored measurement id with other content (a replay with changed
    features), and one whose result was stored since with the same content: `results retry
    --dry-run` said "would store 2 result(s)", and the retry then stored none."""
    from appliance import backoffice
    from appliance.cli import main

    now = datetime.now(UTC)
    stored, ahead = result(1, captured_at=now), result(2, captured_at=now + timedelta(minutes=20))
    changed = stored.model_copy(update={"features": stored.features.model_copy(
        update={"kime_score": 1.0})})

    def write(*results: Result) -> None:  # letters kept whole, as the retry needs them
        inbound = [Inbound("p/lab/k1/result", r.to_json(), i, 1, False)
                   for i, r in enumerate(results)]
        store.write_batch(Triage("p", 65536).sort(inbound)[0], 100)

    write(stored)
    write(changed, ahead)
    monkeypatch.setattr(backoffice.triage, "utc_now", lambda: now + timedelta(minutes=30))
    write(ahead)  # its kiosk sent it again, and it is stored
    assert (store.count_results(), store.count_dead_letters()) == (2, 2)
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    assert main(["results", "retry", "--store", url, "--dry-run"]) == 0
    said = "0 result(s) from the dead letters; 1 dead-lettered result(s) are still refused"
    assert f"would store {said}" in capsys.readouterr().out
    assert main(["results", "retry", "--store", url]) == 0
    assert f"stored {said}" in capsys.readouterr().out
    assert [letter.reason for letter in store.dead_letters()] == [
        f"measurement_id {stored.measurement_id} already stored with other content; not stored"]


@pytest.mark.postgres
def test_retry_takes_dead_lettered_results_on_postgresql_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uuid

    from appliance import backoffice

    schema = f"test_retry_{uuid.uuid4().hex[:12]}"
    store = open_store("postgresql://postgres@127.0.0.1:5432/test", pg_schema=schema)
    try:
        ahead = result(2, captured_at=datetime.now(UTC) + timedelta(minutes=20))
        inbound = [Inbound("p/lab/k1/result", ahead.to_json(), 0, 1, False),
                   Inbound("p/lab/k1/result", b"{x", 1, 1, False)]
        store.write_batch(Triage("p", 65536).sort(inbound)[0], 100)
        later = datetime.now(UTC) + timedelta(minutes=30)
        monkeypatch.setattr(backoffice.triage, "utc_now", lambda: later)

        def judge(topic: str, payload: bytes) -> list[tuple[object, ...]]:
            batch, _ = Triage("p", len(payload)).sort([Inbound(topic, payload, 0, 1, False)])
            return [] if batch.dead_letters else batch.results

        assert store.retry_dead_letters(judge, dry_run=True) == (1, 1)
        assert store.retry_dead_letters(judge) == (1, 1)
        assert (store.count_results(), store.count_dead_letters()) == (1, 1)
        assert store.retry_dead_letters(judge) == (0, 1)
    finally:
        store.drop_postgres_schema(schema)
        store.close()


def test_the_pathology_server_s_topics_are_no_kiosk_s_even_where_the_wildcards_match() -> None:
    """On a broker without the provisioned ACLs, {p}/+/+/result matches a pathology server
    named "result" and {p}/+/+/model/state a job named "model": neither is a kiosk."""
    from appliance.transport.topics import parse_device_topic

    assert parse_device_topic("p", "p/pathology/jobs/model/state") is None
    assert parse_device_topic("p", "p/pathology-lab/k1/result") == ("pathology-lab", "k1",
                                                                     "result")
    forged = result(3, site="pathology", device_id="servers").to_json()
    batch = sort(("p/pathology/servers/result", forged))
    assert batch.results == []
    assert "not a device result, status or model state topic" in batch.dead_letters[0].reason


def test_retry_does_not_log_the_letters_still_refused_as_new_dead_letters(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`results retry --dry-run` logged 'dead letter on TOPIC: REASON' at WARNING for every
    letter still refused, as if each had just been dead-lettered (one line per letter kept: up
    to dead_letter_max_rows, 100,000), beside its own line saying nothing changed."""
    from appliance.cli import main

    inbound = [Inbound("p/lab/k1/result", b"{not json %d" % i, i, 1, False) for i in range(3)]
    store.write_batch(Triage("p", 65536).sort(inbound)[0], 100)
    caplog.clear()
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    with caplog.at_level(logging.WARNING):
        assert main(["results", "retry", "--store", url, "--dry-run"]) == 0
        assert main(["results", "retry", "--store", url]) == 0
    assert "3 dead-lettered result(s) are still refused" in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records if "dead letter" in r.getMessage()] == []
    assert store.count_dead_letters() == 3


def test_one_kiosk_s_flood_of_refused_messages_is_not_named_line_by_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each refused message was one warning: one kiosk's login sending junk as fast as the
    broker takes it wrote a line per message, and journald's rate limit then drops every line
    of the worker, other kiosks' refusals and store errors included."""
    triage = Triage("p", 1000)
    flood = [Inbound("p/lab/k1/result", b"{x%d" % i, i, 1, False) for i in range(500)]
    other = Inbound("p/lab/k2/result", b"{y", 500, 1, False)
    with caplog.at_level(logging.WARNING, logger="appliance.backoffice"):
        batch, _ = triage.sort([*flood, other])
    lines = [r.getMessage() for r in caplog.records]
    assert len(batch.dead_letters) == 501  # every one still kept
    assert len([line for line in lines if "p/lab/k1/result" in line]) == 10
    assert sum("more than 10 dead letters from lab/k1" in line for line in lines) == 1
    assert sum("dead letter on p/lab/k2/result" in line for line in lines) == 1
    assert len(lines) == 12


def test_the_next_minute_says_how_many_letters_were_not_named_and_names_them_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from appliance.backoffice.letterlog import DeadLetterLog

    now = [0.0]
    letters = DeadLetterLog(per_window=3, window_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="appliance.backoffice"):
        for _ in range(8):
            letters.warn("lab/k1", "p/lab/k1/result", "bad", 2, "{x")
        now[0] = 61.0
        letters.warn("lab/k1", "p/lab/k1/result", "bad", 2, "{x")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[3].startswith("more than 3 dead letters from lab/k1 within 60 s")
    assert lines[4].startswith("5 more dead letter(s) from lab/k1 in 60 s were not named")
    assert lines[5].startswith("dead letter on p/lab/k1/result: bad")
    assert len(lines) == 6


def test_letters_on_long_topics_are_named_cut_and_not_held_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker that lets a topic through whatever its levels (65,535 bytes at most) gave the
    worker letters whose topic was written whole in each warning and kept whole, as the
    source of its warnings per minute, for 10,000 sources: 60 KB a line, 600 MB held."""
    import tracemalloc

    triage = Triage("p", 1000)
    sites = [f"s{i:03d}" + "x" * 60_000 for i in range(200)]
    with caplog.at_level(logging.WARNING, logger="appliance.backoffice"):
        triage.sort([Inbound(f"p/{sites[0]}/k1/result", b"{x", 0, 1, False)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith(f"dead letter on {('p/' + sites[0])[:200]}... (")
    assert len(lines[0]) < 400
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="appliance.backoffice"):  # no record holds them
        tracemalloc.start()
        try:
            messages = [Inbound(f"p/{site}/k1/result", b"{x", i, 1, False)
                        for i, site in enumerate(sites[1:])]
            triage.sort(messages)
            del messages
            held_bytes = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert held_bytes < 2_000_000  # 199 topics of 60 KB held whole: 12 MB


def _impossible(index: int) -> list[tuple[str, bytes]]:
    """Results no kiosk can measure, as raw JSON (the model refuses to build them)."""
    def changed(change: dict[str, dict[str, object]]) -> bytes:
        data = json.loads(result(index).to_json())
        for part, values in change.items():
            data[part] = values if part == "subject" else data[part] | values
        data["measurement_id"] = fleetsim.new_measurement_id()
        return json.dumps(data).encode()

    return [
        ("features.pore_count: Input should be less than or equal to 2764800",
         changed({"features": {"pore_count": 2**62}})),
        ("features.pore_density_per_cm2: Input should be less than or equal to 257874",
         changed({"features": {"pore_density_per_cm2": 1e300}})),
        ("features.melanin_index: Input should be greater than or equal to -0.000001",
         changed({"features": {"melanin_index": -1e300}})),
        ("classification: Value error, label 'excellent' is not among the probabilities'",
         changed({"classification": {"label": "excellent"}})),
        ("classification: Value error, probabilities sum to 3;",
         changed({"classification": {"probabilities": {"fine": 1.0, "normal": 1.0,
                                                       "coarse": 1.0}}})),
        ("subject.consent: Field required", changed({"subject": {"age_band": "40-49"}})),
    ]


def test_an_impossible_result_is_a_dead_letter_naming_the_key_and_its_bound(
    store: Store,
) -> None:
    """pore_count 2^62, a density of 1e300, a label not among its probabilities, a subject
    without consent: stored and counted in the cohort report before; now each is refused with
    the key and what it may be, and the honest result beside them is stored."""
    impossible = _impossible(1)
    honest = result(2)
    batch = sort(*[("p/lab/k1/result", raw) for _, raw in impossible],
                 ("p/lab/k1/result", honest.to_json()))
    store.write_batch(batch, 100)
    assert [row[0] for row in store.select_results(["measurement_id"])] == [
        honest.measurement_id]
    reasons = sorted(letter.reason for letter in store.dead_letters())
    assert len(reasons) == len(impossible)
    for said, _raw in impossible:
        assert [reason for reason in reasons if reason.startswith(said)], said


def test_results_stored_before_the_bounds_are_still_read_exported_and_reported(
    store: Store, tmp_path: Path,
) -> None:
    """A store keeps what it took before the bounds (a subject without consent, pore_count
    2^62): listing, exporting and the cohort report read those rows as before."""
    from appliance.backoffice.report import write_cohort_report
    from appliance.backoffice.schema import result_row
    from appliance.transport.payloads import Features, Subject

    rows = []
    for index in range(30):
        before = result(index)
        if index < 3:
            assert before.subject is not None
            before = before.model_copy(update={
                "subject": Subject.model_construct(age_band=before.subject.age_band),
                "features": Features.model_construct(**before.features.model_dump() | {
                    "pore_count": 2**62, "melanin_index": -1e300})})
        rows.append(result_row(before, "2026-11-26T00:00:00.000000Z",
                               before.model_dump_json(by_alias=True, exclude_none=True,
                                                      warnings=False)))
    store.write_batch(Batch(results=rows), 100)
    assert store.count_results() == 30
    assert export_results(store, "jsonl", str(tmp_path / "all.jsonl")) == 30
    assert write_cohort_report(store, tmp_path / "report").exists()
