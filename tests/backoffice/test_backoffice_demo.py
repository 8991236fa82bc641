"""``appliance demo`` end to end with fast edge daemons; and a failing edge stops everything."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice import demo, demolock
from appliance.backoffice.agebands import Correlation
from appliance.backoffice.cohort import correlations
from appliance.backoffice.demo_kiosk import _cohort_text
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.cli import main
from appliance.config import config_from_mapping
from appliance.console.cohortview import BandStats, FeatureView
from appliance.edge.reasons import not_graded_reason
from appliance.edge.testing import FIXED_FEATURES
from appliance.inference.classifier import DEFAULT_MODEL, SkinClassifier
from appliance.transport import payloads
from appliance.transport.broker import PrivateBroker, port_open
from tests.store_helpers import PG_URL

pytestmark = pytest.mark.broker
FAST_EDGE = (sys.executable, "-m", "appliance.edge.testing")


@pytest.mark.slow
def test_demo_prints_every_stored_result_and_a_summary_then_leaves_nothing_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert demo.run_demo(devices=2, count=2, timeout_s=120, edge_command=FAST_EDGE) == 0
    out = capsys.readouterr().out
    stored = [line for line in out.splitlines() if line.startswith("stored ")]
    assert len(stored) == 4
    assert {line.split()[1] for line in stored} == {"demo/kiosk-demo-1", "demo/kiosk-demo-2"}
    assert "kime" in stored[0]
    shipped = SkinClassifier.load(DEFAULT_MODEL)  # named by version, as the fleet table names it
    assert f"grading with {shipped.name} {shipped.version}; waiting for results" in out
    assert "4 result(s) stored" in out
    assert "2 device(s)" in out
    port = int(out.split("mosquitto on 127.0.0.1:")[1].split(",")[0])
    assert not port_open("127.0.0.1", port)


def test_a_failing_edge_makes_the_demo_fail_clearly_and_stop_everything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = (sys.executable, "-c", "import sys; print('camera exploded'); sys.exit(3)")
    assert demo.run_demo(devices=1, count=1, timeout_s=60, edge_command=broken) == 1
    captured = capsys.readouterr()
    assert "kiosk-demo-1 exited with code 3" in captured.err
    assert "camera exploded" in captured.err
    port = int(captured.out.split("mosquitto on 127.0.0.1:")[1].split(",")[0])
    assert not port_open("127.0.0.1", port)


def test_stopping_the_demo_stops_its_edges(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Stopped before any result was stored, it said only "demo failed: interrupted", where a
    run with results says how many it kept: now it says that none was stored. A stop asked
    for is said as such ("demo stopped"), not as a failure."""
    stop = threading.Event()
    pid_file = tmp_path / "edge.pid"
    partial = tmp_path / "edge.pid.partial"  # written, then renamed: never seen half-written
    code = (f"import os, time; open({str(partial)!r}, 'w').write(str(os.getpid())); "
            f"os.replace({str(partial)!r}, {str(pid_file)!r}); time.sleep(600)")

    def stop_once_the_edge_runs() -> None:
        for _ in range(600):
            if pid_file.exists():
                break
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=stop_once_the_edge_runs, daemon=True).start()
    edge = (sys.executable, "-c", code)
    assert demo.run_demo(devices=1, count=1, timeout_s=60, edge_command=edge, stop=stop) == 130
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == (
        "demo stopped: interrupted (Ctrl-C, SIGTERM or SIGHUP); everything was stopped")
    assert captured.out.splitlines()[-1] == "demo: no result was stored before it stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_a_demo_stopped_midway_says_that_the_results_it_stored_are_kept_and_where(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """After a Ctrl-C it said only "demo failed: interrupted ...", so a newcomer could not
    tell that the results already stored stay in the store, nor how to look at them."""
    url = f"sqlite:///{tmp_path / 'state' / 'backoffice.sqlite3'}"
    stop = threading.Event()

    def stop_once_one_is_stored() -> None:
        for _ in range(1200):
            if (tmp_path / "state" / "backoffice.sqlite3").exists():
                store = open_store(url)
                try:
                    if store.count_results():
                        break
                finally:
                    store.close()
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=stop_once_one_is_stored, daemon=True).start()
    assert demo.run_demo(devices=1, count=500, timeout_s=120, edge_command=FAST_EDGE,
                         stop=stop, store_url=url) == 130
    captured = capsys.readouterr()
    assert "interrupted (Ctrl-C, SIGTERM or SIGHUP)" in captured.err
    store = open_store(url)
    try:
        stored = store.count_results()
    finally:
        store.close()
    assert 0 < stored < 500
    assert f"the {stored} result(s) stored before it stopped are kept in {url}" in captured.out
    assert " results query" in captured.out


DEMO_WITH_A_WAITING_EDGE = """
import functools, os, sys
from appliance.backoffice import demo
pid_file = sys.argv.pop(1)
edge = (sys.executable, "-c", "import os, sys, time; "
        f"open({pid_file!r} + '.partial', 'w').write(str(os.getpid())); "
        f"os.replace({pid_file!r} + '.partial', {pid_file!r}); time.sleep(600)")
