"""Job requests (checks, slide-root confinement) and the job store on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from appliance.edge.testing import wait_until
from appliance.pathology.jobs import (
    CUT_MARK,
    JOB_SCHEMA,
    JobRefusedError,
    JobRequest,
    fitted_state_payload,
    make_request,
    parse_job,
    parse_stored,
    read_presence,
    read_state,
    same_slides,
)
from appliance.pathology.jobstore import PathologyStore, open_pathology_store
from appliance.pathology.prepare import TileSettings
from appliance.pathology.requestcheck import RequestChecks
from appliance.pathology.slideworker import prepare_for_model
from appliance.synthetic.he import SlideSpec
from tests.he_slides import painted
from tests.store_helpers import BACKENDS, PG_URL, fresh_store

LEADS_OUTSIDE = ("leads outside the slide roots now (a link, or a folder on its way, replaced "
                 "since its job was taken); refused")


def _payload(paths: list[str], job_id: str = "lab/j1", um: object = 0.5) -> bytes:
    return json.dumps({"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
                       "slides": [{"path": p, "um_per_px": um} for p in paths]}).encode()


def test_a_job_id_ending_in_a_new_line_is_refused(tmp_path: Path) -> None:
    """Python's ``$`` matches before a final new line, so "j1\\n" passed as a job id (a broker
    that takes control characters in topic names, as MQTT allows, carries it): a job whose
    id prints as another's, with a folder of that name among the results (on main: accepted)."""
    root = tmp_path / "slides"
    root.mkdir()
    (root / "ok.jpg").write_bytes(b"x")
    with pytest.raises(JobRefusedError, match=r"job_id 'lab/j1\\n': use LOGIN/NAME"):
        parse_job(_payload([str(root / "ok.jpg")], job_id="lab/j1\n"), [root], 10_000, 10,
                  topic_job_id="lab/j1\n")


def test_slides_must_resolve_inside_a_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "slides", tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(outside / "secret.jpg")
    (root / "ok.jpg").write_bytes(b"x")
    job = parse_job(_payload([str(root / "ok.jpg")]), [root], 10_000, 10)
    assert job.slides[0].path == str((root / "ok.jpg").resolve())
    assert job.slides[0].name == "ok"
    for hostile in (str(root / "link.jpg"), str(root / ".." / "private" / "secret.jpg"),
                    "ok.jpg", "/etc/passwd"):
        with pytest.raises(JobRefusedError, match="outside the slide roots") as caught:
            parse_job(_payload([hostile]), [root], 10_000, 10)
        assert caught.value.job_id == "lab/j1"


def test_a_link_to_a_file_whose_name_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """A request names a link in a slide root to a file whose name is not UTF-8 (b'\\xff'):
    the resolved path was accepted, and its slide result, text no store can take, failed in
    the finisher for good, so the job stayed running for ever. Now the request is refused."""
    root = tmp_path / "slides"
    root.mkdir()
    odd = os.fsdecode(bytes(root) + b"/\xff.jpg")
    Path(odd).write_bytes(b"x")
    (root / "link.jpg").symlink_to(odd)
    with pytest.raises(JobRefusedError) as caught:
        parse_job(_payload([str(root / "link.jpg")]), [root], 10_000, 10)
    assert str(caught.value) == (f"slides[0].path {str(root / 'link.jpg')!r} leads to a file "
                                 "whose name is not UTF-8 text; rename the file")
    assert caught.value.job_id == "lab/j1"


def test_a_slide_named_with_decomposed_accents_carries_the_same_name_as_composed(
    tmp_path: Path,
) -> None:
    """"Müller-café" written on a Mac (NFD) became "Mu_ller-cafe_", from Linux (NFC)
    "M_ller-caf_": one slide under two names. Both are now one name, in the request's name
    and from the file's."""
    root = tmp_path / "slides"
    root.mkdir()
    composed, decomposed = "Müller-café", "Mu\u0308ller-cafe\u0301"
    (root / f"{decomposed}.jpg").write_bytes(b"x")
    (root / f"{composed}.jpg").write_bytes(b"x")
    payload = json.dumps({"schema": JOB_SCHEMA, "job_id": "lab/j1", "submitted_at": "", "slides": [
        {"path": str(root / f"{decomposed}.jpg"), "um_per_px": 0.5},
        {"path": str(root / f"{composed}.jpg"), "um_per_px": 0.5},
        {"path": str(root / f"{composed}.jpg"), "um_per_px": 0.5, "name": decomposed}]})
    job = parse_job(payload.encode(), [root], 10_000, 10)
    assert [slide.name for slide in job.slides] == ["M_ller-caf_"] * 3
    assert job.slides[0].path != job.slides[1].path  # two files: each read as it is named


