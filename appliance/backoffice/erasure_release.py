"""Releasing a result held for its subject's erasure (erasure_clock.py): an operator who knows
the person agreed again after the erasure stores it, and the audit records who did.

A held result's only copy is its dead letter, so release is ``results retry`` for one
measurement id with the subject's erasure lifted: a tombstone (that very result erased) and
the retention cut-off still hold. A mixin of ``Store``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.backoffice.erasure import ErasureMoment
from appliance.backoffice.schema import named_measurement_id
from appliance.backoffice.store_connection import StoreConnection

_LETTERS_AT_ONCE = 16  # letters read at once to find those naming the released id
# what a letter's topic and payload make of it today (commands.py's retry judge): result rows
Judge = Callable[[str, bytes], Sequence[tuple[Any, ...]]]


@dataclass(frozen=True)
class Released:
    """What one release stored (0 or 1 result), the letters it removed, and its audit record's
    id (None: nothing stored, nothing recorded)."""

    results: int
    dead_letters: int
    erasure_id: int | None


class ReleaseWrites(StoreConnection):
    """``release_held``, mixed into ``Store``."""

    if TYPE_CHECKING:

        def _remove_letters(self, cur: Any, where: str, params: Sequence[Any]) -> None: ...
        def _add_to_letter_totals(self, cur: Any, letters: int,
                                  letter_bytes: int) -> tuple[int, int]: ...
        def _insert_results(self, cur: Any, rows: Sequence[tuple[Any, ...]], *,
                            released: bool = False
                            ) -> tuple[list[str], list[tuple[Any, ...]]]: ...
        def _touch_devices(self, cur: Any, results: Sequence[tuple[Any, ...]],
                           statuses: Sequence[tuple[Any, ...]] = ()) -> None: ...

    def held_letters(self, measurement_id: str) -> list[int]:
        """The ids of the letters kept whole on a result topic that name ``measurement_id``;
        reads only."""
        return list(self._named(measurement_id))

    def release_held(self, measurement_id: str, judge: Judge, user: str,
                     moment: ErasureMoment | None = None) -> Released:
        """Store the result the letters of ``held_letters`` hold, although its subject was
        erased, remove the letters whose result is stored now, and record the release (kind
        "release") in the audit; one transaction. As in ``retry_dead_letters``, the letters
        are read and judged before the write lock, and only those still kept are used.
        ``moment``: its time and the journal line written before the commit (erasure.py)."""
        named = self._named(measurement_id)
        taken = {letter_id: judge(topic, payload) for letter_id, (topic, payload) in named.items()}
        with self._transaction() as cur:
            self._add_to_letter_totals(cur, 0, 0)  # the lock order: the totals row first
            cur.execute(self._sql("SELECT id FROM dead_letters WHERE id <= ?"),
                        (max(named, default=0),))
            kept = [i for i in sorted(named) if i in {int(row[0]) for row in cur.fetchall()}]
            rows = [row for i in kept for row in taken[i]]
            if not rows:
                return Released(0, 0, None)
            stored, refused = self._insert_results(cur, rows, released=True)
            self._touch_devices(cur, rows)
            left = {id(row) for row in refused}
            done = [i for i in kept if taken[i] and not any(id(row) in left for row in taken[i])]
            if done:
                self._remove_letters(cur, f"id IN ({','.join('?' * len(done))})", done)
            if not stored:
                return Released(0, len(done), None)
            cur.execute(self._sql(
                "INSERT INTO erasures (erased_at, os_user, kind, selector, results, dead_letters) "
                "VALUES (?, ?, 'release', ?, ?, ?) RETURNING id"),
                ((moment or ErasureMoment()).taken(), user, measurement_id, len(stored),
                 len(done)))
            return Released(len(stored), len(done), int(cur.fetchone()[0]))

    def record_release(self, measurement_id: str, moment: ErasureMoment, user: str) -> None:
        """Record a release whose held result is not in the store (a store restored from a
        backup taken before it): the result is stored when its kiosk sends it again."""
        with self._transaction() as cur:
            cur.execute(self._sql(
                "INSERT INTO erasures (erased_at, os_user, kind, selector, results, dead_letters) "
                "VALUES (?, ?, 'release', ?, 0, 0)"), (moment.taken(), user, measurement_id))

    def _named(self, measurement_id: str) -> dict[int, tuple[str, bytes]]:
        """(topic, payload) of each letter kept whole on a result topic naming the id; read a
        few at a time (the letters' bounds allow some 60 MB of them)."""
        rows = self._stream("SELECT id, topic, payload_bytes, payload FROM dead_letters "
                            "WHERE topic LIKE ? ORDER BY id", ("%/result",), _LETTERS_AT_ONCE)
        return {int(letter_id): (str(topic), bytes(payload))
                for letter_id, topic, size, payload in rows
                if int(size) == len(bytes(payload))
                and named_measurement_id(bytes(payload)) == measurement_id}
