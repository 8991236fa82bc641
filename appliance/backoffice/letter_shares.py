"""Dead letters over the bounds go first from a kiosk holding more than its share of them.

The bounds (``backoffice.dead_letter_max_rows``, ``dead_letter_max_total_bytes``) prune the
oldest letters, and a refused result whose letter is pruned is lost once its kiosk was told
to drop it (docs/delivery.md). Pruned oldest first across the fleet, one kiosk (broken, or
holding a stolen login) that sends refused results fast enough would push every other
kiosk's letters out, the results they hold for ``appliance results retry`` with them. So,
before the oldest of all go, the oldest letters of a kiosk that holds more than half of
either bound go, until the letters fit or it holds no more than that half (its newest letter
is never taken so: one letter is no flood): what one kiosk sends costs its own letters first.

Each topic's letters are counted in ``dead_letter_topic_totals`` (migration 14), kept up to
date with every letter kept or removed, so a batch at the bounds reads one row per topic, not
every letter. The base of ``letter_writes.LetterWrites`` (a mixin of ``Store``), inside its batch
transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from appliance.backoffice.schema import named_measurement_id
from appliance.backoffice.store_connection import StoreConnection
from appliance.backoffice.storetext import letter_size_sql
from appliance.transport.topics import parse_device_topic

SHARE_OF_BOUNDS = 0.5  # of each bound, what one kiosk's letters may hold before others' go
_IN_CHUNK = 500  # ids in one IN (...) list
_LETTERS_AT_ONCE = 16  # letters read at once to tell only copies (each up to 256 KiB)

Device = tuple[str, str]


class LetterShares(StoreConnection):
    """``_prune_over_share`` for ``IngestWrites.write_batch``."""

    if TYPE_CHECKING:

        def _remove_letters(self, cur: Any, where: str, params: Sequence[Any]) -> None: ...
        def _add_to_letter_totals(self, cur: Any, letters: int,
                                  letter_bytes: int) -> tuple[int, int]: ...

    def _prune_over_share(
        self, cur: Any, totals: tuple[int, int], bounds: tuple[int, int], new_ids: set[int],
        prefix: str,
    ) -> tuple[tuple[int, int], Counter[Device]]:
        """Prune the oldest letters of kiosks over their share while all letters exceed
        ``bounds`` (rows, bytes); returns the totals after and, by kiosk, the letters pruned
        that were a result's only copy (``new_ids``, this batch's own, are not: unconfirmed)."""
        if totals[0] <= bounds[0] and totals[1] <= bounds[1]:
            return totals, Counter()
        share = (bounds[0] * SHARE_OF_BOUNDS, bounds[1] * SHARE_OF_BOUNDS)
        held = self._held_by_device(cur, prefix)
        greedy = sorted((d for d, (rows, size, _) in held.items()
                         if rows > 1 and (rows > share[0] or size > share[1])),
                        key=lambda d: held[d][1], reverse=True)
        lost: Counter[Device] = Counter()
        for device in greedy:
            rows, size, topics = held[device]
            going: list[int] = []
            for letter_id, letter_size in self._oldest_of(cur, topics):
                if (totals[0] <= bounds[0] and totals[1] <= bounds[1]) or rows <= 1 or (
                        rows <= share[0] and size <= share[1]):
                    break
                going.append(letter_id)
                rows, size = rows - 1, size - letter_size
                totals = (totals[0] - 1, totals[1] - letter_size)
            for start in range(0, len(going), _IN_CHUNK):
                chunk = going[start : start + _IN_CHUNK]
                picked = f"id IN ({','.join('?' * len(chunk))})"
                lost += self._only_copies(picked, chunk, new_ids, prefix)
                self._remove_letters(cur, picked, chunk)
        return self._add_to_letter_totals(cur, 0, 0), lost

    def _add_to_topic_totals(self, cur: Any, letters: list[tuple[str, int]], sign: int) -> None:
        """Add (``sign`` 1) or take off (-1) ``letters`` (topic, size) from each topic's count
        and size (``dead_letter_topic_totals``, migration 14); a topic left with none goes.
        Called after ``dead_letter_totals``, whose row lock orders the writers."""
        changes: dict[str, tuple[int, int]] = {}
        for topic, size in letters:
            rows, total = changes.get(topic, (0, 0))
            changes[topic] = (rows + sign, total + sign * size)
        if not changes:
            return
        cur.executemany(self._sql(
            "INSERT INTO dead_letter_topic_totals (topic, letters, letter_bytes) VALUES (?, ?, ?) "
            "ON CONFLICT (topic) DO UPDATE SET letters = dead_letter_topic_totals.letters + "
            "excluded.letters, letter_bytes = dead_letter_topic_totals.letter_bytes + "
            "excluded.letter_bytes"), [(t, *changes[t]) for t in sorted(changes)])
        topics = sorted(changes) if sign < 0 else []
        for start in range(0, len(topics), _IN_CHUNK):
            chunk = topics[start : start + _IN_CHUNK]
            cur.execute(self._sql("DELETE FROM dead_letter_topic_totals WHERE letters <= 0 AND "
                                  f"topic IN ({','.join('?' * len(chunk))})"), chunk)

    def _held_by_device(self, cur: Any, prefix: str) -> dict[Device, tuple[int, int, list[str]]]:
        """Per kiosk: its letters' count and size, and the topics they came on."""
        cur.execute(self._sql("SELECT topic, letters, letter_bytes FROM dead_letter_topic_totals"))
        held: dict[Device, tuple[int, int, list[str]]] = {}
        for topic, rows, size in cur.fetchall():
            where = parse_device_topic(prefix, str(topic))
            if where is None:
                continue
            before = held.get((where[0], where[1]), (0, 0, []))
            held[where[0], where[1]] = (before[0] + int(rows), before[1] + int(size),
                                        [*before[2], str(topic)])
        return held

    def _oldest_of(self, cur: Any, topics: list[str]) -> Iterator[tuple[int, int]]:
        """(id, size) of the letters on ``topics``, oldest first, a page at a time (a batch
        at the bounds takes about as many as it brought)."""
        after, page_size = 0, _LETTERS_AT_ONCE
        while True:
            cur.execute(self._sql(
                f"SELECT id, {letter_size_sql(self.postgres)} FROM dead_letters "
                f"WHERE id > ? AND topic IN "
                f"({','.join('?' * len(topics))}) ORDER BY id LIMIT ?"),
                [after, *topics, page_size])
            page = [(int(row[0]), int(row[1])) for row in cur.fetchall()]
            yield from page
            if len(page) < page_size:
                return
            after, page_size = page[-1][0], _IN_CHUNK

    def _only_copies(self, where: str, params: Sequence[Any], new_ids: set[int],
                     prefix: str) -> Counter[Device]:
        """By kiosk: the letters ``where`` picks that were a result's only copy.

        A refused result kept whole on its device's result topic that names a measurement id
        is confirmed to that kiosk, which then drops it (``Triage.refused_results``); so is a
        result set aside as a conflict. The batch's own letters (``new_ids``) are not: one
        pruned at once is not confirmed, its kiosk still holds it. Every other letter is, also
        one another worker committed while this one waited for the totals row (its id may lie
        between this batch's and the ones before). In id order: PostgreSQL plans a cursor for
        its first rows, so for ``id < ?`` it walks the id index up to the cut rather than the
        whole table, also before it has the table's statistics."""
        pruned: Counter[Device] = Counter()
        for letter_id, topic, payload in self._stream(
                f"SELECT id, topic, payload FROM dead_letters WHERE {where} AND topic LIKE ? "
                "AND payload_bytes = LENGTH(payload) ORDER BY id", [*params, "%/result"],
                _LETTERS_AT_ONCE):
            if int(letter_id) in new_ids:
                continue
            device = parse_device_topic(prefix, str(topic))
            if device is not None and device[2] == "result" and named_measurement_id(
                    bytes(payload)) is not None:
                pruned[device[0], device[1]] += 1
        return pruned
