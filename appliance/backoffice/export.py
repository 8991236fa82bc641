"""Stored results out of the store: a query table for people, CSV / JSON Lines / Parquet files.

Every file carries the ``not_validated`` column: the features of that result outside the
validated range (docs/measurement.md), whose numbers a reader should drop. CSV holds the keys
joined by commas (empty: none), JSON Lines and Parquet a list. The query table shows ``n/m``
(not measured) in their place.

Results come out newest (query) or oldest (export) first by their capture as the back office
placed it (``placed_at``, placed_capture.py), and ``--since`` bounds that time: a kiosk whose
clock said 2000 has today's results among today's. Each keeps ``captured_at`` as its kiosk
wrote it. Columns added since go last, so a reader by position finds the columns before them
where they were: ``placed_at``, then ``grade_between``, the two grades of a near-tie (the
model's two most probable grades less than NEAR_TIE_MARGIN apart, edge/grade_margin.py), which
the console, its API and ``results query`` say as "between fine and normal" and the raw
``label`` names only one of: CSV holds them joined by a comma (empty: the grade stands clear,
or there is none), JSON Lines a list or null, Parquet a list or null.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from appliance import safejson
from appliance.backoffice.fleet import CLOCK_OFF_S
from appliance.backoffice.queries import LetterFilter, ResultFilter
from appliance.backoffice.schema import (
    GRADE_PROBABILITIES,
    NOT_VALIDATED_COLUMN,
    PLACED_COLUMN,
    RESULT_COLUMNS,
    RESULT_META_COLUMNS,
    iso_utc,
    named_measurement_id,
    not_validated_keys,
)
from appliance.backoffice.store import Store
from appliance.csvcells import csv_safe
from appliance.edge.grade_margin import NEAR_TIE_MARGIN, grade_between
from appliance.edge.reasons import grade_withheld
from appliance.kioskname import chosen_text
from appliance.logsafe import SHOWN_ARGUMENT_CHARS, escape_controls, shorten, shorten_quoted
from appliance.outfile import replaced_when_complete
from appliance.texttable import aligned

GRADE_BETWEEN_COLUMN = "grade_between"
EXPORT_COLUMNS = (*(c for c in RESULT_COLUMNS if c != "payload"), PLACED_COLUMN,
                  GRADE_BETWEEN_COLUMN)
# what the store reads for them: the grade probabilities in place of the near-tie they tell
_EXPORT_READ_COLUMNS = (*EXPORT_COLUMNS[:-1], GRADE_PROBABILITIES)
EXPORT_FORMATS = ("csv", "jsonl", "parquet")
QUERY_COLUMNS = (PLACED_COLUMN, "captured_at", "site", "device_id", "measurement_id",
                 "kime_score", "pore_count", "label", "age_band")
_PARQUET_CHUNK_ROWS = 10_000
_NOT_VALIDATED_AT = EXPORT_COLUMNS.index(NOT_VALIDATED_COLUMN)
_BETWEEN_AT = EXPORT_COLUMNS.index(GRADE_BETWEEN_COLUMN)
NOT_MEASURED_NOTE = "n/m: not measured (outside the validated range, docs/measurement.md)"
NOT_GIVEN_NOTE = ("not given: the kiosk withheld the grade (the model reads features not "
                  "measured, or the frame is outside the validated range)")
NEAR_TIE_NOTE = (f"A/B: a near-tie, between grades A and B (the model's two most probable "
                 f"grades less than {NEAR_TIE_MARGIN} apart; its label is the first or the "
                 "second of them)")
_LABEL_AT = QUERY_COLUMNS.index("label")
_PLACED_AT, _CAPTURED_AT = QUERY_COLUMNS.index(PLACED_COLUMN), QUERY_COLUMNS.index("captured_at")
CLOCK_OFF_NOTE = ("CAPTURED_AT is the kiosk's clock; where it is more than a minute off "
                  "PLACED_AT (the capture as the back office places it, which orders the "
                  "table and --since selects) that clock was off")
QUERY_NAMED_DEVICES = 8  # a query for a device no result comes from names this many the store knows


def parse_since(text: str) -> str:
    """A start time (ISO date or date-time, UTC unless it says otherwise) as stored text."""
    shown = shorten_quoted(text, SHOWN_ARGUMENT_CHARS)
    if not text.strip():
        raise ValueError(f"--since {shown}: empty; give an ISO date or date-time (e.g. "
                         "2026-11-01), or leave --since out for every result (a script's "
                         "\"$VARIABLE\" left unset?)")
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"--since {shown}: not an ISO date or date-time (e.g. 2026-11-01 or "
            "2026-11-01T09:00:00Z)"
        ) from exc
    try:
        return iso_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is the year 0 in UTC
        raise ValueError(f"--since {shown}: in UTC before the year 1 or after 9999") from exc


def query_table(store: Store, where: ResultFilter, limit: int) -> str:
    """A plain-text table of the newest ``limit`` results ``where`` selects (by placed
    capture), newest first, and how many match in all."""
    rows = list(store.select_results((*QUERY_COLUMNS, NOT_VALIDATED_COLUMN, "payload"), where,
                                     limit, newest_first=True))
    if not rows:
        return _nothing_matched(store, where)
    total = store.count_matching(where)
    cells = [_query_cells(row[:-1], row[-1]) for row in rows]
    header = [c.upper() for c in QUERY_COLUMNS]
    lines = aligned([header, *(row for row, _ in cells)])
    shown = f"the newest {len(rows)} of {total} result(s)" if total > len(rows) else (
        f"{total} result(s)")
    notes = [NOT_MEASURED_NOTE] if any(row[-2] for row in rows) else []
    notes += [NOT_GIVEN_NOTE] if any(row[_LABEL_AT] == "not given" for row, _ in cells) else []
    notes += [NEAR_TIE_NOTE] if any(between for _, between in cells) else []
    notes += [CLOCK_OFF_NOTE] if any(map(_clock_was_off, rows)) else []
    return "\n".join([*lines, f"{shown}, newest first", *notes])


def _clock_was_off(row: tuple[Any, ...]) -> bool:
    """Whether a query row's kiosk clock wrote its capture more than a minute off where the
    back office places it (as the fleet calls a clock off)."""
    placed, captured = (datetime.fromisoformat(row[_PLACED_AT]),
                        datetime.fromisoformat(row[_CAPTURED_AT]))
    return abs((captured - placed).total_seconds()) > CLOCK_OFF_S


def _nothing_matched(store: Store, where: ResultFilter) -> str:
    """Why a query found nothing: a site or device no result comes from (a typo, or another
    site's name), or a device none of whose results come from the site asked for, is named
    with what the store knows and the command that lists the fleet."""
    reason = _not_from(store, where)
    return f"no results match: {reason}" if reason else "no results match"


def _not_from(store: Store, where: ResultFilter) -> str | None:
    """Why ``where`` selects nothing at any time: its site, its device, or its device at its
    site, that no stored result comes from; None when results come from each."""
    site, device = where.site, where.device_id
    if site is not None and not store.has_results(ResultFilter(site=site)):
        return _no_result_from("site", site, store.fleet_sites_of())
    if device is not None and not store.has_results(ResultFilter(device_id=device)):
        return _no_result_from("device", device, _known_devices(store))
    if site is None or device is None or store.has_results(
            ResultFilter(site=site, device_id=device)):
        return None
    at = _named(store.fleet_sites_of(device))
    return (f"no stored result comes from device {device!r} at site {site!r} (the fleet has it "
            f"at {at or 'no site'}; `appliance fleet` lists the devices with their sites and "
            "states)")


def _known_devices(store: Store) -> list[str]:
    return sorted({str(row["device_id"]) for row in store.devices()})


def _named(known: list[str]) -> str:
    """The first QUERY_NAMED_DEVICES of ``known``, then how many more."""
    return ", ".join(known[:QUERY_NAMED_DEVICES]) + (
        f" and {len(known) - QUERY_NAMED_DEVICES} more" if len(known) > QUERY_NAMED_DEVICES else "")


def _no_result_from(what: str, name: str, known: list[str]) -> str:
    """'no stored result comes from device X (the devices the store knows: ...)', or site."""
    named = f"the {what}s the store knows: {_named(known)}; " if known else ""
    return (f"no stored result comes from {what} {name!r} ({named}"
            "`appliance fleet` lists the devices with their sites and states)")


def unknown_selection(store: Store, where: ResultFilter) -> str | None:
    """Why an export of ``where`` would be an empty file for a typo: a site, device or
    device at a site no stored result comes from and no kiosk of the fleet registry has
    (said as the query says it); None for one the store knows, results or not, or none given."""
    reason = _not_from(store, where)
    if reason is None:
        return None
    sites = store.fleet_sites_of(where.device_id)  # those of the fleet, or of the device
    known = where.site in sites if where.site else bool(sites)
    return None if known else reason


def _query_cells(row: tuple[Any, ...], payload: str) -> tuple[list[str], bool]:
    """A query row's cells, ``n/m`` where the result names the feature as not validated,
    ``not given`` for a grade withheld and ``A/B`` for a near-tie between grades A and B
    (edge/grade_margin.py); and whether it is such a near-tie."""
    outside = not_validated_keys(row[-1])
    cells = ["n/m" if column in outside else _cell(value)
             for column, value in zip(QUERY_COLUMNS, row[:-1], strict=True)]
    stored = _stored(payload)
    between = grade_between(_stored_probabilities(stored)) if row[_LABEL_AT] else None
    if between is not None:
        cells[_LABEL_AT] = _cell("/".join(between))
    elif row[_LABEL_AT] is None and grade_withheld(_stored_reasons(stored)) is not None:
        cells[_LABEL_AT] = "not given"
    return cells, between is not None


def _stored(payload: str) -> dict[str, Any]:
    """A stored payload as JSON (it was validated on the way in; anything unreadable reads
    as an empty one)."""
    try:
        data = safejson.loads(payload)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _stored_reasons(stored: dict[str, Any]) -> list[str]:
    """The quality reasons of a stored payload (none where it holds none)."""
    try:
        reasons = stored["quality"]["reasons"]
    except (KeyError, TypeError):
        return []
    return [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else []


def _stored_probabilities(stored: dict[str, Any]) -> dict[str, float] | None:
    """The grade probabilities of a stored payload (None where it holds none)."""
    classification = stored.get("classification")
    probabilities = classification.get("probabilities") if isinstance(
        classification, dict) else None
    return probabilities if isinstance(probabilities, dict) else None


def stored_between(probabilities: str | None) -> list[str] | None:
    """The two grades a stored result lies between (``grade_between``) from the grade
    probabilities the store picks out of its payload (GRADE_PROBABILITIES, JSON text); None
    where its grade stands clear, or it has none."""
    try:
        stored = safejson.loads(probabilities) if probabilities else None
    except ValueError:
        return None
    return grade_between(stored) if isinstance(stored, dict) else None


def between_cell(probabilities: str | None) -> str:
    """A CSV cell of ``grade_between``: the two grades joined by a comma, '' for none."""
    return ",".join(stored_between(probabilities) or ())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else escape_controls(str(value))


def export_results(store: Store, fmt: str, out: str, where: ResultFilter | None = None) -> int:
    """Write the results ``where`` selects (every one when None) to ``out`` (``-`` = stdout
    for csv/jsonl); returns the row count."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    rows = store.select_results(_EXPORT_READ_COLUMNS, where)
    if fmt == "parquet" and out == "-":
        raise ValueError("parquet is binary: give --out FILE")
    if out == "-":
        return _write_text(rows, fmt, sys.stdout)
    with replaced_when_complete(Path(out)) as temp:  # a full disk keeps the old export whole
        if fmt == "parquet":
            return _write_parquet(rows, temp)
        with temp.open("w", encoding="utf-8", newline="") as stream:
            return _write_text(rows, fmt, stream)


def _write_text(rows: Iterator[tuple[Any, ...]], fmt: str, stream: TextIO) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            writer.writerow([csv_safe(value) for value in (*row[:-1], between_cell(row[-1]))])
            count += 1
        return count
    for row in rows:
        record = dict(zip(EXPORT_COLUMNS, row, strict=True))
        record[NOT_VALIDATED_COLUMN] = not_validated_keys(record[NOT_VALIDATED_COLUMN])
        record[GRADE_BETWEEN_COLUMN] = stored_between(record[GRADE_BETWEEN_COLUMN])
        stream.write(json.dumps(record) + "\n")
        count += 1
    return count


def _write_parquet(rows: Iterator[tuple[Any, ...]], path: Path) -> int:
    import pyarrow as pa  # noqa: PLC0415  (the backoffice extra, only for parquet)
    import pyarrow.parquet as pq  # noqa: PLC0415

    def arrow_type(column: str) -> Any:
        if column == "pore_count":
            return pa.int64()
        if column in (NOT_VALIDATED_COLUMN, GRADE_BETWEEN_COLUMN):
            return pa.list_(pa.string())
        text = column in RESULT_META_COLUMNS or column == PLACED_COLUMN
        return pa.string() if text else pa.float64()

    schema = pa.schema([(c, arrow_type(c)) for c in EXPORT_COLUMNS])
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        while chunk := [row for _, row in zip(range(_PARQUET_CHUNK_ROWS), rows, strict=False)]:
            columns = list(zip(*chunk, strict=True))
            columns[_NOT_VALIDATED_AT] = tuple(
                not_validated_keys(text) for text in columns[_NOT_VALIDATED_AT])
            columns[_BETWEEN_AT] = tuple(map(stored_between, columns[_BETWEEN_AT]))
            writer.write_table(pa.Table.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                schema=schema,
            ))
            count += len(chunk)
    return count


