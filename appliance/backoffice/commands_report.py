"""``appliance report cohort --out DIR``: the cohort report from the back-office store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from appliance.backoffice.commands import (
    add_kiosk_options,
    add_store_options,
    kiosk_filter,
    with_store,
)
from appliance.logsafe import escape_controls
from appliance.outfile import replacing_refusal


def _cohort(args: argparse.Namespace) -> int:
    from appliance.backoffice.export import unknown_selection  # noqa: PLC0415
    from appliance.backoffice.report import write_cohort_report  # noqa: PLC0415  (numpy)
    from appliance.backoffice.storeurl import store_name  # noqa: PLC0415  (psycopg loads on use)

    if (problem := _out_problem(args.out, args.force)) is not None:
        print(problem, file=sys.stderr)
        return 2
    chosen = kiosk_filter(args, "report cohort")
    if chosen is None:
        return 2

    def report(store: Any) -> int:
        if unknown := unknown_selection(store, chosen):  # a typo is no empty cohort
            print(escape_controls(f"report cohort: {unknown}; nothing written"), file=sys.stderr)
            return 2
        try:
            page = write_cohort_report(store, Path(args.out), chosen)
        except ValueError as exc:
            print(f"report cohort: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # --out is a file, not writable, the disk is full
            where = exc.filename or args.out
            # a folder that cannot be written (read-only, full) is one: the reason says enough
            hint = "" if Path(args.out).is_dir() else "; --out names a folder to write"
            print(escape_controls(f"report cohort: {where}: {exc.strerror or exc}{hint}"),
                  file=sys.stderr)
            return 1
        print(escape_controls(f"wrote {page} (figures and summary.json beside it) from the "
                              f"{store_name(store.url)}"))
        return 0

    return with_store(args, "report cohort", report)


def _out_problem(out: str, force: bool) -> str | None:
    """Why ``--out`` cannot take the report (before the store is read), or None."""
    from appliance.backoffice.report import report_files  # noqa: PLC0415  (numpy)

    if out == "":  # `--out "$DIR"` with DIR unset: Path("") would be the working folder
        return "report cohort: --out: empty folder name; name the folder to write (e.g. report)"
    if os.path.lexists(out) and not Path(out).is_dir():
        return (f"report cohort: --out {escape_controls(out)}: not a folder; name the folder "
                "to write (e.g. report)")
    if refusal := replacing_refusal(report_files(Path(out)), force):
        return (escape_controls(f"report cohort: --out {out} holds an earlier report: ")
                + refusal)
    return None


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``report cohort`` to the command line."""
    report = root.add_parser("report", help="reports on stored results")
    sub = report.add_subparsers(dest="report_command", required=True, metavar="KIND")
    cohort = sub.add_parser(
        "cohort", help="texture and pore features by age band: box plots, correlations, repeats"
    )
    add_store_options(cohort)
    add_kiosk_options(cohort, "results")
    cohort.add_argument("--out", required=True, help="folder for the PNGs and index.html")
    cohort.add_argument("--force", action="store_true",
                        help="replace the earlier report in --out")
    cohort.set_defaults(handler=_cohort)
