"""The back office's TUF model repository: static files in a folder, signed with python-tuf.

Layout of the repository folder DIR (docs/model-updates.md):

- ``public/metadata/``: ``N.root.json``, ``N.targets.json``, ``N.fleet.json``,
  ``N.snapshot.json`` (consistent snapshots) and ``timestamp.json``; ``public/targets/``: the
  model files and device assignments, each stored as ``{sha256}.{name}``. Only ``public/`` is
  served (any static web server or object store can serve it).
- ``keys/{role}/{keyid}.pem``: Ed25519 private keys (read and made in ``repokeys``). The root
  keys sign only when the root changes; move ``keys/root`` offline after ``repo init``.
- ``settings.json``: expiry per role.

``FileRepository`` implements python-tuf's ``Repository`` (open/close), so version bumps,
snapshot and timestamp bookkeeping come from tuf itself (``do_snapshot``, ``do_timestamp``).
Its files are read, written and locked through ``repofiles``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository

from appliance import safejson
from appliance.updates.defaults import DEFAULT_EXPIRY_S, FLEET, ROLES
from appliance.updates.manifest import MAX_TARGETS_METADATA_BYTES
from appliance.updates.repofiles import (
    PUBLIC_MODE,
    RepositoryError,
    held_alone,
    holds,
    lock_file,
    make_readable_by_all,
    read_regular_file,
    write_atomically,
)
from appliance.updates.repokeys import key_file_signer, sslib_key

MAX_EXPIRY_S = 10 * 365 * 86400  # longer is a typo, and soon past the last date Python holds
SETTINGS_SHAPE = '{"expiry_s": {ROLE: SECONDS, ...}}'
# far above any metadata a kiosk takes (python-tuf's client: at most 5 MB of targets metadata)
MAX_METADATA_BYTES = 64 * 1024 * 1024
MAX_SETTINGS_BYTES = 64 * 1024  # `repo init` writes about 100 bytes
_SERIALIZER = JSONSerializer(compact=True)


class FileRepository(Repository):
    """A TUF repository kept as files under ``root_dir`` (see the module docstring)."""

    def __init__(self, root_dir: str | Path) -> None:
        self.dir = Path(root_dir)
        self.metadata_dir = self.dir / "public" / "metadata"
        self.targets_dir = self.dir / "public" / "targets"
        self.keys_dir = self.dir / "keys"
        settings = self.dir / "settings.json"
        self.expiry_s = dict(DEFAULT_EXPIRY_S)
        if os.path.lexists(settings):  # anything there but the file init wrote is refused
            self.expiry_s.update(_read_expiries(settings))

    def now(self) -> datetime:
        """The time this repository signs expiries from and judges them against (UTC): the
        one place it reads the clock, so that a test can move it rather than sleep."""
        return datetime.now(UTC)

    # -- python-tuf's Repository interface -------------------------------------------------

    def open(self, role: str) -> Metadata[Any]:
        """The newest stored metadata of ``role``, or a new version 1 when there is none."""
        version = self.latest_version(role)
        if version == 0:
            return Metadata(_new_signed(role))
        path = self._metadata_path(role, version)
        md = _read(path)
        try:  # never edit and re-sign what was changed outside this class: it would launder it
            self._delegator(role, md).verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise RepositoryError(
                f"{path}: its signatures do not verify ({exc}): it was changed outside "
                f"`appliance models`; nothing was signed. Put back the file this repository "
                f"signed (a backup) before anything signs again"
            ) from exc
        return md

    def _delegator(self, role: str, md: Metadata[Any]) -> Root | Targets:
        """The metadata whose keys and threshold ``role`` is checked against."""
        if role == Root.type:
            return md.signed  # type: ignore[no-any-return]
        return self.targets() if role == FLEET else self.root()

    def close(self, role: str, md: Metadata[Any]) -> None:
        """Sign a new version of ``role`` with every key we hold and store it."""
        latest = self.latest_version(role)
        if latest:
            md.signed.version = latest + 1
        md.signed.expires = self.now().replace(microsecond=0) + timedelta(
            seconds=self.expiry_s[role]
        )
        md.signatures.clear()
        for signer in self.signers(role, md.signed if role == Root.type else None):
            md.sign(signer, append=True)
        data = md.to_bytes(_SERIALIZER)
        if role in (Targets.type, FLEET) and len(data) > MAX_TARGETS_METADATA_BYTES:
            raise RepositoryError(
                f"{self.dir}: version {md.signed.version} of role '{role}' would be "
                f"{len(data)} bytes, and kiosks read at most {MAX_TARGETS_METADATA_BYTES} "
                "bytes of it; nothing was written")
        write_atomically(self._metadata_path(role, md.signed.version), data, PUBLIC_MODE)
        if role == Root.type:
            write_atomically(self.metadata_dir / "root.json", data, PUBLIC_MODE)

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        """Versions of the targets metadata that snapshot lists."""
        roles = (Targets.type, FLEET)
        return {f"{role}.json": MetaFile(self.latest_version(role)) for role in roles}

    @property
    def snapshot_info(self) -> MetaFile:
        """The snapshot version that timestamp names."""
        return MetaFile(self.latest_version(Snapshot.type))

    # -- files and keys --------------------------------------------------------------------

    def identity(self) -> str:
        """What names this repository wherever its folder is mounted: the SHA-256 of its first
        root metadata (what its kiosks trust as ``updates.trusted_root``; it never changes)."""
        first_root = read_regular_file(self.metadata_dir / "1.root.json", MAX_METADATA_BYTES)
        return hashlib.sha256(first_root).hexdigest()

    def _metadata_path(self, role: str, version: int) -> Path:
        if role == Timestamp.type:
            return self.metadata_dir / "timestamp.json"
        return self.metadata_dir / f"{version}.{role}.json"

    def latest_version(self, role: str) -> int:
        """The newest stored version of ``role`` (0 when none)."""
        if role == Timestamp.type:
            path = self.metadata_dir / "timestamp.json"
            return _read(path).signed.version if os.path.lexists(path) else 0
        versions = [
            int(p.name.split(".", 1)[0])
            for p in self.metadata_dir.glob(f"*.{role}.json")
            if p.name.split(".", 1)[0].isdigit()
        ]
        return max(versions, default=0)

    def check_keys(self, *roles: str) -> None:
        """RepositoryError naming the first of ``roles`` whose threshold of keys is not at
        hand: an operation that signs several roles asks first, so it writes nothing (not a
        model file in public/, not one role signed and the next refused)."""
        for role in roles:
            self.signers(role)

    def signers(self, role: str, new_root: Any = None) -> list[Signer]:
        """Signers for ``role`` from ``keys/{role}``; RepositoryError below its threshold."""
        public, threshold = self._public_keys(role, new_root)
        signers: list[Signer] = []
        for keyid, key in public.items():
            pem = self.keys_dir / role / f"{keyid}.pem"
            if os.path.lexists(pem):  # anything there but the key init wrote is refused
                signers.append(key_file_signer(pem, key))
        if len(signers) < threshold:
            raise RepositoryError(
                f"{self.keys_dir / role}: {len(signers)} private key(s) of role {role!r} here, "
                f"its threshold is {threshold}; bring the offline key(s) back to sign {role} "
                f"metadata"
            )
        return signers

    def _public_keys(self, role: str, new_root: Any = None) -> tuple[dict[str, SSlibKey], int]:
        if role == FLEET:
            delegations = self.targets().delegations
            if delegations is None or delegations.roles is None:
                raise RepositoryError(f"{self.dir}: targets delegates no {FLEET} role")
            delegated = delegations.roles[FLEET]
            keys = {k: sslib_key(delegations.keys[k]) for k in delegated.keyids}
            return keys, delegated.threshold
        root = new_root if isinstance(new_root, Root) else self.root()
        keys = {k: sslib_key(root.keys[k]) for k in root.roles[role].keyids}
        return keys, root.roles[role].threshold

    def add_target(
        self, role: str, local: Path | bytes, target_path: str, custom: Any = None
    ) -> TargetFile:
        """Copy ``local`` (a file, or its content read already) in as ``target_path``
        (hash-prefixed) and list it in ``role``."""
        data = local if isinstance(local, bytes) else local.read_bytes()  # at most a model's 50 MB
        return self.add_targets(role, data, [target_path], custom)[0]

    def add_targets(
        self, role: str, data: bytes, target_paths: Sequence[str], custom: Any = None
    ) -> list[TargetFile]:
        """Store ``data`` as each of ``target_paths`` (hash-prefixed), then list them all in
        one new version of ``role``: kiosks fetch one version per change, and a stop half-way
        (killed, disk full) leaves the version before, never some of the paths listed."""
        infos = [self.store_target(data, path, custom) for path in target_paths]
        with self.edit_targets(role) as targets:
            for info in infos:
                targets.targets[info.path] = info
        return infos

    def store_target(self, data: bytes, target_path: str, custom: Any = None) -> TargetFile:
        """Write ``data`` where ``target_path`` is served (whole on disk before the metadata
        that names it); its TargetFile."""
        info = TargetFile.from_data(target_path, data, ["sha256"])
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        directory, _, name = target_path.rpartition("/")
        stored = self.targets_dir / directory / f"{info.hashes['sha256']}.{name}"
        if not holds(stored, data):
            write_atomically(stored, data, PUBLIC_MODE)
        return info

    def signed_bytes_with(self, role: str, added: Sequence[TargetFile]) -> int:
        """About how large the next version of ``role`` is with ``added`` listed too (as many
        signatures as the current one holds), without signing or writing anything."""
        md = self.open(role)
        for info in added:
            md.signed.targets[info.path] = info
        return len(md.to_bytes(_SERIALIZER))

    def publish(self) -> bool:
        """New snapshot and timestamp versions for what changed (python-tuf's bookkeeping);
        False when both were current already. Published files written before they were made
        readable by all are made so first (``make_readable_by_all``)."""
        make_readable_by_all(self.dir / "public")
        snapshot_changed, _ = self.do_snapshot()
        timestamp_changed, _ = self.do_timestamp()
        return snapshot_changed or timestamp_changed

    def unfinished(self) -> RepositoryError | None:
        """The error for a folder whose ``repo init`` stopped before it signed the timestamp
        (killed, disk full): nothing of it was published, and its keys sign for nobody. One
        that signed more since has lost its timestamp: that error says to put it back."""
        timestamp = self.metadata_dir / "timestamp.json"
        if os.path.lexists(timestamp):
            return None  # whatever is there is read as metadata, and refused when it is none
        if any(self.latest_version(role) > 1 for role in (Snapshot.type, Targets.type, FLEET)):
            return RepositoryError(  # signed since its init: kiosks trust it, keep its keys
                f"{timestamp}: missing from a repository that has published (it was removed "
                f"outside `appliance models`): put it back from a backup; do not remove "
                f"{self.dir}, whose keys its kiosks trust"
            )
        return RepositoryError(
            f"{self.dir}: an unfinished model repository (its init stopped before it signed "
            f"{self.metadata_dir / 'timestamp.json'}; nothing of it was published): remove "
            f"{self.dir} and run `appliance models repo init {self.dir}` again"
        )

    @contextlib.contextmanager
    def rolling_out(self, command: str, advice: str = "wait until it ends") -> Iterator[None]:
        """Hold the repository's rollout lock for a whole deploy, rollback, halt or yank
        (``command``, recorded in the lock file for a refusal to name; ``advice``, what to do
        instead, said in it): two at once would overwrite each other's device assignments, one
        that halts withdraws them, and a deploy would go on assigning a release being yanked.

        Two files: deploys refuse each other on ``.rollout.lock``; ``.rollout.busy``, held too,
        is the one ``rollout_held`` looks at. Its look takes a shared lock for an instant, so a
        deploy waits that instant for it, where a look at ``.rollout.lock`` itself would refuse
        a deploy starting in that instant as if another deploy ran."""
        busy = (f"{self.dir}: another `appliance models deploy`, `rollback`, `halt` or "
                f"`yank` is running on this repository; {advice}")
        with (held_alone(self.dir / ".rollout.lock", busy, f"`appliance models {command}`"),
              lock_file(self.dir / ".rollout.busy") as looked_at):
            fcntl.flock(looked_at, fcntl.LOCK_EX)  # only a status's look holds it, an instant
            yield

    def rollout_held(self) -> bool:
        """Whether a deploy or rollback holds the rollout lock now (a killed one holds none);
        writes nothing, creates no lock file."""
        try:
            lock = lock_file(self.dir / ".rollout.busy", create=False)
        except FileNotFoundError:
            return False
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False

    @contextlib.contextmanager
    def locked(self, *, creating: bool = False) -> Iterator[FileRepository]:
        """Hold the repository's write lock (one writer at a time: CLI, timer, rollout);
        ``creating``: for ``repo init``, which may hold it before the repository is whole."""
        if not (self.dir / "settings.json").is_file():
            raise RepositoryError(
                f"{self.dir}: not a model repository (no settings.json); run "
                f"`appliance models repo init {self.dir}` first"
            )
        unfinished = None if creating else self.unfinished()
        if unfinished is not None:
            raise unfinished
        with lock_file(self.dir / ".lock") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self


def _read(path: Path) -> Metadata[Any]:
    """Stored metadata; RepositoryError naming the file when it is no TUF metadata."""
    restore = ("it was changed outside `appliance models`; put back the file this repository "
               "signed (a backup)")
    try:
        return Metadata.from_bytes(read_regular_file(path, MAX_METADATA_BYTES, restore))
    except DeserializationError as exc:
        raise RepositoryError(f"{path}: not readable TUF metadata ({exc}): {restore}") from exc


def _read_expiries(settings: Path) -> dict[str, int]:
    """The ``expiry_s`` of a repository's settings file; RepositoryError naming the file and
    what is wrong with it (damaged, edited by hand), before anything is signed with it."""
    restore = f"put back the file `appliance models repo init` wrote ({SETTINGS_SHAPE})"
    try:
        data = safejson.loads(read_regular_file(settings, MAX_SETTINGS_BYTES, restore))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON, nested too deep
        raise RepositoryError(f"{settings}: not readable as JSON ({exc}); {restore}") from exc
    expiries = data.get("expiry_s") if isinstance(data, dict) else None
    if not isinstance(expiries, dict):
        raise RepositoryError(f"{settings}: no expiry_s object in it; {restore}")
    for role, seconds in expiries.items():
        usable = type(seconds) is int and 0 < seconds <= MAX_EXPIRY_S
        if role not in ROLES or not usable:
            raise RepositoryError(
                f"{settings}: expiry_s {role!r}: {seconds!r}; each of {', '.join(ROLES)} takes "
                f"whole seconds, more than 0 and at most {MAX_EXPIRY_S} (10 years)"
            )
    return expiries


def _new_signed(role: str) -> Root | Targets | Snapshot | Timestamp:
    if role == Root.type:
        return Root(consistent_snapshot=True)
    if role == Snapshot.type:
        return Snapshot()
    if role == Timestamp.type:
        return Timestamp()
    return Targets()


def fleet_delegation(keys: list[SSlibKey], threshold: int) -> Delegations:
    """Targets delegates ``devices/{site}/{device}.json`` (and nothing else) to the fleet role."""
    role = DelegatedRole(
        FLEET, [k.keyid for k in keys], threshold, terminating=True, paths=["devices/*/*"]
    )
    return Delegations({k.keyid: k for k in keys}, roles={FLEET: role})
