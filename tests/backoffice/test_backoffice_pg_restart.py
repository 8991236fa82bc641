"""The back office across a real PostgreSQL restart and crash (tests/pg_cluster.py: a server of
the module's own): kiosks measure and send while the server is stopped (a fast shutdown, as an
upgrade or a failover does), killed (kill -9 of the postmaster, then crash recovery) or comes
back read-only. Every result a kiosk was told is committed is in the store once; the back
office says the outage once, when it ends, and recovers by itself, without a traceback."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from appliance.backoffice import pgconnect
from appliance.backoffice import store as store_module
from appliance.backoffice.batcher import BatchWriter
from appliance.backoffice.retention import RetentionPruner
from appliance.backoffice.schema import dead_letter, iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.config import BackofficeConfig, config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.testing import fast_daemon, wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker
from tests.pg_cluster import HeldCall, PgCluster

pytestmark = [pytest.mark.postgres, pytest.mark.broker]
REPO = Path(__file__).resolve().parents[2]
PER_KIOSK = 30  # results each kiosk measures: some before, some during, some after the outage
BATCHER = "appliance.backoffice.batcher"


@dataclass
class Kiosk:
    """A kiosk daemon (fast fake measuring) in a thread, and the ids its acks named."""

    daemon: EdgeDaemon
    acked: set[str] = field(default_factory=set)
    codes: list[int] = field(default_factory=list)

    def start(self) -> threading.Thread:
        remove_ids = self.daemon.outbox.remove_ids

        def recording(ids: Any, **options: Any) -> list[int]:
            ids = list(ids)
            self.acked.update(ids)
            return remove_ids(ids, **options)

        self.daemon.outbox.remove_ids = recording  # type: ignore[method-assign]
        thread = threading.Thread(target=lambda: self.codes.append(self.daemon.run()),
                                  daemon=True)
        thread.start()
        return thread


def _kiosk(tmp_path: Path, broker: PrivateBroker, site: str, device: str,
           measures: int = PER_KIOSK) -> Kiosk:
    config = config_from_mapping({
        "device": {"id": device, "site": site},
        "camera": {"source": "synthetic", "limit": measures},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "fleet"},
        "state_dir": str(tmp_path / device),
        "edge": {"synthetic_fps": 40, "ack_resend_initial_s": 0.5, "ack_resend_cap_s": 2.0,
                 "reconnect_initial_s": 0.2, "reconnect_cap_s": 1.0},
    }, "test", environ={})
    return Kiosk(fast_daemon(config))


class BackOffice:
    """``appliance backoffice`` as a child process; its log lines as they come."""

    def __init__(self, tmp_path: Path, broker: PrivateBroker, url: str) -> None:
        path = tmp_path / "backoffice.yaml"
        path.write_text(yaml.safe_dump({
            "mqtt": {"port": broker.port, "topic_prefix": "fleet"},
            "state_dir": str(tmp_path / "office"), "store": {"url": url},
            "backoffice": {"client_id": "office-pgrestart", "session_expiry_s": 600,
                           "batch_interval_ms": 50},
        }))
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE__")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance", "backoffice", "--config", str(path)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def said(self, words: str) -> list[str]:
        """The lines so far holding ``words``."""
        return [line for line in list(self.lines) if words in line]

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._reader.join(10)
        return code


@pytest.fixture
def office_and_kiosks(
    tmp_path: Path, private_broker: PrivateBroker, pg_cluster: PgCluster,
) -> Iterator[tuple[BackOffice, list[Kiosk], str]]:
    """A back office storing into a new database of the test's server, subscribed, and two
    kiosks not started yet; the database's URL."""
    url = pg_cluster.database()
    office = BackOffice(tmp_path, private_broker, url)
    site = f"shop-{uuid.uuid4().hex[:6]}"
    kiosks = [_kiosk(tmp_path, private_broker, site, f"kiosk-{n}") for n in range(2)]
    try:
        assert wait_until(lambda: office.said("subscribed to"), 60), office.lines
        yield office, kiosks, url
    finally:
        for kiosk in kiosks:
            kiosk.daemon.request_stop()
        office.stop()


