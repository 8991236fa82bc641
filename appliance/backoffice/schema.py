"""The back-office tables, their versioned migrations and the row form of each payload.

One schema serves SQLite and PostgreSQL: the few type names that differ are placeholders
(``{id}``, ``{real}``, ``{blob}``) filled in per dialect, as are the one expression that reads a
stored payload's JSON (``{payload_not_validated}``, migration 6) and a dead letter's size in
bytes (``{letter_size}``, migrations 14 and 15). Times are stored as UTC ISO 8601
text with a fixed width (``2026-01-02T03:04:05.123456Z``), so they sort and compare as text in
both databases. A new migration is appended, never edited: stores remember the versions they ran.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from appliance import safejson
from appliance.transport.payloads import FEATURE_KEYS, Identifier, Result, Status

RESULT_META_COLUMNS = (
    "measurement_id",
    "device_id",
    "site",
    "captured_at",
    "received_at",
    "software_version",
    "quality_verdict",
    "model_name",
    "model_version",
    "label",
    "subject_id",
    "age_band",
)
# the features outside the validated range (docs/measurement.md), comma-separated ('' for none)
NOT_VALIDATED_COLUMN = "not_validated"
RESULT_COLUMNS = (*RESULT_META_COLUMNS, *FEATURE_KEYS, NOT_VALIDATED_COLUMN, "payload")

_FEATURE_VALUES = attrgetter(*FEATURE_KEYS)  # one C call per row instead of 16 getattr

DEVICE_COLUMNS = (
    "site",
    "device_id",
    "state",
    "last_seen",
    "status_at",
    "software_version",
    "model_name",
    "model_version",
    "camera",
    "outbox_depth",
    "dropped",
    "outbox_oldest_age_s",
)

# what one dead letter counts against ``dead_letter_max_total_bytes``: the bytes of its
# payload, reason and topic (UTF-8), as each database measures them (the one definition the
# store's running total uses). LENGTH of text counts characters in both databases, so a topic
# or reason of multibyte characters counted less than it holds (migration 15 recounts)
_LETTER_SIZE_SQL = {
    False: "LENGTH(CAST(payload AS BLOB)) + LENGTH(CAST(reason AS BLOB)) + "
           "LENGTH(CAST(topic AS BLOB))",  # SQLite: a text cast to BLOB is its UTF-8 bytes
    True: "OCTET_LENGTH(payload) + OCTET_LENGTH(reason) + OCTET_LENGTH(topic)",
}


def letter_size_sql(postgres: bool) -> str:
    """The SQL expression of a dead letter's size in bytes (PostgreSQL's or SQLite's)."""
    return _LETTER_SIZE_SQL[postgres]


