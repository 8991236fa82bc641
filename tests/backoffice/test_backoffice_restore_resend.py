"""Nothing the back office confirmed is lost by a restore: results confirmed, the store backed
up, more confirmed, the store lost and restored from the backup, then `appliance fleet resend`
with the time `store restore` prints; every result is in the store exactly once, also when the
kiosk is killed (SIGKILL) while it sends them again; and a result erased on the back office,
which its kiosk still keeps, is not stored again when the kiosk sends it again. A private
mosquitto on its own port, a real IngestWorker on a SQLite store, the kiosk's own outbox and
link (tests/resend_kiosk.py)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import Store, open_store
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker
from tests.appliance_here import appliance_here
from tests.resend_kiosk import ResendKiosk

REPO = Path(__file__).resolve().parents[2]
PREFIX, SITE, DEVICE = "resendtest", "lab", "kiosk-1"
pytestmark = pytest.mark.broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as started:
        yield started


def results(start: int, count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(start)
    made = [fleet.sample_result(rng, SITE, DEVICE, n) for n in range(start, start + count)]
    return [(r.measurement_id, r.to_json()) for r in made]


def worker_on(broker: PrivateBroker, tmp_path: Path, store_path: Path) -> tuple[IngestWorker,
                                                                                 Store]:
    config = config_from_mapping({
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": PREFIX},
        "state_dir": str(tmp_path / "backoffice"), "backoffice": {"client_id": "resend-w"}},
        environ={})
    store = open_store(f"sqlite:///{store_path}")
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10), worker.failed
    return worker, store


def cli(broker: PrivateBroker, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m appliance ARGS`` from ``cwd`` as its child ran it, in this process
    (tests/appliance_here.py): the host's APPLIANCE variables out, the broker's in."""
    with mock.patch.dict(os.environ):
        for name in [name for name in os.environ if name.startswith("APPLIANCE")]:
            del os.environ[name]
        return appliance_here(list(args), cwd, {
            "APPLIANCE__MQTT__HOST": broker.host, "APPLIANCE__MQTT__PORT": str(broker.port),
            "APPLIANCE__MQTT__TOPIC_PREFIX": PREFIX})


def stored_ids(store_path: Path) -> list[str]:
    with sqlite3.connect(store_path) as db:
        return [row[0] for row in db.execute("SELECT measurement_id FROM results")]


def lose_and_restore(broker: PrivateBroker, tmp_path: Path, store_path: Path,
                     backup: Path) -> str:
    """Delete the store (a lost disk), restore the backup; the --since the restore prints."""
    for end in ("", "-wal", "-shm"):
        Path(f"{store_path}{end}").unlink(missing_ok=True)
    done = cli(broker, tmp_path, "store", "restore", str(backup), "--store",
               f"sqlite:///{store_path}")
    assert done.returncode == 0, done.stderr
    found = re.search(r"appliance fleet resend --since (\S+)", done.stdout)
    assert found, done.stdout
    return found.group(1)


def backed_up_then_more_confirmed(broker: PrivateBroker, tmp_path: Path, kiosk: ResendKiosk,
                                  store_path: Path) -> tuple[Path, set[str]]:
    """30 results confirmed, a backup, 30 more confirmed; the backup and all 60 ids."""
    worker, store = worker_on(broker, tmp_path, store_path)
    sent = results(0, 30)
    try:
        kiosk.add(sent)
        assert wait_until(kiosk.link.idle, 30), kiosk.link.stats
        backup = tmp_path / "backup.sqlite3"
        done = cli(broker, tmp_path, "store", "backup", "--store", f"sqlite:///{store_path}",
                   "--out", str(backup))
        assert done.returncode == 0, done.stderr
        later = results(30, 30)
        kiosk.add(later)
        assert wait_until(kiosk.link.idle, 30), kiosk.link.stats
    finally:
        worker.stop()
        store.close()
    assert kiosk.outbox.kept_confirmed() == 60
    return backup, {mid for mid, _ in sent + later}


