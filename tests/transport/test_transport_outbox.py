"""The durable outbox: order, bounds, persistence across restart and SIGKILL."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.transport import wallclock
from appliance.transport.highwater import read_mark
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxCorruptError, OutboxFullError
from tests.disk_helpers import fill, small_tmpfs


def rows(n: int, start: int = 0) -> list[tuple[str, str, bytes]]:
    return [(f"m{i}", "t/result", f'{{"i": {i}}}'.encode()) for i in range(start, start + n)]


def test_pending_is_oldest_first_and_remove_deletes_only_acknowledged(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    seqs = outbox.add_many(rows(3))
    outbox.add_many(rows(2, start=3))
    assert [m.measurement_id for m in outbox.pending()] == ["m0", "m1", "m2", "m3", "m4"]
    assert outbox.remove([seqs[1]]) == 1
    assert outbox.remove([seqs[1]]) == 0  # a duplicate PUBACK changes nothing
    assert [m.measurement_id for m in outbox.pending(after_seq=seqs[0])] == ["m2", "m3", "m4"]
    assert outbox.depth() == 4


def test_messages_and_dropped_counter_survive_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_rows=10)
    outbox.add_many(rows(12))
    outbox.close()
    reopened = Outbox(tmp_path / "o.db", max_rows=10)
    assert reopened.depth() == 10
    assert reopened.dropped() == 2
    assert reopened.pending()[0].payload == b'{"i": 2}'


def test_drop_oldest_policy_keeps_the_newest(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_rows=10, policy="drop_oldest")
    for start in range(0, 15, 5):
        outbox.add_many(rows(5, start))
    assert [m.measurement_id for m in outbox.pending()][:1] == ["m5"]
    assert outbox.depth() == 10
    assert outbox.dropped() == 5


def test_refuse_new_policy_raises_and_counts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_rows=10, policy="refuse_new")
    outbox.add_many(rows(10))
    with pytest.raises(OutboxFullError, match="refuse_new"):
        outbox.add_many(rows(2, start=10))
    assert outbox.depth() == 10
    assert outbox.dropped() == 2
    assert outbox.pending()[-1].measurement_id == "m9"


def test_expire_drops_messages_past_the_age_limit(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_age_s=60.0)
    outbox.add_many(rows(3))
    assert outbox.expire(now_s=0.0) == 0  # nothing is older than the epoch + 60 s
    assert outbox.expire() == 0
    future_s = outbox.pending()[0].created_at_s + 61.0
    assert outbox.expire(now_s=future_s) == 3
    assert outbox.depth() == 0
    assert outbox.dropped() == 3


def test_corrupt_file_is_a_corrupt_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxCorruptError, match=r"o\.db.*damaged"):
        Outbox(path)  # open_outbox (the daemon's way in) repairs it: test_edge_storage


WRITER = """
import sys
from pathlib import Path
from appliance.transport.outbox import Outbox
outbox = Outbox(Path(sys.argv[1]))
for i in range(100000):
    outbox.add_many([(f"m{i}", "t", b"x" * 200)])
    print(i, flush=True)