@pytest.mark.parametrize(("payload", "reason", "job_id"), [
    (b"\xff\xfe", "not JSON", None),
    (b"[1, 2]", "JSON object", None),
    (b"[" * 1000 + b"]" * 1000, "nested too deeply", None),
    (json.dumps({"job_id": "../x"}).encode(), "job_id", None),
    (json.dumps({"job_id": "a", "schema": JOB_SCHEMA}).encode(), "use LOGIN/NAME", None),
    (json.dumps({"job_id": "a/b/c", "schema": JOB_SCHEMA}).encode(), "use LOGIN/NAME", None),
    (json.dumps({"job_id": "l/a", "schema": "other/1"}).encode(), "expected appliance", "l/a"),
    (json.dumps({"job_id": "l/a", "schema": JOB_SCHEMA, "slides": []}).encode(), "non-empty",
     "l/a"),
    (json.dumps({"job_id": "l/a", "schema": JOB_SCHEMA, "slides": ["x"]}).encode(), "object",
     "l/a"),
    (json.dumps({"job_id": "a", "schema": JOB_SCHEMA, "submitted_at": "2026\u0000",
                 "slides": []}).encode(), "a NUL character", None),
    (json.dumps({"job_id": "a", "\u0000": 1}).encode(), "a NUL character", None),
])
def test_malformed_requests_are_refused_with_a_reason(
    payload: bytes, reason: str, job_id: str | None, tmp_path: Path
) -> None:
    with pytest.raises(JobRefusedError, match=reason) as caught:
        parse_job(payload, [tmp_path], 10_000, 10)
    assert caught.value.job_id == job_id


@pytest.mark.parametrize(("extra", "in_slide", "named"), [
    ({"tile_um": 128}, False, "the job request has 1 unknown key(s) 'tile_um'"),
    ({"options": {}, "priority": 1}, False, "2 unknown key(s) 'options', 'priority'"),
    ({"tile_um": 128}, True, "slides[0] has 1 unknown key(s) 'tile_um'"),
    ({"\u202e": 1}, True, "slides[0] has 1 unknown key(s) '\\u202e'"),
], ids=["top-tile_um", "top-two", "slide-tile_um", "slide-bidi"])
def test_a_request_with_a_key_the_schema_lacks_is_refused_naming_it(
    extra: dict[str, object], in_slide: bool, named: str, tmp_path: Path
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    request = json.loads(_payload([str(tmp_path / "a.jpg")]))
    (request["slides"][0] if in_slide else request).update(extra)
    with pytest.raises(JobRefusedError) as caught:
        parse_job(json.dumps(request).encode(), [tmp_path], 10_000, 10, "lab/j1")
    assert named in str(caught.value)
    assert caught.value.job_id == "lab/j1"
    assert "has only" in str(caught.value)
    for key in extra:  # the same request without them is taken
        (request["slides"][0] if in_slide else request).pop(key)
    assert parse_job(json.dumps(request).encode(), [tmp_path], 10_000, 10, "lab/j1").slides


def test_retained_states_and_presences_nested_too_deeply_read_as_none() -> None:
    nested = b'{"job_id": "a", "state": "done", "results": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert read_state(nested) is None
    assert read_presence(nested.replace(b'"job_id"', b'"server"')) is None
    assert read_state(b"[" * 1000 + b"]" * 1000) is None
    assert read_state(b'{"job_id": "a", "state": "done"}') == {"job_id": "a", "state": "done"}


def test_size_and_count_limits(tmp_path: Path) -> None:
    with pytest.raises(JobRefusedError, match="at most 100"):
        parse_job(b" " * 101, [tmp_path], 100, 10)
    with pytest.raises(JobRefusedError, match="at most 3"):
        parse_job(_payload([str(tmp_path / "a.jpg")] * 4), [tmp_path], 10_000, 3)
    with pytest.raises(JobRefusedError, match="um_per_px must be a number"):
        parse_job(_payload([str(tmp_path / "a.jpg")], um=True), [tmp_path], 10_000, 3)


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "0", "-0.5", "50",
                                 pytest.param("1" * 400, id="huge-integer")])
