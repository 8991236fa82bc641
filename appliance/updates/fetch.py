"""The kiosk's side of TUF: refresh signed metadata and download what it names for this device.

Every check builds a fresh ``tuf.ngclient.Updater`` (one refresh per instance, as ngclient
requires) over the same local metadata folder, bootstrapped from the configured trusted root.
ngclient does the verification (signatures and thresholds, versions never going back, expiry,
snapshot/targets consistency, lengths and hashes); this module only names what to look up and
turns tuf's exceptions into reasons a person can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig

from appliance.boundedread import NotRegularFileError, TooLargeError, read_bounded
from appliance.config import UpdatesConfig
from appliance.updates.install import discard
from appliance.updates.manifest import (
    MAX_ASSIGNMENT_BYTES,
    MAX_TARGETS_METADATA_BYTES,
    MODELS_DIR,
    Assignment,
    ManifestError,
    ModelManifest,
    Withdrawal,
    assignment_target,
    check_target_path,
    parse_assignment,
    parse_manifest,
    parse_withdrawal,
    semver_key,
    withdrawn_target,
)
from appliance.updates.transfer import DeadlineFetcher, TransferCutError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_MODEL_BYTES = 50 * 1024 * 1024  # the runner's limit too (inference/runner.py)
RETRY_PAUSE_S = 0.5
# A cut transfer surfaces as urllib3's error: ngclient's fetcher does not wrap it.
_TRANSFER_ERRORS = (tuf_errors.DownloadError, OSError, urllib3.exceptions.HTTPError)
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (tuf_errors.UnsignedMetadataError, "signature check failed"),
    (tuf_errors.ExpiredMetadataError, "metadata expired (a frozen or stale repository)"),
    (tuf_errors.BadVersionNumberError, "metadata version check failed (rollback or mix)"),
    (tuf_errors.LengthOrHashMismatchError, "download does not match its signed length/hash"),
    (tuf_errors.DownloadLengthMismatchError, "download longer than its signed length"),
    (tuf_errors.DownloadError, "download failed"),
    (tuf_errors.RepositoryError, "repository metadata refused"),
)


MAX_ROOT_BYTES = 1024 * 1024  # a root of 32 keys per role is a few KiB


class DuplicateKeyError(tuf_errors.RepositoryError):
    """Metadata that lists one key under two key ids in a role (see ``one_key_twice``)."""


def one_key_twice(signed: object) -> str | None:
    """What is wrong with ``signed`` (root, or targets with delegations) where one of its roles
    lists the same public key under two key ids, or None. python-tuf counts the key ids that
    signed, not the keys: one signature filed under both ids met a threshold of 2, so a role
    of one key read as signed by two. ``repo init`` names each key by its own hash; only a
    root (or targets) signer could write such metadata, and a kiosk refuses it."""
    if isinstance(signed, Root):
        keys, roles = signed.keys, {name: role.keyids for name, role in signed.roles.items()}
    elif isinstance(signed, Targets) and signed.delegations is not None:
        keys = signed.delegations.keys
        roles = {name: role.keyids for name, role in (signed.delegations.roles or {}).items()}
    else:
        return None
    for name, keyids in roles.items():
        seen: dict[tuple[str, str], str] = {}
        for keyid in keyids:
            key = keys.get(keyid)
            public = (key.keytype, str(key.keyval.get("public"))) if key is not None else None
            if public is None:
                continue
            if public in seen:
                return (f"{signed.type} metadata version {signed.version} lists one key of role "
                        f"{name!r} under two key ids ({seen[public][:12]}..., {keyid[:12]}...): "
                        f"one signature would count twice toward its threshold of "
                        f"{_threshold(signed, name)}")
            seen[public] = keyid
    return None


def _threshold(signed: Root | Targets, role: str) -> int:
    if isinstance(signed, Root):
        return signed.roles[role].threshold
    assert signed.delegations is not None and signed.delegations.roles is not None  # noqa: PT018
    return signed.delegations.roles[role].threshold


def _read_root_file(path: str) -> bytes:
    """The bytes of the regular file ``path``, at most MAX_ROOT_BYTES (``read_bounded``);
    ValueError otherwise (a pipe would wait for a writer for ever, a link to /dev/zero never
    end; its size says 0)."""
    try:
        return read_bounded(path, MAX_ROOT_BYTES)
    except NotRegularFileError:
        raise ValueError("not a regular file: a pipe, a device or a folder") from None
    except TooLargeError:
        raise ValueError(f"{MAX_ROOT_BYTES} bytes at most") from None


def read_trusted_root(path: str) -> bytes:
    """The root metadata file a kiosk starts trusting from (``updates.trusted_root``);
    ValueError naming the key when the kiosk could not start from it."""
    try:
        raw = _read_root_file(path)
        signed = Metadata.from_bytes(raw).signed
    except OSError as exc:
        raise ValueError(f"updates.trusted_root: {path}: {exc.strerror or exc}") from exc
    except (ValueError, DeserializationError) as exc:
        raise ValueError(f"updates.trusted_root: {path}: not TUF root metadata ({exc}); copy "
                         f"the repository's public/metadata/1.root.json") from exc
    if not isinstance(signed, Root):
        raise ValueError(f"updates.trusted_root: {path}: holds {signed.type} metadata, not "
                         f"root; copy the repository's public/metadata/1.root.json")
    if (twice := one_key_twice(signed)) is not None:
        raise ValueError(f"updates.trusted_root: {path}: {twice}; refused")
    return raw


class UpdateRefusedError(Exception):
    """A step of the update that must not go on; ``reason`` is what the kiosk reports.

    ``permanent``: the release itself is bad (incompatible, fails its self-test), so the kiosk
    does not try it again; a transfer or metadata failure is tried again at the next check.
    """

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:1000]
        self.permanent = permanent


def reason_for(exc: BaseException) -> str:
    """A reportable reason for a tuf (or transfer) failure."""
    for kind, text in _REASONS:
        if isinstance(exc, kind):
            return f"{text}: {type(exc).__name__}: {exc}"
    return f"download failed: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Offer:
    """What signed metadata names for this device: the assignment and its release."""

    assignment: Assignment
    manifest: ModelManifest
    target: TargetFile

    @property
    def sha256(self) -> str:
        """The release file's signed SHA-256."""
        return str(self.target.hashes["sha256"])


