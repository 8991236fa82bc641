"""A PostgreSQL server that takes the connection and never answers (tests/silent_server.py):
every connection of the product gives up after its connect timeout with a StoreError naming
the database and what to check (appliance/backoffice/pgconnect.py), where psycopg's default
held each command 130 s, and the back office and the demo as long."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.backoffice.demolock import demo_lock
from appliance.backoffice.pgdatabase import create_missing_database
from appliance.backoffice.store import StoreError, open_existing_store, open_store
from appliance.pathology.jobstore import open_pathology_store
from tests.silent_server import silent_server

# how long a test waits for an answer: far more than the connect timeout on a busy machine,
# far less than psycopg's default of 130 s
DEADLINE_S = 60.0


def _lock(url: str) -> None:
    with demo_lock(url):
        pass


OPENERS: dict[str, Callable[[str], object]] = {
    "open_store": open_store,  # backoffice, console, demo, models deploy
    "open_existing_store": open_existing_store,  # fleet, results, report, models status
    "open_pathology_store": open_pathology_store,  # pathology serve and its job commands
    "demo_lock": _lock,  # the demo's advisory lock, taken before anything starts
    "create_missing_database": create_missing_database,  # store migrate, first
}


def _failure(opener: Callable[[str], object], url: str, into: dict[str, BaseException | None],
             name: str) -> threading.Thread:
    """``opener(url)`` on a thread of its own, what it raised (None: nothing) into ``into``."""

    def run() -> None:
        try:
            opener(url)
        except BaseException as exc:
            into[name] = exc
        else:
            into[name] = None

    thread = threading.Thread(target=run, name=f"open-{name}", daemon=True)
    thread.start()
    return thread


def test_every_connection_to_a_server_that_does_not_answer_fails_naming_it() -> None:
    failures: dict[str, BaseException | None] = {}
    with silent_server() as server:
        url = server.url
        threads = {name: _failure(opener, url, failures, name)
                   for name, opener in OPENERS.items()}
        deadline_s = time.monotonic() + DEADLINE_S  # one deadline for all: they wait at once
        for thread in threads.values():
            thread.join(max(0.0, deadline_s - time.monotonic()))
    assert [name for name, thread in threads.items() if thread.is_alive()] == []
    for name, error in failures.items():
        assert isinstance(error, StoreError), (name, error)
        assert str(error).startswith(f"cannot connect to the PostgreSQL database {url}: "), name
        assert "timeout expired" in str(error), name
        assert "the server took the connection but said nothing: check that PostgreSQL runs " \
               "and answers at that host and port" in str(error), name


def test_store_migrate_against_a_server_that_does_not_answer_says_so_in_one_line() -> None:
    with silent_server() as server:
        url = server.url
        done = subprocess.run([sys.executable, "-m", "appliance", "store", "migrate",
                               "--store", url], capture_output=True, text=True,
                              timeout=DEADLINE_S, check=False)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"store migrate: cannot connect to the PostgreSQL database {url}: ")
    assert "said nothing" in lines[0]
    assert done.stdout == ""


@pytest.mark.parametrize(("command", "stopped", "code"), [
    (["backoffice"], "INFO appliance.backoffice.service: stopped (SIGINT) before the ", 0),
    (["demo", "--devices", "1", "--count", "1"], "demo stopped (SIGINT) before the ", 130),
    (["pathology", "serve"], "INFO appliance.pathology.service_main: stopped (SIGINT) before "
                             "the ", 0),
])
def test_ctrl_c_stops_a_service_waiting_for_a_server_that_does_not_answer(
    tmp_path: Path, command: list[str], stopped: str, code: int,
) -> None:
    """The back office, the demo and the pathology server stop in order on Ctrl-C (a stop
    event): their wait for the store's connection sat it out, where Ctrl-C ends any other
    command's at once."""
    (tmp_path / "config.yaml").write_text(f"pathology:\n  slide_roots: [{tmp_path}]\n")
    with silent_server() as server:
        child = subprocess.Popen(
            [sys.executable, "-m", "appliance", *command, *(
                ["--store", server.url] if command[0] == "demo" else [])],
            cwd=tmp_path, env={**os.environ, "APPLIANCE__STORE__URL": server.url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.taken.wait(DEADLINE_S), "the command never connected"
            child.send_signal(signal.SIGINT)
            _out, err = child.communicate(timeout=DEADLINE_S)
        finally:
            child.kill()
            child.wait()
    assert child.returncode == code, err
    assert f"{stopped}PostgreSQL database {server.url} answered" in err
    assert "timeout expired" not in err