def test_an_implausible_resolution_is_refused_before_the_job_is_stored(
    raw: str, tmp_path: Path
) -> None:
    payload = _payload([str(tmp_path / "a.jpg")], um="UM").replace(b'"UM"', raw.encode())
    with pytest.raises(JobRefusedError, match=r"slides\[0\]\.um_per_px: .* not a plausible slide "
                       r"resolution \(0\.1-4\.0 µm/px") as caught:
        parse_job(payload, [tmp_path], 10_000, 3)
    assert caught.value.job_id == "lab/j1"
    assert parse_job(_payload([str(tmp_path / "a.jpg")], um=4), [tmp_path], 10_000, 3)


def test_a_slide_that_leads_out_of_the_roots_when_read_is_refused(tmp_path: Path) -> None:
    """A job's paths are checked when it comes in; a slide replaced since then by a link out
    of the roots (or a folder on its way replaced by one) was read, and its picture drawn."""
    root, outside = tmp_path / "slides", tmp_path / "private"
    (root / "case").mkdir(parents=True)
    outside.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 1, 0.5, seed=3))
    for place in (root / "case" / "a.jpg", root / "case" / "b.jpg", outside / "a.jpg",
                  outside / "b.jpg"):
        Image.fromarray(rgb).save(place, quality=88)
    job = parse_job(_payload([str(root / "case" / "a.jpg"), str(root / "case" / "b.jpg")]),
                    [root], 10_000, 3)
    settings = TileSettings(tile_px=64, tile_um=128.0)
    first, second = (slide.path for slide in job.slides)
    assert prepare_for_model("j1", 1, second, 1.0, settings, roots=[str(root)]).error == ""
    (root / "case" / "a.jpg").unlink()
    (root / "case" / "a.jpg").symlink_to(outside / "a.jpg")
    prepared = prepare_for_model("j1", 0, first, 1.0, settings, roots=[str(root)])
    assert prepared.error == f"{first}: {LEADS_OUTSIDE}"
    (root / "case").rename(root / "case-moved")
    (root / "case").symlink_to(outside)  # a folder on the way
    prepared = prepare_for_model("j1", 1, second, 1.0, settings, roots=[str(root)])
    assert prepared.error == f"{second}: {LEADS_OUTSIDE}"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PathologyStore]:
    """A fresh pathology store of each backend (PostgreSQL in a throw-away schema)."""
    with fresh_store(request.param, tmp_path, "test_pathology", open_pathology_store) as opened:
        yield opened


def test_a_slide_that_leads_out_of_the_roots_to_a_name_not_utf8_says_so_in_text_a_store_takes(
    tmp_path: Path,
) -> None:
    """The refusal named the file it now leads to as it is: a name that is not UTF-8 gave text
    no store can take, so the slide's failed result was never stored and its job stayed
    running for ever. The name's odd bytes were then shown as escapes; now where it leads is
    not said at all (tests/pathology/test_pathology_slide_roots.py: another lab's names)."""
    root, outside = tmp_path / "slides", tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 1, 0.5, seed=3))
    Image.fromarray(rgb).save(root / "a.jpg", quality=88)
    job = parse_job(_payload([str(root / "a.jpg")]), [root], 10_000, 3)
    odd = os.fsdecode(bytes(outside) + b"/\xff.jpg")
    (root / "a.jpg").rename(odd)
    (root / "a.jpg").symlink_to(odd)
    prepared = prepare_for_model("j1", 0, job.slides[0].path, 1.0,
                                 TileSettings(tile_px=64, tile_um=128.0), roots=[str(root)])
    assert prepared.error == f"{job.slides[0].path}: {LEADS_OUTSIDE}"
    prepared.error.encode()  # what the store is given



def _row(job_id: str, index: int, server: str) -> dict[str, object]:
    return {"job_id": job_id, "slide_index": index, "slide": f"s{index}", "path": "/x",
            "label": "MSI", "score": 0.7, "mean_probability": 0.7, "msi_tile_share": 0.6,
            "tile_count": 10, "in_distribution_share": float("nan"), "reason": "", "error": "",
            "heatmap_path": "", "cam_path": "", "tiles_path": "", "backend": "{}",
            "server": server, "stored_at": "t"}