demo.run_demo = functools.partial(demo.run_demo, edge_command=edge)
from appliance.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                             (signal.SIGHUP, 129)])
def test_the_demo_stopped_by_sigterm_exits_143_as_every_command_does(
    tmp_path: Path, signum: int, code: int
) -> None:
    """It exited 130 after SIGTERM too (README: SIGTERM ends a command as Ctrl-C does, with
    exit 143), so `timeout` or systemd could not tell it from a Ctrl-C. SIGHUP (its terminal
    closed) killed it where it stood: its mosquitto and edges ran on, orphaned."""
    pid_file = tmp_path / "edge.pid"
    run = subprocess.Popen(
        [sys.executable, "-c", DEMO_WITH_A_WAITING_EDGE, str(pid_file), "demo", "--throwaway",
         "--devices", "1", "--count", "1", "--timeout-s", "120"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        for _ in range(600):
            if pid_file.exists() or run.poll() is not None:
                break
            time.sleep(0.05)
        run.send_signal(signum)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == code, err
    assert "interrupted (Ctrl-C, SIGTERM or SIGHUP); everything was stopped" in err
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)

DEMO_WITH_FAST_EDGES = """
import functools, sys
from appliance.backoffice import demo
demo.run_demo = functools.partial(demo.run_demo, edge_command=(
    sys.executable, "-m", "appliance.edge.testing"))
from appliance.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_demo_prints_no_log_line_of_its_back_office_among_its_own(
    tmp_path: Path, verbose: bool
) -> None:
    """`appliance demo` printed one timestamped line among its plain ones: "2026-12-05
    12:34:27,970 INFO appliance.backoffice.ingest: demo-backoffice connected to
    127.0.0.1:36351 (session present: False), subscribed to $share/backoffice/...". -v
    shows the back office's log."""
    run = subprocess.run(
        [sys.executable, "-c", DEMO_WITH_FAST_EDGES, *(["-v"] if verbose else []), "demo",
         "--throwaway", "--devices", "1", "--count", "1", "--timeout-s", "60"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert run.returncode == 0, run.stderr
    assert "1 result(s) stored" in run.stdout
    connected = [line for line in run.stderr.splitlines() if "demo-backoffice connected" in line]
    assert len(connected) == (1 if verbose else 0), run.stderr
    if not verbose:
        assert run.stderr == ""


def _start_a_waiting_demo(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[str], Path]:
    """A demo run in ``tmp_path`` (its own process group; on ./state unless ``options`` name
    another store) whose edge waits for ever; returned once its edge runs, with the edge's pid
    file. Its temporary folder is made in ``tmp_path`` too: a test that kills it with SIGKILL
    left an ``appliance-demo-*`` folder in /tmp at each run."""
    pid_file = tmp_path / "edge.pid"
    run = subprocess.Popen(
        [sys.executable, "-c", DEMO_WITH_A_WAITING_EDGE, str(pid_file), "demo", "--devices",
         "1", "--count", "1", "--timeout-s", "120", *options],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
             "TMPDIR": str(tmp_path)})
    for _ in range(600):
        if pid_file.exists() or run.poll() is not None:
            break
        time.sleep(0.05)
    return run, pid_file


def _recorded_demo(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The store of each demo run_demo is called for (it returns 0 at once)."""
    calls: list[str | None] = []

    def record(*args: object, store_url: str | None = None, **kwargs: object) -> int:
        calls.append(store_url)
        return 0

    monkeypatch.setattr(demo, "run_demo", record)
    return calls


def test_a_second_demo_on_the_same_store_is_refused_while_the_first_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both ran on ./state with the same kiosk ids: their results mixed, and the first one's
    fleet table showed the other's kiosks as online."""
    first, pid_file = _start_a_waiting_demo(tmp_path)
    try:
        assert first.poll() is None, first.communicate()[1]
        monkeypatch.chdir(tmp_path)
        calls = _recorded_demo(monkeypatch)
        assert main(["demo"]) == 2
        err = capsys.readouterr().err
        assert calls == []
        assert f"another demo (pid {first.pid}) runs on this store now" in err
        assert "wait for it to end, or run this one with --throwaway" in err
        assert main(["demo", "--throwaway"]) == 0  # its own temporary store: no clash
        assert first.poll() is None
        first.send_signal(signal.SIGINT)
        _, first_err = first.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # none left after a normal end
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130, first_err
    assert "interrupted (Ctrl-C, SIGTERM or SIGHUP); everything was stopped" in first_err
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_a_second_demo_is_refused_before_it_loads_the_demo_s_system(tmp_path: Path) -> None:
    """README: a second demo on a store "is refused at once". It took the store's lock only
    after importing the back office, the edges' launcher and the skin generators: 10 s of
    imports on a busy 2-core machine before the refusal (docs/experiments/README.md,
    "stranger", 2026-12-07). What a refused one loaded is read from ``-X importtime``."""
    store = tmp_path / "state" / "backoffice.sqlite3"
    store.parent.mkdir()
    url = f"sqlite:///{store}"
    repo = Path(__file__).resolve().parents[2]
    with demolock.demo_lock(url):
        refused = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "appliance", "demo", "--store", url],
            capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(repo)})
    assert refused.returncode == 2, refused.stderr
    assert f"another demo (pid {os.getpid()}) runs on this store now" in refused.stderr
    loaded = {line.split("|")[-1].strip() for line in refused.stderr.splitlines()
              if line.startswith("import time:")}
    assert "appliance.backoffice.demolock" in loaded  # what the refusal came from
    assert not loaded & {"appliance.backoffice.demo", "appliance.backoffice.service",
                         "appliance.backoffice.ingest", "appliance.synthetic.skin"}
    assert not (tmp_path / "state" / "backoffice.sqlite3").exists()


