"""The back office's SQLite store on a full disk: the error says the disk is full (SQLite's own
words are "disk I/O error"), the store opens with every row once space returns, and the ingest
acknowledges nothing it could not store, saying so once, and stores it once space returns."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

from appliance.backoffice import demo
from appliance.backoffice.batcher import BatchWriter
from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, Store, StoreError, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.cli import main
from appliance.config import BackofficeConfig
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet as fleetsim
from tests.disk_helpers import fill, small_tmpfs


def test_a_store_on_a_full_disk_names_the_full_disk_and_keeps_its_rows(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        path = disk / "results.sqlite3"
        url = f"sqlite:///{path}"
        store = open_store(url)
        rng = random.Random(5)
        results = [fleetsim.sample_result(rng, "lab", "kiosk-f", i) for i in range(4)]
        store.write_batch(Batch(results=[
            result_row(r, iso_utc(r.captured_at), r.to_json().decode()) for r in results]), 100)
        store.close()
        filler = fill(disk)
        with pytest.raises(StoreError) as refused:
            Store(url)
        assert f"the disk holding {path} is full" in str(refused.value)
        filler.unlink()
        reopened = Store(url)
        assert reopened.count_results() == 4
        reopened.close()


def test_a_read_command_on_a_full_disk_names_the_full_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A reader makes the store's -shm file; on a full disk `results export` said only "cannot
    read the SQLite store ...: disk I/O error", of a store that is whole."""
    with small_tmpfs(tmp_path / "disk") as disk:
        path = disk / "results.sqlite3"
        open_store(f"sqlite:///{path}").close()  # WAL: its -wal and -shm go with the last close
        filler = fill(disk)
        out = tmp_path / "results.csv"  # on another disk, with room
        assert main(["results", "export", "--store", f"sqlite:///{path}", "--format", "csv",
                     "--out", str(out)]) == 2
        said = capsys.readouterr().err
        assert "cannot read the SQLite store" in said
        assert f"the disk holding {path} is full" in said, said
        assert not out.exists()
        filler.unlink()
        assert main(["results", "export", "--store", f"sqlite:///{path}", "--format", "csv",
                     "--out", str(out)]) == 0


@pytest.mark.broker
@pytest.mark.parametrize("room_bytes", [0, 60_000])
def test_the_demo_on_a_full_disk_stops_and_says_so_instead_of_waiting_out_its_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], room_bytes: int,
) -> None:
    # 0: the store cannot even open; 60 kB: it opens, and every commit fails
    with small_tmpfs(tmp_path / "disk") as disk:
        url = f"sqlite:///{disk / 'backoffice.sqlite3'}"
        open_store(url).close()
        filler = fill(disk)
        os.truncate(filler, max(0, filler.stat().st_size - room_bytes))
        fast_edge = (sys.executable, "-m", "appliance.edge.testing")
        assert demo.run_demo(devices=1, count=2, timeout_s=120, edge_command=fast_edge,
                             store_url=url) == 1
    err = capsys.readouterr().err
    assert f"the disk holding {disk / 'backoffice.sqlite3'} is full" in err
    assert "timed out" not in err
    assert "Traceback" not in err


def test_ingest_on_a_full_disk_acknowledges_nothing_says_so_once_and_stores_once_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # the worker said "commit failed (database or disk is full)" at every retry, 12 lines a
    # minute for as long as the disk stayed full, and nothing when it stored again
    rng = random.Random(6)
    results = [fleetsim.sample_result(rng, "lab", "kiosk-f", i) for i in range(3)]
    acked: list[int] = []
    with small_tmpfs(tmp_path / "disk") as disk:
        path = disk / "results.sqlite3"
        store = open_store(f"sqlite:///{path}")
        writer = BatchWriter(store, BackofficeConfig(batch_interval_ms=20), Triage("p", 65536),
                             lambda batch: acked.extend(m.mid for m in batch))
        filler = fill(disk)
        for mid, result in enumerate(results, start=1):
            writer.inbox.put(Inbound("p/lab/kiosk-f/result", result.to_json(), mid, 1))
        writer.start()
        try:
            assert wait_until(lambda: writer.stats.commit_failures >= 4, timeout_s=30)
            assert acked == []  # not stored, so not acknowledged: the broker keeps them
            filler.unlink()
            assert wait_until(lambda: len(acked) == 3, timeout_s=30)
        finally:
            writer.stop_event.set()
            writer.join(20)
        assert store.count_results() == 3
        store.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "appliance.backoffice.batcher"]
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert f"the SQLite store {path}: commit failed (" in said[0][1]
    assert f"the disk holding {path} is full" in said[0][1]
    assert " answers again after " in said[1][1]
