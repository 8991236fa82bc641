"""Withdrawing a release (``appliance models yank``): one new version of the targets role lists
the record ``withdrawn/{name}/{version}.json`` in the place of the release's target.

The yank holds the rollout lock, so no deploy or rollback assigns the release while it is being
withdrawn.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tuf.api.metadata import Targets

from appliance.updates.manifest import Withdrawal, model_target, withdrawn_target
from appliance.updates.operations import PUBLISHING_ROLES, released, withdrawals
from appliance.updates.repofiles import RepositoryError
from appliance.updates.repository import FileRepository


def withdraw_release(
    repo: FileRepository, name: str, version: str, reason: str, by: str
) -> Withdrawal:
    """Take a release back: one new version of the targets role (its offline key, as a
    release) lists the ``Withdrawal`` in the place of the release's target, and snapshot and
    timestamp publish it.
    Holds the rollout lock throughout: RepositoryError naming a deploy, rollback or halt at
    work, and what to do, before anything is signed."""
    advice = (f"to withdraw a release a rollout is assigning now, halt it first (`appliance "
              f"models halt {name} --repo {repo.dir} --reason ...`), then yank again; nothing "
              "was signed")
    with repo.rolling_out("yank", advice), repo.locked():
        repo.check_keys(Targets.type, *PUBLISHING_ROLES)
        before = withdrawals(repo).get((name, version))
        if before is not None:
            raise RepositoryError(f"{name} {version} was {before.said()}; nothing to do")
        manifest = released(repo, name, version)
        listed = repo.targets().targets[model_target(name, version)]
        withdrawal = Withdrawal(
            model=manifest.name, version=manifest.version, sha256=listed.hashes["sha256"],
            reason=reason.strip()[:1000] or "no reason given", by=by[:200],
            at=datetime.now(UTC).replace(microsecond=0).isoformat())
        record = repo.store_target(withdrawal.signed_bytes(), withdrawn_target(name, version),
                                   withdrawal.model_dump(mode="json"))
        with repo.edit_targets(Targets.type) as targets:
            del targets.targets[listed.path]
            targets.targets[record.path] = record
        repo.publish()
    return withdrawal

