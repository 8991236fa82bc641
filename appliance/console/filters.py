"""Console input: result filters, cursors and form fields, checked before any query runs.

Every value from a query string or a form is bounded in length and matched against what it
can be (an identifier, a date, a cursor); anything else is refused with ``InputError``, which
names the field and quotes the value (escaped wherever it is shown). Values are then bound as
SQL parameters, never pasted into SQL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import iso_utc
from appliance.kioskname import KioskNameError, chosen_kiosks, kiosk_of, site_id

T = TypeVar("T")

MAX_FIELD_CHARS = 64
MAX_QUERY_CHARS = 2048
MAX_FORM_BYTES = 4096
PAGE_SIZES = (10, 25, 50, 100, 200)  # the results page's choices; the API takes any 1-200
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
_LIMIT = re.compile(r"^[0-9]{1,3}\Z")
# Cursors name their times in ASCII digits: \d takes any script's (Arabic-Indic, fullwidth),
# a time no page makes, which the store would compare with its own times as text.
# a rollout's id, or a pathology job's (LOGIN/NAME; one level for a job from before submitters)
_LISTED_CURSOR = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                            r"(?:\.[0-9]{1,6})?Z)~"
                            r"((?:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/)?"
                            r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63})\Z")
MAX_CURSOR_CHARS = 200
_TOKEN_CURSOR = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                           r"(?:\.[0-9]{1,6})?Z)~([0-9a-f]{16})\Z")  # CREATED_AT~TOKEN_ID
_LETTER_ID = re.compile(r"^[1-9][0-9]{0,17}\Z")  # a dead letter's number (below 2**63)
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_DEVICE_CURSOR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})~"
                            r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\Z")  # SITE~DEVICE
MEASUREMENT_ID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z"
)
_CURSOR = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)~"
                     r"([0-9a-f-]{36})\Z")  # PLACED_AT~MEASUREMENT_ID
FILTER_FIELDS = ("site", "device", "from", "to", "grade")
RESULT_PARAMETERS = (*FILTER_FIELDS, "before", "after", "limit")
KIOSK_FIELDS = ("site", "device")  # the dead-letters page's filter: the results page's two
LETTER_PARAMETERS = (*KIOSK_FIELDS, "before")


class InputError(ValueError):
    """A refused input: which field, what value, and what is expected."""

    status = 400

    def __init__(self, field: str, value: str, expected: str) -> None:
        shown = value if len(value) <= 80 else value[:80] + f"... ({len(value)} characters)"
        super().__init__(f"{field}: {shown!r} refused: {expected}")
        self.field = field


@dataclass(frozen=True)
class ResultQuery:
    """A checked results query: the filter, the keyset cursor (a page older than ``before``
    or newer than ``after``) and the page size."""

    where: ResultFilter
    before: tuple[str, str] | None
    limit: int
    echo: dict[str, str]  # the filter fields as given, for the form and the next-page link
    after: tuple[str, str] | None = None


def _field(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > MAX_FIELD_CHARS:
        raise InputError(name, value, f"at most {MAX_FIELD_CHARS} characters")
    return value or None


def _kiosk_field(params: Mapping[str, str], name: str, reader: Callable[[str], T]) -> T | None:
    """The ``site`` or ``device`` field read as the command line reads ``--site`` and
    ``--device`` (``reader``: kioskname's), the value exactly as given, not stripped: a
    site id with a blank after it is no site id, not another one; None when empty (a form
    sends every field, an unused one empty)."""
    value = params.get(name, "")
    if not value:
        return None
    try:
        return reader(value)
    except KioskNameError as exc:
        raise InputError(name, value, exc.expected) from exc


def checked_id(what: str, value: str) -> str:
    """``value`` when it is an id the fleet gives (a pathology job's, a rollout's); else
    InputError (400): no such id was ever accepted."""
    if not IDENTIFIER.match(value):
        raise InputError(what, value, "letters, digits and _ . - (at most 64)")
    return value


def parse_site(params: Mapping[str, str]) -> str | None:
    """The site a page is narrowed to (None: every site), as ``--site`` reads one."""
    return _kiosk_field(params, "site", site_id)


def parse_kiosk(params: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The site and the device id (at every site, or at that site) a page is narrowed to,
    from its ``site`` and ``device`` fields (None: not given), as ``--site`` and ``--device
    [SITE/]DEVICE`` read them (backoffice/commands.py ``kiosk_filter``): a device field of
    another site than the site field's is refused."""
    site = parse_site(params)
    kiosk = _kiosk_field(params, "device", kiosk_of)
    try:
        return chosen_kiosks(site, kiosk)
    except ValueError as exc:
        raise InputError("device", params["device"], f"{exc}; give the site once (in the "
                         "device field as SITE/DEVICE, or in the site field)") from exc


def _grade(params: Mapping[str, str]) -> str | None:
    """A grade (a model's label) to filter on: a model may name its grades in any script
    ("très fin", "きめ細かい"), so letters and digits of every script, their accents, and
    spaces, _ . - between them; markup, quotes and control characters are refused."""
    value = _field(params, "grade")
    if value is not None and not (value[0].isalnum() and all(map(_grade_char, value))):
        raise InputError("grade", value, "letters and digits (any script), spaces and _ . - "
                         "only, starting with a letter or digit")
    return value


def _grade_char(char: str) -> bool:
    return char.isalnum() or char in " _.-" or unicodedata.category(char).startswith("M")


def parse_day(name: str, value: str | None) -> date | None:
    """A YYYY-MM-DD date from a filter field (None when empty)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else _not_a_date(name, value)
    except ValueError:
        return _not_a_date(name, value)


def _not_a_date(name: str, value: str) -> date:
    raise InputError(name, value, "a date as YYYY-MM-DD, e.g. 2026-11-30")


def _day_start(day: date) -> str:
    return iso_utc(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _day_after(day: date) -> str | None:
    """Where a filter ending on ``day`` stops; None (no end) after the last day a date holds."""
    return None if day == date.max else _day_start(day + timedelta(days=1))


def parse_filter(params: Mapping[str, str]) -> tuple[ResultFilter, dict[str, str]]:
    """The result filter from query parameters (site, device, from, to, grade); from and
    to are UTC days of each result's placed capture, never of its kiosk's clock."""
    first = parse_day("from", _field(params, "from"))
    last = parse_day("to", _field(params, "to"))
    if first and last and last < first:
        raise InputError("to", last.isoformat(), f"a day on or after from ({first.isoformat()})")
    site, device_id = parse_kiosk(params)
    where = ResultFilter(
        site=site,
        device_id=device_id,
        placed_from=_day_start(first) if first else None,
        placed_before=_day_after(last) if last else None,
        label=_grade(params),
    )
    echo = {name: params[name].strip() for name in FILTER_FIELDS if params.get(name, "").strip()}
    return where, echo


def parse_cursor(value: str | None, name: str = "before") -> tuple[str, str] | None:
    """The keyset cursor ``PLACED_AT~MEASUREMENT_ID`` of an older (``before``) or newer
    (``after``) page, or None."""
    if not value:
        return None
    match = _CURSOR.match(value) if len(value) <= 100 else None
    if match is None:
        raise InputError(name, value, "a cursor from an 'Older' or 'Newer' link of this page")
    return match.group(1), match.group(2)


def parse_letter_cursor(value: str | None) -> int | None:
    """Where a page of dead letters starts: before the letter numbered ``value`` (None: the
    newest)."""
    if not value:
        return None
    if not _LETTER_ID.match(value):
        raise InputError("before", value, "a number from an 'Older' link of this page")
    return int(value)


def parse_device_cursor(name: str, value: str | None) -> tuple[str, str] | None:
    """Where a page of the fleet starts (``after``) or ends (``before``): the site and device
    id ``SITE~DEVICE`` of a Next or Previous link, or of the API's ``next``; None when not
    given."""
    if not value:
        return None
    match = _DEVICE_CURSOR.match(value) if len(value) <= 130 else None
    if match is None:
        raise InputError(name, value, "a site~device from a Next or Previous link of this page "
                         "or the `next` of an API answer")
    return match.group(1), match.group(2)


def parse_token_cursor(name: str, value: str | None) -> tuple[str, str] | None:
    """Where a page of the API tokens starts (``after``) or ends (``before``): the creation
    time and id ``CREATED~ID`` of a Next or Previous link of the tokens page; None when not
    given."""
    if not value:
        return None
    match = _TOKEN_CURSOR.match(value) if len(value) <= MAX_CURSOR_CHARS else None
    if match is None:
        raise InputError(name, value, "a created~id from a Next or Previous link of this page")
    return match.group(1), match.group(2)


def one_way(after: str | None, before: str | None) -> None:
    """Refuse a page asked to start after one key and end before another."""
    if after and before:
        raise InputError("before", before, "not with after; give one of them")


def parse_listed_cursor(value: str | None) -> tuple[str, str] | None:
    """Where a page of a list by time and id (pathology jobs, model rollouts) starts: after
    the row of TIME and ID (``TIME~ID``, from an Older link or the API's ``next``); None: the
    newest."""
    if not value:
        return None
    match = _LISTED_CURSOR.match(value) if len(value) <= MAX_CURSOR_CHARS else None
    if match is None:
        raise InputError("before", value, "a cursor from an 'Older' link of this page or the "
                         "`next` of an API answer")
    return match.group(1), match.group(2)


def listed_cursor(rows: Sequence[Mapping[str, Any]], shown: int, time_key: str,
                  id_key: str) -> str | None:
    """The cursor (``TIME~ID``) of the page after the first ``shown`` of ``rows`` (read one
    more than shown, so a further row means there is one), or None."""
    if len(rows) <= shown:
        return None
    last = rows[shown - 1]
    return f"{last[time_key]}~{last[id_key]}"


def older_link(path: str, cursor: str | None) -> str | None:
    """The link to the page a ``listed_cursor`` starts, or None when there is none."""
    return None if cursor is None else f"{path}?{urlencode({'before': cursor})}"


def parse_limit(value: str | None, sizes: Sequence[int] | None = PAGE_SIZES) -> int:
    """The page size: one of ``sizes``, or any whole number 1-MAX_LIMIT when ``sizes`` is None
    (the API); DEFAULT_LIMIT when not given."""
    if not value:
        return DEFAULT_LIMIT
    if sizes is not None:
        if value not in {str(size) for size in sizes}:
            raise InputError("limit", value, f"one of {', '.join(map(str, sizes))}")
        return int(value)
    if not _LIMIT.match(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise InputError("limit", value, f"a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def once_each(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The query string's parameters by name; a name given twice is refused (which would
    count? a proxy and the console could each read another)."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InputError(name, value, "given more than once; give each parameter once")
        params[name] = value
    return params


def refuse_unknown(params: Mapping[str, str], known: Sequence[str]) -> None:
    """Refuse the first parameter not in ``known``, naming those that are."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        expected = f"use {', '.join(known)}" if known else "this address takes none"
        raise InputError(unknown[0], params[unknown[0]], f"unknown parameter; {expected}")


def parse_query(params: Mapping[str, str], sizes: Sequence[int] | None = PAGE_SIZES
                ) -> ResultQuery:
    """A checked results query from the page's or the API's query parameters (``sizes``: the
    page sizes allowed; None for any 1-MAX_LIMIT)."""
    refuse_unknown(params, RESULT_PARAMETERS)
    where, echo = parse_filter(params)
    one_way(params.get("after"), params.get("before"))
    return ResultQuery(where, parse_cursor(params.get("before")),
                       parse_limit(params.get("limit"), sizes), echo,
                       parse_cursor(params.get("after"), "after"))


def cursor_of(placed_at: str, measurement_id: str) -> str:
    """The cursor that continues after this row (its placed capture and id)."""
    return f"{placed_at}~{measurement_id}"


def check_measurement_id(value: str) -> str:
    """A measurement id (UUIDv7 text), or InputError."""
    if len(value) > 36 or not MEASUREMENT_ID.match(value):
        raise InputError("measurement id", value, "a UUIDv7 like 0190e8a2-...-7...")
    return value
