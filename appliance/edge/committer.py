"""The commit thread: results -> one fsync'd outbox transaction per group -> wake the link.

Group commit: results that arrive together are committed in one transaction (each is still
durable before it is published), so delivery keeps up with bursts without one fsync per
result. Only after the commit does anything else see a result: the record of measured files
(a folder source), the MQTT link, the kiosk screen and the journal line that names its
measurement id.

A refused commit (disk full, I/O error) is counted as dropped (status, metrics, one journal
line per measurement id), but for a saved file's result, and sets ``paused``: the analysis
thread then measures nothing, so no result is measured only to be dropped. The committer probes
the outbox every ``PROBE_EVERY_S`` and clears ``paused`` once a write commits again and the disk
is no longer full (``full_disk_hint``): a disk with a few KiB left takes the probe's one-row
commit but not a result's, and measuring would resume only to drop the next customer's
measurement. An outbox that cannot take a result when the daemon starts (a full disk) pauses
measuring before the first result is measured.

A saved file's result that a refused commit dropped is not lost while the file is there: the
folder source is told (``on_dropped``) and reads the file again (and a second name of its
picture, a hard link or a copy, that waited for a commit that never comes), to be measured once
measuring resumes, under the same measurement id. Counted dropped, it reached the back office
all the same: under a second name once measuring resumed, or under its id after a restart,
which measures again a file not recorded. A result that a full outbox refused (policy
refuse_new) was measured, as one the outbox kept and dropped later (drop_oldest, its age
limit): its loss is counted once, and its file is recorded measured with the picture's other
names, as after a commit, so that neither a next name nor, after a restart, the file itself is
measured again: each would be refused and counted again while the outbox is full, or reach the
back office once it has room, while the kiosk still counts it dropped.

A commit refused because the outbox file is damaged is not a loss: the group is held in
``held`` (measuring paused), and the daemon, seeing ``outbox.damaged``, exits so that the file
is repaired and commits what is held into the repaired outbox on its way out (appliance/edge/
daemon.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from appliance.capture.replayed import FileStamp
from appliance.diskspace import full_disk_hint
from appliance.edge.pipeline import Accepted
from appliance.edge.screen import KioskScreen
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxCorruptError, OutboxError, OutboxFullError

log = logging.getLogger(__name__)

QUEUE_POLL_S = 0.5
PROBE_EVERY_S = 1.0


class ResultCommitter(threading.Thread):
    """Drains the result queue into the outbox in groups and tells the link."""

    def __init__(
        self,
        results: queue.Queue[Accepted],
        outbox: Outbox,
        stop: threading.Event,
        *,
        wake_link: Callable[[], None],
        screen: KioskScreen | None = None,
        group_max: int = 256,
        paused: threading.Event | None = None,
        on_committed: Callable[[list[FileStamp]], None] | None = None,
        on_dropped: Callable[[FileStamp], None] | None = None,
    ) -> None:
        super().__init__(name="ResultCommitter", daemon=True)
        self.results, self.outbox, self.stop_event = results, outbox, stop
        self._wake_link = wake_link
        self.screen = screen
        self.group_max = group_max
        self.committed = 0
        self.refused = 0
        self.held: list[Accepted] = []  # refused by a damaged outbox: kept for its repair
        self.paused = paused or threading.Event()
        self._on_committed = on_committed  # a folder source records its measured files
        self._on_dropped = on_dropped  # and reads again the other names of those not kept
        self._next_probe_s = 0.0
        self.paused_why = ""  # what the journal said when measuring was paused
        self.disk_full = False  # whether that was a full disk
        self.last_beat_s = time.monotonic()

    def run(self) -> None:
        """Commit until stopped; on stop, commit what is already queued, then end."""
        try:
            while not (self.stop_event.is_set() and self.results.empty()):
                self.last_beat_s = time.monotonic()
                if self.paused.is_set():
                    self._probe_when_due()
                group = self._next_group()
                if group:
                    self._commit(group)
        except Exception:
            log.exception("commit thread failed")  # the watchdog notices the missing beats

    def _next_group(self) -> list[Accepted]:
        try:
            group = [self.results.get(timeout=QUEUE_POLL_S)]
        except queue.Empty:
            return []
        while len(group) < self.group_max:
            try:
                group.append(self.results.get_nowait())
            except queue.Empty:
                break
        return group

    def _commit(self, group: list[Accepted]) -> None:
        try:
            self.outbox.add_many(_rows(group))
        except OutboxFullError as exc:  # refuse_new policy: counted by the outbox itself
            self.refused += len(group)
            log.error("%s", exc)
            self._record_measured(group)  # and lost: never to be measured again
            return
        except OutboxCorruptError as exc:
            self._hold(group, exc)
            return
        except OutboxError as exc:
            self._lost(group, exc)
            return
        self._count_committed(group)
        self._wake_link()
        self._announce(group)

    def _lost(self, group: list[Accepted], error: OutboxError) -> None:
        """Count a refused commit as dropped (but for saved files' results, measured again),
        say so per measurement, and pause measuring."""
        self.refused += len(group)
        self.outbox.count_lost(_live(group))
        for accepted in group:
            _say_not_kept(accepted, error, "once the outbox can write")
        self._pause(f"{error}")
        self._tell_dropped(group)

    def _tell_dropped(self, group: list[Accepted]) -> None:
        """Tell the folder source which saved files' results a refused commit dropped: they are
        to be read again, with their pictures' other names."""
        for accepted in group:
            if accepted.stamp is not None and self._on_dropped is not None:
                self._on_dropped(accepted.stamp)

    def pause_unless_writable(self) -> None:
        """Before the threads start: pause measuring when the outbox cannot take a result (a
        full disk at start); what waits in it is still sent."""
        if not self._room_for_results() and not self.outbox.damaged:
            self._pause(self.outbox.probe_error)

    def _room_for_results(self) -> bool:
        """Whether a result would commit now: a probe commits and the disk is not full. The
        probe writes one row, which the last few KiB of a disk still take, a result not."""
        return self.outbox.writable() and not full_disk_hint(self.outbox.path)

    def _pause(self, error: str) -> None:
        """Pause measuring (once), saying why: the full disk by path and free bytes, where it
        is one, and else the refused commit's error."""
        if self.paused.is_set():
            return
        full = full_disk_hint(self.outbox.path)
        self.disk_full = bool(full)
        self.paused_why = full or f"the outbox cannot write ({error})"
        log.error("%s; measuring paused until the outbox can write again (%d waiting result(s) "
                  "are still sent)", self.paused_why, self.outbox.depth())
        self.paused.set()
        self._next_probe_s = time.monotonic() + PROBE_EVERY_S

    def _hold(self, group: list[Accepted], error: OutboxCorruptError) -> None:
        """Keep a group the damaged outbox refused, for the repaired one; pause measuring."""
        self.held += group
        self.disk_full = False
        self.paused_why = f"the outbox file is damaged ({error}); the daemon restarts to repair it"
        for accepted in group:
            log.error(
                "measurement %s held in memory: %s; the daemon restarts to repair the outbox "
                "and keeps it there",
                accepted.result.measurement_id,
                error,
                extra={"MEASUREMENT_ID": accepted.result.measurement_id},
            )
        self.paused.set()

    def keep_held(self, repaired: Outbox) -> int:
        """Commit the held results into the repaired outbox (the thread has ended); how many.

        OutboxError when it refuses them too: they are then counted as dropped, one journal
        line each, in ``repaired`` where it can count."""
        group, self.held = self.held, []
        if not group:
            return 0
        self.outbox = repaired
        try:
            repaired.add_many(_rows(group))
        except OutboxError as exc:
            self._lost(group, exc)
            raise
        self._count_committed(group)
        return len(group)

    def _count_committed(self, group: list[Accepted]) -> None:
        """The group is in the outbox: count it, and tell which replayed files it measured."""
        self.committed += len(group)
        self._record_measured(group)

    def _record_measured(self, group: list[Accepted]) -> None:
        """Tell the folder source which saved files the group measured (committed, or refused
        by a full outbox and counted dropped), to record with their pictures' other names."""
        stamps = [a.stamp for a in group if a.stamp is not None]
        if stamps and self._on_committed is not None:
            self._on_committed(stamps)

    def drop_held(self, error: Exception) -> int:
        """Give up the held results (no outbox could take them): one journal line each, counted
        in ``refused``; returns how many are lost (the caller counts them where the outbox
        can): a saved file's result is not, as the next start measures the file again."""
        group, self.held = self.held, []
        self.refused += len(group)
        for accepted in group:
            _say_not_kept(accepted, error, "at the next start")
        return _live(group)

    def _probe_when_due(self) -> None:
        now_s = time.monotonic()
        if now_s < self._next_probe_s or self.outbox.damaged:  # only a repair helps
            return
        self._next_probe_s = now_s + PROBE_EVERY_S
        if self._room_for_results():
            log.warning("the outbox can write again; measuring resumes")
            self.disk_full, self.paused_why = False, ""
            self.paused.clear()

    def _announce(self, group: list[Accepted]) -> None:
        for accepted in group:
            result = accepted.result
            log.info(
                "measurement %s committed to the outbox",
                result.measurement_id,
                extra={"MEASUREMENT_ID": result.measurement_id, "DEVICE_ID": result.device_id},
            )
        if self.screen is not None:
            self.screen.show(group[-1].result, group[-1].draw_screen_picture)


def _live(group: list[Accepted]) -> int:
    """How many results of the group are a live frame's (a saved file's is measured again)."""
    return sum(1 for accepted in group if accepted.stamp is None)


def _say_not_kept(accepted: Accepted, error: object, measured_again: str) -> None:
    """The journal line of a result no outbox kept: dropped, or for a saved file's, when the
    file is measured again."""
    result = accepted.result
    extra = {"MEASUREMENT_ID": result.measurement_id, "DEVICE_ID": result.device_id}
    if accepted.stamp is None:
        log.error("measurement %s dropped: %s", result.measurement_id, error, extra=extra)
    else:
        log.error("measurement %s not kept (%s); its saved file is measured again %s",
                  result.measurement_id, error, measured_again, extra=extra)


def _rows(group: list[Accepted]) -> list[tuple[str, str, bytes]]:
    """The outbox rows of accepted results: (measurement id, topic, payload)."""
    return [(a.result.measurement_id, a.topic, a.result.to_json()) for a in group]
