"""``appliance store backup`` and ``appliance store restore`` (added to the ``store`` group by
commands_store.py): a consistent copy of a running
back office's store, and the store put back from one (SQLite: store_backup.py and
store_restore.py; PostgreSQL: pg_dump and pg_restore, store_backup_pg.py and restore_pg.py).

Exit codes: 0 done; 1 the copy or the restore failed on the way (a full disk, a tool's error),
nothing written under the name given and the store as it was; 2 refused before anything was
written (a config, a file that is no backup, a store in use, a store with results and no
--force, a tool not installed).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.backoffice.commands import add_store_options, positive_int, store_url_of
from appliance.logsafe import escape_controls
from appliance.outfile import replacing_refusal

LOSS_NOTE = ("results the kiosks sent after the newest one above are not in it yet. What was "
             "changed after the backup is undone (the erasures and releases aside: the journal "
             "line above): do again the token revocations, user removals and disables, and "
             "password changes made since; the console users and API tokens added since are "
             "not in it: add them again (appliance console user add, console token create)")
# how far before the backup's newest receipt the kiosks are asked to send again from (a kept
# result is marked with its ack's time, by the back office's clock): the workers' clocks may
# differ a little, and a result sent twice is stored once
RESEND_MARGIN = timedelta(minutes=15)
EPOCH = "1970-01-01T00:00:00Z"
# the tables a restored store has once migrated (the restore takes an older one forward)
ALL_TABLES = frozenset({"dead_letters", "erasures"})


def resend_line(newest_received_at: str | None, config: str | None) -> str:
    """The command that has the kiosks send again what the back office confirmed after the
    backup (each kiosk keeps it edge.keep_confirmed_h), from the backup's newest receipt, with
    ``config``, the ``--config`` the restore read (its broker is the back office's; None: the
    restore read ./config.yaml or the built-in defaults, as the resend run there does)."""
    since = EPOCH
    if newest_received_at is not None:
        moment = datetime.fromisoformat(newest_received_at.replace("Z", "+00:00"))
        since = (moment - RESEND_MARGIN).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ("Then, with the workers running (the erasures applied again keep an erased "
            "result out), have the kiosks send again what the back office confirmed "
            "after the backup (each kiosk keeps it edge.keep_confirmed_h, 48 h by default; the "
            "store keeps each result once), under the broker's rollout login (its password "
            "file copied from the broker host, readable by you alone): "
            f"APPLIANCE__MQTT__USERNAME=rollout appliance fleet resend --since {since} "
            "--password-file rollout.password"
            + (f" --config {shlex.quote(config)}" if config is not None else ""))


def _backup(args: argparse.Namespace) -> int:
    from appliance.backoffice.backup_rotation import (  # noqa: PLC0415
        journal_copy_of,
        kind_suffixed,
        rotated,
        stamped,
    )
    from appliance.backoffice.results_removal import journal_of  # noqa: PLC0415
    from appliance.backoffice.store_backup import BackupError  # noqa: PLC0415
    from appliance.backoffice.storeurl import POSTGRES_SCHEMES, store_name  # noqa: PLC0415

    url = store_url_of(args)
    if url is None or (journal := journal_of(args)) is None:
        return 2
    given = Path(args.out)
    named = kind_suffixed(given, url.startswith(POSTGRES_SCHEMES)) if args.keep else given
    out = stamped(named) if args.keep else given
    if (refusal := replacing_refusal([out, journal_copy_of(out)], args.force)
            or _no_file(out)) is not None:
        print(f"store backup: {refusal}", file=sys.stderr)
        return 2
    _temporaries_removed(given, named, bool(args.keep))
    try:
        contents = _backed_up(url, out)
    except BackupError as exc:
        print(f"store backup: {exc}", file=sys.stderr)
        return _exit_of(exc)
    print(f"backed up the {store_name(url)} to {out}: {contents.summary()}")
    print("\n".join(contents.kiosk_lines()))
    if (copied := _journal_copied(journal, out)) is None:
        return 1
    print(copied)
    if args.keep and (removed := rotated(given, args.keep, out)):
        print(f"removed {len(removed)} older backup(s) beyond the {args.keep} newest: "
              f"{', '.join(path.name for path in removed)}")
    return 0


def _temporaries_removed(given: Path, named: Path, keep: bool) -> None:
    """Remove the temporaries killed backups to ``given`` left (``named``: its name under
    --keep, a PostgreSQL store's ``.dump``), saying so."""
    from appliance.backoffice.backup_rotation import dead_temporaries_removed  # noqa: PLC0415

    if dead := sorted({*dead_temporaries_removed(given, keep),
                       *dead_temporaries_removed(named, keep)}):
        print(f"removed {len(dead)} temporary file(s) that killed backups left: "
              f"{', '.join(escape_controls(path.name) for path in dead)}")


def _journal_copied(journal: Path, out: Path) -> str | None:
    """Copy the erasure journal beside the backup ``out`` (journal_copy.py); the line that
    says so, or None after saying that it failed (no older backup is removed then)."""
    from appliance.backoffice.backup_rotation import journal_copy_of  # noqa: PLC0415
    from appliance.backoffice.journal_copy import copy_written  # noqa: PLC0415

    try:
        lines = copy_written(journal, out)
    except OSError as exc:
        print(f"store backup: the backup {out} is whole, but the erasure journal {journal} "
              f"could not be copied beside it ({exc}); no older backup was removed",
              file=sys.stderr)
        return None
    if lines is None:
        return f"no erasure journal at {journal} (no erasure recorded yet): none copied"
    return f"copied the erasure journal {journal} ({lines} line(s)) to {journal_copy_of(out)}"


def _no_file(out: Path) -> str | None:
    """Why ``out`` can hold no backup (a folder, a device, a pipe, no folder to hold it), before
    anything is copied; None for a file or nothing yet."""
    if not out.parent.is_dir():
        return (f"no folder {escape_controls(str(out.parent))} for the backup: make it first, "
                "owner-only (mkdir -m 0700), on another disk where there is one")
    if out.is_dir():
        return f"{escape_controls(str(out))} is a folder: name the backup file in it (--out FILE)"
    if out.exists() and not out.is_file():
        return (f"{escape_controls(str(out))} is not a regular file (a device, a pipe or a "
                "socket), which the backup would replace: name a file (--out FILE)")
    return None


def _backed_up(url: str, out: Path) -> Any:
    """Back the store of ``url`` up to ``out``; what the backup holds (StoreContents)."""
    from appliance.backoffice.store_backup import back_up_sqlite, sqlite_store_path  # noqa: PLC0415
    from appliance.backoffice.storeurl import POSTGRES_SCHEMES  # noqa: PLC0415

    if url.startswith(POSTGRES_SCHEMES):
        from appliance.backoffice.store_backup_pg import back_up_postgres  # noqa: PLC0415

        return back_up_postgres(url, out)
    return back_up_sqlite(sqlite_store_path(url), out)


def _restore(args: argparse.Namespace) -> int:
    from appliance.backoffice.results_removal import erasure_setting  # noqa: PLC0415
    from appliance.backoffice.store_backup import BackupError  # noqa: PLC0415

    url = store_url_of(args)
    if url is None or (setting := erasure_setting(args)) is None:
        return 2
    backup = Path(args.backup)
    if _journal_read(setting.journal, backup) is None:
        return 2
    early = _EarlyApplied(setting, backup)
    try:
        done = _restored(url, backup, args.force, early)
    except BackupError as exc:
        print(f"store restore: {exc}", file=sys.stderr)
        return _exit_of(exc)
    chosen = _journal_read(setting.journal, backup, again=True)
    if (applied := _journal_applied(url, chosen, setting.topic_prefix, early.done)) is None:
        print("\n".join([*done.lines, *_holds(done.contents)]))
        return 1
    said, now = applied
    resend = resend_line(done.contents.newest_received_at, args.config)
    if (other := _configured_elsewhere(args, url)) is not None:
        resend = (f"If this store only checks the backup, the kiosks need not send anything "
                  f"again (the config here names another store, {other}); if the back office "
                  f"runs on it: {resend[0].lower()}{resend[1:]}")
    print("\n".join([*done.lines, *said, *_holds(now), f"Note: {LOSS_NOTE}", resend]))
    return 0


def _holds(contents: Any) -> list[str]:
    """What the store holds (StoreContents), a line a kiosk after the first."""
    return [f"It holds {contents.summary()}", *contents.kiosk_lines()]


def _journal_read(path: Path, backup: Path, *, again: bool = False) -> Any:
    """The erasure journal the restore applies (journal_copy.ChosenJournal: the config's, else
    the newest copy beside the backup), read before anything is restored and ``again`` once
    the backup is in place (an erasure committed since the first reading, while the backup was
    checked, went with the store the backup replaced, and only its line is left); None after
    saying why it cannot be (a damaged line, by file and line)."""
    from appliance.backoffice.erasure_journal import JournalError  # noqa: PLC0415
    from appliance.backoffice.journal_copy import chosen_journal  # noqa: PLC0415

    try:
        return chosen_journal(path, backup)
    except JournalError as exc:
        if again:
            print(f"store restore: the backup is restored, but reading the erasure journal "
                  f"again failed ({exc}): apply it before the workers start: appliance "
                  "results erasures --apply-journal", file=sys.stderr)
        else:
            print(f"store restore: {exc}; the store was not restored", file=sys.stderr)
        return None


class _EarlyApplied:
    """The erasure journal applied to a SQLite restore's copy before it replaces the store
    (store_restore.restore_sqlite's ``before_in_place``), read again then, while the store is
    held (an erasure committed since the first reading is in it): a restore killed once the
    copy is in place leaves no erased result back in the store, where applying the journal
    only after the rename left the backup's erased results there until a rerun. ``done``:
    what it applied (erasure_reapply.Reapplied), None until it ran. A journal that cannot be
    read or applied then refuses the restore, the store as it was."""

    def __init__(self, setting: Any, backup: Path) -> None:
        self.setting = setting  # results_removal.ErasureSetting: the journal and topic prefix
        self.backup = backup
        self.done: Any = None

    def __call__(self, copy: Path) -> None:
        from appliance.backoffice.erasure_journal import JournalError  # noqa: PLC0415
        from appliance.backoffice.erasure_reapply import reapplied  # noqa: PLC0415
        from appliance.backoffice.journal_copy import chosen_journal  # noqa: PLC0415
        from appliance.backoffice.store import open_store  # noqa: PLC0415
        from appliance.backoffice.store_backup import BackupError, BackupFailedError  # noqa: PLC0415
        from appliance.backoffice.storeerrors import STORE_ERRORS, explained  # noqa: PLC0415

        try:
            journal = chosen_journal(self.setting.journal, self.backup).journal
        except JournalError as exc:
            raise BackupError(f"{exc}; the store was not restored") from exc
        try:
            store = open_store(f"sqlite:///{copy}")
            try:
                self.done = reapplied(store, journal, self.setting.topic_prefix)
            finally:
                store.close()
        except STORE_ERRORS as exc:
            raise BackupFailedError(
                f"applying the erasure journal {journal.path} to the restored copy failed "
                f"({explained(exc)}); the store was not restored") from exc


def _journal_applied(url: str, chosen: Any, topic_prefix: str,
                     early: Any = None) -> tuple[list[str], Any] | None:
    """The chosen journal's erasures and releases the restored store lacks, applied again as
    ``results erasures --apply-journal`` applies them (an erased letter recorded for the kiosk
    its topic under ``topic_prefix`` names: kiosk_forgets.py): the
    lines saying so (which journal, what it did, a copy used put back as the live one) and
    what the store holds then (StoreContents), or None after saying that the store failed on
    the way (None for ``chosen``: it could not be read again, said). ``early``: what was
    applied to a SQLite restore's copy before it was put in place (_EarlyApplied), counted in
    the line as applied by the restore."""
    from appliance.backoffice.erasure_reapply import reapplied  # noqa: PLC0415
    from appliance.backoffice.store import open_store  # noqa: PLC0415
    from appliance.backoffice.store_contents import contents_of  # noqa: PLC0415
    from appliance.backoffice.storeerrors import STORE_ERRORS, explained  # noqa: PLC0415

    if chosen is None:
        return None
    journal = chosen.journal
    torn = [] if (note := journal.torn_note()) is None else [f"Note: {note}"]
    try:
        store = open_store(url)
        try:
            said = [*chosen.said, *torn,
                    _with_early(reapplied(store, journal, topic_prefix), early).summary(journal)]
            contents = contents_of(store.query, ALL_TABLES)
        finally:
            store.close()
    except STORE_ERRORS as exc:
        first = f"put {journal.path} back as {chosen.live}, then " if chosen.copied else ""
        print(f"store restore: the backup is restored, but applying the erasure journal "
              f"{journal.path} failed ({explained(exc)}): apply it before the workers start: "
              f"{first}appliance results erasures --apply-journal", file=sys.stderr)
        return None
    return [*said, *([chosen.put_back()] if chosen.copied else [])], contents


def _with_early(late: Any, early: Any) -> Any:
    """The restore's application of the journal as one (erasure_reapply.Reapplied): what was
    applied to the copy before it was put in place, and what after (an erasure committed to the
    store it replaced meanwhile); the entries the early one applied are no more "held
    already"."""
    if early is None:
        return late
    return replace(late, erasures=early.erasures + late.erasures,
                   releases=early.releases + late.releases,
                   results=early.results + late.results,
                   held_already=late.held_already - early.erasures - early.releases)


def _configured_elsewhere(args: argparse.Namespace, url: str) -> str | None:
    """The store the config names (``--config``, else ./config.yaml or the defaults), where
    ``--store`` named another one; else None. The fleet resend the restore prints is for the
    back office's own store: one restored aside to check a backup needs none (it would have
    the kiosks send 48 h of results again for nothing)."""
    if args.store is None:
        return None
    from appliance.backoffice.storeurl import store_name, store_url_for  # noqa: PLC0415
    from appliance.config import ConfigError, load_config_or_defaults  # noqa: PLC0415

    try:
        config = load_config_or_defaults(args.config)
    except ConfigError:
        return None
    configured = store_url_for(config.store.url, config.state_dir)
    return None if configured == url else store_name(configured)


@dataclass(frozen=True)
class _Restored:
    """A backup put in place: the lines that say so, and what it held (StoreContents)."""

    lines: list[str]
    contents: Any


def _restored(url: str, backup: Path, force: bool, early: _EarlyApplied) -> _Restored:
    """Restore ``backup`` into the store of ``url`` (SQLite: ``early`` applied to the copy
    before it is put in place)."""
    from appliance.backoffice.store_backup import sqlite_store_path  # noqa: PLC0415
    from appliance.backoffice.storeurl import POSTGRES_SCHEMES, store_name  # noqa: PLC0415

    cleaned: list[str] = []
    if url.startswith(POSTGRES_SCHEMES):
        from appliance.backoffice.restore_pg import restore_postgres  # noqa: PLC0415

        version, contents, dropped = restore_postgres(backup, url, force)
        gone = (f"; the {dropped} it held before are dropped, no copy kept (PostgreSQL)"
                if dropped else "")
        head = f"restored the {store_name(url)} from {backup} (backed up at schema version " \
               f"{version}){gone}"
    else:
        from appliance.backoffice.store_restore import restore_sqlite  # noqa: PLC0415

        done = restore_sqlite(backup, sqlite_store_path(url), force, early)
        contents = done.restored
        aside = f"; the store it replaced is kept as {done.replaced}" if done.replaced else ""
        head = (f"restored the {store_name(url)} from {backup} (backed up at schema version "
                f"{done.backup.schema_version}){aside}")
        cleaned = _leftovers_line(done.leftovers_removed)
    return _Restored([*cleaned, head], contents)


def _leftovers_line(removed: list[Path]) -> list[str]:
    """The line naming the copies killed restores left, which this one removed; none when none."""
    if not removed:
        return []
    return [f"removed {len(removed)} copy(ies) of a backup that killed restores left: "
            f"{', '.join(escape_controls(path.name) for path in removed)}"]


def _exit_of(exc: Exception) -> int:
    """1 for a failure on the way (nothing written under the name given), 2 for a refusal."""
    from appliance.backoffice.store_backup import BackupFailedError  # noqa: PLC0415

    return 1 if isinstance(exc, BackupFailedError) else 2


def register(sub: Any) -> None:
    """Add ``store backup`` and ``store restore`` to the ``store`` group."""
    backup = sub.add_parser(
        "backup", help="a consistent copy of the store while the back office runs")
    add_store_options(backup)
    backup.add_argument("--out", required=True, metavar="FILE",
                        help="the backup file (SQLite: a store file; PostgreSQL: a pg_dump "
                        "archive); put it on another disk")
    backup.add_argument("--force", action="store_true",
                        help="replace FILE when it is there")
    backup.add_argument("--keep", type=positive_int, metavar="N",
                        help="write FILE's name with the time in it (NAME-TIME.SUFFIX; a "
                        "PostgreSQL store's NAME-TIME.dump), then remove the oldest of those "
                        "beyond the N newest (the nightly timer's)")
    backup.set_defaults(handler=_backup)
    restore = sub.add_parser(
        "restore", help="put the store back from a backup (its workers and console stopped)")
    add_store_options(restore)
    restore.add_argument("backup", metavar="BACKUP", help="the file `store backup` wrote")
    restore.add_argument("--force", action="store_true",
                         help="replace a store that holds results (SQLite: moved aside, kept; "
                              "PostgreSQL: dropped, no copy kept)")
    restore.set_defaults(handler=_restore)