def test_a_demo_runs_after_one_killed_with_sigkill_on_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _start_a_waiting_demo(tmp_path)
    try:
        assert first.poll() is None, first.communicate()[1]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the demo, its edge and its mosquitto
        first.wait()
    assert (tmp_path / "state" / "demo.lock").read_text() == f"{first.pid}\n"
    monkeypatch.chdir(tmp_path)
    calls = _recorded_demo(monkeypatch)
    assert main(["demo"]) == 0
    assert calls == [f"sqlite:///{tmp_path / 'state' / 'backoffice.sqlite3'}"]


def test_a_link_in_place_of_demo_lock_is_refused_and_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo.lock was opened through a link: the file it points to was cut to the demo's pid
    (and a FIFO there held the demo's start for ever)."""
    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_text("not the demo's to overwrite\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "demo.lock").symlink_to(elsewhere)
    monkeypatch.chdir(tmp_path)
    calls = _recorded_demo(monkeypatch)
    assert main(["demo"]) == 2
    assert calls == []
    assert elsewhere.read_text() == "not the demo's to overwrite\n"
    assert (f"demo: cannot make or open the lock file {tmp_path / 'state' / 'demo.lock'} (a "
            "link, not followed; move it aside)") in capsys.readouterr().err


@pytest.mark.postgres
def test_two_demos_from_two_folders_on_one_postgresql_store_run_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --store postgresql://... each demo took its lock file in its own folder's ./state
    (which it made there): two demos started from two folders on one database both ran and
    mixed their kiosks and results. The lock is in the database now: the second is refused at
    once, no ./state is made, and the first one's kill -9 frees it."""
    import psycopg

    schema = f"locks_demo_{uuid.uuid4().hex[:10]}"
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    first_folder, second_folder = tmp_path / "first", tmp_path / "second"
    first_folder.mkdir()
    second_folder.mkdir()
    monkeypatch.chdir(second_folder)
    calls = _recorded_demo(monkeypatch)
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            first, _ = _start_a_waiting_demo(first_folder, "--store", url)
            try:
                assert first.poll() is None, first.communicate()[1]
                assert main(["demo", "--store", url]) == 2
                holder = _lock_holder_backend(admin, first.pid)
            finally:
                os.killpg(first.pid, signal.SIGKILL)  # the demo, its edge and its mosquitto
                first.wait()
            _wait_until_the_server_ends(admin, holder)
            assert main(["demo", "--store", url]) == 0
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    err = capsys.readouterr().err
    assert calls == [url]
    assert f"another demo (pid {first.pid} on {socket.gethostname()}) runs on this store" in err
    assert f"PostgreSQL database {url}, schema {schema}" in err
    assert "wait for it to end, or run this one with --throwaway" in err
    assert not (first_folder / "state").exists()
    assert not (second_folder / "state").exists()


def _lock_holder_backend(admin: Any, demo_pid: int) -> int:
    """The server process of the session in which the demo ``demo_pid`` holds an advisory
    lock (its connection names the demo's pid)."""
    row = admin.execute(
        "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s",
        (f"appliance demo (pid {demo_pid} %",)).fetchone()
    assert row is not None, "the demo holds no advisory lock"
    return int(row[0])


def _wait_until_the_server_ends(admin: Any, backend_pid: int) -> None:
    """Wait (60 s at most) until the server has ended the session of ``backend_pid``."""
    for _ in range(1200):
        if admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                         (backend_pid,)).fetchone() is None:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server kept session {backend_pid} of a killed demo")


def test_the_demo_keeps_its_results_in_the_store_it_is_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'backoffice.sqlite3'}"
    assert demo.run_demo(devices=1, count=2, timeout_s=120, edge_command=FAST_EDGE,
                         store_url=url) == 0
    assert f"results kept in {url}" in capsys.readouterr().out
    store = open_store(url)
    try:
        assert store.count_results() == 2
    finally:
        store.close()


