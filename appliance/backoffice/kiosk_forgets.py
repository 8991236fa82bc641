"""The kiosks' kept copies of erased results: which ids each kiosk is asked to forget, and the
asking.

A kiosk keeps each result the back office confirmed for ``edge.keep_confirmed_h`` (48 h from
its first confirmation), for ``fleet resend`` (appliance/transport/outbox_kept.py). An erasure
(erasure.py) records, in its own transaction, each erased result's id by the kiosk that sent it
(for a result held only as a dead letter, the kiosk its result topic names) (``kiosk_forgets``:
site, device, id, the erasure's time). Each back-office worker runs
``ForgetPublisher`` beside its ingest, on its own store connection: it publishes a kiosk's
recorded ids on ``{prefix}/{site}/{device}/cmd/forget`` (QoS 1, not retained, at most
``MAX_IDS`` a message: appliance/transport/forget.py) when they are recorded, and again each
time that kiosk comes online (its stored status says "online" from another connection than
the one it was last asked on; at most once every REASK_EVERY_S), until that kiosk's window
after the erasure: its first confirmation came before the erasure, so by then the kiosk has
dropped the copy anyway. A kiosk's window is its ``edge.keep_confirmed_h`` as its status says
it (``devices.keep_confirmed_h``, 0 to 720 h: the status model refuses any other as a dead
letter, and a stored value out of it is read clamped), else the back office's
``edge.keep_confirmed_h`` or the kiosks' default 48 h, whichever is longer (a kiosk at the
default says nothing, as does one older than the field). Rows past their kiosk's window are
pruned: none is kept past 720 h. A worker prunes nothing until the kiosks' statuses the broker
retained have been stored after its start (``statuses_stored``): pruned at the fallback before
its status said its window, a kiosk keeping 96 h whose window was never stored would not have
been asked for an id erased 60 h ago. The kiosk's MQTT session keeps what is published while
it is off (QoS 1), so the asking again covers a session the broker lost or a queue it cut.

Asking twice is harmless (an id the kiosk no longer holds is no error), but N workers each
publishing a fresh erasure sent every kiosk N copies. So the first asking of an id is shared
through the store: a worker claims the rows it is about to publish (``kiosk_forgets.asked_at``
set where it is null, in one statement that returns the rows it took: of two workers looking
at once, one takes each row) and publishes only those; the others take a row claimed as
asked by them on the connection the kiosk is on. A worker that cannot publish (not connected)
gives its claim back. One killed between its claim and its publish (a few milliseconds, as
after paho took the message and before it went out) leaves the ids to its restart (systemd
restarts it), which asks the kiosks it finds pending at its first look for everything in
the window once, and to the asking at the kiosk's next connection. That first asking is
shared too: a started worker takes the kiosk's ``kiosk_forget_asks`` row before it asks,
unless some worker's asking for all of it began since this worker started (its read then
holds whatever a worker killed before this start left claimed and unsent), and it asks
once the kiosks' retained statuses are stored (about 5 s after its subscription), so N
workers started within those seconds of one another ask each kiosk once, and a restart
after them once more. The
asking again at a kiosk's return is shared by the workers through the store
(``kiosk_forget_asks``: the connection a worker last asked the kiosk for all on, and when, by
the back office's clock): a worker asks again only where no worker asked on that connection,
nor within REASK_EVERY_S, so a kiosk reconnecting again and again is asked for all once a
minute whatever the number of workers (two workers looking at once may both ask). Its row
is deleted, with the minute's prune, once nothing is left to ask the kiosk (its rows pruned
past its window) or the kiosk is gone from ``devices``: one row a kiosk with ids pending.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from appliance.backoffice.schema import iso_utc
from appliance.transport.forget import FORGET_LEAF, MAX_IDS
from appliance.transport.payloads import (
    KEEP_CONFIRMED_DEFAULT_H,
    KEEP_CONFIRMED_MAX_H,
    MEASUREMENT_ID_PATTERN,
    utc_now,
)
from appliance.transport.topics import device_topic

if TYPE_CHECKING:
    from appliance.backoffice.store import Store

log = logging.getLogger(__name__)
FORGETS_EVERY_S = 2.0  # how often the store is looked at for new erasures and kiosks come online
PRUNE_EVERY_S = 60.0  # how often the rows are read whole and those past the window deleted
# a kiosk online on a new connection is asked for all its ids again at most this often after
# it was last asked so while online: one reconnecting 100 times a minute is not sent them 30
# times (a look every 2 s), each up to 100 messages of 40 kB for 100,000 ids
REASK_EVERY_S = 60.0
Kiosk = tuple[str, str]  # (site, device id)
_UNREAD = object()  # ForgetPublisher's mark before the rows are read (or after a prune)
# what a kiosk's stored status says of its connection: state, boot, when its link connected
Connection = tuple[Any, Any, Any]
# the connection (boot, link stamp) some worker last asked a kiosk for all on, and when (UTC text)
Shared = tuple[Any, Any, str]


def record_forgets(
    cur: Any, sql: Callable[[str], str], removed: Sequence[tuple[str, str, str]], erased_at: str
) -> None:
    """Record, in the erasure's transaction ``cur``, the ids of the ``removed`` results
    (measurement id, site, device id) for their kiosks to forget; one of another form than a
    result's id (stored before results were held to it) is left out, as the kiosk would refuse
    the whole request naming it."""
    cur.executemany(
        sql(
            "INSERT INTO kiosk_forgets (site, device_id, measurement_id, erased_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (site, device_id, measurement_id) DO NOTHING"
        ),
        [
            (site, device, mid, erased_at)
            for mid, site, device in removed
            if re.fullmatch(MEASUREMENT_ID_PATTERN, mid)
        ],
    )


def window_h(reported: Any) -> float:
    """A kiosk's window as stored (``devices.keep_confirmed_h``), within 0 to 720 h: a value
    the status model would refuse (written by hand, by an older release) is clamped, NaN read
    as the most."""
    hours = float(reported)
    return KEEP_CONFIRMED_MAX_H if math.isnan(hours) else min(max(hours, 0.0),
                                                               KEEP_CONFIRMED_MAX_H)


class Windows:
    """How long each kiosk is asked to forget an erased id: its own window (``own``, by
    kiosk), else ``unsaid_h``."""

    def __init__(self, own: dict[Kiosk, float], unsaid_h: float) -> None:
        self.own, self.unsaid_h = own, unsaid_h
        self.longest_h = max([unsaid_h, *own.values()])
        self.shortest_h = min([unsaid_h, *own.values()])

    def of(self, kiosk: Kiosk) -> float:
        """``kiosk``'s window (hours)."""
        return self.own.get(kiosk, self.unsaid_h)