"""


def test_every_commit_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    confirmed = -1
    while confirmed < 200:
        confirmed = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    stored = {m.measurement_id for m in Outbox(path).pending(limit=1_000_000)}
    assert {f"m{i}" for i in range(confirmed + 1)} <= stored


class FakeClock:
    """The wall clock and the time since boot, moved by hand."""

    def __init__(self) -> None:
        self.wall_s, self.since_boot_s = 1_700_000_000.0, 100.0

    def now(self) -> tuple[float, float]:
        return self.wall_s, self.since_boot_s

    def wait(self, seconds: float) -> None:
        self.wall_s += seconds
        self.since_boot_s += seconds


def test_a_jump_of_the_wall_clock_does_not_age_waiting_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a kiosk with no battery-backed clock measured with an old date until NTP's first sync
    # moved the clock 90 days ahead: every waiting result looked 90 days old and expired
    clock = FakeClock()
    monkeypatch.setattr(wallclock, "clock_now", clock.now)
    outbox = Outbox(tmp_path / "o.db", max_age_s=30 * 86400.0)
    outbox.add_many(rows(3))
    clock.wait(3600.0)
    clock.wall_s += 90 * 86400.0  # the jump
    assert outbox.expire() == 0
    assert outbox.depth() == 3
    clock.wait(10 * 86400.0)
    outbox.add_many(rows(1, start=3))
    clock.wait(19 * 86400.0)
    assert outbox.expire() == 0  # 29 days and an hour have really passed
    clock.wait(86400.0)
    assert outbox.expire() == 3  # now the first three are past 30 days; the fourth is not
    assert [m.measurement_id for m in outbox.pending()] == ["m3"]


def test_a_jump_back_of_the_wall_clock_does_not_keep_results_past_their_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(wallclock, "clock_now", clock.now)
    outbox = Outbox(tmp_path / "o.db", max_age_s=86400.0)
    outbox.add_many(rows(2))
    clock.wall_s -= 365 * 86400.0  # set back a year by hand
    clock.wait(600.0)
    outbox.add_many(rows(1, start=2))  # the jump is noticed with this write
    clock.wait(86400.0 - 300.0)
    assert outbox.expire() == 2  # the first two are a day old, whatever the date says
    assert outbox.depth() == 1


def _booted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, boot: int) -> None:
    """The system says boot number ``boot`` is running (its boot id)."""
    boot_id_file = tmp_path / "boot_id"
    boot_id_file.write_text(f"{boot:08x}-0000-4000-8000-000000000000\n")
    monkeypatch.setattr(wallclock, "BOOT_ID_FILE", boot_id_file, raising=False)


def test_results_of_an_earlier_boot_keep_their_age_when_ntp_sets_the_clock_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a kiosk without a battery-backed clock boots with the time it saved at shutdown, hours
    # behind; NTP's first sync then moved the results of before the shutdown by those hours
    # too, so they looked 10 hours younger and outlived the age limit by as long
    clock = FakeClock()
    monkeypatch.setattr(wallclock, "clock_now", clock.now)
    _booted(monkeypatch, tmp_path, 1)
    outbox = Outbox(tmp_path / "o.db", max_age_s=86400.0)
    outbox.add_many(rows(1))  # m0, with the clock right
    clock.wait(3600.0)
    outbox.close()
    _booted(monkeypatch, tmp_path, 2)  # switched off for 10 h; the clock says it was not
    clock.since_boot_s = 20.0
    outbox = Outbox(tmp_path / "o.db", max_age_s=86400.0)
    outbox.add_many(rows(1, start=1))  # m1, timed 10 h behind
    clock.wall_s += 36_000.0  # NTP's first sync
    clock.wait(60.0)
    outbox.add_many(rows(1, start=2))  # m2; the jump is followed with this write
    assert outbox.oldest_age_s(clock.wall_s) == pytest.approx(3600.0 + 36_000.0 + 60.0)
    clock.wait(86400.0 - 39_600.0)  # m0 is a day and a minute old, m1 a day less 10 hours
    assert outbox.expire() == 1
    assert [m.measurement_id for m in outbox.pending()] == ["m1", "m2"]


def test_results_of_this_boot_follow_the_jump_across_a_restart_of_the_kiosk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(wallclock, "clock_now", clock.now)
    _booted(monkeypatch, tmp_path, 1)
    earlier = Outbox(tmp_path / "o.db")
    earlier.add_many(rows(1, start=9))  # an earlier boot's result, confirmed since
    earlier.remove_ids(["m9"])
    earlier.close()
    _booted(monkeypatch, tmp_path, 2)
    outbox = Outbox(tmp_path / "o.db", max_age_s=86400.0)
    outbox.add_many(rows(1))  # m0, with the clock 90 days behind
    outbox.close()  # the kiosk restarted (systemd), in the same boot
    clock.wait(600.0)
    outbox = Outbox(tmp_path / "o.db", max_age_s=86400.0)
    clock.wall_s += 90 * 86400.0  # NTP's first sync
    outbox.add_many(rows(1, start=1))
    assert outbox.oldest_age_s(clock.wall_s) == pytest.approx(600.0)
    assert outbox.expire() == 0


def _outbox_that_lost_its_file(path: Path, lose: str) -> None:
    """An outbox with 2 results dropped by its row limit and 5 waiting (3 confirmed), whose
    file is then cut to 0 bytes, deleted, or replaced by an empty outbox."""
    outbox = Outbox(path, max_rows=8)
    seqs = outbox.add_many(rows(10))  # the 2 oldest dropped by the row limit
    outbox.remove(seqs[2:5])  # 3 confirmed by the back office
    outbox.close()
    if lose == "truncated":
        path.write_bytes(b"")
    elif lose == "deleted":
        path.unlink()
    else:
        Outbox(path.with_name("other.db"), side_files=False).close()
        path.with_name("other.db").replace(path)


@pytest.mark.parametrize("lose", ["truncated", "deleted", "replaced"])
def test_an_outbox_that_lost_its_rows_says_how_many_counts_them_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, lose: str
) -> None:
    # an outbox cut to 0 bytes (or gone, or an empty one in its place) opened as a new one:
    # the 5 results that waited in it were gone without a word, and `dropped` went back to 0
    path = tmp_path / "outbox.sqlite3"
    _outbox_that_lost_its_file(path, lose)
    outbox = Outbox(path)
    assert outbox.depth() == 0
    assert outbox.dropped() == 2 + 5  # what it had counted, and the results it lost
    lines = [r for r in caplog.records if "lost results it held" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelname == "ERROR"
    assert str(path) in lines[0].getMessage()
    assert "5 result(s) are unaccounted for" in lines[0].getMessage()
    seqs = outbox.add_many(rows(1, start=10))  # it carries on, its sequence not restarted
    assert seqs[0] > 10
    outbox.close()
    caplog.clear()
    reopened = Outbox(path)  # said and counted once
    assert reopened.dropped() == 7
    assert reopened.depth() == 1
    assert "lost results it held" not in caplog.text
    reopened.close()


def test_an_outbox_restored_from_an_older_copy_counts_the_results_after_the_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    outbox.add_many(rows(4))
    outbox.close()
    older = path.read_bytes()
    outbox = Outbox(path)
    outbox.add_many(rows(3, start=4))
    outbox.close()
    path.write_bytes(older)
    restored = Outbox(path)
    assert restored.depth() == 4
    assert restored.dropped() == 3
    assert "3 result(s) are unaccounted for" in caplog.text
    restored.close()


def test_a_lost_outbox_on_a_full_disk_is_counted_once_when_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        path = disk / "outbox.sqlite3"
        _outbox_that_lost_its_file(path, "replaced")
        filler = fill(disk)
        for _start in range(2):  # the loss cannot be committed: said, counted in memory
            caplog.clear()
            outbox = Outbox(path)
            assert outbox.dropped() == 7
            assert "5 result(s) are unaccounted for" in caplog.text
            outbox.close()
        filler.unlink()
        Outbox(path).close()  # committed now
        caplog.clear()
        outbox = Outbox(path)
        assert outbox.dropped() == 7
        assert "lost results it held" not in caplog.text
        outbox.close()


def test_an_outbox_without_a_mark_opens_as_before_and_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    outbox.add_many(rows(3))
    outbox.close()
    path.with_name(path.name + ".highwater").unlink()  # an outbox from before marks
    outbox = Outbox(path)
    assert outbox.depth() == 3
    assert outbox.dropped() == 0
    outbox.close()
    path.write_bytes(b"")
    assert Outbox(path).dropped() == 3


@pytest.mark.parametrize("garbage", [struct.pack("<qqq", 2**63 - 1, 5, 0), b"\xff" * 24, b"12"])
def test_a_garbled_mark_is_not_followed_and_the_outbox_goes_on(
    tmp_path: Path, garbage: bytes
) -> None:
    # a mark near the largest sequence number would leave SQLite none to give the next result
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    path.with_name(path.name + ".highwater").write_bytes(garbage)
    outbox = Outbox(path)
    assert outbox.dropped() == 0
    outbox.add_many(rows(2))
    assert outbox.depth() == 2
    outbox.close()


@pytest.mark.parametrize("kind", ["fifo", "link", "folder"])
def test_a_mark_that_is_no_file_is_left_alone_said_and_the_outbox_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    # a FIFO in the mark's place held the outbox's opening (so the daemon's start) for good,
    # and a link had the mark written over the start of the file it points to
    path = tmp_path / "outbox.sqlite3"
    mark = path.with_name(path.name + ".highwater")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"not the outbox's to overwrite")
    {"fifo": lambda: os.mkfifo(mark), "link": lambda: mark.symlink_to(elsewhere),
     "folder": mark.mkdir}[kind]()
    outbox = Outbox(path)
    outbox.add_many(rows(2))
    assert outbox.depth() == 2
    outbox.close()
    assert elsewhere.read_bytes() == b"not the outbox's to overwrite"
    warned = [r.getMessage() for r in caplog.records if "high-water mark cannot be kept" in
              r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith(f"{path}: ")
    assert str(mark) in warned[0]
    assert read_mark(path) is None  # a repair reads it too
    reopened = Outbox(path)
    assert reopened.depth() == 2
    reopened.close()


def test_a_link_in_place_of_the_lost_tally_is_not_written_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the tally of results lost to refused commits was opened through a link: its 8 bytes were
    # read from, and written over the start of, the file the link points to
    path = tmp_path / "outbox.sqlite3"
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"not the outbox's to overwrite")
    path.with_name(path.name + ".lost").symlink_to(elsewhere)
    outbox = Outbox(path)
    assert outbox.dropped() == 0  # not the linked file's first bytes taken for a count
    outbox.count_lost(2)
    assert outbox.dropped() == 2
    outbox.close()
    assert elsewhere.read_bytes() == b"not the outbox's to overwrite"
    assert f"{path}: its tally of lost results cannot be kept" in caplog.text
    assert "a link, not followed" in caplog.text


@pytest.mark.parametrize("garbled", ["ffffffffffffff7f", "efcdab8967452301", "0000000000000080"])
def test_a_garbled_lost_tally_is_said_and_counted_from_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, garbled: str
) -> None:
    # 8 garbled bytes were taken for a count: a nonsense loss on the fleet's table, and one
    # near 2**63 pushed the kiosk's status (dropped) past what a status may say, so the daemon,
    # which builds its last will from it, could not start
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, max_rows=1)
    outbox.add_many(rows(2))  # one dropped by the policy, counted in the outbox itself
    outbox.close()
    path.with_name(path.name + ".lost").write_bytes(bytes.fromhex(garbled))
    reopened = Outbox(path, max_rows=1)
    assert reopened.dropped() == 1
    reopened.count_lost(2)
    assert reopened.dropped() == 3
    reopened.close()
    assert f"{path}.lost: holds {struct.unpack('<q', bytes.fromhex(garbled))[0]}, which is no " \
           f"count of lost results (garbled bytes {garbled}); counting from 0 again" in caplog.text
    assert Outbox(path, max_rows=1).dropped() == 3  # the count goes on from 0 in the file


_UNDER_A_FILE_SIZE_LIMIT = """
import resource, sys
from pathlib import Path
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxError
box = Outbox(Path(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
for n in range(10_000):
    try:
        box.add_many([(f"m-{n}", "t/result", bytes(2000))])
    except OutboxError as exc:
        print(n, exc)
        break
"""


def test_an_outbox_at_the_file_size_limit_says_so(tmp_path: Path) -> None:
    """Under a file-size limit (systemd's LimitFSIZE=, ulimit -f) a commit fails with EFBIG,
    which SQLite reports only as "disk I/O error" on a disk with room to spare: the error names
    the file, its size and the limit instead of sending the operator to a failing disk."""
    path = tmp_path / "outbox.sqlite3"
    run = subprocess.run([sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, str(path)],
                         capture_output=True, text=True, timeout=120, check=True)
    committed, said = run.stdout.strip().split(" ", 1)
    assert said.startswith(f"{path}: could not commit results (disk I/O error)"), said
    assert f"{path}-wal is 262144 bytes, at this process's file-size limit of 262144 bytes " \
        "(systemd's LimitFSIZE=, ulimit -f)" in said, said
    assert Outbox(path).depth() == int(committed) > 0  # what committed before is all there
