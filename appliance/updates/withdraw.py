"""Withdrawing a release (``appliance models yank``): one new version of the targets role lists
the record ``withdrawn/{name}/{version}.json`` in the place of the release's target, and the
model file leaves what the repository serves.

A target no longer listed is not trusted by any kiosk (TUF), but the file itself stayed in
``public/targets/``: anyone who could fetch from the update server still got the withdrawn
model's bytes. It is moved to ``DIR/withdrawn/`` (never served, kept for the record) once the
metadata that no longer names it is published. The yank holds the rollout lock, so no deploy or
rollback assigns the release while it is being withdrawn.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from tuf.api.metadata import Targets

from appliance.logsafe import INVISIBLE, escape_controls
from appliance.updates.manifest import Withdrawal, model_target, semver_key, withdrawn_target
from appliance.updates.operations import PUBLISHING_ROLES, released, releases, withdrawals
from appliance.updates.repofiles import RepositoryError
from appliance.updates.repository import FileRepository

MAX_REASON_CHARS = 1000  # the record's reason (``Withdrawal.reason``), shown on every kiosk report
SET_ASIDE_DIR = "withdrawn"  # DIR/withdrawn/: withdrawn model files, outside public/, never served


def withdraw_release(
    repo: FileRepository, name: str, version: str, reason: str, by: str
) -> Withdrawal:
    """Take a release back: one new version of the targets role (its offline key, as a
    release) lists the ``Withdrawal`` in the place of the release's target, snapshot and
    timestamp publish it, and the model file is set aside out of ``public/`` (``set_aside``).
    Holds the rollout lock throughout: RepositoryError naming a deploy, rollback or halt at
    work, and what to do, before anything is signed."""
    said_reason = checked_reason(reason)
    advice = (f"to withdraw a release a rollout is assigning now, halt it first (`appliance "
              f"models halt {name} --repo {repo.dir} --reason ...`), then yank again; nothing "
              "was signed")
    with repo.rolling_out("yank", advice), repo.locked():
        repo.check_keys(Targets.type, *PUBLISHING_ROLES)
        before = withdrawals(repo).get((name, version))
        if before is not None:
            moved = set_aside(repo, before)
            raise RepositoryError(f"{name} {version} was {before.said()}; nothing to do" + (
                f" (its file, left served by a yank stopped before, is set aside now: {moved})"
                if moved else ""))
        if model_target(name, version) not in repo.targets().targets:
            raise _not_released(repo, name, version)
        manifest = released(repo, name, version)
        listed = repo.targets().targets[model_target(name, version)]
        withdrawal = Withdrawal(
            model=manifest.name, version=manifest.version, sha256=listed.hashes["sha256"],
            reason=said_reason, by=by[:200],
            at=datetime.now(UTC).replace(microsecond=0).isoformat())
        record = repo.store_target(withdrawal.signed_bytes(), withdrawn_target(name, version),
                                   withdrawal.model_dump(mode="json"))
        with repo.edit_targets(Targets.type) as targets:
            del targets.targets[listed.path]
            targets.targets[record.path] = record
        repo.publish()
        set_aside(repo, withdrawal)  # after the metadata that no longer names it is out
    return withdrawal


def _not_released(repo: FileRepository, name: str, version: str) -> RepositoryError:
    """The refusal of a yank of a version never released (``released`` would say to release
    it first, which is no advice to someone withdrawing it)."""
    versions = sorted((m.version for m in releases(repo) if m.name == name), key=semver_key)
    return RepositoryError(
        f"{name} {version} is not released in {repo.dir}, so there is nothing to withdraw "
        f"(released: {', '.join(versions) or 'none'}; `appliance models status --repo "
        f"{repo.dir}` shows what the kiosks run); nothing was signed")


def checked_reason(reason: str, *, option: str = "--reason",
                   kept_by: str = "the withdrawal record", limit: int = MAX_REASON_CHARS,
                   nothing_done: str = "nothing was signed") -> str:
    """The reason as the record keeps it (stripped; "no reason given" for none);
    RepositoryError for one longer than ``kept_by`` holds or with a control character: every
    kiosk's report and `models status` repeat it, one line of visible text. `models halt`
    checks its reason so too (``kept_by`` the halt record)."""
    said = reason.strip()
    if len(said) > limit:
        raise RepositoryError(
            f"{option} is {len(said)} characters long; {kept_by} keeps at most "
            f"{limit} (every kiosk's report repeats it): say it shorter; {nothing_done}")
    if (control := INVISIBLE.search(said)) is not None:
        raise RepositoryError(
            f"{option} holds a control or invisible character ({escape_controls(control.group())}"
            f" at character {control.start() + 1}); {kept_by} is one line of visible text "
            f"that kiosks and `models status` show: give it without; {nothing_done}")
    return said or "no reason given"


def set_aside(repo: FileRepository, withdrawal: Withdrawal) -> Path | None:
    """Move the withdrawn release's model file from ``public/targets/`` to
    ``DIR/withdrawn/`` (same relative path; never served, kept for the record); the new path,
    or None where nothing was served (set aside already)."""
    directory, _, name = model_target(withdrawal.model, withdrawal.version).rpartition("/")
    file_name = f"{withdrawal.sha256}.{name}"
    served = repo.targets_dir / directory / file_name
    if not served.is_file() or served.is_symlink():
        return None
    kept = repo.dir / SET_ASIDE_DIR / directory / file_name
    kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.replace(served, kept)
    for folder in (served.parent, served.parent.parent):  # its version's and model's folders
        try:
            folder.rmdir()
        except OSError:  # not empty: other releases of the model are served from it
            break
    return kept
