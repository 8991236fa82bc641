"""The erasure journal (erasure_journal.py) held against a store: which of its erasures and
releases the store lacks (``results erasures --check-journal``), and those applied again
(``store restore``, SQLite into its copy before the rename, and ``results erasures
--apply-journal``).

Each is applied in the journal's order with its own time, not the restore's: a subject's
results captured before its erasure are judged by that time when the kiosks send them again
(erasure_clock.py), and a release comes after the erasure it undoes part of. An entry the store
holds already (an erasure of that kind, id and time: one the backup was taken after) is left:
applying one twice changes nothing. A release whose held result the store lacks (it came
after the backup) is recorded, so the result is stored when its kiosk sends it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.backoffice.erasure import ErasureMoment, Selector
from appliance.backoffice.erasure_journal import Journal, JournalEntry


@dataclass(frozen=True)
class Reapplied:
    """What applying the journal again did: the erasures and releases applied, the results
    they erased, the entries the store held already, and the store's erasures and releases
    the journal lacks (unlisted)."""

    erasures: int
    releases: int
    results: int
    held_already: int
    unlisted: int = 0

    def summary(self, journal: Journal) -> str:
        """One line for the restore's output (two where the journal lacks some of the
        store's)."""
        line = (f"re-applied {self.erasures} erasure(s) and {self.releases} release(s) from "
                f"the erasure journal {journal.path}, with their own times: they erased "
                f"{self.results} result(s); {self.held_already} more the store held already")
        note = unlisted_note(journal, self.unlisted)
        return line if note is None else f"{line}\n{note}"


def unlisted(store: Any, journal: Journal) -> int:
    """How many of the store's erasures and releases the journal holds no line of."""
    listed = {(entry.kind, entry.value, entry.at) for entry in journal.entries}
    return sum((str(kind), str(selector), str(at)) not in listed for kind, selector, at in
               store.query("SELECT kind, selector, erased_at FROM erasures "
                           "WHERE kind IN ('subject', 'result', 'release')"))


def unlisted_note(journal: Journal, count: int) -> str | None:
    """The words for a journal that lacks ``count`` of the store's erasures and releases (None
    for none): a journal lost with the store's disk and not put back (an empty one made
    since), or an older copy, cannot give back the erasures made after the backup."""
    if not count:
        return None
    return (f"Note: the store holds {count} erasure(s) and release(s) that the erasure journal "
            f"{journal.path} has no line of: it is not the journal they were written to (one "
            "lost with the disk and not put back, or an older copy; or they were made before "
            "the product kept a journal), so erasures made after the backup may be missing "
            "from it: put the journal that was copied off the host back in its place and run "
            "appliance results erasures --apply-journal")


def missing(store: Any, journal: Journal) -> list[JournalEntry]:
    """The journal's entries the store holds no erasure or release of, in order."""
    held = {(str(kind), str(selector), str(at)) for kind, selector, at in store.query(
        "SELECT kind, selector, erased_at FROM erasures "
        "WHERE kind IN ('subject', 'result', 'release')")}
    return [entry for entry in journal.entries
            if (entry.kind, entry.value, entry.at) not in held]


def reapplied(store: Any, journal: Journal, topic_prefix: str) -> Reapplied:
    """Apply the journal's entries the store lacks, in order, each with its own time
    (``topic_prefix``: Store.erase's, the fleet's, always given: `store restore` and
    `results erasures --apply-journal` both pass results_removal.erasure_setting's, so an
    erased letter is recorded for its kiosk either way)."""
    from appliance.backoffice.commands import letter_judge  # noqa: PLC0415

    # inside the store's lock, checked there: a worker's start, --apply-journal and a restore
    # applying at once apply each entry once (journal_start.py)
    with store.writes_held():
        todo = missing(store, journal)
        results = 0
        for entry in todo:
            moment = ErasureMoment(entry.at)
            if entry.kind != "release":
                results += store.erase(Selector(entry.kind, entry.value), entry.by, moment,
                                       topic_prefix=topic_prefix).results
            elif not store.release_held(entry.value, letter_judge(), entry.by,
                                        moment).erasure_id:
                store.record_release(entry.value, moment, entry.by)
    releases = sum(entry.kind == "release" for entry in todo)
    return Reapplied(len(todo) - releases, releases, results,
                     len(journal.entries) - len(todo), unlisted(store, journal))


def missing_lines(journal: Journal, lacking: Sequence[JournalEntry]) -> list[str]:
    """A line for each entry the store lacks, naming its journal line (ids escaped)."""
    from appliance.logsafe import escape_controls  # noqa: PLC0415

    return [f"  {journal.path}:{entry.line}: {entry.kind} {escape_controls(entry.value)} at "
            f"{entry.at} by {escape_controls(entry.by)}" for entry in lacking]
