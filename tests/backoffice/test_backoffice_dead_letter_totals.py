"""The dead-letter bounds read a running count and size of the kept letters
(``dead_letter_totals``, migration 13): it must match the letters themselves after every kind
of change, with several writers at once, and the bounds must still hold exactly."""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.schema import DeadLetter, dead_letter, result_row
from appliance.backoffice.service import run_backoffice
from appliance.backoffice.store import Batch, Store, open_store
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import free_port
from appliance.transport.payloads import Result
from tests.store_helpers import BACKENDS, PG_URL, fresh_store

AT = "2026-12-05T00:00:00.000000Z"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "test_dlsum", open_store) as opened:
        yield opened


def _size(letter: DeadLetter) -> int:
    """What a letter counts against the bound: the bytes of its payload, reason and topic."""
    return len(letter.payload) + len(letter.reason.encode()) + len(letter.topic.encode())


def _kept(store: Store) -> tuple[int, int]:
    """The kept letters' count and size, summed from the letters themselves."""
    letters = store.dead_letters(limit=100_000)
    return len(letters), sum(map(_size, letters))


def _by_topic(store: Store) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """Each topic's letters: counted from the letters, and as ``dead_letter_topic_totals``."""
    counted: dict[str, tuple[int, int]] = {}
    for letter in store.dead_letters(limit=100_000):
        rows, size = counted.get(letter.topic, (0, 0))
        counted[letter.topic] = (rows + 1, size + _size(letter))
    kept = store.query("SELECT topic, letters, letter_bytes FROM dead_letter_topic_totals "
                       "ORDER BY topic")
    return ([(t, n, b) for t, (n, b) in sorted(counted.items())],
            [(str(t), int(n), int(b)) for t, n, b in kept])


def _totals(store: Store) -> tuple[int, int]:
    row = store.query("SELECT letters, letter_bytes FROM dead_letter_totals")[0]
    return int(row[0]), int(row[1])


def _letter(rng: random.Random, index: int) -> DeadLetter:
    """A refused message: garbage, or a result the retry below stores (even ``index``)."""
    if index % 2 == 0:
        sample = fleet.sample_result(random.Random(index), "lab", f"k{index % 5}", index)
        return dead_letter(AT, f"p/lab/k{index % 5}/result", "ahead of the clock",
                           sample.to_json())
    return dead_letter(AT, f"p/lab/k{index % 5}/status", "bad" * rng.randint(1, 9),
                       b"x" * rng.randint(0, 300))


def _retry_judge(topic: str, payload: bytes) -> list[tuple[object, ...]]:
    """Takes every other result letter (by its measurement number), refuses the rest."""
    found = Result.model_validate_json(payload)
    if int(found.measurement_id[-1], 16) % 2:
        return []
    return [result_row(found, AT, payload.decode())]


def test_the_running_total_matches_the_letters_and_the_bounds_hold_after_a_mix(
    store: Store,
) -> None:
    """New letters, copies of kept ones (kept once), copies of pruned ones (kept again),
    bounds lowered and raised, and retries that take letters away: after each, the total
    equals a real SUM, and the kept letters are the newest that fit, as a model says."""
    rng = random.Random(12)
    model: list[tuple[str, int]] = []  # (letter_sha256, size), oldest first
    for step in range(60):
        letters = [_letter(rng, rng.randrange(80)) for _ in range(rng.randint(0, 6))]
        max_rows, max_bytes = rng.choice([(40, 20_000), (8, 100_000), (100, 3_000), (3, 500)])
        store.write_batch(Batch(dead_letters=list(letters)), max_rows, max_bytes)
        held = {sha for sha, _ in model}
        for d in letters:
            if d.letter_sha256 not in held:
                held.add(d.letter_sha256)
                model.append((d.letter_sha256, len(d.payload) + len(d.reason) + len(d.topic)))
        if letters:
            while len(model) > max_rows or sum(size for _, size in model) > max_bytes:
                model.pop(0)
        if step % 10 == 9:
            store.retry_dead_letters(_retry_judge)
            kept_now = {row[0] for row in store.query("SELECT letter_sha256 FROM dead_letters")}
            model = [(sha, size) for sha, size in model if sha in kept_now]
        assert _totals(store) == _kept(store) == (len(model), sum(s for _, s in model))
        counted, kept = _by_topic(store)
        assert counted == kept
        assert [row[0] for row in store.query(
            "SELECT letter_sha256 FROM dead_letters ORDER BY id")] == [sha for sha, _ in model]
    assert store.count_results() > 0  # the retries took some letters away


