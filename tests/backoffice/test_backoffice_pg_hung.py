"""A PostgreSQL server that hangs under the running ingest while its host stays up (a stalled
disk, a stopped process; tests/pg_cut.py): its kernel goes on acknowledging, so TCP keepalives
never find it, and the writer's commit waited for ever with nothing said (measured: a back
office over a SIGSTOPped server logged only "stored=0" each 30 s for as long as it ran). Now a
commit that has no answer after batcher.COMMIT_DEADLINE_S has its connection cut and is retried
as in any outage: said once, nothing acknowledged, stored once the server answers again."""

from __future__ import annotations

import random
import uuid

import psycopg
import pytest

from appliance.backoffice import batcher
from appliance.backoffice.batcher import BatchWriter
from appliance.backoffice.store import open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.config import BackofficeConfig
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet as fleetsim
from tests.pg_cut import cut_server
from tests.store_helpers import PG_URL


@pytest.mark.postgres
def test_ingest_on_a_hung_server_acknowledges_nothing_says_so_and_stores_once_it_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(batcher, "COMMIT_DEADLINE_S", 1.0)  # the test's patience, not 120 s
    rng = random.Random(7)
    results = [fleetsim.sample_result(rng, "lab", "kiosk-h", i) for i in range(3)]
    acked: list[int] = []
    schema = f"pgtimeout_hung_{uuid.uuid4().hex[:10]}"
    try:
        with cut_server() as relay:
            url = relay.url(query="connect_timeout=2")  # reconnects to the hung server: 2 s
            store = open_store(url, pg_schema=schema)
            writer = BatchWriter(store, BackofficeConfig(batch_interval_ms=20),
                                 Triage("p", 65536),
                                 lambda batch: acked.extend(m.mid for m in batch))
            relay.hang()
            for mid, result in enumerate(results, start=1):
                writer.inbox.put(Inbound("p/lab/kiosk-h/result", result.to_json(), mid, 1))
            writer.start()
            try:
                assert wait_until(lambda: writer.stats.commit_failures >= 2, timeout_s=60)
                assert acked == []  # not stored, so not acknowledged: the broker keeps them
                relay.recover()
                assert wait_until(lambda: len(acked) == 3, timeout_s=60)
            finally:
                writer.stop_event.set()
                writer.join(20)
            assert store.count_results() == 3
            store.close()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    said = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "appliance.backoffice.batcher"]
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert (f"the PostgreSQL database {url}: commit failed (no answer from the server within "
            "1 s: the connection was cut)") in said[0][1]
    assert " answers again after " in said[1][1]