def _stored(url: str) -> dict[str, tuple[int, set[str]]]:
    """Per device: how many result rows, and their measurement ids."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT device_id, measurement_id FROM results").fetchall()
    stored: dict[str, tuple[int, set[str]]] = {}
    for device, mid in rows:
        count, ids = stored.get(device, (0, set()))
        stored[device] = (count + 1, ids | {mid})
    return stored


def _count(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT COUNT(*) FROM results").fetchone()
    except psycopg.OperationalError:
        return -1  # the server is down
    return int(row[0]) if row else 0


def _measured(kiosks: list[Kiosk]) -> int:
    return sum(kiosk.daemon.committer.committed for kiosk in kiosks)


def _fail_mid_stream(cluster: PgCluster, how: str) -> None:
    if how == "restarted":
        cluster.stop("fast")
    else:
        cluster.kill()


@pytest.mark.parametrize("how", ["restarted", "crashed"])
def test_results_sent_while_postgresql_is_restarted_or_crashed_are_each_stored_once(
    how: str, office_and_kiosks: tuple[BackOffice, list[Kiosk], str], pg_cluster: PgCluster,
) -> None:
    office, kiosks, url = office_and_kiosks
    threads = [kiosk.start() for kiosk in kiosks]
    assert wait_until(lambda: _count(url) >= 6, 60), office.lines
    recoveries = pg_cluster.crash_recoveries()
    _fail_mid_stream(pg_cluster, how)
    measured_at_failure = _measured(kiosks)
    # said once the server has stayed away longer than a restart (store.RESTART_WAIT_S)
    assert wait_until(lambda: office.said("commit failed"), 60), office.lines
    assert wait_until(lambda: _measured(kiosks) >= measured_at_failure + 4, 60)
    pg_cluster.start()
    assert pg_cluster.crash_recoveries() == recoveries + (how == "crashed")
    for thread in threads:
        thread.join(60)  # each exits once every result it measured is confirmed
    assert [kiosk.codes for kiosk in kiosks] == [[0], [0]], office.lines
    stored = _stored(url)
    for kiosk in kiosks:
        assert len(kiosk.acked) == PER_KIOSK
        assert stored[kiosk.daemon.config.device.id] == (PER_KIOSK, kiosk.acked)
    assert office.stop() == 0
    assert not office.said("Traceback"), office.lines
    assert len(office.said("commit failed")) == 1, office.lines
    assert len(office.said("answers again after")) == 1, office.lines


def test_results_sent_while_postgresql_comes_back_read_only_are_stored_once_it_may_write(
    office_and_kiosks: tuple[BackOffice, list[Kiosk], str], pg_cluster: PgCluster,
) -> None:
    """A server that comes back read-only (a standby not yet promoted after a failover, a
    setting left on) is an outage too: nothing acknowledged, said once, stored once it
    takes writes again."""
    office, kiosks, url = office_and_kiosks
    threads = [kiosk.start() for kiosk in kiosks]
    assert wait_until(lambda: _count(url) >= 6, 60), office.lines
    pg_cluster.stop("fast")
    pg_cluster.configure("default_transaction_read_only", "on")
    pg_cluster.start()
    try:
        # the server refused the back office's writes (its log names each refused statement)
        assert wait_until(lambda: "read-only transaction" in pg_cluster.log_tail(10**6), 60)
        measured_at_failure = _measured(kiosks)
        assert wait_until(lambda: _measured(kiosks) >= measured_at_failure + 4, 60)
        assert _count(url) < 2 * PER_KIOSK
    finally:
        pg_cluster.configure("default_transaction_read_only", "off")
        pg_cluster.reload()
    for thread in threads:
        thread.join(60)
    assert [kiosk.codes for kiosk in kiosks] == [[0], [0]], office.lines
    stored = _stored(url)
    for kiosk in kiosks:
        assert stored[kiosk.daemon.config.device.id] == (PER_KIOSK, kiosk.acked)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone() == (0,)
    assert office.stop() == 0
    assert not office.said("Traceback"), office.lines
    assert len(office.said("commit failed")) == 1, office.lines
    # the read-only server is named as it begins (the first line names the restart, unless
    # the writer met the server back already), not only by the next minute's line
    assert len(office.said("read-only transaction")) == 1, office.lines
    assert len(office.said("answers again after")) == 1, office.lines


@pytest.mark.parametrize("how", ["restarted", "crashed"])
def test_postgresql_restarted_or_crashed_while_the_back_office_is_idle_is_no_outage(
    how: str, office_and_kiosks: tuple[BackOffice, list[Kiosk], str], pg_cluster: PgCluster,
    tmp_path: Path, private_broker: PrivateBroker,
) -> None:
    """A maintenance restart (or a crash and its recovery) while no kiosk sends anything: the
    next batch meets the connection the server closed meanwhile, reconnects and commits at
    once. Nothing waited on the store, so the journal has no outage to say (before: an ERROR
    "commit failed (terminating connection due to administrator command)", then "answers
    again after 1 failed tries", at every maintenance restart)."""
    office, _, url = office_and_kiosks
    before, after = (_kiosk(tmp_path, private_broker, "shop-idle", f"idle-{n}", measures=3)
                     for n in range(2))
    try:
        before.start().join(60)
        assert before.codes == [0], office.lines
        _fail_mid_stream(pg_cluster, how)
        pg_cluster.start()
        after.start().join(60)
        assert after.codes == [0], office.lines
    finally:
        before.daemon.request_stop()
        after.daemon.request_stop()
    stored = _stored(url)
    for kiosk in (before, after):
        assert stored[kiosk.daemon.config.device.id] == (3, kiosk.acked)
    assert office.stop() == 0
    assert not office.said("ERROR"), "\n".join(office.lines)  # whole: pytest cuts a list's repr
    assert not office.said("WARNING"), "\n".join(office.lines)
    assert office.said("had closed the connection (terminating connection due to"), office.lines


@contextmanager
def _three_results_written(store: Store, seed: int) -> Iterator[tuple[list[int], set[str]]]:
    """A batch writer on ``store``, given three results of kiosk k1 (message ids 1-3) and
    started; yields the message ids it acknowledges (filled as it goes) and the results' ids.
    The writer is stopped and the store closed after."""
    acked: list[int] = []
    writer = BatchWriter(store, BackofficeConfig(batch_interval_ms=50), Triage("p", 65536),
                         lambda messages: acked.extend(m.mid for m in messages))
    rng = random.Random(seed)
    payloads = [fleet.sample_result(rng, "lab", "k1", i).to_json() for i in range(3)]
    for mid, payload in enumerate(payloads, start=1):
        writer.inbox.put(Inbound("p/lab/k1/result", payload, mid, 1))
    writer.start()
    try:
        yield acked, {json.loads(payload)["measurement_id"] for payload in payloads}
    finally:
        writer.stop_event.set()
        writer.join(30)
        store.close()


def test_a_restart_that_lands_in_a_batch_commit_is_one_quiet_reconnect_and_each_result_once(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ingest writer commits a batch while PostgreSQL restarts (its commit is held until
    the server is stopped, and the server is started once a reconnect has found it away): the
    restart is waited out, the batch committed and acknowledged once, said at INFO (before:
    the outage, an ERROR "commit failed" and a WARNING "answers again")."""
    url = pg_cluster.database()
    store = open_store(url)
    held = HeldCall(monkeypatch, Store, "write_batch")
    caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
    held.armed.set()
    with _three_results_written(store, seed=7) as (acked, ids):
        held.restart_under_it(pg_cluster)
        assert wait_until(lambda: len(acked) == 3, 60), _loud(caplog)
    _three_stored_after_one_quiet_reconnect(url, acked, ids, caplog)


def test_a_session_ended_inside_a_pipelined_write_is_one_quiet_reconnect_not_an_outage(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server ends the writer's session (a crash, a restart) while a batch's pipelined
    executemany runs, and psycopg raises "cannot exit pipeline mode while busy" in place of
    the server's AdminShutdown, with the connection not yet read as closed (libpq had read the
    FATAL, not yet the connection's end: a race, so the error is made here as psycopg makes
    it, on a session the server has really ended): the batch is made again at once on a new
    connection, said at INFO (before: an ERROR "commit failed" and a WARNING "answers again
    after 1 failed tries in 0 s", as a CI run of the idle crash test above met once)."""
    url = pg_cluster.database()
    store = open_store(url)
    write_batch = Store.write_batch
    ended: list[int] = []

    def ended_in_its_pipeline(self: Store, batch: Batch, *keep: Any) -> list[str]:
        if ended:
            return write_batch(self, batch, *keep)
        ended.append(1)
        _end_session(url, self._conn)
        assert not self._conn.closed  # as the race leaves it: not read as closed yet
        try:
            raise psycopg.errors.AdminShutdown("terminating connection due to administrator "
                                               "command")
        except psycopg.Error:  # replaced as psycopg's pipeline exit replaces it: no "from"
            raise psycopg.OperationalError("cannot exit pipeline mode while busy")  # noqa: B904

    monkeypatch.setattr(Store, "write_batch", ended_in_its_pipeline)
    caplog.set_level(logging.INFO, logger="appliance.backoffice")
    with _three_results_written(store, seed=10) as (acked, ids):
        assert wait_until(lambda: len(acked) == 3, 60), _loud(caplog)
    assert len(ended) == 1
    _three_stored_after_one_quiet_reconnect(url, acked, ids, caplog)


def test_a_session_ended_before_a_pipelined_write_says_no_warning_of_psycopgs_clean_up(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server ends the writer's session (a crash, a restart) inside a batch's transaction,
    just before its pipelined executemany: the batch is made again at once on a new
    connection, said at INFO, and nothing at WARNING or above (before: psycopg's own WARNING
    "error ignored terminating <psycopg.Pipeline [BAD]>: the connection is lost", which a
    loop of the idle crash test above met 1 time in 30)."""
    url = pg_cluster.database()
    store = open_store(url)
    executemany = psycopg.Cursor.executemany
    ended: list[int] = []

    def ended_first(cursor: psycopg.Cursor[Any], *args: Any, **kwargs: Any) -> None:
        if not ended:
            _end_session(url, cursor.connection)
            ended.append(1)
        executemany(cursor, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "executemany", ended_first)
    caplog.set_level(logging.INFO, logger="appliance.backoffice")
    with _three_results_written(store, seed=11) as (acked, ids):
        assert wait_until(lambda: len(acked) == 3, 60), _loud(caplog)
    assert len(ended) == 1
    assert _stored(url) == {"k1": (3, ids)}
    assert _loud(caplog) == []
    assert len([r for r in caplog.records if "had closed the connection" in r.getMessage()]) == 1


def test_psycopgs_warning_of_its_failed_clean_up_is_said_at_debug_where_debug_is_on(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture,
) -> None:
    """With -v (the root logger at DEBUG), psycopg's "error ignored terminating ..." of a
    product connection whose session ended before a pipelined executemany is said, at DEBUG."""
    url = pg_cluster.database()
    caplog.set_level(logging.DEBUG)
    conn = pgconnect.connect(url)

    def ended_then_pipelined() -> None:
        with conn.transaction():
            _end_session(url, conn)
            conn.cursor().executemany("SELECT %s::int", [(1,), (2,)])

    with pytest.raises(psycopg.OperationalError):
        ended_then_pipelined()
    conn.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "psycopg"]
    assert [level for level, text in said if text.startswith("error ignored ")] == ["DEBUG"], \
        said


def _end_session(url: str, conn: psycopg.Connection[Any]) -> None:
    """Have the server end ``conn``'s session, as a restart or a crash does, and wait until
    its process has ended (nothing of it read on ``conn`` yet)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", [conn.info.backend_pid])


def _three_stored_after_one_quiet_reconnect(url: str, acked: list[int], ids: set[str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    """The three results written were each acknowledged and stored once, nothing was said at
    WARNING or above, and the writer reconnected once, said at INFO."""
    assert sorted(acked) == [1, 2, 3]
    assert _stored(url) == {"k1": (3, ids)}
    assert _loud(caplog) == []
    reopened = [r.getMessage() for r in caplog.records if "had closed the connection" in
                r.getMessage()]
    assert len(reopened) == 1, reopened


def _loud(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    """Every line at WARNING and above, whoever said it."""
    return [(r.name, r.levelname, r.getMessage()) for r in caplog.records
            if r.levelno >= logging.WARNING]


def test_a_restart_that_lands_in_a_retention_run_is_waited_out_and_the_run_recorded_whole(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retention pruner has removed the old results and starts on the dead letters when
    PostgreSQL restarts: the restart is waited out, the run goes on and is recorded with
    everything it removed, said at INFO (before: a WARNING "not pruned now", and the results
    it had removed were in no record: the next run, an hour later, recorded only its own)."""
    url = pg_cluster.database()
    store = open_store(url)
    now, rng = datetime.now(UTC), random.Random(3)
    old = [fleet.sample_result(rng, "lab", "k1", i).model_copy(
        update={"captured_at": now - timedelta(days=400)}) for i in range(3)]
    letter = dead_letter(iso_utc(now - timedelta(days=400)), "p/lab/k1/result", "refused", b"x")
    # retention counts from the capture as placed, never later than its receipt
    received = iso_utc(now - timedelta(days=400))
    store.write_batch(Batch(results=[result_row(r, received, r.to_json().decode())
                                     for r in old], dead_letters=[letter]), 1000, 2**40)
    store.close()
    held = HeldCall(monkeypatch, Store, "_add_to_letter_totals")  # the letters' transaction
    pruner = RetentionPruner(url, 365, "back office bo-1", threading.Event())
    caplog.set_level(logging.INFO, logger="appliance.backoffice")
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(pruner.run_once()), daemon=True)
    held.armed.set()
    thread.start()
    # the run may give up without a reconnect (it did): then it has ended
    held.restart_under_it(pg_cluster, lambda: held.reconnects_failed or not thread.is_alive())
    thread.join(60)
    assert [(d.results, d.dead_letters) for d in done if d] == [(3, 1)], _loud(caplog)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (0,)
        assert conn.execute("SELECT kind, results, dead_letters FROM erasures").fetchall() == \
            [("retention", 3, 1)]
    assert _loud(caplog) == []
    assert len([r for r in caplog.records if "had closed the connection" in r.getMessage()]) == 1


def test_a_restart_that_lands_in_a_refused_batchs_parts_is_waited_out_without_a_traceback(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store refuses a batch as a whole (made to here: a DataError for any batch of more
    than one result), and PostgreSQL restarts as the writer commits its parts one by one: the
    part is made again once the server is back, said at INFO; the batch is acknowledged and
    stored once, and the only line at WARNING or above is the refusal's (before: a traceback,
    "could not handle a batch of 3 messages", then the outage, ERROR and WARNING)."""
    url = pg_cluster.database()
    store = open_store(url)
    write_batch = Store.write_batch

    def refusing_whole_batches(self: Store, batch: Batch, *keep: Any) -> list[str]:
        if len(batch.results) > 1:
            raise psycopg.errors.DataError("made to refuse the batch as a whole")
        return write_batch(self, batch, *keep)

    monkeypatch.setattr(Store, "write_batch", refusing_whole_batches)
    held = HeldCall(monkeypatch, Store, "write_batch")  # the whole batch's, then the parts'
    caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
    held.armed.set()
    with _three_results_written(store, seed=8) as (acked, ids):
        held.restart_under_it(pg_cluster)
        assert wait_until(lambda: len(acked) == 3, 60), _loud(caplog)
    assert _stored(url) == {"k1": (3, ids)}
    assert not [r for r in caplog.records if r.exc_info], _loud(caplog)
    assert [text.split(" (")[0] for _, _, text in _loud(caplog)] == \
        [f"store {url} refused a batch"], _loud(caplog)
    assert len([r for r in caplog.records if "had closed the connection" in r.getMessage()]) == 1


def test_an_outage_that_a_refused_batchs_parts_meet_is_said_as_an_outage_not_a_traceback(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As above, but the server stays away longer than a restart (store.RESTART_WAIT_S, made
    0.5 s here): the part's failure is the outage, said once and once over, and the batch is
    committed once the server is back, each result once (before: a traceback, "could not
    handle a batch of 3 messages", with no outage said)."""
    monkeypatch.setattr(store_module, "RESTART_WAIT_S", 0.5)
    url = pg_cluster.database()
    store = open_store(url)
    write_batch = Store.write_batch

    def refusing_whole_batches(self: Store, batch: Batch, *keep: Any) -> list[str]:
        if len(batch.results) > 1:
            self.query("SELECT 1")  # a store that is away fails it, as it would the batch
            held.armed.set()  # the next call, the first part, is held
            raise psycopg.errors.DataError("made to refuse the batch as a whole")
        return write_batch(self, batch, *keep)

    monkeypatch.setattr(Store, "write_batch", refusing_whole_batches)
    held = HeldCall(monkeypatch, Store, "write_batch")
    with _three_results_written(store, seed=9) as (acked, ids):
        assert held.held.wait(60)
        pg_cluster.stop("fast")
        try:
            held.go.set()
            assert wait_until(lambda: any("commit failed" in text
                                          for _, _, text in _loud(caplog)), 60), _loud(caplog)
        finally:
            pg_cluster.start()
        assert wait_until(lambda: len(acked) == 3, 60), _loud(caplog)
    assert _stored(url) == {"k1": (3, ids)}
    assert not [r for r in caplog.records if r.exc_info], _loud(caplog)
    said = [(level, text) for _, level, text in _loud(caplog) if "refused a batch" not in text]
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert "commit failed" in said[0][1], said
    assert "answers again after" in said[1][1], said