def requests(ids: Sequence[str]) -> list[bytes]:
    """The cmd/forget payloads naming ``ids``, at most ``MAX_IDS`` each."""
    return [
        json.dumps({"ids": list(ids[start : start + MAX_IDS])}).encode()
        for start in range(0, len(ids), MAX_IDS)
    ]


class ForgetPublisher:
    """Asks each kiosk to forget the erased ids recorded for it (``run_once``), on a thread
    of its own (``start``) with its own store connection."""

    def __init__(
        self,
        url: str,
        prefix: str,
        keep_confirmed_h: float,
        publish: Callable[[str, bytes], bool],
        stop: threading.Event,
        *,
        every_s: float = FORGETS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        statuses_stored: Callable[[], bool] | None = None,
    ) -> None:
        """``publish``: sends one message at QoS 1, not retained; False where it cannot now
        (not connected), so it is tried again at the next look. ``keep_confirmed_h``: the back
        office's ``edge.keep_confirmed_h``; a kiosk whose status says no window of its own is
        asked for it or the kiosks' default, whichever is longer. ``statuses_stored``: whether
        the kiosks' retained statuses have been stored since the worker started
        (IngestWorker.statuses_stored); no row is pruned before (None: at once)."""
        self.url, self.prefix = url, prefix
        self.keep_confirmed_h = max(window_h(keep_confirmed_h), KEEP_CONFIRMED_DEFAULT_H)
        self._publish, self.stop, self.every_s, self._clock = publish, stop, every_s, clock
        self._now = now  # the back office's clock (UTC): the windows, the shared re-asks
        self._asked: dict[Kiosk, tuple[Connection | None, frozenset[str]]] = {}
        self._asked_all_at: dict[Kiosk, float] = {}  # when last asked for all while online
        self._pending: dict[Kiosk, list[str]] = {}  # the rows as last read
        self._unasked: dict[Kiosk, set[str]] = {}  # of them, those no worker had claimed
        self._marks: list[Kiosk] = []  # asked for all in this look
        self._read_at: Any = None  # the newest erasure's id when the rows were last read
        # the kiosks pending at this worker's first read: each asked for all once (None: not
        # read yet); a kiosk pending later is asked only what no worker claimed
        self._at_start: set[Kiosk] | None = None
        self._mark: Any = _UNREAD  # the newest erasure's id when they were read
        self._started = iso_utc(now())  # an asking for all begun since covers this start
        self._failing = False
        self._next_prune_s = 0.0  # monotonic
        self._statuses_stored = statuses_stored  # None once they are
        self._thread = threading.Thread(target=self._loop, name="ForgetPublisher", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def halt(self, timeout_s: float) -> None:
        """Set ``stop`` and wait up to ``timeout_s`` for the thread to end."""
        self.stop.set()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        from appliance.backoffice.store import open_store  # noqa: PLC0415  (imports this)

        store: Store | None = None
        while not self.stop.wait(0 if store is None and not self._failing else self.every_s):
            try:
                store = store or open_store(self.url)
                try:
                    self.run_once(store)
                except Exception as exc:
                    # a PostgreSQL restarted since the last look closed this connection: a
                    # new one takes the look at once, said at INFO (no outage), as the ingest
                    # worker's store does (Store.reopened_after_close)
                    if not store.reopened_after_close(exc, self.stop):
                        raise
                    self.run_once(store)
                self._failing = False
            except Exception as exc:  # the store or broker away: the next look tries again
                if not self._failing:
                    log.warning(
                        "could not ask the kiosks to forget erased results now: %s; "
                        "tried again every %.0f s",
                        exc,
                        self.every_s,
                    )
                self._failing = True
                if store is not None:
                    store.close()
                store = None
        if store is not None:
            store.close()

    def run_once(self, store: Store) -> int:
        """Ask each kiosk that has ids not asked yet, or that came online since it was last
        asked; how many messages were published. The rows are read only where an erasure
        committed since they were last read (its id in ``erasures``: the rows are written in
        its transaction) and once every PRUNE_EVERY_S, which first deletes those past the
        window, if any: a look otherwise reads one index entry, and the kiosks' statuses while
        ids are pending. Each kiosk's window (``_windows``) is read with the rows."""
        now = self._now()
        mark = store.query("SELECT MAX(id) FROM erasures")[0][0]  # before the rows: no gap
        windows: Windows | None = None
        if self._clock() >= self._next_prune_s and self._windows_known():
            windows = self._windows(store)
            self._prune(store, windows, now)
            _prune_asks(store)
            self._next_prune_s = self._clock() + PRUNE_EVERY_S
            self._mark = _UNREAD
        fresh = mark != self._mark  # else no id is new to the asking: only a kiosk's return
        if fresh:
            self._pending, self._unasked = self._read(store, windows or self._windows(store),
                                                      now)
            self._mark = self._read_at = mark
            if self._at_start is None:
                self._at_start = set(self._pending)
        pending = self._pending
        if not pending:
            self._asked.clear()
            self._asked_all_at.clear()
            if self._at_start is not None:
                self._at_start.clear()
            return 0
        connections = self._connections(store)
        published = 0
        self._marks = []
        settling = not self._windows_known()
        for kiosk, ids in pending.items():
            if settling and kiosk not in self._asked and kiosk in (self._at_start or ()):
                continue  # asked at this worker's start once the statuses are stored
            connection, shared = connections.get(kiosk, (None, None))
            published += self._ask(store, kiosk, ids, connection=connection, shared=shared,
                                   fresh=fresh, wall=now)
        _marked(store, self._marks, self._read_at, now)  # one transaction for the look's
        return published

    def _start_ask_taken(self, store: Store, kiosk: Kiosk, ids: list[str],
                         connection: Connection | None, wall: datetime) -> bool:
        """Whether this worker is to ask ``kiosk`` for all now as pending at its first read
        and not asked by it yet (``_start_claimed``); where another worker's asking began
        since this one started, the kiosk is taken as asked, as that one read it."""
        if kiosk in self._asked:
            return False
        if _start_claimed(store, kiosk, connection, wall, self._started):
            return True
        online = connection is not None and connection[0] == "online"
        self._asked[kiosk] = (connection if online else None, frozenset(ids))
        self._discard_at_start(kiosk)
        return False

    def _discard_at_start(self, kiosk: Kiosk) -> None:
        """``kiosk``'s asking at this worker's start is done (by it or by another worker)."""
        if self._at_start is not None:
            self._at_start.discard(kiosk)

    def _windows_known(self) -> bool:
        """Whether the kiosks' windows are in the store: their retained statuses stored."""
        if self._statuses_stored is not None and not self._statuses_stored():
            return False
        self._statuses_stored = None
        return True

    def _windows(self, store: Store) -> Windows:
        """Each kiosk's window: its status's, else the back office's (``keep_confirmed_h``)."""
        return Windows(
            {
                (str(site), str(device)): window_h(hours)
                for site, device, hours in store.query(
                    "SELECT site, device_id, keep_confirmed_h FROM devices "
                    "WHERE keep_confirmed_h IS NOT NULL"
                )
            },
            self.keep_confirmed_h,
        )

    @staticmethod
    def _prune(store: Store, windows: Windows, now: datetime) -> None:
        """Delete the rows erased longer ago than their kiosk's window, if the oldest is
        (one index entry read otherwise)."""
        oldest = store.query("SELECT MIN(erased_at) FROM kiosk_forgets")[0][0]
        if oldest is None or str(oldest) >= _cut_off(now, windows.shortest_h):
            return
        store.write(  # the kiosks that say no window of their own
            "DELETE FROM kiosk_forgets WHERE erased_at < ? AND NOT EXISTS (SELECT 1 FROM "
            "devices WHERE devices.site = kiosk_forgets.site AND devices.device_id = "
            "kiosk_forgets.device_id AND devices.keep_confirmed_h IS NOT NULL)",
            [(_cut_off(now, windows.unsaid_h),)],
        )
        if windows.own:
            store.write(
                "DELETE FROM kiosk_forgets WHERE site = ? AND device_id = ? AND erased_at < ?",
                [(site, device, _cut_off(now, hours))
                 for (site, device), hours in sorted(windows.own.items())],
            )

    @staticmethod
    def _read(store: Store, windows: Windows, now: datetime
              ) -> tuple[dict[Kiosk, list[str]], dict[Kiosk, set[str]]]:
        """Each kiosk's ids erased within its window, and of them those no worker claimed
        yet (``asked_at`` null). With no kiosk saying a window of its own (the fleet at the
        default), one cut-off for all, the rows read as before the windows were; else each
        row's time is held against its kiosk's cut-off where that is later than the longest
        window's (a reading look at 100,000 rows: +20 %)."""
        pending: dict[Kiosk, list[str]] = {}
        unasked: dict[Kiosk, set[str]] = {}
        oldest = _cut_off(now, windows.longest_h)
        if not windows.own:
            for site, device, mid, asked_at in store.query(
                "SELECT site, device_id, measurement_id, asked_at FROM kiosk_forgets "
                "WHERE erased_at >= ? ORDER BY site, device_id, measurement_id",
                (oldest,),
            ):
                kiosk = (str(site), str(device))
                pending.setdefault(kiosk, []).append(str(mid))
                if asked_at is None:
                    unasked.setdefault(kiosk, set()).add(str(mid))
            return pending, unasked
        cut_offs: dict[Kiosk, str | None] = {}
        for site, device, mid, asked_at, erased_at in store.query(
            "SELECT site, device_id, measurement_id, asked_at, erased_at FROM kiosk_forgets "
            "WHERE erased_at >= ? ORDER BY site, device_id, measurement_id",
            (oldest,),
        ):
            kiosk = (str(site), str(device))
            if kiosk not in cut_offs:
                hours = windows.of(kiosk)
                cut_offs[kiosk] = None if hours == windows.longest_h else _cut_off(now, hours)
            cut_off = cut_offs[kiosk]
            if cut_off is None or str(erased_at) >= cut_off:
                pending.setdefault(kiosk, []).append(str(mid))
                if asked_at is None:
                    unasked.setdefault(kiosk, set()).add(str(mid))
        return pending, unasked

    def _connections(self, store: Store) -> dict[Kiosk, tuple[Connection, Shared | None]]:
        """Each kiosk's stored status (its state, boot and when its link connected) and the
        connection some worker last asked it for all on, and when (None: none did)."""
        rows = store.query(
            "SELECT d.site, d.device_id, d.state, d.status_boot, d.status_link_ms, "
            "a.status_boot, a.status_link_ms, a.asked_at FROM devices d LEFT JOIN "
            "kiosk_forget_asks a ON a.site = d.site AND a.device_id = d.device_id"
        )
        return {
            (str(site), str(device)): (
                (state, boot, link_ms),
                None if asked_at is None else (asked_boot, asked_link, str(asked_at)),
            )
            for site, device, state, boot, link_ms, asked_boot, asked_link, asked_at in rows
        }

    def _claimed_fresh(self, store: Store, kiosk: Kiosk, ids: list[str], unasked: set[str],
                       wall: datetime) -> list[str]:
        """Where ``kiosk`` has ids new to this worker's asking and no worker's yet
        (``unasked``), the ids it claims now (every row of the kiosk no worker claimed, also
        one an erasure committed since the read): it publishes them; those another worker
        claimed first are taken as asked."""
        asked_on, asked = self._asked.get(kiosk, (None, frozenset()))
        new = [mid for mid in ids if mid not in asked and mid in unasked]
        if not new:
            return []
        mine = _claimed(store, kiosk, wall)
        unasked.difference_update(new)
        self._asked[kiosk] = (asked_on, asked | frozenset(new).difference(mine))
        return mine

    def _ask(
        self,
        store: Store,
        kiosk: Kiosk,
        ids: list[str],
        *,
        connection: Connection | None,
        shared: Shared | None,
        fresh: bool,
        wall: datetime,
    ) -> int:
        """Publish what ``kiosk`` is to be asked now (every id where it came online on
        another connection since it was last asked, and no worker asked it for all on that
        one or within the minute (``shared``), else the ids not asked yet: none unless the ids
        were read ``fresh``); how many messages went. A kiosk new to this worker since its
        first look (nothing was pending for it) is asked only the ids no worker claimed:
        those some worker did are taken as asked by this one on the kiosk's connection now."""
        unasked = self._unasked.get(kiosk, set())
        online = connection is not None and connection[0] == "online"
        if kiosk not in self._asked and kiosk not in (self._at_start or ()):
            self._asked[kiosk] = (connection if online else None,
                                  frozenset(mid for mid in ids if mid not in unasked))
        start_ask = self._start_ask_taken(store, kiosk, ids, connection, wall)
        asked_on, asked = self._asked.get(kiosk, (None, frozenset()))
        if kiosk in self._asked and not online:  # its next "online" is asked again
            self._asked[kiosk] = (None, asked)
        again = kiosk not in self._asked or (online and connection != asked_on)
        if (again and kiosk in self._asked and online and shared is not None
                and connection is not None and connection[2] is not None
                and (shared[0], shared[1]) == (connection[1], connection[2])):
            asked_on = connection  # another worker asked it for all on this connection
            self._asked[kiosk] = (asked_on, asked)
            again = False
        now = self._clock()
        held_back = (
            again
            and kiosk in self._asked
            and (now < self._asked_all_at.get(kiosk, now - REASK_EVERY_S) + REASK_EVERY_S
                 or (shared is not None
                     and shared[2] > iso_utc(wall - timedelta(seconds=REASK_EVERY_S))))
        )  # asked for all while online within the minute (by any worker): again when it ends
        if not fresh and not (again and not held_back):
            return 0  # 100,000 ids held against those asked at every look: 6 ms
        asked_all = again and not held_back
        claimed = [] if asked_all else self._claimed_fresh(store, kiosk, ids, unasked, wall)
        wanted = ids if asked_all else claimed
        if not wanted:
            return 0
        topic = device_topic(self.prefix, kiosk[0], kiosk[1], FORGET_LEAF)
        payloads = requests(wanted)
        for payload in payloads:
            if not self._publish(topic, payload):
                self._mark = _UNREAD  # not connected: asked at the next look, read afresh
                if claimed or start_ask:
                    _released(store, kiosk, wall, rows=bool(claimed), shared=start_ask)
                return 0
        asked_all = asked_all and online
        if asked_all:
            self._asked_all_at[kiosk] = now
        self._discard_at_start(kiosk)
        self._asked[kiosk] = (
            asked_on if held_back else connection if online else None,
            frozenset(ids),
        )
        log.info(
            "asked kiosk %s/%s to forget %d erased result(s) it may keep (%d message(s))",
            kiosk[0],
            kiosk[1],
            len(wanted),
            len(payloads),
        )
        if not claimed:  # asked for all: the rows no worker claimed are marked with the look's
            self._marks.append(kiosk)
            unasked.difference_update(wanted)
        if asked_all and connection is not None:  # told to the other workers
            store.write(
                "INSERT INTO kiosk_forget_asks (site, device_id, status_boot, status_link_ms, "
                "asked_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, device_id) DO UPDATE SET "
                "status_boot = excluded.status_boot, status_link_ms = excluded.status_link_ms, "
                "asked_at = excluded.asked_at",
                [(kiosk[0], kiosk[1], connection[1], connection[2], iso_utc(wall))],
            )
        return len(payloads)


# a kiosk_forget_asks row whose kiosk has nothing left to be asked (its rows pruned past its
# window) or is no longer in the fleet (its devices row removed)
_STALE_ASKS = (
    "NOT EXISTS (SELECT 1 FROM kiosk_forgets f WHERE f.site = kiosk_forget_asks.site AND "
    "f.device_id = kiosk_forget_asks.device_id) OR NOT EXISTS (SELECT 1 FROM devices d "
    "WHERE d.site = kiosk_forget_asks.site AND d.device_id = kiosk_forget_asks.device_id)"
)


def _prune_asks(store: Store) -> None:
    """Delete the shared re-ask rows (``kiosk_forget_asks``) of the kiosks with nothing left
    to ask or gone from the fleet, if there is one (a read of at most one row a kiosk, each
    by index, otherwise): the table holds a row only for a kiosk with ids pending. Run with
    the minute's prune; a row deleted while a worker asks again costs at most one more
    asking of that kiosk."""
    if store.query(f"SELECT 1 FROM kiosk_forget_asks WHERE {_STALE_ASKS} LIMIT 1"):
        store.write(f"DELETE FROM kiosk_forget_asks WHERE {_STALE_ASKS}", [()])


def _claimed(store: Store, kiosk: Kiosk, wall: datetime) -> list[str]:
    """``kiosk``'s rows no worker claimed, claimed now (``asked_at``: the back office's clock,
    the claim's stamp) in one statement (by the primary key's site and device): the ids this
    worker is to publish, in order."""
    rows = store.write_returning(
        "UPDATE kiosk_forgets SET asked_at = ? WHERE site = ? AND device_id = ? AND "
        "asked_at IS NULL RETURNING measurement_id", [(iso_utc(wall), kiosk[0], kiosk[1])])
    return sorted(str(row[0]) for row in rows)


def _start_claimed(store: Store, kiosk: Kiosk, connection: Connection | None, wall: datetime,
                   started: str) -> bool:
    """Whether this worker, started at ``started``, is to ask ``kiosk`` for all now: True
    where it took the kiosk's shared row (``kiosk_forget_asks``: its connection and ``wall``)
    in one statement, False where some worker's asking for all of it began at or after
    ``started`` (its rows were read since: whatever a worker killed before this start left
    claimed but unsent is in them). Of N workers started together, the first takes it."""
    boot, link_ms = (None, None) if connection is None else (connection[1], connection[2])
    return bool(store.write_returning(
        "INSERT INTO kiosk_forget_asks (site, device_id, status_boot, status_link_ms, "
        "asked_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, device_id) DO UPDATE SET "
        "status_boot = excluded.status_boot, status_link_ms = excluded.status_link_ms, "
        "asked_at = excluded.asked_at WHERE kiosk_forget_asks.asked_at < ? RETURNING site",
        [(kiosk[0], kiosk[1], boot, link_ms, iso_utc(wall), started)],
    ))


def _released(store: Store, kiosk: Kiosk, wall: datetime, *, rows: bool, shared: bool) -> None:
    """Give back what this worker took at ``wall`` for an asking that did not go (not
    connected): ``kiosk``'s rows it claimed (``rows``) and its shared row taken for the
    asking at its start (``shared``), which its next look takes again."""
    if rows:
        store.write("UPDATE kiosk_forgets SET asked_at = NULL WHERE site = ? AND device_id = ? "
                    "AND asked_at = ?", [(kiosk[0], kiosk[1], iso_utc(wall))])
    if shared:
        store.write("DELETE FROM kiosk_forget_asks WHERE site = ? AND device_id = ? AND "
                    "asked_at = ?", [(kiosk[0], kiosk[1], iso_utc(wall))])


def _marked(store: Store, kiosks: list[Kiosk], read_at: Any, wall: datetime) -> None:
    """Mark the rows of ``kiosks`` (asked for all as read when the newest erasure was
    ``read_at``) asked where no worker had, in one transaction; where an erasure committed
    since, none (its rows were not published: the statement's own snapshot reads both)."""
    if kiosks and read_at is not None:
        store.write("UPDATE kiosk_forgets SET asked_at = ? WHERE site = ? AND device_id = ? "
                    "AND asked_at IS NULL AND (SELECT MAX(id) FROM erasures) = ?",
                    [(iso_utc(wall), site, device, read_at) for site, device in kiosks])


def _cut_off(now: datetime, hours: float) -> str:
    """The erasure time before which a row is past a window of ``hours`` (stored form)."""
    return iso_utc(now - timedelta(hours=hours))