def test_a_lapsed_lease_moves_the_job_and_slides_are_stored_once(
    store: PathologyStore, tmp_path: Path
) -> None:
    """A job whose lease ran out is taken over, one whose lease still runs is not (its lease
    long enough that no load on the machine lets it run out within the test)."""
    live = make_request([tmp_path / "live.jpg"], 0.5, "lab")
    assert store.accept(live, "first", lease_s=3600)
    request = make_request([tmp_path / "a.jpg", tmp_path / "b.jpg"], 0.5, "lab")
    assert store.accept(request, "first", lease_s=0.2)
    assert not store.accept(request, "second", lease_s=30)  # a redelivery is not a new job
    assert store.store_slide(_row(request.job_id, 0, "first"))
    time.sleep(0.3)  # at least: the short lease ran out, however loaded the machine
    claimed = store.claim_expired("second", lease_s=30)
    assert [job.job_id for job in claimed] == [request.job_id]  # not the one whose lease runs
    assert store.renew("first", [live.job_id], 3600) == {live.job_id}
    assert claimed[0] == parse_stored(request.to_json())
    assert store.renew("first", [request.job_id], 30) == set()  # the first server lost it
    assert not store.finish(request.job_id, "first", "done")
    assert store.stored_slides(request.job_id) == {0}
    assert not store.store_slide(_row(request.job_id, 0, "second"))  # once per slide
    assert store.store_slide(_row(request.job_id, 1, "second"))
    assert store.finish(request.job_id, "second", "done")
    assert not store.request_cancel(request.job_id)  # final states stay final
    job = store.job(request.job_id)
    assert job is not None
    assert (job["state"], job["owner"], job["takeovers"]) == ("done", "second", 1)
    rows = store.slide_results(request.job_id)
    assert [(r["slide_index"], r["server"]) for r in rows] == [(0, "first"), (1, "second")]
    assert rows[0]["in_distribution_share"] is None  # NaN is stored as NULL