@pytest.mark.postgres
def test_the_demo_names_a_postgresql_store_without_its_password(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed "back office on postgresql://user:PASSWORD@..." and "results kept in" the
    same: the database password on the screen and in any captured log of a demo run."""
    import psycopg

    schema = f"smallbo_demo_{uuid.uuid4().hex[:10]}"
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            assert demo.run_demo(devices=1, count=1, timeout_s=120, edge_command=FAST_EDGE,
                                 store_url=url) == 0
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    printed = capsys.readouterr()
    masked = url.replace("s3cret-pw", "***")
    assert f"back office on {masked}\n" in printed.out
    assert f"results kept in {masked};" in printed.out
    assert "s3cret-pw" not in printed.out + printed.err


def test_demo_command_defaults_to_the_store_fleet_reads_and_throwaway_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str | None] = []

    def record(*args: object, store_url: str | None = None, **kwargs: object) -> int:
        calls.append(store_url)
        return 0

    monkeypatch.chdir(tmp_path)  # no config.yaml: built-in defaults, state in ./state
    monkeypatch.setattr(demo, "run_demo", record)
    assert main(["demo"]) == 0
    assert main(["demo", "--throwaway"]) == 0
    assert calls == [f"sqlite:///{tmp_path / 'state' / 'backoffice.sqlite3'}", None]


@pytest.mark.parametrize("url", ["bogus://x", "postgresql://127.0.0.1:5432", "sqlite:///"])
def test_a_store_url_naming_no_store_is_refused_before_anything_starts_as_read_commands_do(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo started its mosquitto first, then said 'demo failed: ...' with exit 1 (and
    for sqlite:/// left demo.lock in the working folder), where `fleet` exits 2."""
    monkeypatch.chdir(tmp_path)
    calls = _recorded_demo(monkeypatch)
    assert main(["fleet", "--store", url]) == 2
    refusal = capsys.readouterr().err
    assert refusal.startswith("fleet: store error: ")
    assert main(["demo", "--store", url]) == 2
    assert capsys.readouterr().err == refusal.replace("fleet: ", "demo: ", 1)
    assert calls == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_a_postgresql_database_that_is_not_there_is_a_store_error_as_fleet_says_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo said "demo failed: ..." with exit 1 where `fleet` says "store error: ..."
    with exit 2 and how the database is made (`store migrate`, a role with CREATEDB)."""
    monkeypatch.chdir(tmp_path)
    calls = _recorded_demo(monkeypatch)
    url = f"{PG_URL.rpartition('/')[0]}/tidy_absent_{uuid.uuid4().hex[:10]}"  # never made
    assert main(["fleet", "--store", url]) == 2
    refusal = capsys.readouterr().err
    assert refusal.startswith("fleet: store error: ")
    assert "does not exist; `appliance store migrate`" in refusal
    assert main(["demo", "--store", url]) == 2
    assert capsys.readouterr().err == refusal.replace("fleet: ", "demo: ", 1)
    assert calls == []
    assert list(tmp_path.iterdir()) == []


def test_a_demo_store_in_a_folder_that_is_not_there_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`demo --store sqlite:///nope/x.sqlite3` made nope/ in the working folder, with demo.lock
    and the store in it, where a read command says there is no store there."""
    monkeypatch.chdir(tmp_path)
    calls = _recorded_demo(monkeypatch)
    errors = []
    for url, folder in (("sqlite:///nope/x.sqlite3", tmp_path / "nope"),
                        (f"sqlite:///{tmp_path / 'gone' / 'x.sqlite3'}", tmp_path / "gone")):
        assert main(["demo", "--store", url]) == 2
        errors.append(capsys.readouterr().err)
        assert errors[-1].startswith(f"demo: store error: no folder {folder} for the store ")
    assert "sqlite:////nope/x.sqlite3 names /nope/x.sqlite3" in errors[0]  # relative, read so
    assert calls == []
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "here").mkdir()  # a new store in a folder that is there: the demo makes it
    assert main(["demo", "--store", "sqlite:///here/x.sqlite3"]) == 0
    assert calls == ["sqlite:///here/x.sqlite3"]


