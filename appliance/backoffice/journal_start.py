"""The erasure journal's lines the store lacks, applied as a back-office worker starts, before
it takes any message (``appliance backoffice``: service.py), and as the console starts, before
it serves (console/commands.py).

A store can lack a journal line's erasure although the journal holds it: a PostgreSQL ``store
restore`` killed after the backup was put in place and before the journal was applied (its
staging schema is at the backup's version until after the swap, so the journal cannot go in
first as on SQLite), or a crash between an erasure's line (written first) and its commit. A
worker started then would serve the erased results and store them again when their kiosks
resend them, so it applies those lines first, as ``results erasures --apply-journal`` does
(erasure_reapply.py, with the fleet's topic prefix: their kiosks are asked to forget them too),
each named at WARNING by file and line.

Several workers may start at once: where the store lacks lines, the journal is read and held
against the store again, and the lines applied, inside the store's own lock (Store.writes_held:
SQLite's write transaction, PostgreSQL's dead-letter totals row and results table, which every
erasure takes first), so one worker applies them and the next, once it has the lock, finds none
missing; nor is an erasure of another process half done then (its line written, its commit to
come). A start that finds none missing (the usual one) takes no lock: reading a journal of
100,000 lines takes some 2.6 CPU-s, which no other worker's writes wait for. A journal that
cannot be read or is refused (another owner, a link, a line the product does not write) stops
the worker: it never serves what the journal says was erased.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from appliance.backoffice.erasure_journal import (
    Journal,
    JournalError,
    journal_path,
    read_journal,
)
from appliance.backoffice.erasure_reapply import missing, missing_lines, reapplied
from appliance.backoffice.store import Store, open_store
from appliance.config import Config

log = logging.getLogger(__name__)


class JournalRefusedError(Exception):
    """The erasure journal cannot be used: the worker does not start (its words say which file
    and line, and what to do)."""


@dataclass(frozen=True)
class AppliedAtStart:
    """What the start applied: how many of the journal's lines, and their words."""

    lines: int
    words: list[str]


def journal_applied_at_start(store: Store, config: Config) -> AppliedAtStart:
    """Apply the config's erasure journal's lines that ``store`` lacks, inside the store's lock,
    each said at WARNING by file and line; JournalRefusedError where it cannot be read or is
    refused. No journal file (no erasure yet): nothing."""
    path = journal_path(config.store.erasure_journal, config.state_dir)
    journal = _read(path)
    if (torn := journal.torn_note()) is not None:
        log.warning("%s", torn)
    if not missing(store, journal):  # as a start finds it: no lock held, no writer waits
        return AppliedAtStart(0, [])
    with store.writes_held():  # read again inside it: another worker may have applied them,
        journal = _read(path)  # or an erasure under way committed its own line meanwhile
        if not (lacking := missing(store, journal)):
            return AppliedAtStart(0, [])
        words = missing_lines(journal, lacking)
        done = reapplied(store, journal, config.mqtt.topic_prefix)
    log.warning("the store lacked %d line(s) of the erasure journal %s (a store restore "
                "stopped before it applied them, or a crash before an erasure's commit); "
                "applied before taking any message, so nothing they erased is served: %s",
                len(lacking), path, done.summary(journal))
    for line in words:
        log.warning("applied %s", line.strip())
    return AppliedAtStart(len(lacking), words)


def refusal_before_serving(url: str, config: Config) -> str | None:
    """For a server that reads the store ``url`` (the console): the journal's lines it lacks
    applied as a worker's start applies them, on a store opened for it; the words of the
    refusal where the journal cannot be used (None: none)."""
    store = open_store(url)
    try:
        journal_applied_at_start(store, config)
    except JournalRefusedError as exc:
        return str(exc)
    finally:
        store.close()
    return None


def _read(path: Path) -> Journal:
    """The journal at ``path``; JournalRefusedError where it cannot be read or is refused."""
    try:
        return read_journal(path)
    except JournalError as exc:
        raise JournalRefusedError(_refusal(path, exc)) from exc


def _refusal(path: Path, exc: JournalError) -> str:
    return (f"{exc}. Neither a back-office worker nor the console starts while the erasure "
            "journal cannot be used: the store may lack erasures it holds (a store restore "
            "stopped before it applied them), whose results they would serve. Once it is put "
            "right, "
            f"appliance results erasures --check-journal names what the store lacks of {path}")