@pytest.mark.postgres
def test_jobs_are_taken_over_in_the_order_the_store_accepted_them_whatever_the_hosts_clocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Servers on hosts with skewed clocks share a PostgreSQL store: a job accepted first on a
    host two hours ahead is still taken over before one accepted later on a host on time
    (accepted_at was each host's clock: the later job came first)."""
    from appliance.pathology import jobstore

    real_text = jobstore.utc_text

    def two_hours_ahead(at: datetime | None = None) -> str:
        return real_text(at if at is not None else datetime.now(UTC) + timedelta(hours=2))

    schema = f"test_pathology_{uuid.uuid4().hex[:12]}"
    store = open_pathology_store(PG_URL, pg_schema=schema)
    try:
        first, second = (make_request([tmp_path / f"{n}.jpg"], 0.5, "lab") for n in "ab")
        with monkeypatch.context() as host:
            host.setattr(jobstore, "utc_text", two_hours_ahead)
            host.setattr(time, "time", lambda: datetime.now(UTC).timestamp() + 7200)
            assert store.accept(first, "ahead", lease_s=0.2)
        assert store.accept(second, "on-time", lease_s=0.2)
        time.sleep(0.3)
        taken = [job.job_id for job in store.claim_expired("third", lease_s=30)]
        assert taken == [first.job_id, second.job_id]
    finally:
        store.drop_postgres_schema(schema)
        store.close()


def test_leases_run_on_the_stores_clock_not_a_skewed_hosts(
    store: PathologyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Servers on several hosts share a PostgreSQL store: a server whose clock runs an hour
    ahead must not take over a live job, and one an hour behind must neither renew a lease
    into the past nor miss a lease that really ran out. SQLite serves servers on one host,
    one clock: its leases stay on that host's time.time()."""
    real_time = time.time

    def skewed(offset_s: float) -> None:
        monkeypatch.setattr(time, "time", lambda: real_time() + offset_s)

    postgres = store.postgres
    live = make_request([tmp_path / "a.jpg"], 0.5, "lab")
    assert store.accept(live, "first", lease_s=30)
    skewed(3600)  # the second server's clock runs an hour ahead
    taken = [job.job_id for job in store.claim_expired("ahead", lease_s=30)]
    assert taken == ([] if postgres else [live.job_id])
    if not postgres:
        return  # one host, one clock: the behaviour SQLite always had
    skewed(-3600)  # the owner's clock runs an hour behind: its renewal still holds
    assert store.renew("first", [live.job_id], 30) == {live.job_id}
    monkeypatch.setattr(time, "time", real_time)
    assert store.claim_expired("second", lease_s=30) == []
    lapsing = make_request([tmp_path / "b.jpg"], 0.5, "lab")
    assert store.accept(lapsing, "first", lease_s=0.2)
    time.sleep(0.3)
    skewed(-3600)  # a server an hour behind still sees the lease ran out
    assert [job.job_id for job in store.claim_expired("behind", lease_s=30)] == [
        lapsing.job_id]
    skewed(3600)  # and its new lease holds against one an hour ahead
    assert store.claim_expired("ahead", lease_s=30) == []
    job = store.job(lapsing.job_id)
    assert job is not None
    assert (job["owner"], job["takeovers"]) == ("behind", 1)


def test_a_slide_path_that_is_a_link_loop_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Resolving it raised RuntimeError out of the request check: the server refused the job
    only as "could not handle this request (RuntimeError)" with a traceback in its log."""
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    with pytest.raises(JobRefusedError, match=r"slides\[0\]\.path '.*loop\.jpg' cannot be "
                       r"resolved \(.*loop.*\); name a slide file") as caught:
        parse_job(_payload([str(tmp_path / "loop.jpg")]), [tmp_path], 10_000, 3)
    assert caught.value.job_id == "lab/j1"


def test_stored_refusals_are_bounded_in_number_and_age_and_accepted_jobs_stay(
    store: PathologyStore, tmp_path: Path
) -> None:
    """Each refused request (its job id usable) was a row kept forever: garbage under ever new
    ids grew the store without bound. Now the newest ``keep`` stay, none older than
    ``keep_s``, as the broker keeps their states; a job that was accepted is never removed."""
    accepted = make_request([tmp_path / "a.jpg"], 0.5, "lab")
    assert store.accept(accepted, "server", lease_s=30)
    assert store.finish(accepted.job_id, "server", "failed", "no slide could be scored")
    for index in range(5):
        assert store.record_refusal(f"garbage-{index}", "server", "not JSON", keep_s=3600,
                                    keep=3, keep_per_login=3)
    assert [job_id for job_id in (f"garbage-{i}" for i in range(5)) if store.job(job_id)] == [
        "garbage-2", "garbage-3", "garbage-4"]
    time.sleep(0.3)
    assert store.record_refusal("late", "server", "not JSON", keep_s=0.2, keep=3,
                                keep_per_login=3)
    assert [job_id for job_id in ("garbage-4", "late") if store.job(job_id)] == ["late"]
    time.sleep(0.3)
    store.prune_refusals(keep_s=0.2, keep=3, keep_per_login=3)
    assert store.job("late") is None
    job = store.job(accepted.job_id)
    assert job is not None
    assert job["state"] == "failed"


def test_one_login_s_stored_refusals_do_not_remove_another_login_s(
    store: PathologyStore, tmp_path: Path,
) -> None:
    """The store kept the newest ``keep`` refusals of every login together: one login's
    garbage removed another login's refusal (whose id was then unknown to `job cancel`).
    Each login keeps its newest ``keep_per_login`` now, within ``keep`` in all."""
    bounds = {"keep_s": 3600, "keep": 4, "keep_per_login": 2}
    assert store.record_refusal("lab-b/garbage", "server", "not JSON", **bounds)
    flood = [f"lab-a/garbage-{index}" for index in range(4)]
    for job_id in flood:
        assert store.record_refusal(job_id, "server", "not JSON", **bounds)
    assert [job_id for job_id in ["lab-b/garbage", *flood] if store.job(job_id)] == [
        "lab-b/garbage", *flood[2:]]
    store.prune_refusals(**bounds)  # the minute's prune keeps the same
    assert [job_id for job_id in ["lab-b/garbage", *flood] if store.job(job_id)] == [
        "lab-b/garbage", *flood[2:]]
    accepted = make_request([tmp_path / "a.jpg"], 0.5, "lab-a")
    assert store.accept(accepted, "server", lease_s=30)  # a job of A's: no refusal of its
    assert not store.record_refusal(accepted.job_id, "server", "not JSON", **bounds)
    assert [job_id for job_id in flood if store.job(job_id)] == flood[2:]


@pytest.mark.parametrize("letter", ["x", "é"])  # "é" is 6 bytes of JSON (\u00e9)
def test_a_state_too_large_without_its_results_is_cut_to_fit_and_says_what_was_cut(
    letter: str,
) -> None:
    """A failed job's reason names a slide's error, its path up to 4096 characters; the
    backend's settings name the model's path. With the results alone cut, such a state
    outgrew pathology.max_job_bytes and the broker dropped it."""
    results = [{"slide_index": i, "slide": f"s{i}", "error": "corrupt"} for i in range(50)]
    fields = {"reason": f"no slide could be scored ({letter * 3000})", "server": "lab-0",
              "backend": {"backend": "onnx-cpu", "model": "/m" * 1000}, "slides_total": 50}
    state = fitted_state_payload("j1", "failed", 1024, results=results, **fields)
    assert len(state) <= 1024
    data = json.loads(state)
    assert data["cut"] == ["backend", "reason"]
    assert data["reason"].startswith("no slide could be scored (")
    assert data["reason"].endswith(CUT_MARK)
    assert data["backend"] == {"backend": "onnx-cpu"}
    assert (data["slides_failed"], data["results_omitted"] + len(data["results"])) == (50, 50)
    short = fitted_state_payload("j1", "failed", 4096, reason="cancelled", server="lab-0",
                                 backend={"backend": "onnx-cpu"})
    assert "cut" not in json.loads(short)  # what fits is left whole


def test_request_checks_waiting_on_a_share_are_bounded_and_end_when_it_answers(
    tmp_path: Path,
) -> None:
    """A check stuck on a share that does not answer refuses its request after the limit;
    while as many as max_waiting are stuck, the next is refused at once (no more threads are
    started); once the share answers they end and requests are checked again."""
    answering = threading.Event()

    def check(payload: bytes, job_id: str) -> JobRequest:
        answering.wait(30)
        return parse_job(payload, [tmp_path], 10_000, 10, job_id)

    checks = RequestChecks(check, limit_s=0.2, max_waiting=1,
                           server_id=f"test-{uuid.uuid4().hex[:10]}")
    payload = _payload([str(tmp_path / "a.jpg")])
    with pytest.raises(JobRefusedError, match=r"could not be looked at within 0\.2 s") as first:
        checks.check(payload, "lab/j1")
    assert first.value.job_id == "lab/j1"
    with pytest.raises(JobRefusedError, match="1 earlier requests still wait"):
        checks.check(payload, "lab/j1")
    assert _checks_running(checks) == 1  # no thread started for the one refused at once
    assert checks.end(0.0) == 1  # a stopping server leaves it, waiting on the share
    answering.set()
    assert wait_until(lambda: _checks_running(checks) == 0, 60)
    checks.limit_s = 60.0  # the share answers: the check's own time is not what is tested
    assert checks.check(payload, "lab/j1").job_id == "lab/j1"
    assert checks.end(60.0) == 0  # an answered check's thread is waited for
    assert _checks_running(checks) == 0


def _checks_running(checks: RequestChecks) -> int:
    """The live check threads of ``checks`` (named for its server id), not of other servers
    in this process."""
    return sum(thread.name == checks.thread_name for thread in threading.enumerate())


def test_a_request_is_the_stored_job_s_own_when_it_names_the_same_slides_in_order(
    tmp_path: Path,
) -> None:
    """What decides whether a request under an ended job's id is that job's, answered again,
    or another one, refused: its slides, each path, resolution and name, in order; not when
    it was submitted. A refusal (stored without a request) is no request's."""
    first = make_request([tmp_path / "a.jpg", tmp_path / "b.jpg"], 0.5, "lab")
    stored = json.loads(first.to_json())
    assert same_slides(stored, JobRequest(first.job_id, first.slides, "stamped anew"))
    assert not same_slides(stored, JobRequest(first.job_id, first.slides[::-1], ""))
    assert not same_slides(stored, JobRequest(first.job_id, first.slides[:1], ""))
    assert not same_slides(stored, make_request([tmp_path / "a.jpg", tmp_path / "b.jpg"], 0.25,
                                                "lab"))
    assert not same_slides({}, first)