_FEATURE_DDL = ",\n".join(
    f"    {key} {'BIGINT' if key == 'pore_count' else '{real}'} NOT NULL" for key in FEATURE_KEYS
)

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "results, dead letters, devices",
        f"""
CREATE TABLE results (
    measurement_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    site TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    software_version TEXT NOT NULL,
    quality_verdict TEXT NOT NULL,
    model_name TEXT,
    model_version TEXT,
    label TEXT,
    subject_id TEXT,
    age_band TEXT,
{_FEATURE_DDL},
    payload TEXT NOT NULL
);
CREATE TABLE dead_letters (
    id {{id}},
    received_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload_bytes BIGINT NOT NULL,
    payload {{blob}} NOT NULL
);
CREATE TABLE devices (
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    state TEXT,
    last_seen TEXT NOT NULL,
    status_at TEXT,
    software_version TEXT,
    model_name TEXT,
    model_version TEXT,
    camera TEXT,
    outbox_depth BIGINT,
    dropped BIGINT,
    PRIMARY KEY (site, device_id)
);
""",
    ),
    (
        2,
        "indexes for device/time queries and subject repeats",
        """
CREATE INDEX results_device_time ON results (device_id, captured_at);
CREATE INDEX results_captured_at ON results (captured_at);
CREATE INDEX results_subject ON results (subject_id);
""",
    ),
    (
        3,
        "console: keyset indexes per filter, users, API tokens, login sessions",
        """
CREATE INDEX results_time_id ON results (captured_at, measurement_id);
CREATE INDEX results_site_time_id ON results (site, captured_at, measurement_id);
CREATE INDEX results_label_time_id ON results (label, captured_at, measurement_id);
CREATE INDEX results_device_time_id ON results (device_id, captured_at, measurement_id);
CREATE INDEX results_age_band ON results (age_band);
CREATE TABLE console_users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE console_tokens (
    token_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE TABLE console_sessions (
    session_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
""",
    ),
    (
        4,
        "model rollouts and where each device stands (appliance/updates/rollout.py)",
        """
CREATE TABLE rollouts (
    rollout_id TEXT PRIMARY KEY,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    decision TEXT NOT NULL,
    scope TEXT NOT NULL,
    canaries BIGINT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE rollout_devices (
    rollout_id TEXT NOT NULL,
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    running_version TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rollout_id, site, device_id)
);
""",
    ),
    (
        5,
        "devices: age of the oldest result a kiosk has not had confirmed (status)",
        """
ALTER TABLE devices ADD COLUMN outbox_oldest_age_s {real};
""",
    ),
    (
        6,
        "results: the features outside the validated range, filled in from stored payloads",
        """
ALTER TABLE results ADD COLUMN not_validated TEXT NOT NULL DEFAULT '';
UPDATE results SET not_validated = {payload_not_validated}
    WHERE payload LIKE '%"not_validated"%'
""",
    ),
    (
        7,
        "rollouts: the model repository each was run on (its identity; null: recorded before)",
        """
ALTER TABLE rollouts ADD COLUMN repository TEXT;
""",
    ),
    (
        8,
        "console: API tokens' label, expiry and last use (no expiry: made before, kept valid)",
        """
ALTER TABLE console_tokens ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE console_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE console_tokens ADD COLUMN last_used_at TEXT;
""",
    ),
    (
        9,
        "console: a user can be disabled (when; null: enabled)",
        """
ALTER TABLE console_users ADD COLUMN disabled_at TEXT;
""",
    ),
    (
        10,
        "dead letters: a letter received again is kept once (null: kept before)",
        """
ALTER TABLE dead_letters ADD COLUMN letter_sha256 TEXT;
CREATE UNIQUE INDEX dead_letters_once ON dead_letters (letter_sha256)
""",
    ),
    (
        11,
        "dead letters: the only copies of results the bounds pruned, counted by device",
        """
CREATE TABLE pruned_only_copies (
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    letters BIGINT NOT NULL,
    last_pruned_at TEXT NOT NULL,
    PRIMARY KEY (site, device_id)
)
""",
    ),
    (
        12,
        "console: tokens and sessions of users no longer there are forgotten (SQLite now "
        "enforces their foreign keys, as PostgreSQL always did)",
        """
DELETE FROM console_tokens WHERE name NOT IN (SELECT name FROM console_users);
DELETE FROM console_sessions WHERE name NOT IN (SELECT name FROM console_users)
""",
    ),
    (
        13,
        "dead letters: how many are kept and their size, kept up to date with them",
        """
CREATE TABLE dead_letter_totals (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    letters BIGINT NOT NULL,
    letter_bytes BIGINT NOT NULL
);
INSERT INTO dead_letter_totals (only_row, letters, letter_bytes)
    SELECT 1, COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(reason) + LENGTH(topic)), 0)
    FROM dead_letters
""",
    ),
    (
        14,
        "dead letters: how many each topic holds and their size, so that the bounds prune "
        "the letters of a kiosk holding more than its share first (letter_shares.py)",
        """
CREATE TABLE dead_letter_topic_totals (
    topic TEXT PRIMARY KEY,
    letters BIGINT NOT NULL,
    letter_bytes BIGINT NOT NULL
);
INSERT INTO dead_letter_topic_totals (topic, letters, letter_bytes)
    SELECT topic, COUNT(*), COALESCE(SUM({letter_size}), 0) FROM dead_letters GROUP BY topic
""",
    ),
    (
        15,
        "dead letters: their size counted in bytes, not characters (the totals recounted)",
        """
UPDATE dead_letter_totals SET letters = (SELECT COUNT(*) FROM dead_letters),
    letter_bytes = (SELECT COALESCE(SUM({letter_size}), 0) FROM dead_letters)
""",
    ),
    (
        16,
        "rollouts: each device's state names a rollout that is there (a foreign key); rows "
        "naming none are kept aside in rollout_devices_orphaned",
        """
CREATE TABLE rollout_devices_orphaned AS SELECT * FROM rollout_devices
    WHERE NOT EXISTS (SELECT 1 FROM rollouts
                      WHERE rollouts.rollout_id = rollout_devices.rollout_id);
CREATE TABLE rollout_devices_keyed (
    rollout_id TEXT NOT NULL CONSTRAINT rollout_devices_rollout_fkey
        REFERENCES rollouts (rollout_id),
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    running_version TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rollout_id, site, device_id)
);
INSERT INTO rollout_devices_keyed SELECT * FROM rollout_devices
    WHERE EXISTS (SELECT 1 FROM rollouts WHERE rollouts.rollout_id = rollout_devices.rollout_id);
DROP TABLE rollout_devices;
ALTER TABLE rollout_devices_keyed RENAME TO rollout_devices
""",
    ),
)


