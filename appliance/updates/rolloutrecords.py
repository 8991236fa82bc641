"""The rollouts the store records, read back: the newest rollout of each device (``models
status``, a deploy's choice of devices), the newest time recorded (a rollout's stamps follow
it, a deploy's and a halt's alike: ``stamp_after``), and the rollouts a killed deploy left
``running``.

``rollout.Rollout`` writes these rows (tables ``rollouts`` and ``rollout_devices``) as it runs;
what is read here holds for any rollout of the repository, the running one, a finished one, or
one whose deploy is gone.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Store
from appliance.transport import payloads
from appliance.updates.manifest import Device
from appliance.updates.repository import FileRepository


def newest_stamp(store: Store) -> datetime:
    """The newest time recorded for any rollout or rollout device (the epoch for none)."""
    [(rollouts, devices)] = store.query(
        "SELECT (SELECT MAX(updated_at) FROM rollouts), "
        "(SELECT MAX(updated_at) FROM rollout_devices)", [])
    stamps = [datetime.fromisoformat(text) for text in (rollouts, devices) if text]
    return max(stamps, default=datetime.fromtimestamp(0, UTC))


def stamp_after(newest: datetime, now: datetime) -> datetime:
    """The time to record ``now`` as: never at or before ``newest``, the newest time the store
    holds for a rollout. Status and the console take the newest stamp for the newest rollout;
    after the back office's clock was set back (NTP stepping a clock that ran ahead) a
    rollout's rows would sort under those of the one before, and status showed that one."""
    return now if now > newest else newest + timedelta(microseconds=1)


# A rollout recorded before rollouts named their repository (NULL) counts as every one's.
_OF_REPOSITORY = "(r.repository = ? OR r.repository IS NULL)"


INTERRUPTED_REASON = "its deploy or rollback ended before the rollout did (killed?)"


def mark_interrupted(store: Store, repo: FileRepository) -> int:
    """Rollouts of ``repo`` still ``running`` in the store while no deploy holds its rollout
    lock ended without finishing (their deploy was killed): say so; returns how many. Another
    repository's rollouts in the same store are not ours to judge (their lock is elsewhere)."""
    stale = store.query(f"SELECT rollout_id FROM rollouts r WHERE state = 'running' AND "
                        f"{_OF_REPOSITORY}", [repo.identity()])
    now = iso_utc(stamp_after(newest_stamp(store), payloads.utc_now()))  # as a deploy stamps
    store.write("UPDATE rollouts SET state = 'interrupted', reason = ?, updated_at = ? "
                "WHERE rollout_id = ?", [(INTERRUPTED_REASON, now, row[0]) for row in stale])
    return len(stale)


def latest_rollouts(
    store: Store, repo: FileRepository
) -> dict[Device, tuple[str, str, str, str | None]]:
    """Per device: (rollout id, rollout state, device state, reason) of its newest rollout
    of ``repo``; one recorded ``running`` while no deploy or rollback holds the repository's
    rollout lock reads ``interrupted``.

    The rows are read again after the look at the lock: a deploy that ended between the first
    read and the look (the lock let go) has recorded how it ended by then, and only a rollout
    ``running`` in both reads was killed (one first seen in the second read may have started
    after the look)."""
    latest = _latest_rows(store, repo)
    if repo.rollout_held():
        return latest
    seen_running = {row[0] for row in latest.values() if row[1] == "running"}
    if not seen_running:
        return latest
    # none is at work: a rollout still 'running' in the store was killed (mark_interrupted
    # records so at the next deploy; this only reads)
    return {device: (rollout_id, "interrupted", device_state, reason or INTERRUPTED_REASON)
            if state == "running" and rollout_id in seen_running
            else (rollout_id, state, device_state, reason)
            for device, (rollout_id, state, device_state, reason)
            in _latest_rows(store, repo).items()}


def _latest_rows(
    store: Store, repo: FileRepository
) -> dict[Device, tuple[str, str, str, str | None]]:
    rows = store.query(
        "SELECT d.site, d.device_id, d.rollout_id, r.state, d.state, "
        "COALESCE(d.reason, r.reason) FROM rollout_devices d "
        f"JOIN rollouts r ON r.rollout_id = d.rollout_id WHERE {_OF_REPOSITORY} "
        "ORDER BY d.updated_at", [repo.identity()]
    )
    return {(row[0], row[1]): (row[2], row[3], row[4], row[5]) for row in rows}


def rollout_reasons(store: Store, rollout_ids: Collection[str]) -> dict[str, tuple[str, str]]:
    """(state, reason) of each of ``rollout_ids`` as recorded: a complete one's reason names
    the kiosks whose reports it rested on (``Rollout._rested_on``)."""
    found = {}
    for rollout_id in sorted(rollout_ids):
        rows = store.query("SELECT state, reason FROM rollouts WHERE rollout_id = ?", [rollout_id])
        if rows:
            found[rollout_id] = (str(rows[0][0]), str(rows[0][1] or ""))
    return found
