"""The ``store:`` and ``backoffice:`` sections: where results are kept and the ingest workers."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from appliance.config.mqtt import MQTT_MAX_INTERVAL_S
from appliance.config.section import Section, a_real_host
from appliance.transport.payloads import (
    IDENTIFIER_PATTERN,
    MAX_IDENTIFIER_CHARS,
    MAX_PAYLOAD_BYTES,
)

# the dead-letter bounds go to the store as SQL parameters, 64-bit integers in both databases
# (a larger one made every batch with a dead letter fail on SQLite: all of them were lost)
STORE_INTEGER_MAX = 2**62
STORE_URL_PATTERN = r"^(sqlite:///.+|postgresql://.*)$"
MAX_RETENTION_DAYS = 36525  # a hundred years (a cut-off must stay in datetime's range)


class StoreConfig(Section):
    url: str | None = Field(
        None,
        pattern=STORE_URL_PATTERN,
        description="Back-office store: sqlite:///PATH (a relative PATH is relative to the "
        "config file; without one: the working folder) or postgresql://user@host:port/db "
        "(unset: SQLite file backoffice.sqlite3 in state_dir).",
    )

    erasure_journal: str | None = Field(
        None,
        min_length=1,
        description="The erasure journal: each erasure and release as a line, applied again "
        "by a store restore (a relative path is relative to the config file; unset: "
        "erasure-journal.jsonl in state_dir). Copy it off the host with the backups.",
    )

    @field_validator("url")
    @classmethod
    def _names_its_database(cls, value: str | None) -> str | None:
        from appliance.backoffice.storeurl import (  # noqa: PLC0415
            missing_database,
            postgres_hosts,
        )

        if value is not None and (problem := missing_database(value)) is not None:
            raise ValueError(problem)
        for host in postgres_hosts(value or ""):
            a_real_host(host, "the PostgreSQL server's host name, or remove store.url (the "
                        "SQLite file in state_dir)")
        return value


class BackofficeConfig(Section):
    share_group: str = Field(
        "backoffice",
        max_length=MAX_IDENTIFIER_CHARS,
        pattern=IDENTIFIER_PATTERN,
        description="MQTT v5 shared-subscription group; workers in one group split the results.",
    )
    client_id: str | None = Field(
        None,
        max_length=MAX_IDENTIFIER_CHARS,
        pattern=IDENTIFIER_PATTERN,
        description="MQTT client id of this worker, stable across restarts so its session "
        "survives (unset: backoffice-HOSTNAME); unique per worker.",
    )
    session_expiry_s: int = Field(
        86400, ge=60, le=MQTT_MAX_INTERVAL_S,
        description="How long the broker keeps a stopped worker's session (s)."
    )
    leave_group_on_stop: bool = Field(
        False, description="On an orderly stop (SIGTERM, Ctrl-C) leave the result group and "
        "end the session, so the broker hands every new result to the workers still running "
        "instead of queuing a share for this one until it is back or session_expiry_s ends: "
        "the worker unsubscribes, takes what the broker had queued for it (committed and "
        "acknowledged), then ends the session; where it cannot (no broker, the store down) it "
        "keeps the session. For a back office of several workers; with one, the results sent "
        "while it restarts wait for the kiosks' resends (docs/delivery.md)."
    )
    receive_maximum: int = Field(
        2000, ge=10, le=65535, description="Unacknowledged messages the broker may send at once."
    )
    batch_max_rows: int = Field(
        500, ge=1, le=100_000, description="Most messages committed in one store transaction."
    )
    batch_interval_ms: int = Field(
        20, ge=1, le=10_000, description="Longest wait to fill a batch before committing (ms)."
    )
    dead_letter_max_bytes: int = Field(
        MAX_PAYLOAD_BYTES, description="Bytes of a rejected payload kept in the dead-letter "
        f"table; at least {MAX_PAYLOAD_BYTES}, the largest result the fleet's broker delivers, "
        "so every refused result is kept whole and confirmed to its kiosk (docs/delivery.md)."
    )
    dead_letter_max_rows: int = Field(
        100_000, ge=1, le=STORE_INTEGER_MAX, description="Dead-letter rows kept; the oldest "
        "are pruned beyond this."
    )
    dead_letter_max_total_bytes: int = Field(
        64 * 1024 * 1024, ge=0, le=STORE_INTEGER_MAX, description="Bytes all kept dead "
        "letters may hold together; the oldest are pruned beyond this. At least "
        "dead_letter_max_bytes, so the largest letter is kept."
    )
    kiosk_results_per_s: float = Field(
        2.0, gt=0, le=1_000_000, description="Results of one kiosk this worker stores a second, "
        "sustained (a kiosk measures one in about 1.2 s at the most); with "
        "kiosk_results_burst a token bucket a kiosk: a result beyond it is neither stored nor "
        "confirmed, so its kiosk sends it again later and a flood from one kiosk's login "
        "neither fills the store nor holds up the others (appliance/backoffice/kiosk_rate.py)."
    )
    kiosk_results_burst: int = Field(
        1000, ge=1, le=1_000_000, description="Results of one kiosk stored at once above "
        "kiosk_results_per_s: a kiosk's backlog after an outage (a week at 150 a day); the "
        "rest of a larger backlog follows with the kiosk's resends."
    )
    kiosk_statuses_per_s: float = Field(
        5.0, gt=0, le=1_000_000, description="Statuses of one kiosk this worker writes a "
        "second, sustained (an honest kiosk sends one every edge.status_interval_s and within "
        "2 s of an outbox change: about one a second at the most); with kiosk_statuses_burst a "
        "token bucket a kiosk: a status beyond it is acknowledged and not written, except the "
        "kiosk's newest, held and written once the bucket lets it in, so a flood on one "
        "kiosk's status topic neither writes the store hard nor holds up the others "
        "(appliance/backoffice/status_rate.py)."
    )
    kiosk_statuses_burst: int = Field(
        60, ge=1, le=1_000_000, description="Statuses of one kiosk written at once above "
        "kiosk_statuses_per_s (a kiosk reconnecting, its birth and outbox changes at once). "
        "The same bound, a bucket of its own, holds the kiosk's model reports "
        "(.../model/state, kept as history): those beyond it are acknowledged and not kept."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Prometheus metrics of this worker on "
        "127.0.0.1:PORT (unset: off): what it stored, refused for a kiosk's rate, dead-lettered."
    )
    retention_days: int | None = Field(
        None, ge=1, le=MAX_RETENTION_DAYS, description="Days a result is kept, counted from "
        "its capture as the back office places it (its kiosk's clock as read, never after its "
        "receipt: appliance/backoffice/placed_capture.py): each worker removes older results "
        "(and dead letters received before then) at start and every hour, a few hundred at a "
        "time, saying how many in its log (appliance/backoffice/retention.py). Unset: results "
        "are kept for ever."
    )

    @field_validator("dead_letter_max_bytes")
    @classmethod
    def _keeps_a_whole_result(cls, value: int) -> int:
        """A refused result kept cut is never confirmed, so its kiosk would send it again for
        a month: the letter must hold anything the broker can deliver."""
        if value < MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"{value} is less than {MAX_PAYLOAD_BYTES}, the largest result the broker "
                "delivers (deploy/mosquitto/appliance.conf message_size_limit); a refused "
                f"result cut to fit would never be confirmed to its kiosk: set {MAX_PAYLOAD_BYTES} "
                "or more, or remove the key"
            )
        return value

    @field_validator("dead_letter_max_total_bytes")
    @classmethod
    def _keeps_the_largest_letter(cls, value: int, info: ValidationInfo) -> int:
        """A letter pruned as it is kept is not confirmed either: below the largest single
        letter, refused results would go unconfirmed, sent again and again."""
        largest = info.data.get("dead_letter_max_bytes")  # absent: refused itself, named there
        if largest is not None and value < largest:
            raise ValueError(
                f"{value} is less than dead_letter_max_bytes ({largest}), the largest single "
                "dead letter: a refused result too big to keep is pruned at once and never "
                "confirmed, so its kiosk would send it again for a month; set "
                f"{largest} or more, or remove the key"
            )
        return value
