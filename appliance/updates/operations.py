"""Back-office operations on the model repository: init, release, assign, refresh.

Every operation takes the repository's write lock, changes one role through python-tuf's
``Repository.edit`` and then lets tuf bump snapshot and timestamp (``publish``), so a kiosk
always sees a consistent, freshly signed set.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from appliance.filekind import other_than_a_folder
from appliance.updates.defaults import DEFAULT_EXPIRY_S, FLEET, ROLES, TOP_ROLES
from appliance.updates.manifest import (
    MAX_ASSIGNMENT_BYTES,
    MAX_TARGETS_METADATA_BYTES,
    WITHDRAWN_DIR,
    Assignment,
    HaltedRelease,
    ModelManifest,
    Withdrawal,
    assignment_target,
    check_target_path,
    model_target,
    parse_assignment,
    parse_manifest,
    parse_withdrawal,
    semver_key,
)
from appliance.updates.repofiles import (
    RepositoryError,
    make_readable_by_all,
    read_regular_file,
    write_atomically,
)
from appliance.updates.repokeys import KeyFileError, generate_key
from appliance.updates.repository import (
    MAX_EXPIRY_S,
    FileRepository,
    fleet_delegation,
)

MAX_KEYS_PER_ROLE = 32  # a role of more keys is a typo (each key is a file and a signature)
OFFLINE_ROLES = (Root.type, Targets.type)  # their keys live offline: `repo refresh` warns
PUBLISHING_ROLES = (Snapshot.type, Timestamp.type)  # signed after every change (``publish``)


@dataclass(frozen=True)
class RoleKeys:
    """How many keys a role gets and how many must sign."""

    count: int = 1
    threshold: int = 1


def init_repository(
    directory: Path,
    keys: Mapping[str, RoleKeys] | None = None,
    expiry_s: Mapping[str, int] | None = None,
) -> FileRepository:
    """Create a repository with Ed25519 keys for root, targets, snapshot, timestamp and fleet."""
    if kind := other_than_a_folder(directory):  # else: "[Errno 17] File exists"
        raise RepositoryError(f"{directory}: {kind}, not a folder; name a new folder for the "
                              f"repository")
    if (directory / "settings.json").exists():
        unfinished = FileRepository(directory).unfinished()
        raise unfinished or RepositoryError(
            f"{directory}: a model repository is already here; not touched"
        )
    plan = {role: (keys or {}).get(role, RoleKeys()) for role in ROLES}
    _check_plan(plan, expiry_s or {})
    expiries = {**DEFAULT_EXPIRY_S, **(expiry_s or {})}
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / "settings.json", json.dumps({"expiry_s": expiries}).encode())
    repo = FileRepository(directory)
    with repo.locked(creating=True):
        _sign_first_versions(repo, plan)
    return repo


def _check_plan(plan: Mapping[str, RoleKeys], expiry_s: Mapping[str, int]) -> None:
    """Refuse a plan before anything is written: thresholds, key counts, expiries."""
    for role, wanted in plan.items():
        if wanted.count > MAX_KEYS_PER_ROLE:
            raise RepositoryError(f"role {role}: {wanted.count} keys; at most {MAX_KEYS_PER_ROLE}")
        if not 1 <= wanted.threshold <= wanted.count:
            raise RepositoryError(
                f"role {role}: threshold {wanted.threshold} with {wanted.count} key(s); "
                f"the threshold must be between 1 and the number of keys"
            )
    for role, seconds in expiry_s.items():
        if seconds <= 0:
            raise RepositoryError(f"--expiry-s {role}={seconds}: metadata would be born "
                                  f"expired; give more than 0 s")
        if seconds > MAX_EXPIRY_S:
            raise RepositoryError(f"--expiry-s {role}={seconds}: at most {MAX_EXPIRY_S} s "
                                  f"(10 years)")


def _sign_first_versions(repo: FileRepository, plan: Mapping[str, RoleKeys]) -> None:
    signers = {role: [generate_key(repo.keys_dir, role) for _ in range(plan[role].count)]
               for role in ROLES}
    with repo.edit_root() as root:
        for role in TOP_ROLES:
            for signer in signers[role]:
                root.add_key(signer.public_key, role)
            root.roles[role].threshold = plan[role].threshold
    fleet_keys = [s.public_key for s in signers[FLEET]]
    with repo.edit_targets() as targets:
        targets.delegations = fleet_delegation(fleet_keys, plan[FLEET].threshold)
    repo.close(FLEET, Metadata(Targets()))  # version 1 of the fleet role: nothing assigned
    # The first snapshot and timestamp are written directly: tuf's do_snapshot/do_timestamp
    # would first check the blank ones' signatures and log "No signature for keyid" per key.
    with repo.edit_snapshot() as snapshot:
        snapshot.meta = repo.targets_infos
    with repo.edit_timestamp() as timestamp:
        timestamp.snapshot_meta = repo.snapshot_info


def release_model(repo: FileRepository, model: Path | bytes, manifest: ModelManifest) -> str:
    """Add ``model`` (a file, or its content read once already) as the target of
    ``manifest``'s name and version; returns the target path.

    Releasing the same model file and manifest again completes a release that was stopped
    (killed, power lost) after it signed the targets and before the snapshot and timestamp
    that publish them; once published, a version is immutable.
    """
    target = model_target(manifest.name, manifest.version)
    check_target_path(target)
    data = model if isinstance(model, bytes) else model.read_bytes()
    with repo.locked():
        repo.check_keys(Targets.type, *PUBLISHING_ROLES)
        withdrawn = withdrawals(repo).get((manifest.name, manifest.version))
        if withdrawn is not None:  # listed anew, a rollback decision could name it again
            raise RepositoryError(
                f"{manifest.name} {manifest.version} was {withdrawn.said()}; a withdrawn "
                "version is never released again: release the model as a new version")
        listed = repo.targets().targets.get(target)
        if listed is None:
            repo.add_target(Targets.type, data, target, manifest.model_dump(mode="json"))
            repo.publish()
            return target
        same = _same_release(listed, data, manifest)
        if same and repo.publish():
            return target
        raise RepositoryError(
            f"{manifest.name} {manifest.version} is already released" + (
                " from this same file and self-test, and published (an operation after a "
                "stopped release publishes it too); nothing to do" if same else
                " from another file or self-test; versions are immutable, release a new "
                "version")
        )


def _same_release(listed: TargetFile, data: bytes, manifest: ModelManifest) -> bool:
    """``data`` and ``manifest`` are what the repository lists for their version."""
    given = TargetFile.from_data(listed.path, data, ["sha256"])
    return (given.length == listed.length and given.hashes == listed.hashes
            and listed.unrecognized_fields.get("custom") == manifest.model_dump(mode="json"))


def released(repo: FileRepository, name: str, version: str) -> ModelManifest:
    """The manifest of a released model; RepositoryError when it is not released."""
    target = model_target(name, version)
    info = repo.targets().targets.get(target)
    if info is None:
        versions = sorted(
            (m.version for m in releases(repo) if m.name == name), key=semver_key
        )
        withdrawn = withdrawals(repo).get((name, version))
        if withdrawn is not None:
            raise RepositoryError(
                f"{name} {version} was {withdrawn.said()}; kiosks never install it, so it can "
                f"be neither deployed nor rolled back to (released: "
                f"{', '.join(versions) or 'none'})")
        raise RepositoryError(
            f"{name} {version} is not released in {repo.dir} (released: "
            f"{', '.join(versions) or 'none'}); run `appliance models release` first"
        )
    return parse_manifest(info.custom, target)


def releases(repo: FileRepository) -> list[ModelManifest]:
    """Every released model's manifest."""
    return [
        parse_manifest(info.custom, path)
        for path, info in repo.targets().targets.items()
        if path.startswith("models/")
    ]


