"""The back-office tables' versioned migrations, in order.

One schema serves SQLite and PostgreSQL: the few type names that differ are placeholders
(``{id}``, ``{real}``, ``{blob}``) filled in per dialect, as are the one expression that reads a
stored payload's JSON (``{payload_not_validated}``, migration 6) and a dead letter's size in
bytes (``{letter_size}``, migrations 14 and 15; ``letter_size_sql`` in ``storetext.py``). The
columns they make are named in ``schema.py``. A new migration is appended, never edited: stores
remember the versions they ran.
"""

from __future__ import annotations

# the feature columns migration 1 makes, written out as the migration is (a later feature
# needs a migration of its own; tests/backoffice/test_backoffice_store_commands_start.py holds
# them to transport/payloads.py's FEATURE_KEYS), so that ``store backup``, which reads no
# result, loads no payload models
_FEATURE_COLUMNS_1 = (
    "pore_count", "pore_density_per_cm2", "pore_mean_diameter_um", "pore_area_ratio",
    "furrow_density_mm_per_mm2", "hill_density_per_mm2", "hill_mean_area_mm2",
    "furrow_mean_width_um", "furrow_anisotropy", "kime_score", "lab_l", "lab_a", "lab_b",
    "melanin_index", "erythema_index", "shine_ratio",
)
_FEATURE_DDL = ",\n".join(
    f"    {key} {'BIGINT' if key == 'pore_count' else '{real}'} NOT NULL"
    for key in _FEATURE_COLUMNS_1
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
    (
        17,
        "rollouts: the assignment each wave's device had before it (recorded before the wave "
        "is signed), so that a halt puts it back after its deploy was killed",
        """
CREATE TABLE rollout_replaced (
    rollout_id TEXT NOT NULL CONSTRAINT rollout_replaced_rollout_fkey
        REFERENCES rollouts (rollout_id),
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    assignment TEXT,
    PRIMARY KEY (rollout_id, site, device_id)
)
""",
    ),
    (
        18,
        "erasure on request: an audit record of each erasure (no erased data) and the erased "
        "results' ids, so that a kiosk's re-send does not store one again (erasure.py)",
        """
CREATE TABLE erasures (
    id {id},
    erased_at TEXT NOT NULL,
    os_user TEXT NOT NULL,
    kind TEXT NOT NULL,
    selector TEXT NOT NULL,
    results BIGINT NOT NULL,
    dead_letters BIGINT NOT NULL
);
CREATE INDEX erasures_selector ON erasures (kind, selector);
CREATE TABLE erased_results (
    measurement_id TEXT PRIMARY KEY,
    erasure_id BIGINT NOT NULL CONSTRAINT erased_results_erasure_fkey REFERENCES erasures (id)
)
""",
    ),
    (
        19,
        "devices: each kiosk's clock as its latest live status read it (how far ahead of the "
        "back office's, and when), so that an erased subject's results are judged by the back "
        "office's clock (erasure_clock.py)",
        """
ALTER TABLE devices ADD COLUMN clock_ahead_s {real};
ALTER TABLE devices ADD COLUMN clock_read_at TEXT
""",
    ),
    (
        20,
        "results: each capture as the back office places it, which the retention bound counts "
        "from, so that a kiosk clock behind does not have new results removed "
        "(placed_capture.py); a result stored before: its capture as written, at most its "
        "receipt",
        """
ALTER TABLE results ADD COLUMN placed_at TEXT;
UPDATE results SET placed_at = CASE WHEN captured_at < received_at THEN captured_at
    ELSE received_at END;
CREATE INDEX results_placed_at ON results (placed_at)
""",
    ),
    (
        21,
        "devices: an outbox age past the bound a status now has (100 years: payloads.py's "
        "MAX_OUTBOX_AGE_S) is cleared, as if not said; stored before the bound, it overflowed "
        "the placing of each result of its kiosk (placed_capture.py), which the store refused",
        """
UPDATE devices SET outbox_oldest_age_s = NULL WHERE outbox_oldest_age_s > 3155760000
""",
    ),
    (
        22,
        "results: the console, the API and the command line list, filter and page results by "
        "their placed capture (keyset indexes on placed_at and measurement_id, per filter, "
        "in place of those on captured_at, which no query reads any more); a result an ingest "
        "worker older than migration 20 stored after it ran is placed as that migration "
        "placed those before",
        """
UPDATE results SET placed_at = CASE WHEN captured_at < received_at THEN captured_at
    ELSE received_at END WHERE placed_at IS NULL;
CREATE INDEX results_placed_id ON results (placed_at, measurement_id);
CREATE INDEX results_site_placed_id ON results (site, placed_at, measurement_id);
CREATE INDEX results_label_placed_id ON results (label, placed_at, measurement_id);
CREATE INDEX results_device_placed_id ON results (device_id, placed_at, measurement_id);
DROP INDEX results_time_id;
DROP INDEX results_site_time_id;
DROP INDEX results_label_time_id;
DROP INDEX results_device_time_id;
DROP INDEX results_device_time;
DROP INDEX results_captured_at;
DROP INDEX results_placed_at
""",
    ),
    (
        23,
        "devices: why a kiosk's latest status says it does not measure (its status's "
        "measuring_paused: 'disk_full' or 'storage'; NULL while it measures), for the fleet "
        "table, the console's fleet page and the API",
        """
ALTER TABLE devices ADD COLUMN measuring_paused TEXT
""",
    ),
    (
        24,
        "devices: when the stored status was sent, by the back office's clock, which orders a "
        "kiosk's statuses (status_order.py) so that a kiosk clock stepped back does not keep "
        "the fleet's details of the status before; a status stored before: its kiosk's time, "
        "at most its last receipt",
        """
ALTER TABLE devices ADD COLUMN status_sent_at TEXT;
UPDATE devices SET status_sent_at = CASE WHEN status_at > last_seen THEN last_seen
    ELSE status_at END
""",
    ),
    (
        25,
        "model_reports: every report a kiosk sent on its model/state topic (installed, "
        "rejected, rolled_back, ...), kept as history: which model it was about and which one "
        "served after it, why, the kiosk's time and the back office's receipt; one row a "
        "report (its payload's SHA-256), however often the broker hands it out again",
        """
CREATE TABLE model_reports (
    id {id},
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    state TEXT NOT NULL,
    model_name TEXT,
    model_version TEXT,
    running_name TEXT,
    running_version TEXT,
    reason TEXT,
    healthy INTEGER,
    rollout TEXT,
    reported_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    report_sha256 TEXT NOT NULL,
    UNIQUE (site, device_id, report_sha256)
);
CREATE INDEX model_reports_device_id ON model_reports (site, device_id, id)
""",
    ),
    (
        26,
        "devices: which file other than its outbox a kiosk's latest status says it keeps its "
        "results in (its status's outbox_in_use: 'repaired_copy', the damaged outbox cannot be "
        "moved aside; NULL otherwise), for the fleet table, the console's fleet page and the API",
        """
ALTER TABLE devices ADD COLUMN outbox_in_use TEXT
""",
    ),
    (
        27,
        "devices: where in its boot the kiosk built its stored status (the boot's id and the "
        "milliseconds since it, sent as user properties: appliance/transport/bootstamp.py), "
        "which orders the statuses of one boot (null: a status without them)",
        """
ALTER TABLE devices ADD COLUMN status_boot TEXT;
ALTER TABLE devices ADD COLUMN status_since_boot_ms BIGINT
""",
    ),
    (
        28,
        "erasures: the superseded model reports a retention run removed (0: an erasure, a "
        "release, or a run recorded before, whose log line said them)",
        """
ALTER TABLE erasures ADD COLUMN model_reports BIGINT NOT NULL DEFAULT 0
""",
    ),
    (
        29,
        "devices: when the link that sent the stored status connected, in milliseconds since "
        "the kiosk's boot (appliance/transport/bootstamp.py), which tells a last will of one "
        "connection from the statuses of the next (null: not said)",
        """
ALTER TABLE devices ADD COLUMN status_link_ms BIGINT
""",
    ),
    (
        30,
        "kiosk_forgets: the ids of the results an erasure removed, by the kiosk that sent each "
        "(site, device_id) and the erasure's time, which the back office asks that kiosk to "
        "forget (its kept copy, cmd/forget: kiosk_forgets.py) until edge.keep_confirmed_h "
        "after the erasure",
        """
CREATE TABLE kiosk_forgets (
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    measurement_id TEXT NOT NULL,
    erased_at TEXT NOT NULL,
    PRIMARY KEY (site, device_id, measurement_id)
);
CREATE INDEX kiosk_forgets_erased_at ON kiosk_forgets (erased_at)
""",
    ),
    (
        31,
        "devices: the kiosk's edge.keep_confirmed_h as its latest status says it (hours, 0 to "
        "720; null: not said, the default 48 or a kiosk older than the field), which the back "
        "office asks that kiosk to forget an erased result for (kiosk_forgets.py)",
        """
ALTER TABLE devices ADD COLUMN keep_confirmed_h {real}
""",
    ),
    (
        32,
        "kiosk_forget_asks: the connection (the status's boot and link stamps) on which a "
        "back-office worker last asked a kiosk for all its erased ids, and when, so that the "
        "other workers do not ask it again on that connection nor within the minute "
        "(kiosk_forgets.py); one row a kiosk",
        """
CREATE TABLE kiosk_forget_asks (
    site TEXT NOT NULL,
    device_id TEXT NOT NULL,
    status_boot TEXT,
    status_link_ms BIGINT,
    asked_at TEXT NOT NULL,
    PRIMARY KEY (site, device_id)
)
""",
    ),
    (
        33,
        "kiosk_forgets: when a back-office worker claimed the id to publish it to its kiosk "
        "(cmd/forget; null: none yet), so that the other workers do not publish a fresh "
        "erasure again, each one copy (kiosk_forgets.py)",
        """
ALTER TABLE kiosk_forgets ADD COLUMN asked_at TEXT
""",
    ),
)
