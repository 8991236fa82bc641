"""Published files written before the repository wrote them readable by all (0600, so a web
server running as its own user answered 403) are made 0644 by the next publish, release,
refresh or `models status`; nothing outside the repository, behind a link, or not a regular
file is touched."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from updates_helpers import inputs

from appliance.cli import main
from appliance.updates.manifest import ModelManifest
from appliance.updates.operations import (
    assign,
    init_repository,
    refresh_timestamp,
    release_model,
    unassign,
)
from appliance.updates.release import manifest_for
from appliance.updates.repofiles import PUBLIC_MODE, make_readable_by_all
from appliance.updates.repository import FileRepository
from appliance.updates.testing import linear_model


def _as_before_the_change(tmp_path: Path) -> tuple[FileRepository, ModelManifest]:
    """A repository with a release and an assignment whose served files are all 0600, as the
    repository wrote them before 0644."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    assign(repo, [("lab", "k1")], manifest)
    for path in _published(repo):
        path.chmod(0o600)
    return repo, manifest


def _published(repo: FileRepository) -> list[Path]:
    public = repo.dir / "public"
    return [p for p in public.rglob("*") if p.is_file() and not p.is_symlink()]


def _modes(paths: list[Path]) -> set[str]:
    return {oct(os.lstat(p).st_mode & 0o777) for p in paths}


def _next_release(repo: FileRepository, tmp_path: Path) -> None:
    model = linear_model(tmp_path / "m2.onnx", "1.2.0")
    release_model(repo, model, manifest_for(model, "1.2.0", inputs()))


OPERATIONS: dict[str, Callable[[FileRepository, ModelManifest, Path], Any]] = {
    "release": lambda repo, _, tmp: _next_release(repo, tmp),
    "assign": lambda repo, manifest, _: assign(repo, [("lab", "k2")], manifest),
    "unassign": lambda repo, _, __: unassign(repo, [("lab", "k1")]),
    "refresh": lambda repo, _, __: refresh_timestamp(repo),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_the_next_operation_makes_files_published_0600_readable_by_all(
    tmp_path: Path, operation: str
) -> None:
    """They stayed 0600 until rewritten: the model, old metadata versions and assignments,
    never rewritten, stayed unreadable to the web server for good."""
    repo, manifest = _as_before_the_change(tmp_path)
    old = _published(repo)
    assert len(old) > 8  # metadata of every role, the model, the assignment
    assert _modes(old) == {oct(0o600)}
    OPERATIONS[operation](repo, manifest, tmp_path)
    assert _modes(_published(repo)) == {oct(PUBLIC_MODE)}


def test_only_regular_files_inside_public_are_changed_and_no_link_is_followed(
    tmp_path: Path,
) -> None:
    repo, _ = _as_before_the_change(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret, kept = outside / "secret.pem", outside / "kept.json"
    for path in (secret, kept):
        path.write_text("not the repository's")
        path.chmod(0o600)
    public = repo.dir / "public"
    (public / "targets" / "secret.pem").symlink_to(secret)  # a link to a file outside
    (public / "elsewhere").symlink_to(outside, target_is_directory=True)  # and to a folder
    os.mkfifo(public / "pipe", 0o600)
    half = public / "metadata" / ".2.fleet.json.x1y2z3"  # a write stopped half-way
    half.write_text("{")
    half.chmod(0o600)
    changed = make_readable_by_all(public)
    assert changed == len(_published(repo)) - 1  # all but the half-written file
    assert _modes([secret, kept, public / "pipe", half]) == {oct(0o600)}
    assert _modes([p for p in _published(repo) if p != half]) == {oct(PUBLIC_MODE)}
    assert make_readable_by_all(public) == 0  # nothing left to change


def test_a_file_it_may_not_change_is_named_and_the_rest_are_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another owner's file (here: one whose chmod is refused, as it is to a non-owner)."""
    repo, _ = _as_before_the_change(tmp_path)
    theirs = repo.metadata_dir / "1.root.json"
    fchmod = os.fchmod

    def refused_for_theirs(fd: int, mode: int) -> None:
        if os.path.samestat(os.fstat(fd), os.stat(theirs)):
            raise PermissionError(1, "Operation not permitted")
        fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", refused_for_theirs)
    with caplog.at_level(logging.WARNING):
        changed = make_readable_by_all(repo.dir / "public")
    assert changed == len(_published(repo)) - 1
    assert _modes([theirs]) == {oct(0o600)}
    assert f"{theirs}: published but not readable by all (Operation not permitted)" in (
        caplog.text)
    assert f"chmod 644 {theirs}" in caplog.text


@pytest.mark.broker  # models status reads the fleet's reports too
def test_models_status_makes_files_published_0600_readable_by_all(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, _ = _as_before_the_change(tmp_path)
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", mqtt_broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(mqtt_broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", topic_prefix)
    monkeypatch.chdir(tmp_path)
    assert main(["models", "status", "--repo", str(repo.dir), "--store",
                 f"sqlite:///{tmp_path / 'none.sqlite3'}"]) == 0
    assert _modes(_published(repo)) == {oct(PUBLIC_MODE)}