def withdrawals(repo: FileRepository) -> dict[tuple[str, str], Withdrawal]:
    """Every withdrawn release's record, keyed by (name, version)."""
    found = {}
    for path, info in repo.targets().targets.items():
        if path.startswith(f"{WITHDRAWN_DIR}/"):
            withdrawal = parse_withdrawal(info.custom, path)
            found[(withdrawal.model, withdrawal.version)] = withdrawal
    return found


def assign(
    repo: FileRepository,
    devices: Sequence[tuple[str, str]],
    manifest: ModelManifest,
    *,
    decision: str = "deploy",
    rollout: str | None = None,
) -> str:
    """Sign, in one new version of the fleet role, that ``devices`` ((site, id) pairs) should
    run ``manifest``."""
    rollout_id = rollout or uuid.uuid4().hex[:12]
    raw = assignment_bytes(manifest, decision, rollout_id)
    with repo.locked():
        repo.check_keys(FLEET, *PUBLISHING_ROLES)
        check_fleet_room(repo, devices, raw)
        repo.add_targets(FLEET, raw, [assignment_target(*device) for device in devices])
        repo.publish()
    return rollout_id


def assignment_bytes(manifest: ModelManifest, decision: str, rollout_id: str) -> bytes:
    """The assignment file of ``manifest`` for one rollout, as the fleet role signs it."""
    body = Assignment(
        model=manifest.name,
        version=manifest.version,
        target=model_target(manifest.name, manifest.version),
        decision=decision,  # type: ignore[arg-type]
        rollout=rollout_id,
    )
    return body.signed_bytes()