@dataclass(frozen=True)
class Look:
    """One check's refreshed metadata: the offer signed for this device (None: nothing, or a
    withdrawn release), its assignment, and the withdrawal of the release it names, if any."""

    updater: Updater
    offer: Offer | None
    assignment: Assignment | None = None
    withdrawn: Withdrawal | None = None


class RepositoryClient:
    """Looks up and downloads this device's assigned model through tuf's ngclient."""

    def __init__(self, config: UpdatesConfig, site: str, device_id: str, state_dir: Path) -> None:
        if config.url is None or config.trusted_root is None:
            raise ValueError("updates.url and updates.trusted_root are needed for updates")
        self.config = config
        self.assignment_path = assignment_target(site, device_id)
        self.metadata_dir = state_dir / "updates" / "metadata"
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = config.url.rstrip("/")
        self._trusted_root = read_trusted_root(config.trusted_root)

    def _updater(self) -> Updater:
        return Updater(
            str(self.metadata_dir),
            f"{self.base_url}/metadata/",
            target_base_url=f"{self.base_url}/targets/",
            fetcher=DeadlineFetcher(self.config.download_timeout_s,
                                    self.config.download_deadline_s, "appliance-kiosk"),
            config=UpdaterConfig(targets_max_length=MAX_TARGETS_METADATA_BYTES),
            bootstrap=self._trusted_root,
        )

    def check(self) -> tuple[Updater, Offer] | None:
        """Refresh metadata; the offer signed for this device, or None when nothing is (a
        withdrawn release assigned: UpdateRefusedError saying so)."""
        look = self.look()
        if look.withdrawn is not None:
            raise UpdateRefusedError(f"{look.withdrawn.model} {look.withdrawn.version} was "
                                     f"{look.withdrawn.said()}")
        return None if look.offer is None else (look.updater, look.offer)

    def look(self) -> Look:
        """Refresh metadata; what it signs for this device (``Look``)."""
        try:
            updater, info = self._refresh()
            if info is None:
                return Look(updater, None)
            if info.length > MAX_ASSIGNMENT_BYTES:
                raise UpdateRefusedError(f"{self.assignment_path}: {info.length} bytes, too big")
            raw = self._download_bytes(updater, info)
            assignment = parse_assignment(raw, self.assignment_path)
            target = updater.get_targetinfo(check_target_path(assignment.target))
            withdrawn = None if target is not None else self.withdrawal(
                updater, assignment.model, assignment.version)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as exc:
            raise UpdateRefusedError(reason_for(exc)) from exc
        except ManifestError as exc:
            raise UpdateRefusedError(str(exc)) from exc
        if withdrawn is not None:
            return Look(updater, None, assignment, withdrawn)
        if target is None:
            raise UpdateRefusedError(f"{assignment.target}: assigned but not a signed release")
        try:
            manifest = parse_manifest(target.custom, assignment.target)
        except ManifestError as exc:
            raise UpdateRefusedError(str(exc)) from exc
        return Look(updater, Offer(assignment, manifest, target), assignment)

    def withdrawal(self, updater: Updater, name: str, version: str) -> Withdrawal | None:
        """The signed record that release ``name`` ``version`` was withdrawn, or None (a name
        no target path can hold is none: nothing signed names it). ManifestError for a record
        signed that is none."""
        try:
            path = check_target_path(withdrawn_target(name, version))
        except ManifestError:
            return None
        info = updater.get_targetinfo(path)
        if info is None:
            return None
        withdrawal = parse_withdrawal(info.custom, path)
        if (withdrawal.model, withdrawal.version) != (name, version):
            raise ManifestError(f"{path}: the record names {withdrawal.model} "
                                f"{withdrawal.version}")
        return withdrawal

    def older_releases(self, updater: Updater, name: str, below: str) -> list[Offer]:
        """The releases of ``name`` older than ``below`` that the refreshed targets metadata
        lists, newest first, each as an Offer whose assignment is a rollback to it (what a
        kiosk running a withdrawn release may go back to). The paths are read from the
        targets metadata ngclient verified and stored in the metadata folder; each is looked
        up again through the updater, which answers only what it verified."""
        try:
            raw = read_bounded(self.metadata_dir / "targets.json", MAX_TARGETS_METADATA_BYTES)
            signed = Metadata.from_bytes(raw).signed
        except (OSError, ValueError, DeserializationError):
            return []
        listed: dict[str, TargetFile] = signed.targets if isinstance(signed, Targets) else {}
        prefix, found = f"{MODELS_DIR}/{name}/", []
        for path in listed:
            target = updater.get_targetinfo(path) if path.startswith(prefix) else None
            if target is None:
                continue
            try:
                manifest = parse_manifest(target.custom, path)
                older = manifest.name == name and semver_key(manifest.version) < semver_key(below)
            except ManifestError:
                continue
            if older:
                assignment = Assignment(model=name, version=manifest.version, target=path,
                                        decision="rollback", rollout="withdrawn")
                found.append(Offer(assignment, manifest, target))
        return sorted(found, key=lambda offer: semver_key(offer.manifest.version), reverse=True)

    def _refresh(self) -> tuple[Updater, TargetFile | None]:
        """A refreshed Updater and this device's assignment's target, if one is signed; tried
        again as a download is (``_tried``), each time with a fresh Updater (ngclient refreshes
        once an instance)."""
        def refreshed() -> tuple[Updater, TargetFile | None]:
            updater = self._updater()
            updater.refresh()
            self._check_keys_distinct()
            return updater, updater.get_targetinfo(self.assignment_path)

        return self._tried(refreshed, "metadata refresh")

    def _check_keys_distinct(self) -> None:
        """DuplicateKeyError where a root the refresh went through (each kept in the metadata
        folder's root_history), or the top-level targets metadata, lists one key twice in a
        role (``one_key_twice``): nothing it signed is acted on, at this check or any later
        one (a later root is signed under that one's forged threshold too), until the kiosk
        starts again from a trusted root without it and its metadata folder cleared. ngclient
        trusts such a root as it reads it; this looks at what it kept, before any target is
        read."""
        files = sorted((self.metadata_dir / "root_history").glob("*.root.json"))
        files.append(self.metadata_dir / "targets.json")
        for path in files:
            try:
                signed = Metadata.from_bytes(read_bounded(path, MAX_TARGETS_METADATA_BYTES)).signed
            except (OSError, ValueError, DeserializationError):
                continue  # none kept (no delegations read yet), or not ngclient's to vouch for
            if (twice := one_key_twice(signed)) is not None:
                raise DuplicateKeyError(twice)

    def _download_bytes(self, updater: Updater, info: TargetFile) -> bytes:
        path = self.metadata_dir / ".assignment.part"
        self._download(updater, info, path)
        return path.read_bytes()

    def download(self, updater: Updater, offer: Offer, dest: Path) -> None:
        """Download the offered model to ``dest`` (streamed, bounded, retried, verified)."""
        if offer.target.length > MAX_MODEL_BYTES:
            raise UpdateRefusedError(
                f"{offer.assignment.target}: signed length {offer.target.length} bytes exceeds "
                f"the kiosk's {MAX_MODEL_BYTES}-byte limit"
            )
        try:
            self._download(updater, offer.target, dest)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as exc:
            discard(dest)
            raise UpdateRefusedError(reason_for(exc)) from exc

    def _download(self, updater: Updater, info: TargetFile, dest: Path) -> None:
        """ngclient's download, tried again as ``_tried`` says."""
        self._tried(lambda: updater.download_target(info, str(dest)), f"download of {info.path}")

    def _tried(self, action: Callable[[], T], what: str) -> T:
        """``action``'s result, tried ``download_tries`` times on transfer failures only."""
        tries, attempt = self.config.download_tries, 1
        while True:
            try:
                return action()
            except tuf_errors.RepositoryError:
                raise  # verified and refused: trying again cannot make it right
            except _TRANSFER_ERRORS as exc:
                if attempt == tries or isinstance(exc, tuf_errors.DownloadLengthMismatchError):
                    raise _as_download_error(exc, attempt) from exc
                log.warning("%s failed (%s); try %d of %d", what, exc, attempt + 1, tries)
                time.sleep(RETRY_PAUSE_S * attempt)
                attempt += 1


def _as_download_error(exc: BaseException, attempts: int) -> tuf_errors.DownloadError:
    if isinstance(exc, tuf_errors.DownloadError) and not isinstance(exc, TransferCutError):
        return exc
    return tuf_errors.DownloadError(
        f"transfer broke off after {attempts} tries ({type(exc).__name__}: {exc})"
    )
