"""Keyset pages: a listing in the order of its key columns, read a page at a time from a cursor.

A listing (results newest first, kiosks by site and device id, dead letters newest first) is
ordered by key columns that are unique together; a cursor is the key of a row a page showed.
The page ``onward`` of a cursor holds the rows just past it in the listing's order; the page
``back`` from one holds the rows just before it, read in the opposite order (so LIMIT keeps
the nearest ones) and turned round. Either way the read is one range of an index on the key
(results, devices and dead letters have one), so page N costs what page 1 costs. The cursor is
compared as a row value, ``(a, b) < (?, ?)``, which SQLite and PostgreSQL read alike. One
row read beyond a page says whether a further page lies that way; one row read beyond its
other end, whether one lies back (``Neighbours``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Fetch = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
Row = TypeVar("Row")
Key = TypeVar("Key")


@dataclass(frozen=True)
class Keyset:
    """A listing's key columns (unique together) and its order: descending or ascending."""

    columns: tuple[str, ...]
    descending: bool

    def page(self, fetch: Fetch, select: str, where: tuple[Sequence[str], Sequence[Any]],
             limit: int, *, onward: Sequence[Any] | None = None,
             back: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows of ``select`` (``SELECT ... FROM ...``) meeting ``where``
        (SQL conditions, their parameters), in the listing's order: the first past the
        ``onward`` cursor, or the last before the ``back`` one, or the first of all (both:
        the first between them)."""
        conditions, params = list(where[0]), list(where[1])
        for cursor, later in ((onward, True), (back, False)):
            if cursor is not None:
                conditions.append(self._beyond(later))
                params.extend(cursor)
        turned = back is not None and onward is None
        sql = select + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        direction = " DESC" if self.descending != turned else ""
        sql += f" ORDER BY {', '.join(c + direction for c in self.columns)} LIMIT ?"
        rows = fetch(sql, [*params, int(limit)])
        return rows[::-1] if turned else rows

    def _beyond(self, later: bool) -> str:
        """The condition that a row comes after (``later``) or before a cursor."""
        comparison = "<" if later == self.descending else ">"
        return (f"({', '.join(self.columns)}) {comparison} "
                f"({', '.join('?' * len(self.columns))})")


@dataclass(frozen=True)
class Neighbours(Generic[Row, Key]):
    """How a page two ways (onward and back) finds its rows and the pages beside it: ``read``
    gives up to a number of rows onward of a cursor or back from one, in the listing's order;
    ``exists`` whether any row lies onward of a cursor or back from one; ``key`` a row's
    cursor."""

    read: Callable[[int, Key | None, Key | None], list[Row]]
    exists: Callable[[Key | None, Key | None], bool]
    key: Callable[[Row], Key]

    def page(self, size: int, onward: Key | None,
             back: Key | None) -> tuple[list[Row], Key | None, Key | None]:
        """Up to ``size`` rows onward of ``onward``, or back from ``back``, or the first; and
        the cursors of the pages beside them: onward of the last row, back from the first
        (None where no row lies that way)."""
        rows = self.read(size + 1, onward, back)
        more = len(rows) > size  # one row beyond the page: a further page the way it read
        rows = rows[1:] if more and back is not None else rows[:size]
        if not rows:
            return rows, None, None
        first, last = self.key(rows[0]), self.key(rows[-1])
        if back is not None:
            later, earlier = self.exists(last, None), more
        else:
            later, earlier = more, onward is not None and self.exists(None, first)
        return rows, last if later else None, first if earlier else None