def check_fleet_room(repo: FileRepository, devices: Sequence[tuple[str, str]],
                     assignment: bytes) -> None:
    """RepositoryError, before anything is signed, where the fleet role listing ``devices``
    too would be larger than kiosks read (MAX_TARGETS_METADATA_BYTES): they would refuse it,
    and with it every device's assignment."""
    added = [TargetFile.from_data(assignment_target(site, device_id), assignment, ["sha256"])
             for site, device_id in devices]
    size = repo.signed_bytes_with(FLEET, added)
    if size > MAX_TARGETS_METADATA_BYTES:
        raise RepositoryError(
            f"{repo.dir}: assigning {len(devices)} device(s) makes the fleet role's signed "
            f"metadata about {size} bytes, and kiosks read at most {MAX_TARGETS_METADATA_BYTES} "
            "bytes of it (each assignment takes some 170): nothing was assigned; deploy to "
            "fewer devices, or remove the assignments of devices that are gone")


def unassign(
    repo: FileRepository,
    devices: Sequence[tuple[str, str]],
    restore: Mapping[tuple[str, str], Assignment] | None = None,
    halted: HaltedRelease | None = None,
) -> None:
    """Remove the assignments of ``devices`` (they keep what they run), putting back for those
    in ``restore`` the assignment they had before, in one new version of the fleet role; each
    put back names the ``halted`` rollout and release, if any (``Assignment.halted``)."""
    with repo.locked():
        repo.check_keys(FLEET, *PUBLISHING_ROLES)
        restored = [repo.store_target(
                        assignment.model_copy(update={"halted": halted}).signed_bytes(),
                        assignment_target(*device))
                    for device, assignment in (restore or {}).items()]
        with repo.edit_targets(FLEET) as fleet:
            for site, device_id in devices:
                fleet.targets.pop(assignment_target(site, device_id), None)
            for info in restored:
                fleet.targets[info.path] = info
        repo.publish()


def assignments(
    repo: FileRepository, devices: Collection[tuple[str, str]] | None = None
) -> dict[tuple[str, str], Assignment]:
    """Every signed assignment (or those of ``devices``), keyed by (site, device id);
    RepositoryError for a stored file that is not what the fleet role signed (changed in
    public/targets by hand or by whoever can write there: kiosks would refuse it, status and
    rollback must not believe it)."""
    found = {}
    for path, info in repo.targets(FLEET).targets.items():
        parts = path.split("/")
        if len(parts) != 3:  # devices/{site}/{device}.json, as assign writes them
            raise RepositoryError(f"{repo.dir}: the fleet role lists {path!r}, no device's "
                                  "assignment; it was signed outside `appliance models`")
        _, site, name = parts
        if devices is not None and (site, name.removesuffix(".json")) not in devices:
            continue
        stored = repo.targets_dir / "devices" / site / f"{info.hashes['sha256']}.{name}"
        restore = ("put back the file this repository wrote (a backup), or assign the device "
                   "again")
        raw = read_regular_file(stored, MAX_ASSIGNMENT_BYTES, restore)  # as a kiosk reads it
        if hashlib.sha256(raw).hexdigest() != info.hashes["sha256"]:
            raise RepositoryError(
                f"{stored}: not the assignment the fleet role signed (its SHA-256 differs): it "
                f"was changed outside `appliance models`; {restore}"
            )
        found[(site, name.removesuffix(".json"))] = parse_assignment(raw, path)
    return found


