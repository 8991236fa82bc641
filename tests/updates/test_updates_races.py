"""Races between ``models status`` and a deploy on the same repository and store: what status
looks at while a deploy starts or ends."""

from __future__ import annotations

import fcntl
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.store import open_store
from appliance.updates import rolloutrecords
from appliance.updates.operations import init_repository
from appliance.updates.repofiles import RepositoryError


def test_a_status_looking_at_the_rollout_lock_as_a_deploy_starts_does_not_refuse_the_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """status (``rollout_held``) takes the deploy's own lock, shared, for an instant; a deploy
    starting in that instant was refused as if another deploy were running."""
    repo = init_repository(tmp_path / "repo")
    with repo.rolling_out("deploy"):  # an earlier deploy: its lock files stay
        pass
    looking, deploy_tried = threading.Event(), threading.Event()
    real_flock = fcntl.flock

    def flock(fd: Any, operation: int) -> None:
        thread = threading.current_thread().name
        if thread == "status" and operation & fcntl.LOCK_SH:
            real_flock(fd, operation)
            looking.set()  # status holds its look until the deploy has tried its lock
            deploy_tried.wait(30)
        elif thread == "deploy" and operation & fcntl.LOCK_EX and operation & fcntl.LOCK_NB:
            try:
                real_flock(fd, operation)
            finally:
                deploy_tried.set()
        elif thread == "deploy" and operation & fcntl.LOCK_EX:
            deploy_tried.set()  # it waits here: status may end its look
            real_flock(fd, operation)
        else:
            real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    seen: list[object] = []

    def deploy() -> None:
        try:
            with repo.rolling_out("deploy"):
                seen.append("deployed")
        except RepositoryError as exc:
            seen.append(str(exc))

    status = threading.Thread(target=lambda: seen.append(repo.rollout_held()), name="status")
    status.start()
    assert looking.wait(30)
    deploying = threading.Thread(target=deploy, name="deploy")
    deploying.start()
    deploying.join(30)
    status.join(30)
    assert sorted(map(str, seen)) == ["False", "deployed"]


def test_a_rollout_that_ends_while_status_looks_at_the_lock_is_not_called_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """status read the rollout 'running', then found no deploy holding the lock (it had just
    ended and let go) and showed the complete rollout as 'interrupted'."""
    repo = init_repository(tmp_path / "repo")
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    at = "2026-12-01T00:00:00.000000Z"
    with closing(open_store(url)) as store:
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [("ending000001", "skin-texture-grade", "1.1.0", "deploy", "all", 1,
                      "running", None, at, at, repo.identity())])
        store.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [("ending000001", "lab", "k1", "canary", "assigned", None, None, at)])

        def deploy_ends_then_looked_at() -> bool:
            store.write("UPDATE rollouts SET state = 'complete', reason = ?",
                        [("1 device(s) installed skin-texture-grade 1.1.0 and are healthy",)])
            return False  # the deploy has let go of the lock

        monkeypatch.setattr(repo, "rollout_held", deploy_ends_then_looked_at)
        latest = rolloutrecords.latest_rollouts(store, repo)
    assert latest[("lab", "k1")][:2] == ("ending000001", "complete")


def test_a_killed_deploy_s_rollout_still_reads_interrupted(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    at = "2026-12-01T00:00:00.000000Z"
    with closing(open_store(url)) as store:
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [("killed000001", "skin-texture-grade", "1.1.0", "deploy", "all", 1,
                      "running", None, at, at, repo.identity())])
        store.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [("killed000001", "lab", "k1", "canary", "assigned", None, None, at)])
        latest = rolloutrecords.latest_rollouts(store, repo)
        with repo.rolling_out("deploy"):
            held = rolloutrecords.latest_rollouts(store, repo)
    assert latest[("lab", "k1")][1:] == ("interrupted", "assigned",
                                         rolloutrecords.INTERRUPTED_REASON)
    assert held[("lab", "k1")][1] == "running"