def test_a_configured_store_in_a_folder_that_is_not_there_is_refused_as_the_same_store_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`APPLIANCE__STORE__URL=sqlite:///nowhere/x.sqlite3 appliance demo` made nowhere/ with a
    new store in it, where `--store` naming the same file is refused (a typo, or a relative
    path read as an absolute one); the default store's folder (state_dir) is still made."""
    monkeypatch.chdir(tmp_path)
    calls = _recorded_demo(monkeypatch)
    url = "sqlite:///nowhere/x.sqlite3"
    assert main(["demo", "--store", url]) == 2
    folder = tmp_path / "nowhere"
    refusal = f"demo: store error: no folder {folder} for the store {folder / 'x.sqlite3'}"
    assert capsys.readouterr().err.startswith(refusal)
    monkeypatch.setenv("APPLIANCE__STORE__URL", url)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err.startswith(refusal)
    monkeypatch.delenv("APPLIANCE__STORE__URL")
    (tmp_path / "office.yaml").write_text(f"store:\n  url: {url}\n")
    assert main(["demo", "--config", "office.yaml"]) == 2
    assert capsys.readouterr().err.startswith(refusal)
    assert calls == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["office.yaml"]
    monkeypatch.setenv("APPLIANCE__STATE_DIR", "fresh")  # the default store: its folder made
    assert main(["demo"]) == 0
    assert calls == [f"sqlite:///{tmp_path / 'fresh' / 'backoffice.sqlite3'}"]