def refresh_timestamp(repo: FileRepository) -> int:
    """Re-sign the timestamp (for a timer: it expires quickly), and the fleet role and snapshot
    once half their validity is gone: their keys are online too, and without a release or a
    rollout nothing else would renew them before kiosks refuse them as expired. Root and
    targets, whose keys live offline, are renewed the same way when their keys are at hand
    (``offline_roles_expiring`` says when they are needed). Returns the timestamp's new
    version. Without the timestamp's keys nothing is signed (renewals no timestamp publishes
    would wait unseen); without the snapshot's, only the timestamp (a renewal of targets or
    fleet that no snapshot lists is unseen too). A renewal that cannot be signed (a key not at
    hand) is raised as RepositoryError only after the timestamp was signed, so kiosks keep a
    fresh one."""
    with repo.locked():
        repo.check_keys(Timestamp.type)
        make_readable_by_all(repo.dir / "public")  # what it publishes, readable by the server
        problems = []
        try:
            repo.check_keys(Snapshot.type)
        except RepositoryError as exc:
            problems.append(f"{exc} (nothing renewed but the timestamp)")
        else:
            problems = _renew_online_roles(repo)
        repo.do_timestamp(force=True)
        if problems:
            raise RepositoryError(f"timestamp signed, but: {'; '.join(problems)}")
        return repo.latest_version(Timestamp.type)


def _renew_online_roles(repo: FileRepository) -> list[str]:
    """Renew root and targets (keys at hand), fleet and snapshot past half their validity;
    what could not be renewed, said (a key file of root or targets that holds no key of its
    role too: the timestamp is signed all the same)."""
    problems = []
    for role in OFFLINE_ROLES:
        try:
            if _past_half_life(repo, role) and _keys_at_hand(repo, role):
                with repo.edit(role):
                    pass  # the same content, signed again (a new version)
        except KeyFileError as exc:
            problems.append(str(exc))
    for renew in (_renew_fleet, _renew_snapshot):
        try:
            renew(repo)
        except RepositoryError as exc:
            problems.append(str(exc))
    return problems


def _renew_fleet(repo: FileRepository) -> None:
    if _past_half_life(repo, FLEET):
        with repo.edit_targets(FLEET):
            pass  # the same assignments, signed again (a new version)


def _renew_snapshot(repo: FileRepository) -> None:
    repo.do_snapshot(force=_past_half_life(repo, Snapshot.type))


def offline_roles_expiring(repo: FileRepository) -> list[str]:
    """What to do about each offline-keyed role (root, targets) past half its validity: the
    timer cannot renew them, and once one expires every kiosk refuses every update."""
    found = []
    for role in (r for r in OFFLINE_ROLES if _past_half_life(repo, r)):
        expires: datetime = repo.open(role).signed.expires
        when = "expired" if expires <= repo.now() else "expires"
        found.append(
            f"{role} metadata {when} {expires.isoformat()} (less than half its validity left) "
            f"and its keys are offline: bring the {role} keys back to {repo.keys_dir / role} "
            f"and run `appliance models repo refresh {repo.dir}` (it renews {role}), then move "
            f"them away again"
        )
    return found


def _keys_at_hand(repo: FileRepository, role: str) -> bool:
    """Whether ``role``'s threshold of keys is here (offline keys are not); KeyFileError for
    a key file that holds no key of the role."""
    try:
        repo.signers(role)
    except KeyFileError:
        raise
    except RepositoryError:
        return False
    return True


def _past_half_life(repo: FileRepository, role: str) -> bool:
    """Whether less than half of ``role``'s validity period is left."""
    expires: datetime = repo.open(role).signed.expires
    return expires - repo.now() < timedelta(seconds=repo.expiry_s[role] / 2)


def describe(repo: FileRepository) -> dict[str, object]:
    """Versions, expiries and key folders of every role (for `repo init` and status)."""
    root = repo.root()
    roles: dict[str, object] = {}
    for role in (Root.type, Targets.type, FLEET, Snapshot.type, Timestamp.type):
        signed = repo.open(role).signed
        roles[role] = {
            "version": signed.version,
            "expires": signed.expires.isoformat(),
            "keys": str(repo.keys_dir / role),
            "threshold": _threshold(repo, role, root),
        }
    return {"repository": str(repo.dir), "serve": str(repo.dir / "public"), "roles": roles}


def _threshold(repo: FileRepository, role: str, root: Root) -> int | None:
    """How many of ``role``'s keys must sign: root sets the top roles', targets delegates the
    fleet role's (it was shown as null)."""
    if role != FLEET:
        return root.roles[role].threshold if role in root.roles else None
    delegations = repo.targets().delegations
    if delegations is None or delegations.roles is None or FLEET not in delegations.roles:
        return None
    return delegations.roles[FLEET].threshold