def _several_writers(url: str, schema: str | None, writers: int, batches: int) -> None:
    """``writers`` connections writing batches of letters at once, under small bounds."""
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            own = Store(url, schema)
            rng = random.Random(worker)
            try:
                for n in range(batches):  # some letters shared by all writers: kept once
                    letters = [_letter(rng, rng.randrange(1000) * 2 + 1) for _ in range(3)]
                    letters.append(_letter(rng, 7 + 2 * (n % 4)))
                    own.write_batch(Batch(dead_letters=letters), 25, 4_000)
            finally:
                own.close()
        except BaseException as exc:  # raised again in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_writers_at_once_keep_the_total_exact_and_the_bounds(
    backend: str, tmp_path: Path,
) -> None:
    """Several ingest workers share a store: on PostgreSQL their transactions run at once."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"test_dlsum_{uuid.uuid4().hex[:12]}"
    store = open_store(url, pg_schema=schema)
    try:
        _several_writers(url, schema, writers=4, batches=30)
        rows, size = _kept(store)
        assert _totals(store) == (rows, size)
        assert 0 < rows <= 25
        assert size <= 4_000
    finally:
        if schema is not None:
            store.drop_postgres_schema(schema)
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_13_to_15_count_the_letters_kept_before_them(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"test_dlsum_{uuid.uuid4().hex[:12]}"
    with monkeypatch.context() as before_13:  # a store as it was before migration 13
        before_13.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:12])
        old = open_store(url, pg_schema=schema)
    try:
        old.write("INSERT INTO dead_letters (received_at, topic, reason, payload_bytes, payload) "
                  "VALUES (?, ?, ?, ?, ?)",
                  [(AT, f"p/lab/k{i}/status", "bad", 10 * i, b"y" * 10 * i) for i in range(6)])
        assert old.migrate() == [version for version, _, _ in MIGRATIONS[12:]]  # 13 on
        assert _totals(old) == _kept(old) == (6, 6 * len("p/lab/k0/status" + "bad") + 150)
        counted, kept = _by_topic(old)  # migration 14 counts them by topic
        assert counted == kept
        assert len(kept) == 6
        rng = random.Random(3)
        old.write_batch(Batch(dead_letters=[_letter(rng, 1)]), 4)
        assert _totals(old) == _kept(old)
        assert _kept(old)[0] == 4
    finally:
        if schema is not None:
            old.drop_postgres_schema(schema)
        old.close()


@pytest.mark.postgres
def test_a_retry_while_a_batch_prunes_the_same_letters_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`results retry` deleted its letters, then waited for the totals row held by an ingest
    batch whose prune waited for those very letters: PostgreSQL ended one of the two with a
    deadlock error. The retry now takes the totals row before it deletes a letter, and before
    it reads them: it read the letter, stored its result, and the batch, pruning that letter
    meanwhile, counted it lost (LOST k4: 1, and k4's result stored all the same). The letter
    the batch pruned first is gone when the retry reads: lost, counted once, not stored."""
    schema = f"test_dlsum_{uuid.uuid4().hex[:12]}"
    ingest = open_store(PG_URL, pg_schema=schema)
    retry, watcher = Store(PG_URL, schema), Store(PG_URL, schema)
    try:
        ingest.write_batch(Batch(dead_letters=[_letter(random.Random(1), 4)]), 100)
        retry_pid = retry.query("SELECT pg_backend_pid()")[0][0]
        holding = threading.Event()
        retry_waited: list[bool] = []
        only_copies = ingest._only_copies  # noqa: SLF001  (runs with the totals row held)

        def paused(*args: object) -> object:
            holding.set()
            # the batch goes on only once the retry is seen waiting for a lock (the totals
            # row this batch holds), so the two meet as the docstring says, however loaded
            retry_waited.append(_waits_for_a_lock(watcher, retry_pid))
            return only_copies(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(ingest, "_only_copies", paused)
        outcome: list[object] = []

        def run_retry() -> None:
            holding.wait(timeout=10)
            try:
                outcome.append(retry.retry_dead_letters(_retry_judge_all))
            except Exception as exc:  # the test asserts on it
                outcome.append(exc)

        thread = threading.Thread(target=run_retry)
        thread.start()
        ingest.write_batch(Batch(dead_letters=[_letter(random.Random(2), 5)],
                                 topic_prefix="p"), 1)
        thread.join(timeout=30)
        assert retry_waited == [True]
        assert outcome == [(0, 0)]
        assert _totals(ingest) == _kept(ingest)
        assert _kept(ingest)[0] == 1
        assert ingest.count_results() == 0
        assert [row[:3] for row in ingest.pruned_only_copies(10).worst] == [("lab", "k4", 1)]
    finally:
        retry.close()
        watcher.close()
        ingest.drop_postgres_schema(schema)
        ingest.close()


def _waits_for_a_lock(watcher: Store, pid: int) -> bool:
    """Whether the backend ``pid`` is seen waiting for a lock within 10 s."""
    def waiting() -> bool:
        rows = watcher.query("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?",
                             (pid,))
        return bool(rows) and rows[0][0] == "Lock"

    return wait_until(waiting, 10)


@pytest.mark.parametrize("pruned", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_ingest_batch_goes_on_while_the_retry_judges_and_a_letter_it_prunes_is_not_stored(
    backend: str, pruned: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`results retry` judged every letter with the totals row held (on SQLite the whole
    store's write lock): an ingest batch waited for all of its judging (here: until its lock
    wait ran out). Now a batch commits while the retry judges; a letter it pruned then is
    counted lost and not stored, and one it kept is stored and removed."""
    import appliance.backoffice.store as store_module

    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 1000)
    if backend == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'store.sqlite3'}", None
        ingest_url = url
    else:
        url, schema = PG_URL, f"test_dlsum_{uuid.uuid4().hex[:12]}"
        ingest_url = f"{PG_URL}?options=-c%20lock_timeout%3D1000"  # no endless wait on main
    retry = open_store(url, pg_schema=schema)
    ingest = Store(ingest_url, schema)
    try:
        retry.write_batch(Batch(dead_letters=[_letter(random.Random(1), 4)]), 100)
        batches = []

        def judge_while_a_batch_commits(topic: str, payload: bytes) -> list[tuple[object, ...]]:
            newer = Batch(dead_letters=[_letter(random.Random(2), 5)], topic_prefix="p")
            ingest.write_batch(newer, 1 if pruned else 100)  # keep 1: the retry's letter goes
            batches.append(newer)
            return _retry_judge_all(topic, payload)

        outcome = retry.retry_dead_letters(judge_while_a_batch_commits)
        assert len(batches) == 1
        assert _totals(retry) == _kept(retry) == (1, _size(_letter(random.Random(2), 5)))
        lost = [row[:3] for row in retry.pruned_only_copies(10).worst]
        if pruned:
            assert outcome == (0, 0)
            assert retry.count_results() == 0
            assert lost == [("lab", "k4", 1)]
        else:
            assert outcome == (1, 0)
            assert retry.count_results() == 1
            assert lost == []
    finally:
        ingest.close()
        if schema is not None:
            retry.drop_postgres_schema(schema)
        retry.close()


def _retry_judge_all(topic: str, payload: bytes) -> list[tuple[object, ...]]:
    """Takes every result letter."""
    found = Result.model_validate_json(payload)
    return [result_row(found, AT, payload.decode())]


def test_one_kiosk_s_flood_of_refused_results_prunes_its_own_letters_not_another_kiosk_s(
    store: Store,
) -> None:
    """Pruned oldest first across the fleet, one kiosk (broken, or a stolen login) sending
    refused results pushed every other kiosk's letters out: a result refused for a clock
    ahead, confirmed to its kiosk and kept for ``results retry`` (its only copy), was lost
    (seen flooding a provisioned broker as one kiosk). Now that kiosk's letters go first."""
    waiting = fleet.sample_result(random.Random(1), "lab", "k-b", 1)
    kept_for_retry = dead_letter(AT, "p/lab/k-b/result", "ahead of the clock",
                                 waiting.to_json())
    store.write_batch(Batch(dead_letters=[kept_for_retry], topic_prefix="p"), 1000, 40_000)
    for _ in range(30):
        junk = (b'{"measurement_id": "%s", "pad": "' % str(uuid.uuid4()).encode()
                + b"x" * 5_000 + b'"}')
        flood = Batch(dead_letters=[dead_letter(AT, "p/lab/k-a/result", "bad", junk)],
                      topic_prefix="p")
        store.write_batch(flood, 1000, 40_000)
    assert [d.topic for d in store.dead_letters(1000)].count("p/lab/k-b/result") == 1
    assert _kept(store) == _totals(store)
    counted, kept = _by_topic(store)
    assert counted == kept
    assert _totals(store)[1] <= 40_000
    lost = store.pruned_only_copies(10)
    assert lost.text().count("lab/k-a") == 1
    assert "k-b" not in lost.text()


def _refused(device: str) -> DeadLetter:
    """A refused result of ``device`` at site lab that names a measurement id."""
    named = b'{"measurement_id": "%s"}' % str(uuid.uuid4()).encode()
    return dead_letter(AT, f"p/lab/{device}/result", "bad", named)


def test_letters_pruned_over_a_kiosk_s_share_are_lost_only_once_confirmed(store: Store) -> None:
    """Of a greedy kiosk's letters pruned over its share, the refused results that earlier
    batches kept (confirmed to the kiosk: the only copy) count as lost; its status letters,
    and the results of the batch that prunes them (not yet confirmed), do not."""
    status = dead_letter(AT, "p/lab/k-a/status", "bad", b"{}")
    store.write_batch(Batch(dead_letters=[dead_letter(AT, "p/lab/k-b/status", "bad", b"[]")],
                            topic_prefix="p"), 1000)
    store.write_batch(Batch(dead_letters=[status, *(_refused("k-a") for _ in range(3))],
                            topic_prefix="p"), 1000)
    over_by_two = Batch(dead_letters=[_refused("k-a"), _refused("k-a")], topic_prefix="p")
    store.write_batch(over_by_two, 5)
    assert over_by_two.pruned_only_copies == {("lab", "k-a"): 1}  # the status, one result
    over_by_six = Batch(dead_letters=[_refused("k-a") for _ in range(4)], topic_prefix="p")
    store.write_batch(over_by_six, 3)
    assert over_by_six.pruned_only_copies == {("lab", "k-a"): 4}  # and two of its own
    assert [d.topic for d in store.dead_letters(1000)] == ["p/lab/k-a/result"] * 2 + [
        "p/lab/k-b/status"]
    assert store.pruned_only_copies(10).letters == 5
    assert _kept(store) == _totals(store)


def test_letters_of_one_kiosk_alone_still_fill_the_bounds(store: Store) -> None:
    """The share costs a kiosk nothing while no other kiosk holds letters."""
    for index in range(30):
        letter = dead_letter(AT, "p/lab/k-a/status", "bad", b"x" * 5_000 + bytes([index]))
        store.write_batch(Batch(dead_letters=[letter], topic_prefix="p"), 1000, 40_000)
    assert _totals(store) == _kept(store)
    assert _totals(store)[0] == 40_000 // (5_001 + len("bad") + len("p/lab/k-a/status"))


def test_a_lowered_bound_prunes_many_of_the_greedy_kiosk_s_letters_at_once(store: Store) -> None:
    """More of one kiosk's letters than one page of them go in one batch, none of another's."""
    waiting = fleet.sample_result(random.Random(1), "lab", "k-b", 1)
    other = dead_letter(AT, "p/lab/k-b/result", "ahead of the clock", waiting.to_json())
    store.write_batch(Batch(dead_letters=[other], topic_prefix="p"), 1000)
    flood = [dead_letter(AT, "p/lab/k-a/status", "bad", b"x%d" % i) for i in range(60)]
    store.write_batch(Batch(dead_letters=flood, topic_prefix="p"), 1000)
    last = dead_letter(AT, "p/lab/k-a/status", "bad", b"last")
    store.write_batch(Batch(dead_letters=[last], topic_prefix="p"), 5)
    topics = [d.topic for d in store.dead_letters(1000)]
    assert topics.count("p/lab/k-b/result") == 1
    assert len(topics) == 5
    assert _kept(store) == _totals(store)
    counted, kept = _by_topic(store)
    assert counted == kept


def _multibyte(index: int) -> DeadLetter:
    """A refused message whose topic and reason are multibyte characters: 1,385 characters,
    4,121 bytes (a reason quoting what was refused, on a topic named in Japanese)."""
    return dead_letter(AT, f"p/研究室/k{index}/status", "値" * 1365 + f"#{index:02d}", b"{}")


def test_the_byte_bound_counts_bytes_of_multibyte_topics_and_reasons(store: Store) -> None:
    """The size counted characters: five such letters (6,925 characters, 20,605 bytes) were
    all kept under a bound of 10,000 bytes."""
    for index in range(5):
        store.write_batch(Batch(dead_letters=[_multibyte(index)]), 100, 10_000)
        assert _totals(store) == _kept(store)
    rows, size = _kept(store)
    assert size <= 10_000
    assert rows == 2
    assert store.dead_letters()[0].topic == "p/研究室/k4/status"


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_15_counts_the_letters_kept_before_it_in_bytes(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"store_dlsum_{uuid.uuid4().hex[:12]}"
    with monkeypatch.context() as before_15:  # a store as it was before migration 15
        before_15.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:14])
        old = open_store(url, pg_schema=schema)
        old.write_batch(Batch(dead_letters=[_multibyte(n) for n in range(2)]), 100)
        # the total as the code before migration 15 kept it: in characters
        old.write("UPDATE dead_letter_totals SET letter_bytes = ?", [(2 * 1385,)])
    try:
        assert old.migrate() == [version for version, _, _ in MIGRATIONS[14:]]  # 15 on
        assert _totals(old) == _kept(old) == (2, 2 * 4121)
    finally:
        if schema is not None:
            old.drop_postgres_schema(schema)
        old.close()


def _as_an_older_worker(store: Store) -> None:
    """What a worker from before migration 13 does beside a newer one: it keeps letters and
    prunes the oldest without the running total."""
    store.write("INSERT INTO dead_letters (received_at, topic, reason, payload_bytes, payload, "
                "letter_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                [(d.received_at, d.topic, d.reason, d.payload_bytes, d.payload, d.letter_sha256)
                 for d in (_letter(random.Random(n), n) for n in range(20, 26))])
    oldest = store.query("SELECT MIN(id) FROM dead_letters")[0][0]
    store.write("DELETE FROM dead_letters WHERE id = ?", [(oldest,)])


def test_a_recount_sets_right_a_total_an_older_worker_let_drift(store: Store) -> None:
    rng = random.Random(5)
    store.write_batch(Batch(dead_letters=[_letter(rng, n) for n in range(4)]), 100)
    _as_an_older_worker(store)
    drifted = _totals(store)
    assert drifted != _kept(store)
    counted, kept = _by_topic(store)
    assert counted != kept  # each topic's share drifted too
    assert store.recount_letter_totals() == (drifted, _kept(store))
    assert _totals(store) == _kept(store) == (9, _kept(store)[1])
    counted, kept = _by_topic(store)
    assert counted == kept
    assert store.recount_letter_totals() == (_kept(store), _kept(store))  # nothing to set


def test_a_worker_recounts_the_dead_letters_as_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Workers older than migration 13 run on during a rolling upgrade: the next worker that
    starts after them sets the total right, and says it had drifted."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = open_store(url)
    try:
        store.write_batch(Batch(dead_letters=[_letter(random.Random(1), 2)]), 100)
        _as_an_older_worker(store)
        drifted = _totals(store)
    finally:
        store.close()
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "store-recount"},
        "state_dir": str(tmp_path), "store": {"url": url},
        "backoffice": {"client_id": f"store-recount-{uuid.uuid4().hex[:8]}"}}, environ={})
    stop = threading.Event()
    stop.set()  # starts, then stops at once: no broker needed
    with caplog.at_level(logging.WARNING, logger="appliance.backoffice.service"):
        assert run_backoffice(config, stop) == 0
    store = open_store(url)
    try:
        assert _totals(store) == _kept(store) != drifted
        assert f"the dead-letter totals said {drifted[0]} letters of {drifted[1]} bytes, " \
               f"but {_kept(store)[0]} of {_kept(store)[1]} bytes are kept" in caplog.text
    finally:
        store.close()