def test_a_state_dir_that_is_a_file_is_refused_naming_it_by_the_demo_and_the_store_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`state_dir` set to a file: the demo said it could not make its lock file "(File
    exists)", `store migrate` "[Errno 17] File exists", and `fleet` and `results query` that
    nothing was ever stored there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("notes\n")
    monkeypatch.setenv("APPLIANCE__STATE_DIR", "afile")
    calls = _recorded_demo(monkeypatch)
    said = (f"the store {tmp_path / 'afile' / 'backoffice.sqlite3'} cannot be in its folder: "
            f"{tmp_path / 'afile'} is a file, not a folder")
    for command in (["demo"], ["store", "migrate"], ["fleet"], ["results", "query"]):
        assert main(command) == 2
        assert said in capsys.readouterr().err
    assert calls == []
    assert [path.name for path in tmp_path.iterdir()] == ["afile"]
    assert (tmp_path / "afile").read_text() == "notes\n"


def test_the_demo_s_next_steps_name_the_store_or_config_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`appliance demo --store URL` (or --config F) suggested a bare `appliance fleet`, which
    reads the default store: 'no store at ./state/backoffice.sqlite3', exit 2, or another
    store's results."""
    options: list[str] = []

    def record(*args: object, store_option: str = "", **kwargs: object) -> int:
        options.append(store_option)
        return 0

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "run_demo", record)
    url = f"sqlite:///{tmp_path / 'my demo.sqlite3'}"
    (tmp_path / "config.yaml").write_text("state_dir: ./kept\n")
    assert main(["demo", "--store", url]) == 0
    assert main(["demo", "--config", "config.yaml"]) == 0
    assert main(["demo"]) == 0
    assert options == [f" --store '{url}'", " --config config.yaml", ""]
    steps = demo.next_steps(url, options[0]).splitlines()[1:]
    assert len(steps) == 5
    assert all(step.count(f"--store '{url}'") == (2 if "the web console" in step else 1)
               for step in steps), steps
    pg = "postgresql://bo:s3cret@db.example.org/results"
    # no server there to take the demo's lock in (appliance/backoffice/demolock.py)
    monkeypatch.setattr(demolock, "demo_lock", lambda url: contextlib.nullcontext())
    assert main(["demo", "--store", pg]) == 0
    assert options[-1] == " --store 'postgresql://bo:***@db.example.org/results'"


def test_the_demo_cohort_line_prints_no_nan_interval_for_three_results() -> None:
    pearson, _ = correlations([25.0, 35.0, 55.0], [80.0, 60.0, 30.0])  # n=3: r, but no CI
    assert isinstance(pearson, Correlation)
    band = BandStats("20-29", 3, 56.7, 25.2, 0.0, 100.0)
    lines = _cohort_text({"kime_score": FeatureView("kime_score", [band], pearson)})
    assert "nan" not in "\n".join(lines)
    assert "Pearson r -1.00 (n=3, too few for a 95 % CI)" in lines[1]