SHOWN_CHARS = 200  # of a dead letter's topic and reason in the terminal table
NAMED_DEVICES = 10  # that lost results to the dead-letter bounds, named by the table


def dead_letter_table(store: Store, limit: int, of: LetterFilter | None = None) -> str:
    """The newest dead letters (of the site, device or kiosk ``of`` names, or of all): when,
    topic, size, reason, the measurement a refused result names (its payload's first 60
    characters cut it: no letter could be told from another, nor found for `results release
    --result`) and the start of the payload; then the refused results the bounds pruned whose
    only copy their letter was."""
    letters = store.dead_letters(limit, of)
    lines = []
    for letter in letters:
        head = escape_controls(letter.payload[:60].decode("utf-8", errors="replace"))
        topic, reason = shorten(letter.topic, SHOWN_CHARS), shorten(letter.reason, SHOWN_CHARS)
        named = named_measurement_id(letter.payload)
        lines.append(f"{letter.received_at}  {topic}  {letter.payload_bytes} bytes\n"
                     f"    reason: {reason}\n"
                     + (f"    measurement: {named}\n" if named else "")
                     + f"    payload: {head}")
    source = chosen_text(of.site, of.device_id) if of else ""
    if letters:
        lines.append(f"{len(letters)} dead letter(s) shown, of {store.count_dead_letters(of)} "
                     f"kept{source}")
    else:
        lines.append(f"no dead letters{source}" + (
            f"; {store.count_dead_letters()} kept in all, their topics read under the prefix "
            f"{of.prefix} (mqtt.topic_prefix of the config)" if source and of else ""))
    kiosks = ResultFilter(site=of.site, device_id=of.device_id) if of else None
    lost = store.pruned_only_copies(NAMED_DEVICES, kiosks).text()
    return "\n".join([*lines, lost] if lost else lines)

