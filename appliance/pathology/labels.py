"""labels.csv (slide, patient, label, material[, um_per_px]) and the slide jobs it describes."""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from appliance.logsafe import escape_controls
from appliance.pathology.names import one_form, spellings
from appliance.pathology.run import SlideJob
from appliance.pathology.slides import SLIDE_SUFFIXES, find_slides

log = logging.getLogger(__name__)
LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("slide", "patient", "label", "material")
MAX_LABEL_ROWS = 1_000_000
MAX_LABELS_BYTES = 100 * 1024 * 1024  # a million rows of 100 bytes; read whole, so bounded
# A slide is named by a plain file name inside the slide folder: no folders, no "..", no glob.
_NAME_CHARS = re.compile(r"^[^/\\*?\[\]\x00-\x1f\x7f]+$")


class LabelsError(ValueError):
    """A labels.csv that cannot be used; names the file, the line and the fix."""


@dataclass(frozen=True)
class LabelRow:
    """One slide's ground truth."""

    slide: str
    patient: str
    label: str
    material: str
    um_per_px: float | None
    # the slide's name as labels.csv writes it, tried first for its file: a name whose NFC
    # differs (Å U+212B ANGSTROM SIGN, a CJK compatibility ideograph) names that file exactly
    written: str = field(default="", compare=False)


def read_labels(path: Path) -> list[LabelRow]:
    """Rows of a labels CSV; LabelsError naming the line when a column is missing or bad."""
    if not path.exists() and not path.is_symlink():
        raise LabelsError(f"{path}: labels file not found; pass --labels CSV")
    reader = csv.DictReader(io.StringIO(_labels_text(path), newline=""))
    try:
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelsError(
                f"{path}: missing column(s) {', '.join(missing)}; the header must hold "
                f"{', '.join(REQUIRED_COLUMNS)} (um_per_px optional)"
            )
        rows = [_row(path, number, raw) for number, raw in enumerate(reader, start=2)]
    except csv.Error as exc:  # a field over the csv module's limit (128 KiB)
        line = reader.line_num + 1  # the reader counts the lines it finished
        raise LabelsError(f"{path}:{line}: not readable as CSV ({exc})") from exc
    if len(rows) > MAX_LABEL_ROWS:
        raise LabelsError(f"{path}: more than {MAX_LABEL_ROWS} rows; split the cohort")
    return rows


def _labels_text(path: Path) -> str:
    """labels.csv's text (``table_text``; too large: split the cohort)."""
    return table_text(path, "split the cohort")


def table_text(path: Path, fix: str) -> str:
    """The UTF-8 text of a small file the pathology commands read whole (labels.csv, a run's
    results.csv and run.json, a splits file): a regular file of at most MAX_LABELS_BYTES,
    opened without waiting (a pipe would wait for a writer for good) and checked on the
    descriptor. A leading byte order mark (a spreadsheet's "CSV UTF-8"), which would
    otherwise become part of the first column's name, is dropped."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise LabelsError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise LabelsError(f"{path}: not a regular file (a folder, pipe, socket or device)")
        if info.st_size > MAX_LABELS_BYTES:
            raise LabelsError(f"{path}: {info.st_size} bytes, more than {MAX_LABELS_BYTES} for "
                              f"a table; {fix}")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(MAX_LABELS_BYTES + 1).removeprefix(codecs.BOM_UTF8)
    except OSError as exc:
        raise LabelsError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    finally:
        os.close(descriptor)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # a spreadsheet's plain "CSV" is its local code page
        line = data.count(b"\n", 0, exc.start) + 1
        raise LabelsError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as CSV UTF-8"
        ) from exc


def table_rows(path: Path, columns: Sequence[str], what: str) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of a CSV file (``table_text``) that must hold ``columns``; ``what`` says
    which file it should be, in the errors."""
    reader = csv.DictReader(io.StringIO(table_text(path, f"pass {what}"), newline=""))
    try:
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelsError(f"{path}: missing column(s) {', '.join(missing)}; pass {what}")
        return list(enumerate(reader, start=2))
    except csv.Error as exc:  # a field over the csv module's limit (128 KiB)
        raise LabelsError(f"{path}:{reader.line_num + 1}: not readable as CSV ({exc})") from exc


def _row(path: Path, line: int, raw: dict[str, str]) -> LabelRow:
    written = {key: (raw.get(key) or "").strip() for key in (*REQUIRED_COLUMNS, "um_per_px")}
    values = {key: one_form(text) for key, text in written.items()}
    if not values["slide"] or not values["patient"] or not values["label"]:
        raise LabelsError(f"{path}:{line}: slide, patient and label must not be empty")
    try:
        um = float(values["um_per_px"]) if values["um_per_px"] else None
    except ValueError as exc:
        raise LabelsError(
            f"{path}:{line}: um_per_px {values['um_per_px']!r} is not a number"
        ) from exc
    if um is not None and not math.isfinite(um):  # "nan", "inf": float() takes them
        raise LabelsError(f"{path}:{line}: um_per_px {values['um_per_px']!r} is not a number")
    return LabelRow(values["slide"], values["patient"], values["label"], values["material"], um,
                    written["slide"])