def _demo_result(not_validated: list[str], graded: bool) -> payloads.Result:
    reasons = [] if graded else [not_graded_reason(not_validated)]
    grade = payloads.Classification(model="m", version="1", label="fine",
                                    probabilities={"fine": 1.0}) if graded else None
    return payloads.Result(
        measurement_id=payloads.new_measurement_id(), device_id="kiosk-demo-1", site="demo",
        captured_at=payloads.utc_now(), software_version="x",
        quality=payloads.Quality(verdict="ok", reasons=reasons), features=FIXED_FEATURES,
        classification=grade, not_validated=not_validated)  # type: ignore[arg-type]


def test_the_demo_prints_a_near_tie_between_its_two_grades(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tied = _demo_result([], graded=True).model_copy(update={"classification": (
        payloads.Classification(model="m", version="1", label="normal",
                                probabilities={"fine": 0.42, "normal": 0.48, "coarse": 0.1}))})
    demo.ResultPrinter()([tied])
    assert capsys.readouterr().out == ("stored  demo/kiosk-demo-1  kime  61.0  pores  42  "
                                       "grade between fine and normal  age band -\n")


def test_the_demo_prints_no_number_that_was_not_measured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = demo.ResultPrinter()
    printer([_demo_result([], graded=True),
             _demo_result(["hill_density_per_mm2", "kime_score"], graded=False)])
    measured, unsure = capsys.readouterr().out.splitlines()
    assert measured == "stored  demo/kiosk-demo-1  kime  61.0  pores  42  grade fine  age band -"
    assert unsure == "stored  demo/kiosk-demo-1  kime   n/m  pores  42  grade not given  " \
                     "age band -"
    assert printer.kime_scores == [61.0]  # the mean leaves out what was not measured
    assert printer.not_measured == 1


def test_the_demo_s_next_steps_call_this_program_as_the_shell_finds_it_and_name_the_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Path(sys.executable).parent / "appliance"  # ./dev demo runs .venv/bin/appliance
    assert script.exists()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a fresh shell: the venv is not on it
    monkeypatch.chdir(script.parent.parent.parent)
    shown = os.path.relpath(script)
    steps = demo.next_steps("sqlite:///state/backoffice.sqlite3").splitlines()[1:]
    assert steps
    assert all(step.startswith(f"  {shown} ") for step in steps), steps
    assert f"  {shown} console user add NAME --role operator, then {shown} console" in steps[-1]
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert demo.next_steps("sqlite:///s").splitlines()[1].startswith("  appliance fleet")


def test_the_demo_s_next_steps_say_force_where_an_earlier_export_and_report_are_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A second demo, after the tour (or the first demo's own suggestions) had written
    results.csv and report/ in the working folder, suggested the same export and report
    lines, which were refused: 'results.csv exists; pass --force to replace it', exit 2."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert main(["store", "migrate", "--store", url]) == 0

    def suggested(command: str) -> list[str]:
        line = next(step for step in demo.next_steps(url, f" --store {url}").splitlines()
                    if f" {command} " in step)
        return line.split(" (", 1)[0].split()[1:]  # as typed, without the note

    assert "--force" not in suggested("export")
    assert main(suggested("export")) == 0
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "summary.json").write_text("{}\n")  # one file of a report
    capsys.readouterr()
    assert suggested("export")[-1] == suggested("cohort")[-1] == "--force"
    assert main(suggested("export")) == 0, capsys.readouterr().err
    steps = demo.next_steps(url).splitlines()
    assert "--out results.csv --force (replaces the results.csv here)" in steps[3]
    assert ("--out report --force (replaces the report here; every feature by age band, with "
            "plots: report/index.html)") in steps[4]


def test_the_demo_says_which_command_draws_the_full_cohort_report(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  ) -> None:
    """The cohort line ended "full report: the report cohort command, or the console", which
    named no command a newcomer could type; the report's own line among the next steps says
    what it draws and where."""
    monkeypatch.chdir(tmp_path)
    pearson, _ = correlations([25.0, 35.0, 55.0, 65.0, 45.0], [80.0, 60.0, 30.0, 20.0, 50.0])
    band = BandStats("20-29", 5, 56.7, 25.2, 0.0, 100.0)
    lines = _cohort_text({"kime_score": FeatureView("kime_score", [band], pearson)})
    assert lines[1].startswith("cohort: kime score vs age, Pearson r ")
    assert lines[1].endswith(f"(n={pearson.n})"), lines[1]
    steps = demo.next_steps("sqlite:///s").splitlines()
    assert steps[4].endswith(" report cohort --out report (every feature by age band, with "
                             "plots: report/index.html)"), steps[4]


@pytest.mark.parametrize("stopping", [True, False])
def test_the_demo_s_back_office_does_not_warn_of_the_broker_a_ctrl_c_stopped(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, stopping: bool
) -> None:
    """A Ctrl-C reaches the demo and its mosquitto at once (one process group): the demo's
    back office then warned 'demo-backoffice disconnected (Unspecified error); reconnecting'
    under 'received SIGINT; stopping', as if something had failed. A broker lost while the
    demo runs is still a warning."""
    stop = threading.Event()
    with PrivateBroker(workdir=tmp_path / "broker") as broker:
        config = config_from_mapping(
            {"mqtt": {"port": broker.port}, "state_dir": str(tmp_path),
             "backoffice": {"client_id": "demo-backoffice"}}, "demo", environ={})
        store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        worker = IngestWorker(config, store, stopping=stop)  # as the demo's (demo._backoffice)
        worker.start()
        try:
            assert worker.subscribed.wait(15)
            if stopping:
                stop.set()  # the demo's signal handler, before the broker goes
            with caplog.at_level(logging.INFO, logger="appliance.backoffice.ingest"):
                broker.stop()
                for _ in range(200):
                    if not worker.connected.is_set():
                        break
                    time.sleep(0.05)
        finally:
            worker.stop()
            store.close()
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    said = [r.getMessage() for r in caplog.records if "demo-backoffice disconnected" in
            r.getMessage()]
    assert len(said) == 1
    assert (not warned) if stopping else ("reconnecting" in said[0])


def test_the_demo_cohort_line_names_a_band_without_results_between_others() -> None:
    """The demo's line read '30-39 n=2 mean 76.4, 50-59 n=1 mean 45.7' where nobody aged 40-49
    was stored, while the console's plots and `report cohort` (94a0805) show that band, n=0:
    the line now keeps every band of the axis in its place."""
    pearson, _ = correlations([35.0, 35.0, 55.0], [80.0, 70.0, 40.0])
    bands = [BandStats("30-39", 2, 75.0, 7.1, 11.0, 139.0),
             BandStats("50-59", 1, 40.0, math.nan, math.nan, math.nan)]
    view = FeatureView("kime_score", bands, pearson, axis=("30-39", "40-49", "50-59"))
    lines = _cohort_text({"kime_score": view})
    assert lines[0].endswith("kime score by band: 30-39 n=2 mean 75.0, 40-49 n=0, "
                             "50-59 n=1 mean 40.0")  # on main: no 40-49
    assert lines[0].startswith("cohort: 3 stored result(s) with an age band")


@pytest.mark.parametrize("named", [["--store", "postgresql://127.0.0.1:5432/test"],
                                   ["--config", "config.yaml"]])
def test_a_throwaway_demo_naming_a_store_is_refused_before_anything_starts(
    named: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`demo --throwaway --store postgresql://...` ran on a temporary SQLite store, the
    PostgreSQL store it named never tried and nothing said: which was meant is no choice to
    make silently."""
    monkeypatch.chdir(tmp_path)
    calls = _recorded_demo(monkeypatch)
    assert main(["demo", "--throwaway", *named]) == 2
    assert capsys.readouterr().err == (
        f"demo: --throwaway keeps nothing, in a temporary store of its own; {named[0]} names "
        "the store that keeps the results: give one or the other\n")
    assert calls == []
    assert list(tmp_path.iterdir()) == []
