"""How the store writes its times and measures a dead letter, without the payload models
(pydantic): what the store's schema and the commands that only copy or migrate a store (backup,
restore, migrate) need of ``schema.py``, which re-exports both."""

from __future__ import annotations

from datetime import UTC, datetime

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


def iso_utc(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601 text (sorts like the time it names)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")  # faster than strftime
    return text.removesuffix("+00:00") + "Z"