def _find_slide(folder: Path, slide: str) -> Path:
    """The slide's file: NAME itself if it has an image suffix or is a file, else the first
    NAME.<image suffix> (not NAME.geojson or NAME.xml, annotations that often lie beside it;
    a NAME with dots, as TCGA's "...-DX1.8923A151-...", is no file name with a suffix); NAME
    as written first, then its accents encoded either way (appliance/pathology/names.py)."""
    for spelled in spellings(slide):
        found = _slide_file(folder, spelled)
        if found is not None:
            return found
    direct = folder / slide  # none there: the path its error names
    return direct if direct.suffix.lower() in SLIDE_SUFFIXES else folder / f"{slide}.jpg"


def _slide_file(folder: Path, name: str) -> Path | None:
    """The file ``_find_slide`` takes for one spelling of the name, or None."""
    direct = folder / name
    if direct.suffix.lower() in SLIDE_SUFFIXES:
        return direct if os.path.lexists(direct) else None
    if direct.is_file():
        return direct
    matches = sorted(path for path in folder.glob(f"{name}.*")
                     if path.suffix.lower() in SLIDE_SUFFIXES)
    return matches[0] if matches else None


def slide_name_problem(slide: str) -> str | None:
    """Why ``slide`` is not a plain file name inside the slide folder, or None when it is."""
    if PurePosixPath(slide).is_absolute() or PureWindowsPath(slide).is_absolute():
        return "is an absolute path"
    if not _NAME_CHARS.match(slide):
        return "holds a folder separator, a wildcard or a control character"
    if slide.startswith("."):
        return "starts with '.' (hidden file or parent folder)"
    return None


def _job(folder: Path, row: LabelRow, um_per_px: float | None) -> SlideJob:
    resolution = _resolution(row.um_per_px, um_per_px)
    problem = slide_name_problem(row.slide)
    if problem is not None:
        refused = (
            f"{folder / LABELS_FILE}: slide name {row.slide[:80]!r} {problem}; name a file "
            "inside the slide folder"
        )
        return SlideJob(folder, resolution, row.slide[:80], row.patient, row.material, refused)
    slide = _find_slide(folder, row.written or row.slide)
    missing = "" if os.path.lexists(slide) else _no_image(folder, row)
    return SlideJob(slide, resolution, row.slide, row.patient, row.material, missing)


def _no_image(folder: Path, row: LabelRow) -> str:
    """Why a labels.csv row has no slide: no file of its name (with an image suffix) there."""
    name = row.written or row.slide
    files = (name if Path(name).suffix.lower() in SLIDE_SUFFIXES
             else f"{name}{', '.join(SLIDE_SUFFIXES[:-1])} or {SLIDE_SUFFIXES[-1]}")
    return (f"{folder / LABELS_FILE}: slide {row.slide!r}: image not found in {folder} (looked "
            f"for {files}); check the folder and labels.csv")


def jobs_from_folder(
    folder: Path, um_per_px: float | None, skipped: Sequence[Path] = ()
) -> list[SlideJob]:
    """Slide jobs from folder/labels.csv, or every image in the folder when there is none (but
    those inside the ``skipped`` folders: a run's pictures)."""
    labels = folder / LABELS_FILE
    if labels.exists() or labels.is_symlink():  # one that is no file is refused, not passed over
        rows = read_labels(labels)
        _say_where_labels_win(labels, rows, um_per_px)
        return [_job(folder, row, um_per_px) for row in rows]
    listing = find_slides(folder, skipped)
    resolution = _resolution(None, um_per_px)
    jobs = [SlideJob(path, resolution, path.stem) for path in listing.files]
    for path, problem in listing.unusable:  # reported as a failed slide, never opened
        log.warning("%s: %s; skipped", path, problem)
        jobs.append(SlideJob(path, resolution, path.stem,
                             refused=f"{path}: {problem}; skipped, not opened"))
    return jobs


def _say_where_labels_win(labels: Path, rows: Sequence[LabelRow], um_per_px: float | None) -> None:
    """Warn when --um-per-px was given but labels.csv's own um_per_px wins for some slides:
    the slides are then scored at a scale the person did not ask for, without a word (a
    resolution off by 1.25x already lets the demo model label slides wrongly)."""
    overridden = [row for row in rows if um_per_px is not None
                  and row.um_per_px is not None and row.um_per_px != um_per_px]
    if overridden:
        first = overridden[0]
        log.warning("%s: its um_per_px column wins over --um-per-px %g for %d of %d slides "
                    "(%s at %g µm/px%s); --um-per-px applies only to rows without one",
                    labels, um_per_px, len(overridden), len(rows),
                    escape_controls(first.slide), first.um_per_px,
                    ", ..." if len(overridden) > 1 else "")


def _resolution(from_labels: float | None, from_option: float | None) -> float:
    """labels.csv wins over --um-per-px; NaN (refused per slide) when neither gives one."""
    if from_labels is not None:
        return from_labels
    return from_option if from_option is not None else float("nan")