def test_a_worker_names_the_workers_that_let_the_total_drift_in_characters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker of store migrations 13 and 14 kept the running total, in characters: one
    beside a newer worker let it drift on every letter of a multibyte reason. The warning at
    the next start blamed workers older than migration 13 only; it names those older than 15."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = open_store(url)
    try:
        letter = dead_letter(AT, "p/lab/k1/status", "\u00e9tat inconnu " * 4, b"{}")
        store.write_batch(Batch(dead_letters=[letter]), 100)
        characters = len(letter.topic) + len(letter.reason) + len(letter.payload)
        store.write("UPDATE dead_letter_totals SET letter_bytes = ?", [(characters,)])
        drifted = _totals(store)
    finally:
        store.close()
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "store-recount"},
        "state_dir": str(tmp_path), "store": {"url": url},
        "backoffice": {"client_id": f"store-recount-{uuid.uuid4().hex[:8]}"}}, environ={})
    stop = threading.Event()
    stop.set()  # starts, then stops at once: no broker needed
    with caplog.at_level(logging.WARNING, logger="appliance.backoffice.service"):
        assert run_backoffice(config, stop) == 0
    assert drifted[1] < _kept_in(url)[1]
    assert "a back-office worker older than store migration 15 kept or pruned some" in caplog.text


def _kept_in(url: str) -> tuple[int, int]:
    store = open_store(url)
    try:
        return _totals(store)
    finally:
        store.close()


def test_a_batch_names_the_letters_the_store_did_not_hold_before(store: Store) -> None:
    # what lets a back office name a retained junk status once, not at every start
    junk, other = (dead_letter(AT, "p/lab/k1/status", "bad", raw) for raw in (b"null", b"[]"))
    first = Batch(dead_letters=[junk], topic_prefix="p")
    store.write_batch(first, 100)
    again = Batch(dead_letters=[junk, other], topic_prefix="p")
    store.write_batch(again, 100)
    assert first.new_letters == {junk.letter_sha256}
    assert again.new_letters == {other.letter_sha256}  # junk was held already
    assert [d.letter_sha256 for d in again.dead_letters] == [junk.letter_sha256,
                                                             other.letter_sha256]
