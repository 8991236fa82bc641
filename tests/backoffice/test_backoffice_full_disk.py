"""The back office's SQLite store on a full disk: the error says the disk is full (SQLite's own
words are "disk I/O error"), and the store opens with every row once space returns."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, Store, StoreError, open_store
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
