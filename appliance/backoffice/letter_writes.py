"""The dead letters an ingest batch keeps: each once, within the bounds, with their totals.

``backoffice.dead_letter_max_rows`` and ``dead_letter_max_total_bytes`` bound the letters kept.
A batch adds its letters and their sizes to the running totals (``dead_letter_totals``, one
row, which every writer locks first: store_writes.py's lock order), and each topic's
(``dead_letter_topic_totals``); over the bounds, the oldest letters of a kiosk holding more
than its share go first (letter_shares.py), then the oldest of all. A pruned letter that was a
refused result's only copy (its kiosk was told to drop it) is counted by kiosk and warned of.
A mixin of ``Store`` beside ``store_writes.IngestWrites``, inside its batch transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from appliance.backoffice.letter_shares import LetterShares
from appliance.backoffice.queries import NAME_CHARS
from appliance.backoffice.schema import DeadLetter, iso_utc
from appliance.backoffice.storetext import letter_size_sql
from appliance.logsafe import shorten
from appliance.transport.payloads import utc_now

_IN_CHUNK = 500  # hashes in one IN (...) list
_LETTERS_AT_ONCE = 16  # pruned letters read at once (each up to dead_letter_max_bytes)
_SIZES_AT_ONCE = 1000  # (id, size) of the oldest letters read at once, to find the prune cut
_SIZES_FIRST = 16  # ... but first: a batch at the bounds prunes about as many as it brought
_LETTER_COLUMNS = ("received_at", "topic", "reason", "payload_bytes", "payload", "letter_sha256")
_NAMED_DEVICES = 10  # a warning names this many devices, then how many more


class LetterWrites(LetterShares):
    """``_keep_letters`` and the dead-letter statements of ``IngestWrites``."""

    def _keep_letters(self, cur: Any, letters: Sequence[DeadLetter], bounds: tuple[int, int],
                      prefix: str) -> tuple[Counter[tuple[str, str]], set[str]]:
        """Keep ``letters`` within ``bounds`` (rows, bytes): the oldest of a kiosk over its
        share go first, then the oldest of all; returns, by kiosk, the letters pruned that
        were a refused result's only copy (counted in the store too), and the hashes of the
        letters that were not kept already (``letter_sha256``)."""
        totals, new_ids, added = self._insert_dead_letters(cur, letters)
        totals, pruned = self._prune_over_share(cur, totals, bounds, new_ids, prefix)
        cut = self._prune_cut(cur, totals, *bounds)
        if cut is not None:
            pruned += self._only_copies("id < ?", (cut,), new_ids, prefix)
            self._remove_letters(cur, "id < ?", (cut,))
        if pruned:
            self._count_pruned(cur, pruned)
        return pruned, added

    def recount_letter_totals(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Count the kept dead letters and their bytes again into ``dead_letter_totals``;
        returns (count, bytes) as the row had them and as they are.

        Workers older than store migration 13 keep and prune letters without the running
        total, and those older than 15 count their sizes in characters, not bytes, so while
        one runs beside a newer one the total drifts (the newer worker's
        bounds then prune too few letters, or too many). Each worker recounts as it starts:
        once the older ones are stopped, the next start sets the total right, and each topic's
        (``dead_letter_topic_totals``). One scan of the letters' sizes, not their payloads."""
        with self._transaction() as cur:
            before = self._add_to_letter_totals(cur, 0, 0)  # the row first: the lock order
            cur.execute(f"SELECT COUNT(*), COALESCE(SUM({letter_size_sql(self.postgres)}), 0) "
                        "FROM dead_letters")
            row = cur.fetchone()
            counted = int(row[0]), int(row[1])
            if counted != before:
                cur.execute(self._sql("UPDATE dead_letter_totals SET letters = ?, "
                                      "letter_bytes = ?"), counted)
            # each kiosk's share (migration 14) drifts with the total: counted again with it
            cur.execute("DELETE FROM dead_letter_topic_totals")
            cur.execute("INSERT INTO dead_letter_topic_totals (topic, letters, letter_bytes) "
                        "SELECT topic, COUNT(*), COALESCE(SUM("
                        f"{letter_size_sql(self.postgres)}), 0) FROM dead_letters GROUP BY topic")
        return before, counted

    def _still_kept(self, cur: Any, letters: list[DeadLetter]) -> list[DeadLetter]:
        """The letters among ``letters`` that the dead-letter table holds now."""
        hashes = list({d.letter_sha256 for d in letters if d.letter_sha256 is not None})
        held: set[str] = set()
        for start in range(0, len(hashes), _IN_CHUNK):
            chunk = hashes[start : start + _IN_CHUNK]
            cur.execute(self._sql("SELECT letter_sha256 FROM dead_letters WHERE letter_sha256 "
                                  f"IN ({','.join('?' * len(chunk))})"), chunk)
            held.update(row[0] for row in cur.fetchall())
        return [d for d in letters if d.letter_sha256 in held]

    def _insert_dead_letters(
        self, cur: Any, letters: Sequence[DeadLetter]
    ) -> tuple[tuple[int, int], set[int], set[str]]:
        """Keep each letter once (one received again is already here); returns the kept
        letters' count and size, this batch's included (``dead_letter_totals``), and the ids
        and hashes of the letters this batch added."""
        one = "(" + ",".join("?" * len(_LETTER_COLUMNS)) + ")"
        sizes: list[tuple[str, int]] = []
        new_ids: set[int] = set()
        added: set[str] = set()
        for start in range(0, len(letters), _LETTERS_AT_ONCE):
            chunk = letters[start : start + _LETTERS_AT_ONCE]
            cur.execute(self._sql(
                f"INSERT INTO dead_letters ({','.join(_LETTER_COLUMNS)}) VALUES "
                f"{','.join([one] * len(chunk))} ON CONFLICT (letter_sha256) DO NOTHING "
                f"RETURNING id, topic, {letter_size_sql(self.postgres)}, letter_sha256"),
                [value for d in chunk for value in (d.received_at, d.topic, d.reason,
                                                    d.payload_bytes, d.payload, d.letter_sha256)])
            for letter_id, topic, size, letter_sha256 in cur.fetchall():
                new_ids.add(int(letter_id))
                added.add(str(letter_sha256))
                sizes.append((str(topic), int(size)))
        totals = self._add_to_letter_totals(cur, len(sizes), sum(size for _, size in sizes))
        self._add_to_topic_totals(cur, sizes, 1)
        return totals, new_ids, added

    def _remove_letters(self, cur: Any, where: str, params: Sequence[Any]) -> None:
        """Delete the dead letters ``where`` picks, taking them off ``dead_letter_totals``."""
        cur.execute(self._sql(f"DELETE FROM dead_letters WHERE {where} "
                              f"RETURNING topic, {letter_size_sql(self.postgres)}"), params)
        sizes = [(str(row[0]), int(row[1])) for row in cur.fetchall()]
        self._add_to_letter_totals(cur, -len(sizes), -sum(size for _, size in sizes))
        self._add_to_topic_totals(cur, sizes, -1)

    def _add_to_letter_totals(self, cur: Any, letters: int, letter_bytes: int) -> tuple[int, int]:
        """Add to the kept letters' count and size; returns both. On PostgreSQL this locks the
        row until commit: transactions that add or remove letters go on from here one at a
        time, each adding to the total the one before committed and pruning what it kept."""
        cur.execute(self._sql(
            "UPDATE dead_letter_totals SET letters = letters + ?, letter_bytes = letter_bytes + ? "
            "RETURNING letters, letter_bytes"), (letters, letter_bytes))
        row = cur.fetchone()
        return int(row[0]), int(row[1])

    def _prune_cut(
        self, cur: Any, totals: tuple[int, int], keep_rows: int, keep_bytes: int
    ) -> int | None:
        """The id below which dead letters go (None: all fit): the ``keep_rows`` newest rows
        are kept, then the newest whose payloads, reasons and topics fit in ``keep_bytes``.
        ``totals`` (count, size of all kept) say whether any must go; then only the letters
        that go are read, oldest first. Rows are counted, not ids: both databases spend an id
        on every insert that finds its letter already kept, so a flood of copies leaves gaps."""
        over_rows, over_bytes = totals[0] - keep_rows, totals[1] - keep_bytes
        if over_rows <= 0 and over_bytes <= 0:
            return None
        last = None
        for letter_id, size in self._oldest_letters(cur, min(max(over_rows, _SIZES_FIRST),
                                                                _SIZES_AT_ONCE)):
            over_rows, over_bytes, last = over_rows - 1, over_bytes - size, letter_id
            if over_rows <= 0 and over_bytes <= 0:
                break
        return None if last is None else last + 1

    def _oldest_letters(self, cur: Any, first_page: int) -> Iterator[tuple[int, int]]:
        """(id, size) of the kept letters, oldest first, a page at a time: each page is one
        range of the id index however many letters are kept."""
        after, page_size = 0, first_page
        while True:
            cur.execute(self._sql(f"SELECT id, {letter_size_sql(self.postgres)} FROM "
                                  "dead_letters WHERE id > ? ORDER BY id LIMIT ?"),
                        (after, page_size))
            page = [(int(row[0]), int(row[1])) for row in cur.fetchall()]
            yield from page
            if len(page) < page_size:
                return
            after, page_size = page[-1][0], _SIZES_AT_ONCE

    def _count_pruned(self, cur: Any, pruned: Counter[tuple[str, str]]) -> None:
        """Add ``pruned`` to the store's count of only copies pruned, by device."""
        at = iso_utc(utc_now())
        cur.executemany(self._sql(
            "INSERT INTO pruned_only_copies (site, device_id, letters, last_pruned_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (site, device_id) DO UPDATE SET "
            "letters = pruned_only_copies.letters + excluded.letters, "
            "last_pruned_at = excluded.last_pruned_at"),
            [(site, device, letters, at) for (site, device), letters in pruned.items()])


def pruned_warning(pruned: Counter[tuple[str, str]]) -> str:
    """The warning that the bounds pruned results' only copies, naming the first devices."""
    named = [f"{shorten(f'{site}/{device}', NAME_CHARS)} ({letters})"
             for (site, device), letters in sorted(pruned.items())]
    more = f" and {len(named) - _NAMED_DEVICES} more" if len(named) > _NAMED_DEVICES else ""
    return (f"the dead-letter bounds (backoffice.dead_letter_max_rows, "
            f"dead_letter_max_total_bytes) pruned {pruned.total()} refused result(s) whose "
            f"kiosk was told to drop them: their only copy is lost. From "
            f"{', '.join(named[:_NAMED_DEVICES])}{more}. Raise the bounds, or fix what refuses "
            "them and run `appliance results retry` sooner")
