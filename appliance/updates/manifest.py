"""What the signed metadata says about a model release and about which device runs what.

A released model is a TUF target ``models/{name}/{version}/{name}-{version}.onnx`` whose
``custom`` metadata is a ``ModelManifest``: name, semantic version, the feature schema it reads,
the device types it runs on and self-test vectors (inputs with the labels and probabilities the
model gave at release). Which model a device should run is a second, tiny target,
``devices/{site}/{device}.json``, holding an ``Assignment``; it is signed by the delegated
``fleet`` role, which may sign nothing but ``devices/*`` (docs/model-updates.md).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

from appliance.transport.payloads import IDENTIFIER_PATTERN

# The feature vector the kiosk measures: the keys, order-free, of appliance.result/1 features.
FEATURE_SCHEMA = "appliance.features/1"
SEMVER = re.compile(r"^(\d{1,6})\.(\d{1,6})\.(\d{1,6})(?:-([0-9A-Za-z.-]{1,40}))?$")
MODELS_DIR = "models"
DEVICES_DIR = "devices"
WITHDRAWN_DIR = "withdrawn"  # one signed record per release taken back (`models yank`)
Device = tuple[str, str]  # a kiosk of the fleet: (site, device id), as its topics name it
MAX_ASSIGNMENT_BYTES = 4096
# The most a kiosk reads of a targets role's metadata (the top-level role and the fleet role,
# which lists one assignment per device, some 170 bytes each: about 30,000 devices): what the
# kiosk's TUF client is given (python-tuf's default), and what the repository signs at most
MAX_TARGETS_METADATA_BYTES = 5_000_000
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
# TUF signs canonical JSON, which has no floats: numbers travel as their shortest decimal text.
DecimalText = Annotated[
    float,
    Field(allow_inf_nan=False),
    PlainSerializer(lambda value: repr(float(value)), return_type=str, when_used="json"),
]


class ManifestError(ValueError):
    """Metadata that does not describe a usable release or assignment; the text says why."""


_Custom = TypeVar("_Custom", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelfTestVector(_Frozen):
    """One input in the model's feature order, with the answer the model gave at release."""

    features: list[DecimalText] = Field(min_length=1, max_length=256)
    label: str = Field(min_length=1, max_length=64)
    probabilities: list[DecimalText] = Field(min_length=1, max_length=64)


class ModelManifest(_Frozen):
    """A release's custom metadata (the ``custom`` field of its TUF target)."""

    name: Name
    version: str = Field(pattern=SEMVER.pattern)
    feature_schema: str = Field(min_length=1, max_length=64)
    device_types: list[Name] = Field(min_length=1, max_length=32)
    self_test: list[SelfTestVector] = Field(min_length=1, max_length=256)
    tolerance: DecimalText = Field(1e-3, gt=0.0, le=0.1, description="Max |p - expected|.")

    def label_shares(self) -> dict[str, float]:
        """The share of each label among the self-test answers."""
        shares: dict[str, float] = {}
        for vector in self.self_test:
            shares[vector.label] = shares.get(vector.label, 0.0) + 1.0 / len(self.self_test)
        return shares


class HaltedRelease(_Frozen):
    """The rollout whose halt put an assignment back, and the release it was rolling out."""

    rollout: str = Field(min_length=1, max_length=64)
    model: Name
    version: str = Field(pattern=SEMVER.pattern)


class Assignment(_Frozen):
    """The model a device should run: the content of ``devices/{site}/{device}.json``.

    ``halted``: the assignment is the one a halt put back (``operations.unassign``); a kiosk
    that serves the halted release by then (it installed it after the halt's last look at the
    fleet) keeps it: a halt takes no kiosk back, only a signed rollback does. Written only when
    set, so every other assignment reads as before."""

    model: Name
    version: str = Field(pattern=SEMVER.pattern)
    target: str = Field(min_length=1, max_length=256)
    decision: Literal["deploy", "rollback"] = "deploy"
    rollout: str = Field(min_length=1, max_length=64)
    halted: HaltedRelease | None = None

    def signed_bytes(self) -> bytes:
        """The file the fleet role signs (a field not set is left out)."""
        return self.model_dump_json(exclude_none=True).encode()


class Withdrawal(_Frozen):
    """A release taken back (``appliance models yank``): the custom metadata of the target
    ``withdrawn/{name}/{version}.json``, which the targets role lists in the place of the
    release's own target. Kiosks never install the release afterwards, and one serving that
    file (``sha256``) goes back to the newest release it may still run; the version is never
    released again (a rollback decision could otherwise name it anew)."""

    model: Name
    version: str = Field(pattern=SEMVER.pattern)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    reason: str = Field(min_length=1, max_length=1000)
    at: str = Field(min_length=1, max_length=64)  # when, ISO 8601 UTC
    by: str = Field(min_length=1, max_length=200)  # user@host

    def signed_bytes(self) -> bytes:
        """The record's file (its content is also the target's custom metadata)."""
        return self.model_dump_json().encode()

    def said(self) -> str:
        """One line: when, by whom and why."""
        return f"withdrawn {self.at} by {self.by}: {self.reason}"


def model_target(name: str, version: str) -> str:
    """The target path of a release."""
    return f"{MODELS_DIR}/{name}/{version}/{name}-{version}.onnx"


def withdrawn_target(name: str, version: str) -> str:
    """The target path of the record that a release was withdrawn."""
    return f"{WITHDRAWN_DIR}/{name}/{version}.json"


def parse_withdrawal(custom: object, where: str) -> Withdrawal:
    """The withdrawal record in a target's custom metadata; ManifestError names the target."""
    return _custom_metadata(Withdrawal, custom, where)


def assignment_target(site: str, device_id: str) -> str:
    """The target path of one device's assignment."""
    return f"{DEVICES_DIR}/{site}/{device_id}.json"


def check_target_path(path: str) -> str:
    """Refuse a target name that could leave the repository or the install folder."""
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ManifestError(
            f"target name {path!r} refused: it must be a relative path without '..', '.', "
            f"empty parts or backslashes"
        )
    return path


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """A sort key: numeric major.minor.patch, a pre-release before its release."""
    match = SEMVER.match(version)
    if match is None:
        raise ManifestError(f"version {version!r} is not a semantic version like 1.2.3")
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), 0 if pre else 1, pre or ""


def parse_manifest(custom: object, where: str) -> ModelManifest:
    """The manifest in a target's custom metadata; ManifestError names the target."""
    return _custom_metadata(ModelManifest, custom, where)


def _custom_metadata(kind: type[_Custom], custom: object, where: str) -> _Custom:
    """``custom`` (a target's custom metadata) read as ``kind``; ManifestError names the
    target and the first key that is wrong."""
    try:
        return kind.model_validate(custom)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ManifestError(f"{where}: custom metadata {key}: {first['msg']}") from exc


def parse_assignment(raw: bytes, where: str) -> Assignment:
    """An assignment file's content; ManifestError names the target."""
    if len(raw) > MAX_ASSIGNMENT_BYTES:
        raise ManifestError(f"{where}: {len(raw)} bytes; an assignment is a small JSON object")
    try:
        assignment = Assignment.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ManifestError(f"{where}: {key}: {first['msg']}") from exc
    check_target_path(assignment.target)
    return assignment