def test_a_restore_then_fleet_resend_brings_back_every_result_exactly_once(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    kiosk = ResendKiosk(tmp_path, broker.host, broker.port, prefix=PREFIX, site=SITE,
                        device=DEVICE)
    kiosk.start()
    store_path = tmp_path / "backoffice.sqlite3"
    try:
        backup, every = backed_up_then_more_confirmed(broker, tmp_path, kiosk, store_path)
        since = lose_and_restore(broker, tmp_path, store_path, backup)
        assert len(stored_ids(store_path)) == 30  # the 30 confirmed after the backup are gone
        worker, store = worker_on(broker, tmp_path, store_path)
        try:
            done = cli(broker, tmp_path, "fleet", "resend", "--since", since)
            assert done.returncode == 0, done.stderr
            assert f"{SITE}/{DEVICE}: asked" in done.stdout
            assert wait_until(lambda: len(stored_ids(store_path)) == 60 and kiosk.link.idle(),
                              30), kiosk.link.stats
        finally:
            worker.stop()
            store.close()
        ids = stored_ids(store_path)
        assert sorted(ids) == sorted(every)  # each exactly once
        assert kiosk.link.stats.resent >= 60  # the 30 the restored store had came again too
        assert (kiosk.outbox.depth(), kiosk.outbox.kept_confirmed()) == (0, 60)
    finally:
        kiosk.stop()


def test_a_kiosk_killed_while_it_resends_loses_nothing_and_the_store_duplicates_nothing(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    store_path = tmp_path / "backoffice.sqlite3"
    kiosk = ResendKiosk(tmp_path, broker.host, broker.port, prefix=PREFIX, site=SITE,
                        device=DEVICE)
    kiosk.start()
    try:
        backup, every = backed_up_then_more_confirmed(broker, tmp_path, kiosk, store_path)
    finally:
        kiosk.stop()
    since = lose_and_restore(broker, tmp_path, store_path, backup)
    log = tmp_path / "kiosk.log"
    with kiosk_process(broker, tmp_path, log) as process:
        # no worker runs: the resent results wait in the broker and the kiosk, none confirmed
        done = cli(broker, tmp_path, "fleet", "resend", "--since", since, "--device",
                   f"{SITE}/{DEVICE}")
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: "sent at the pace of the resends" in log.read_text(), 30)
        assert wait_until(lambda: "sent again" in log.read_text(), 30)  # a resend round went out
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert outbox_counts(tmp_path) == (60, 0)  # every reopened one still waits after the kill
    worker, store = worker_on(broker, tmp_path, store_path)
    try:
        with kiosk_process(broker, tmp_path, tmp_path / "restarted.log") as process:
            # stored, and the kiosk has the acks: each kept, none waiting
            assert wait_until(lambda: len(stored_ids(store_path)) == 60
                              and outbox_counts(tmp_path) == (0, 60), 30), outbox_counts(tmp_path)
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
    finally:
        worker.stop()
        store.close()
    assert sorted(stored_ids(store_path)) == sorted(every)
    assert outbox_counts(tmp_path) == (0, 60)


def outbox_counts(state: Path) -> tuple[int, int]:
    """The kiosk's outbox as its file holds it: (results waiting, confirmed results kept)."""
    with sqlite3.connect(state / "outbox.sqlite3") as db:
        return db.execute("SELECT COUNT(*) - COUNT(confirmed_at_s), COUNT(confirmed_at_s) "
                          "FROM outbox").fetchone()


@contextlib.contextmanager
def kiosk_process(broker: PrivateBroker, tmp_path: Path,
                  log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The kiosk as a process (tests/resend_kiosk.py), running; killed on the way out if it
    still runs, so an assert that fails meanwhile leaves no process behind the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.resend_kiosk", str(tmp_path), broker.host,
             str(broker.port), PREFIX, SITE, DEVICE], cwd=REPO, stdout=out, stderr=out,
            env=env | {"PYTHONPATH": str(REPO)})
    try:
        assert wait_until(lambda: "kiosk running" in log.read_text(), 30), log.read_text()
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_a_result_erased_since_it_was_confirmed_is_not_stored_when_its_kiosk_sends_it_again(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    """The kiosk keeps what the back office confirmed edge.keep_confirmed_h (48 h): until a
    cmd/forget reaches that copy (the back-office service asks: here an ingest worker alone,
    which does not; tests/backoffice/test_backoffice_kiosk_forgets.py), `fleet resend` (after
    a restore, or by anyone with the rollout login) has it sent again. The tombstones keep it out: a
    subject's results by its erasure's time, a single result by its id."""
    kiosk = ResendKiosk(tmp_path, broker.host, broker.port, prefix=PREFIX, site=SITE,
                        device=DEVICE)
    kiosk.start()
    store_path = tmp_path / "backoffice.sqlite3"
    rng = random.Random(11)
    subject = [fleet.sample_result(rng, SITE, DEVICE, n, "subj-gone") for n in range(100, 103)]
    sent = [(r.measurement_id, r.to_json()) for r in subject] + results(0, 3)
    kept = {mid for mid, _ in sent[4:]}
    try:
        worker, store = worker_on(broker, tmp_path, store_path)
        try:
            kiosk.add(sent)
            assert wait_until(lambda: len(stored_ids(store_path)) == 6 and kiosk.link.idle(),
                              30), kiosk.link.stats
            for chosen in (["--subject", "subj-gone"], ["--result", sent[3][0]]):
                done = cli(broker, tmp_path, "results", "erase", "--store",
                           f"sqlite:///{store_path}", *chosen, "--yes")
                assert done.returncode == 0, done.stderr
            assert set(stored_ids(store_path)) == kept
            resent = kiosk.link.stats.resent
            done = cli(broker, tmp_path, "fleet", "resend", "--since", "1970-01-01T00:00:00Z")
            assert done.returncode == 0, done.stderr
            assert wait_until(lambda: kiosk.link.stats.resent >= resent + 6
                              and kiosk.link.idle(), 30), kiosk.link.stats
        finally:
            worker.stop()
            store.close()
        assert sorted(stored_ids(store_path)) == sorted(kept)  # each once, the erased none
        # what the erasure leaves on a kiosk it did not reach: its kept copies
        assert (kiosk.outbox.depth(), kiosk.outbox.kept_confirmed()) == (0, 6)
    finally:
        kiosk.stop()