def iso_utc(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601 text (sorts like the time it names)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")  # faster than strftime
    return text.removesuffix("+00:00") + "Z"


@dataclass(frozen=True)
class DeadLetter:
    """A message the back office could not use, kept for inspection."""

    received_at: str
    topic: str
    reason: str
    payload_bytes: int
    payload: bytes
    # SHA-256 of the topic and the whole payload: the same message received again (a kiosk
    # re-sends what was never confirmed) has the same one and is kept once. None: a letter
    # kept before migration 10.
    letter_sha256: str | None


def dead_letter(
    received_at: str, topic: str, reason: str, raw: bytes, max_bytes: int | None = None
) -> DeadLetter:
    """A refused message as a dead letter: its payload kept whole up to ``max_bytes`` (None: no
    limit), cut beyond it with the reason saying so."""
    kept = raw if max_bytes is None else raw[:max_bytes]
    if len(kept) < len(raw):
        reason += f" (kept cut: the first {len(kept)} of {len(raw)} bytes)"
    # an MQTT topic holds no U+0000 (MQTT 5 spec 4.7.3): it cannot run into the payload
    whole = topic.encode("utf-8", "surrogatepass") + b"\0" + raw
    return DeadLetter(received_at, topic, reason, len(raw), kept,
                      hashlib.sha256(whole).hexdigest())


class _NamedResult(BaseModel):
    """The one field an ack needs, read from a result refused for any other reason."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    measurement_id: Identifier


def named_measurement_id(payload: bytes) -> str | None:
    """The measurement id a refused result names, if it names a valid one (its kiosk is told
    it may drop that result: ``Triage.refused_results``).

    Read by Python's JSON decoder when pydantic's refuses the text: a lone surrogate escape
    (``"\\ud800"``) is JSON to one and not to the other, and a result refused for it must
    still be confirmed, or its kiosk sends it again until it ages out."""
    try:
        return _NamedResult.model_validate_json(payload, strict=True).measurement_id
    except ValidationError:
        pass
    try:
        data = safejson.loads(payload.decode("utf-8"))
        return _NamedResult.model_validate(data, strict=True).measurement_id
    except ValueError:  # not UTF-8 or not JSON (ValidationError is a ValueError too)
        return None


def not_validated_text(keys: Sequence[str]) -> str:
    """The stored form of a result's ``not_validated`` list: keys joined by commas."""
    return ",".join(keys)


def not_validated_keys(text: str | None) -> list[str]:
    """The feature keys of a stored ``not_validated`` column (empty text: none)."""
    return text.split(",") if text else []


def result_row(result: Result, received_at: str, payload: str) -> tuple[Any, ...]:
    """The ``results`` row of a validated result, in RESULT_COLUMNS order."""
    cls = result.classification
    subject = result.subject
    return (
        result.measurement_id,
        result.device_id,
        result.site,
        iso_utc(result.captured_at),
        received_at,
        result.software_version,
        result.quality.verdict,
        cls.model if cls else None,
        cls.version if cls else None,
        cls.label if cls else None,
        subject.subject_id if subject else None,
        subject.age_band if subject else None,
        *_FEATURE_VALUES(result.features),
        not_validated_text(result.not_validated),
        payload,
    )


def device_row(status: Status, seen_at: str) -> tuple[Any, ...]:
    """The ``devices`` row of a status message seen at ``seen_at``, in DEVICE_COLUMNS order."""
    model = status.model
    return (
        status.site,
        status.device_id,
        status.state,
        seen_at,
        iso_utc(status.at),
        status.software_version,
        model.name if model else None,
        model.version if model else None,
        status.camera,
        status.outbox_depth,
        status.dropped,
        status.outbox_oldest_age_s,
    )
