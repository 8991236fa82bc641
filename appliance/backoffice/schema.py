"""The back-office tables' columns and the row form of each payload.

The tables themselves are made by the versioned migrations in ``migrations.py``. Times are
stored as UTC ISO 8601 text with a fixed width (``2026-01-02T03:04:05.123456Z``), so they sort
and compare as text in both databases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from appliance import safejson
from appliance.backoffice.storetext import iso_utc as iso_utc  # noqa: PLC0414 - a re-export
from appliance.transport.bootstamp import BootStamp
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
# a result as it is read: its columns and, beside its receipt, its capture as the back office
# placed it when it stored it (placed_capture.py), which lists, filters and exports go by
PLACED_COLUMN = "placed_at"
_AFTER_RECEIPT = RESULT_COLUMNS.index("received_at") + 1
RESULT_READ_COLUMNS = (*RESULT_COLUMNS[:_AFTER_RECEIPT], PLACED_COLUMN,
                       *RESULT_COLUMNS[_AFTER_RECEIPT:])

# read beside a result's columns, though not stored as one: the grade probabilities of its
# payload (classification.probabilities) as JSON text in the label order they were sent in,
# picked out in the database (PostgreSQL's json, unlike jsonb, keeps the order); NULL: none
GRADE_PROBABILITIES = "grade_probabilities"
GRADE_PROBABILITIES_SQL = {
    False: "json_extract(payload, '$.classification.probabilities')",
    True: "(payload::json -> 'classification' -> 'probabilities')::text",
}

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
    "measuring_paused",
    "outbox_in_use",
    "status_sent_at",  # the stored status's sending, by the back office's clock (status_order.py)
    # where in its boot the kiosk built it (transport/bootstamp.py; null: not said)
    "status_boot",
    "status_since_boot_ms",
    "status_link_ms",
    # its edge.keep_confirmed_h as its status says it (null: not said, the default or a kiosk
    # older than the field): how long it is asked to forget an erased id (kiosk_forgets.py)
    "keep_confirmed_h",
)
# a device as the fleet reads it: its status, and its clock as its latest live status read it
# (written apart from the status: erasure_clock.py)
DEVICE_READ_COLUMNS = (*DEVICE_COLUMNS[:-4], "clock_ahead_s", "clock_read_at")


def second_text(stored: str) -> str:
    """A stored time (``iso_utc`` text) to the second, as the commands print times
    ('2026-12-05T09:30:00Z'): the microseconds the store keeps for order say nothing to a
    person."""
    return f"{stored[:19]}Z"


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


def result_selection(columns: Sequence[str], postgres: bool) -> str:
    """The SELECT list of these result read columns (RESULT_READ_COLUMNS and
    GRADE_PROBABILITIES, picked out of the payload); ValueError names any other."""
    unknown = set(columns) - {*RESULT_READ_COLUMNS, GRADE_PROBABILITIES}
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}")
    return ",".join(f"{GRADE_PROBABILITIES_SQL[postgres]} AS {column}"
                    if column == GRADE_PROBABILITIES else column for column in columns)


def device_row(status: Status, seen_at: str, sent_at: str | None = None,
               boot: BootStamp | None = None) -> tuple[Any, ...]:
    """The ``devices`` row of a status message seen at ``seen_at``, in DEVICE_COLUMNS order;
    ``sent_at``: a live online status's receipt, None where the store places its sending
    (status_order.py); ``boot``: where in its boot the kiosk built it (bootstamp.py)."""
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
        status.measuring_paused,
        status.outbox_in_use,
        sent_at,
        *(boot or (None, None, None)),
        status.keep_confirmed_h,
    )
