"""``appliance results erase --subject ID | --result ID [--yes]``: an erasure request;
``appliance results release --result ID [--yes]``: a result held for its subject's erasure
stored after all (erasure_clock.py);
``appliance results prune --older-than DAYS [--yes]``: the retention bound, run by hand;
``appliance results erasures``: the audit of both.

Each says what it is about to remove (counts, never the data), asks on a terminal unless
``--yes`` (and refuses without it where nobody can answer), then removes the results and their
dead letters and records it (erasure.py, retention.py). Exports written before are files
outside the store: it says so, as it cannot reach them.
"""

# ruff: noqa: PLC0415  (handlers import their modules late so `appliance --help` starts fast)

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from appliance.backoffice.commands import (
    add_store_options,
    load_or_report,
    positive_int,
    with_store,
)
from appliance.stdout import print_out

if TYPE_CHECKING:
    from appliance.backoffice.erasure import Selector

OUTSIDE = ("files exported before (`appliance results export`, `report cohort`) are outside "
           "the store: remove the rows there too")


def subject_id(text: str) -> str:
    """argparse type: a subject id as results carry it."""
    from appliance.backoffice.erasure import subject_id_problem

    if (problem := subject_id_problem(text)) is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text


def days(text: str) -> int:
    """argparse type: a whole number of days, 1 to backoffice.retention_days' bound (a cut-off
    further back is before the first date a datetime holds)."""
    from appliance.config.backoffice import MAX_RETENTION_DAYS

    value = positive_int(text)
    if value > MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(f"{text}: must be at most {MAX_RETENTION_DAYS} "
                                         "(a hundred years, as backoffice.retention_days)")
    return value


