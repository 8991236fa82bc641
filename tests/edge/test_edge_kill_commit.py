"""SIGKILL at random points while a real kiosk process commits results and repairs its outbox.

The kiosk (``python -m appliance.edge.testing``, the real daemon wiring with a fast camera and
analysis) is killed again and again: some rounds while it commits, some while the repair of an
outbox whose first page was garbled runs (an outbox whose header alone is damaged loses no row
to its repair). Each round's journal names the results it committed; after the last round a
back office starts and the kiosk runs once more, unkilled, until every result is confirmed.
Every result a kiosk said it committed must then be in the back office's store, once.
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.store import open_store
from tests.edge.test_edge_delivery import backoffice, site_of
from tests.edge.test_edge_faults import REPO

pytestmark = [pytest.mark.broker, pytest.mark.slow]
SEED = 20261205
ROUNDS = 16
PAGE_BYTES = 4096
REPAIR_STARTS = "moving it aside and recovering what can be read"


def _config(tmp_path: Path, broker: Any, prefix: str, limit: int | None) -> Path:
    path = tmp_path / f"edge-{limit}.yaml"
    path.write_text(
        f"device: {{id: kiosk-killed, site: {site_of(prefix)}}}\n"
        f"camera: {{source: synthetic, limit: {limit if limit else 'null'}}}\n"
        f"mqtt: {{host: {broker.host}, port: {broker.port}, topic_prefix: {prefix}}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "edge: {synthetic_fps: 200, reconnect_initial_s: 0.2, reconnect_cap_s: 1.0,\n"
        "       ack_resend_initial_s: 0.5, ack_resend_cap_s: 2.0}\n"
    )
    return path


def _start(config: Path, journal: Path) -> subprocess.Popen[bytes]:
    with journal.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "appliance.edge.testing", str(config)],
                                cwd=REPO, stdout=out, stderr=out)


def _committed(text: str) -> list[str]:
    """The ids of the results the kiosk said it committed (after their commit's fsync)."""
    return re.findall(r"measurement ([0-9a-f-]{36}) committed", text)


def _wait_for(journal: Path, said: Any, timeout_s: float = 60.0) -> None:
    """Poll the journal (every 5 ms, so the kill lands close to what it says) until ``said``."""
    deadline_s = time.monotonic() + timeout_s
    while not said(journal.read_text()):
        if time.monotonic() > deadline_s:
            raise AssertionError(f"the kiosk never got there:\n{journal.read_text()[-2000:]}")
        time.sleep(0.005)


def _damage_header(outbox: Path) -> bool:
    """Fold the killed kiosk's WAL into its outbox and garble its first page (False: the
    outbox is mid-repair or unreadable already, left as it is)."""
    if any(outbox.parent.glob("outbox.sqlite3.repair*")):
        return False
    try:
        with contextlib.closing(sqlite3.connect(outbox)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        return False
    with outbox.open("r+b") as file:
        file.write(random.Random(1).randbytes(PAGE_BYTES))
    return True


def _kill_one_round(config: Path, journal: Path, rng: random.Random) -> bool:
    """Start the kiosk, then kill it at a random point of its commits or of its repair;
    whether the round killed a repair."""
    outbox = config.parent / "state" / "outbox.sqlite3"
    repairing = outbox.exists() and rng.random() < 0.5 and _damage_header(outbox)
    text = journal.read_text() if journal.exists() else ""
    repairs, committed = text.count(REPAIR_STARTS), len(_committed(text))
    wanted = committed + rng.randint(1, 60)
    kiosk = _start(config, journal)
    try:
        if repairing:
            _wait_for(journal, lambda text: text.count(REPAIR_STARTS) > repairs)
            time.sleep(rng.uniform(0.0, 0.03))
        else:
            _wait_for(journal, lambda text: len(_committed(text)) >= wanted)
            time.sleep(rng.uniform(0.0, 0.02))
    finally:
        kiosk.send_signal(signal.SIGKILL)
        kiosk.wait(10)
    return repairing


def test_every_result_a_killed_kiosk_said_it_committed_is_stored_once(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str
) -> None:
    rng = random.Random(SEED)
    journal = tmp_path / "kiosk.log"
    killing = _config(tmp_path, mqtt_broker, topic_prefix, None)
    repairs_killed = sum(_kill_one_round(killing, journal, rng) for _round in range(ROUNDS))
    assert repairs_killed >= 2  # the seed's rounds kill repairs too, not only commits
    said = _committed(journal.read_text())
    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    try:
        last = _start(_config(tmp_path, mqtt_broker, topic_prefix, 1), journal)
        assert last.wait(120) == 0, journal.read_text()[-3000:]
    finally:
        worker.stop()
        store.close()
    text = journal.read_text()
    committed = set(_committed(text))
    assert len(said) == len(set(said))  # each result committed once, under its own id
    stored = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    try:
        held = stored.count_results()
    finally:
        stored.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "backoffice" / "store.sqlite3")) as db:
        ids = [row[0] for row in db.execute("SELECT measurement_id FROM results")]
    assert committed <= set(ids), f"{len(committed - set(ids))} committed result(s) never stored"
    assert len(ids) == len(set(ids)) == held
    assert not re.search(r"[1-9]\d* unreadable|unaccounted for", text)  # no row lost either