def measurement_id(text: str) -> str:
    """argparse type: a measurement id as results carry it."""
    from appliance.kioskname import device_id

    try:
        return device_id(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(
            str(exc).replace("not a device id", "not a measurement id")) from None


def confirmed(question: str, yes: bool) -> bool | None:
    """Whether the user agreed: True with ``yes``; a terminal is asked; None when nobody can
    answer (standard input is not a terminal) and ``yes`` was not given."""
    if yes:
        return True
    if sys.stdin is None or not sys.stdin.isatty():
        return None
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def journal_of(args: argparse.Namespace) -> Path | None:
    """The erasure journal of the config (erasure_journal.py), or None after printing the
    config's error."""
    return None if (setting := erasure_setting(args)) is None else setting.journal


class ErasureSetting(NamedTuple):
    """What an erasure takes from the config, made or applied again from the journal."""

    journal: Path  # the erasure journal (erasure_journal.py)
    topic_prefix: str  # the fleet's: names the kiosk of an erased dead letter (kiosk_forgets.py)


def erasure_setting(args: argparse.Namespace) -> ErasureSetting | None:
    """The config's erasure journal and topic prefix, for ``results erase``, ``results
    erasures --apply-journal`` and ``store restore`` alike (each erasure applied again from
    the journal records the kiosk of an erased letter, as the erasure did); None after
    printing the config's error."""
    from appliance.backoffice.erasure_journal import journal_path

    if (config := load_or_report(args)) is None:
        return None
    return ErasureSetting(journal_path(config.store.erasure_journal, config.state_dir),
                          config.mqtt.topic_prefix)


def journalled(journal: Path, kind: str, value: str, user: str) -> Any:
    """An ErasureMoment whose time is appended to ``journal`` before the store commits."""
    from appliance.backoffice.erasure import ErasureMoment
    from appliance.backoffice.erasure_journal import JournalEntry, append

    return ErasureMoment(intent=lambda at: append(journal, JournalEntry(kind, value, at,
                                                                         user, 0)))


def _unjournalled(command: str, journal: Path, exc: Exception) -> int:
    """1, after saying that the journal could not be written, so nothing was done; 2 for a
    journal refused as no file of its own (erasure_journal.JournalError)."""
    from appliance.backoffice.erasure_journal import JournalError

    if isinstance(exc, JournalError):
        print(f"{command}: {exc}; nothing was changed in the store", file=sys.stderr)
        return 2
    print(f"{command}: cannot write the erasure journal {journal} ({exc}); nothing was "
          "changed in the store", file=sys.stderr)
    return 1


def _erase(args: argparse.Namespace) -> int:
    from appliance.backoffice.erasure import Selector, os_user
    from appliance.backoffice.erasure_journal import JournalError

    selector = (Selector("subject", args.subject) if args.subject is not None
                else Selector("result", args.result))
    if (setting := erasure_setting(args)) is None:
        return 2
    journal, prefix = setting

    def erase(store: Any) -> int:
        results, letters = store.erasure_preview(selector)
        if (unheld := _no_letter_names(selector, letters)) is not None:
            return unheld
        question = (f"erase {results} result(s) and {letters} dead letter(s) of {selector}, "
                    "and keep results of it from being stored again?")
        if (refused := _asked("results erase", question, args.yes)) is not None:
            return refused
        try:
            done = store.erase(selector, os_user(), journalled(
                journal, selector.kind, selector.value, os_user()), topic_prefix=prefix)
        except (OSError, JournalError) as exc:
            return _unjournalled("results erase", journal, exc)
        _say_if_nothing_named(selector, done.results + done.dead_letters)
        return print_out("results erase", (
            f"erased {done.results} result(s) and {done.dead_letters} dead letter(s) of "
            f"{selector} (erasure {done.erasure_id}, by {done.os_user}); a kiosk that sends "
            "them again is confirmed and they are not stored; the console's cohort figures "
            f"are computed again at their next request; {OUTSIDE}; recorded in the erasure "
            f"journal {journal}, which a store restore applies again (copy it off the host "
            "with the backups)"))

    return with_store(args, "results erase", erase, writes=True)


def _say_if_nothing_named(selector: Selector, erased: int) -> None:
    """A note on stderr when a subject's erasure found nothing: kept all the same (it stops
    that subject's later results), but a mistyped id, or one copied as a page shows it (what
    draws nothing written as \\uXXXX), erases no one and looked like any other erasure."""
    if selector.kind == "subject" and not erased:
        print(f"results erase: note: no stored result or dead letter carries {selector}; the "
              "erasure is recorded and keeps its later results from being stored, but check "
              "the id if a person's results were meant (the console shows a character that "
              "draws nothing as \\uXXXX, which is not the character)", file=sys.stderr)


def _no_letter_names(selector: Selector, letters: int) -> int | None:
    """2, after saying why, for a result id no stored result can have (erasure.result_can_have)
    that no dead letter names either: nothing to erase, and a tombstone of it would match
    nothing (an upper-cased id, a typo); else None."""
    from appliance.backoffice.erasure import result_can_have

    if selector.kind != "result" or letters or result_can_have(selector.value):
        return None
    print(f"results erase: {selector.value!r}: no result can have this id (a measurement id "
          "is a UUIDv7 in lower case, as 0193e0a4-5b6c-7d8e-9f00-112233445566) and no dead "
          "letter names it; nothing erased", file=sys.stderr)
    return 2


def _asked(command: str, question: str, yes: bool) -> int | None:
    """None when the user agreed (or ``yes``); else the exit code, after saying why."""
    agreed = confirmed(question, yes)
    if agreed is None:
        print(f"{command}: {question.removesuffix('?')}: standard input is not a terminal to "
              "ask; add --yes to go ahead without asking", file=sys.stderr)
        return 2
    if not agreed:
        print(f"{command}: nothing removed", file=sys.stderr)
        return 1
    return None


def _prune(args: argparse.Namespace) -> int:
    from appliance.backoffice.erasure import os_user
    from appliance.backoffice.retention import cut_off

    before = cut_off(args.older_than)

    def prune(store: Any) -> int:
        results, letters = store.prune_preview(before)
        reports = store.prunable_model_reports(before)
        if not results and not letters and not reports:  # nothing to ask about
            return print_out("results prune", (
                f"nothing to remove: no result captured and no dead letter or superseded "
                f"model report received before {before}"))
        question = (f"remove {results} result(s) captured, {letters} dead letter(s) and "
                    f"{reports} superseded model report(s) received before {before}?")
        if (refused := _asked("results prune", question, args.yes)) is not None:
            return refused
        done = store.prune_before(before, os_user())
        return print_out("results prune", (
            f"removed {done.results} result(s) captured, {done.dead_letters} dead "
            f"letter(s) and {done.model_reports} superseded model report(s) received before "
            f"{before} (each kiosk keeps its newest report from before then); a kiosk that "
            f"sends one of the results again is confirmed and it is not stored; {OUTSIDE}"))

    return with_store(args, "results prune", prune, writes=True)


def _journal_held(args: argparse.Namespace) -> int:
    """``--check-journal`` and ``--apply-journal``: the journal's erasures the store lacks,
    named (exit 1 where there are any), or applied (erasure_reapply.py)."""
    from appliance.backoffice.erasure_journal import JournalError, read_journal
    from appliance.backoffice.erasure_reapply import (
        missing,
        missing_lines,
        reapplied,
        unlisted,
        unlisted_note,
    )

    command = "results erasures"
    if (setting := erasure_setting(args)) is None:
        return 2
    path, prefix = setting
    try:
        journal = read_journal(path)
    except JournalError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    if (torn := journal.torn_note()) is not None:
        print(f"{command}: {torn}", file=sys.stderr)

    def held(store: Any) -> int:
        if args.apply_journal:  # each line applied named, as --check-journal names them:
            # a line is applied as written (its user and time), by whoever wrote it
            lines = missing_lines(journal, missing(store, journal))
            done = reapplied(store, journal, prefix).summary(journal)
            return print_out(command, "\n".join([done, *lines]))
        lacking = missing(store, journal)
        if (note := unlisted_note(journal, unlisted(store, journal))) is not None:
            print(f"{command}: {note}", file=sys.stderr)
        if not lacking:
            return print_out(command, f"the store holds each of the {len(journal.entries)} "
                             f"erasure(s) and release(s) of the erasure journal {path}")
        print_out(command, "\n".join([
            f"the store lacks {len(lacking)} of the {len(journal.entries)} erasure(s) and "
            f"release(s) of the erasure journal {path} (apply them, each with its own time: "
            "appliance results erasures --apply-journal):", *missing_lines(journal, lacking)]))
        return 1

    return with_store(args, command, held, writes=bool(args.apply_journal))


def _audit(args: argparse.Namespace) -> int:
    from appliance.logsafe import escape_controls
    from appliance.texttable import aligned

    if args.check_journal or args.apply_journal:
        return _journal_held(args)

    def show(store: Any) -> int:
        rows, total = store.erasures(args.limit)
        if not rows:
            return print_out("results erasures", "no erasures recorded")
        table = aligned([("ERASED_AT", "BY", "KIND", "SELECTOR", "RESULTS", "DEAD_LETTERS",
                          "MODEL_REPORTS")] + [
            (str(at), escape_controls(str(user)), str(kind), escape_controls(str(selector)),
             str(results), str(letters), str(reports))
            for at, user, kind, selector, results, letters, reports in rows])
        return print_out("results erasures", "\n".join(
            [*table, f"{len(rows)} erasure(s) shown, of {total} recorded"]))

    return with_store(args, "results erasures", show)


def register_audit(sub: Any) -> None:
    """Add ``results erasures`` to the ``results`` group's subcommands ``sub``."""
    audit = sub.add_parser("erasures", help="the audit of erasures and retention runs, "
                           "newest first (when, by whom, what, how many)")
    add_store_options(audit)
    audit.add_argument("--limit", type=positive_int, default=20, help="at most this many (20)")
    journal = audit.add_mutually_exclusive_group()
    journal.add_argument("--check-journal", action="store_true",
                         help="name the erasures and releases of the erasure journal the store "
                         "lacks (exit 1 where there are any)")
    journal.add_argument("--apply-journal", action="store_true",
                         help="apply those the store lacks, each with its own time (what a "
                         "store restore does)")
    audit.set_defaults(handler=_audit)


def register_prune(sub: Any) -> None:
    """Add ``results prune`` to the ``results`` group's subcommands ``sub``."""
    prune = sub.add_parser(
        "prune", help="remove the results captured more than DAYS days ago, each capture as "
        "the back office places it (the retention bound, by hand), and the dead letters "
        "received before then")
    add_store_options(prune)
    prune.add_argument("--older-than", type=days, required=True, metavar="DAYS",
                       help="remove what is older than this many days, 1 to 36525 (as "
                       "backoffice.retention_days)")
    prune.add_argument("--yes", action="store_true",
                       help="do not ask (needed where standard input is not a terminal)")
    prune.set_defaults(handler=_prune)


def _release(args: argparse.Namespace) -> int:
    from appliance.backoffice.commands import letter_judge
    from appliance.backoffice.erasure import os_user
    from appliance.backoffice.erasure_journal import JournalError

    if (journal := journal_of(args)) is None:
        return 2

    def release(store: Any) -> int:
        letters = len(store.held_letters(args.result))
        if not letters:
            print(f"results release: no dead letter holds a result {args.result} "
                  "(appliance results dead-letters lists them); nothing stored", file=sys.stderr)
            return 2
        question = (f"store the result {args.result} that {letters} dead letter(s) hold, "
                    "although its subject was erased (the person agreed again after it)?")
        if (refused := _asked("results release", question, args.yes)) is not None:
            return refused
        try:
            done = store.release_held(args.result, letter_judge(), os_user(), journalled(
                journal, "release", args.result, os_user()))
        except (OSError, JournalError) as exc:
            return _unjournalled("results release", journal, exc)
        if not done.results:
            print(f"results release: {args.result} not stored: still refused, or erased by "
                  "its id or the retention bound (appliance results dead-letters shows why)",
                  file=sys.stderr)
            return 1
        return print_out("results release", (
            f"stored result {args.result} and removed its {done.dead_letters} dead letter(s) "
            f"(release {done.erasure_id} in appliance results erasures, by {os_user()})"))

    return with_store(args, "results release", release, writes=True)


def register_release(sub: Any) -> None:
    """Add ``results release`` to the ``results`` group's subcommands ``sub``."""
    release = sub.add_parser(
        "release", help="store a result held for its subject's erasure (its dead letter says "
        "'held'), where the person agreed again after the erasure")
    add_store_options(release)
    release.add_argument("--result", type=measurement_id, metavar="ID", required=True,
                         help="the held result's measurement id (its letter's reason names it)")
    release.add_argument("--yes", action="store_true",
                         help="do not ask (needed where standard input is not a terminal)")
    release.set_defaults(handler=_release)


def register_erase(sub: Any) -> None:
    """Add ``results erase`` to the ``results`` group's subcommands ``sub``."""
    erase = sub.add_parser(
        "erase", help="remove one subject's results (consent withdrawn) or one result, and "
        "every copy the store holds, keeping an audit record")
    add_store_options(erase)
    chosen = erase.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--subject", type=subject_id, metavar="ID",
                        help="every result of this subject id (the pseudonym results carry)")
    chosen.add_argument("--result", type=measurement_id, metavar="ID",
                        help="the result of this measurement id (a UUIDv7 in lower case; "
                        "another identifier only where a dead letter names it)")
    erase.add_argument("--yes", action="store_true",
                       help="do not ask (needed where standard input is not a terminal)")
    erase.set_defaults(handler=_erase)
