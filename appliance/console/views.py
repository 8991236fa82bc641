"""What each console page and API call shows, built from the store's queries.

Pages (Jinja2) and the JSON API share these builders, so both always show the same numbers.
A number outside the validated range (the result's ``not_validated``, docs/measurement.md) was
not measured: it is null in ``features`` and in the list's columns, as the pages show "not
measured" in its place; what the kiosk computed stays reachable for audit under the explicit
key ``not_validated_raw``, never where a consumer reads measurements.
The cohort figures are cached for ``console.cohort_cache_s`` seconds: they summarise every
stored result and change slowly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.backoffice.agebands import REPORT_FEATURES
from appliance.backoffice.export import GRADE_BETWEEN_COLUMN, between_cell
from appliance.backoffice.fleet import (
    CLOCK_OFF_S,
    camera_text,
    clock_text,
    duration,
    fleet_row,
    fleet_rows,
    needs_staff,
    seen_ago,
    state_text,
)
from appliance.backoffice.keyset import Neighbours
from appliance.backoffice.retention import Period
from appliance.backoffice.schema import GRADE_PROBABILITIES, not_validated_keys
from appliance.backoffice.store import Store
from appliance.console.cohortview import FeatureView, feature_views, repeat_rows
from appliance.console.db import StorePool
from appliance.console.filters import ResultQuery, cursor_of
from appliance.edge.grade_margin import grade_between
from appliance.edge.reasons import grade_withheld
from appliance.logsafe import shorten
from appliance.transport.payloads import FEATURE_KEYS

# a result is listed by its capture as the back office placed it (placed_at, the list's order
# and its date filter) and keeps the time its kiosk's clock wrote (captured_at)
LIST_COLUMNS = ("measurement_id", "placed_at", "captured_at", "site", "device_id", "label",
                "age_band", "kime_score", "hill_density_per_mm2", "furrow_density_mm_per_mm2",
                "pore_count", "quality_verdict", "not_validated")
_LIST_PLACED_AT, _LIST_MEASUREMENT_ID = (LIST_COLUMNS.index("placed_at"),
                                       LIST_COLUMNS.index("measurement_id"))
log = logging.getLogger(__name__)
# not_validated: "a,b" or empty; grade_between as `results export` writes it (export.py: the
# two grades of a near-tie, "fine,normal", or empty). Columns added since go last (placed_at,
# then grade_between), so a reader by position finds the columns it had before where they were
CSV_COLUMNS = ("measurement_id", "captured_at", "received_at", "site", "device_id",
               "software_version", "quality_verdict", "model_name", "model_version", "label",
               "age_band", *FEATURE_KEYS, "not_validated", "placed_at", GRADE_BETWEEN_COLUMN)
# what the store reads for them: the grade probabilities in place of the near-tie they tell
_CSV_READ_COLUMNS = (*CSV_COLUMNS[:-1], GRADE_PROBABILITIES)
_CSV_PLACED_AT, _CSV_MEASUREMENT_ID = (CSV_COLUMNS.index("placed_at"),
                                     CSV_COLUMNS.index("measurement_id"))
CSV_PAGE_ROWS = 1000  # results read per borrowed store connection (keyset pages)
# the results page counts the matching results up to this many, then says "more than": a
# count stops at the cap however many the store holds (benchmarks/console_results_count.py)
RESULTS_COUNTED = 10_000
# A result's page shows its quality block as a kiosk sent it, which the contract bounds only in
# all (256 KiB, 16 reasons): one reason could fill it. The longest a kiosk writes, a withheld
# grade naming every feature key, has 326 characters.
SHOWN_REASON_CHARS = 600
# of a result's quality scores or grade probabilities on its page (the quality gate writes 7
# or 8 scores, the grader 3 probabilities)
SHOWN_SCORES = 16
SHOWN_NAME_CHARS = 64  # of a score's or label's name there (as long as a contract identifier)
FLEET_SHOWN = 100  # kiosks on a page of the fleet, by site and device id


def fleet(store: Store) -> list[dict[str, Any]]:
    """Every device: state, versions, camera, outbox and when it was last seen."""
    now = datetime.now(UTC)
    return [_shown_device(row, now) for row in fleet_rows(store)]


def _shown_device(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    keep = ("site", "device_id", "state", "last_seen", "status_at", "status_sent_at",
            "software_version", "model", "camera", "outbox_depth", "outbox_oldest_age_s",
            "dropped", "clock_ahead_s", "clock_read_at", "measuring_paused", "outbox_in_use")
    ahead_s = row.get("clock_ahead_s")
    return {**{k: row.get(k) for k in keep}, "last_seen_ago": seen_ago(row["last_seen"], now),
            "state_text": state_text(row), "needs_staff": needs_staff(row),
            "camera_text": camera_text(row, now), "clock_text": clock_text(row, now),
            "clock_off": ahead_s is not None and abs(ahead_s) > CLOCK_OFF_S,
            "outbox_oldest": _oldest(row.get("outbox_oldest_age_s"))}


@dataclass(frozen=True)
class FleetPage:
    """One page of the fleet (FLEET_SHOWN kiosks by site and device id), how many kiosks
    there are in all and online, and the keys (site, device id) the pages beside it start
    after (``next``) or end before (``previous``); None where there is no such page."""

    devices: list[dict[str, Any]]
    total: int
    online: int
    next: tuple[str, str] | None
    previous: tuple[str, str] | None


def fleet_page(store: Store, site: str | None, after: tuple[str, str] | None = None,
               before: tuple[str, str] | None = None) -> FleetPage:
    """The page of kiosks (or of one site's) after the ``after`` key, or before the
    ``before`` key, or the first."""
    kiosks: Neighbours[dict[str, Any], tuple[str, str]] = Neighbours(
        lambda limit, onward, back: store.device_page(site, limit, after=onward, before=back),
        lambda onward, back: bool(store.device_page(site, 1, after=onward, before=back)),
        _device_key)
    rows, following, preceding = kiosks.page(FLEET_SHOWN, after, before)
    now = datetime.now(UTC)
    return FleetPage([_shown_device(fleet_row(row), now) for row in rows],
                     *store.count_devices(site), following, preceding)


def fleet_after(store: Store, limit: int,
                after: tuple[str, str] | None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` kiosks by site and device id after the ``after`` key (from the first
    when None), and the cursor (``SITE~DEVICE``) the next of them start after; None when
    these are the last."""
    rows = store.device_page(None, limit + 1, after=after)  # one beyond: is there a next?
    shown = rows[:limit]
    following = "~".join(_device_key(shown[-1])) if len(rows) > limit else None
    now = datetime.now(UTC)
    return [_shown_device(fleet_row(row), now) for row in shown], following


def _device_key(row: dict[str, Any]) -> tuple[str, str]:
    return row["site"], row["device_id"]


def _oldest(age_s: float | None) -> str:
    """How long the oldest un-sent result had waited when the kiosk last reported."""
    return "-" if age_s is None else duration(age_s)


@dataclass(frozen=True)
class ResultsPage:
    """One page of results (newest placed capture first) and the cursors of the pages
    beside it: ``older`` (give it as ``before``) and ``newer`` (as ``after``); None where
    there is none. ``newer_is_newest``: no result lies beyond the newer page, which holds
    the newest results."""

    items: list[dict[str, Any]]
    older: str | None
    newer: str | None
    newer_is_newest: bool = False


def results_page(store: Store, query: ResultQuery) -> ResultsPage:
    """One page of results (newest first) older than ``query.before``, or newer than
    ``query.after``, or the newest; and whether there are pages older and newer than it."""
    results: Neighbours[tuple[Any, ...], tuple[str, str]] = Neighbours(
        lambda limit, onward, back: store.page_results(LIST_COLUMNS, query.where, onward,
                                                       limit, after=back),
        lambda onward, back: bool(store.page_results(("measurement_id",), query.where, onward,
                                                     1, after=back)),
        lambda row: (row[_LIST_PLACED_AT], row[_LIST_MEASUREMENT_ID]))
    rows, older, newer = results.page(query.limit, query.before, query.after)
    items = [dict(zip(LIST_COLUMNS, row, strict=True)) for row in rows]
    # why a result has no grade is in its payload's quality reasons: read for those only;
    # whether a grade is a near-tie, in its stored probabilities
    ungraded = store.result_payloads([i["measurement_id"] for i in items if i["label"] is None])
    graded = store.grade_probabilities([i["measurement_id"] for i in items if i["label"]])
    for item in items:  # the features outside the validated range: null, raw values apart
        item["not_validated"] = not_validated_keys(item["not_validated"])
        item["not_validated_raw"] = _set_aside(item, item["not_validated"])
        payload = ungraded.get(item["measurement_id"])
        item["grade_withheld"] = _withheld_in(json.loads(payload)) if payload else None
        probabilities = graded.get(item["measurement_id"])
        item["grade_between"] = grade_between(json.loads(probabilities) if probabilities
                                              else None)
    newest_next = newer is not None and len(store.page_results(
        ("measurement_id",), query.where, None, query.limit + 1, after=newer)) <= query.limit
    return ResultsPage(items, cursor_of(*older) if older else None,
                       cursor_of(*newer) if newer else None, newest_next)


class ExportEndedError(Exception):
    """A CSV export being sent stopped: its user's session ended meanwhile (logged out,
    disabled, removed, its password changed, or its time ran out)."""


def csv_pages(pool: StorePool, query: ResultQuery,
              still_allowed: Callable[[Store], bool] | None = None,
              ) -> Iterator[list[tuple[Any, ...]]]:
    """Every matching result (newest first) in CSV_COLUMNS, CSV_PAGE_ROWS at a time: each page
    borrows a store connection and gives it back before the page is sent, so a client that
    reads slowly, or stops reading, holds none of the console's few connections.

    ``still_allowed`` is asked on each page's connection before the page is read: an export
    of many pages outlives its request's login check, and a user disabled or logged out
    while it is being read gets no page read after that (ExportEndedError; the client sees a
    download cut short, not one that looks whole)."""
    before: tuple[str, str] | None = None
    while True:
        with pool.store() as store:
            if still_allowed is not None and not still_allowed(store):
                raise ExportEndedError("the CSV export stopped: its user's session ended "
                                       "while it was being sent")
            rows = store.page_results(_CSV_READ_COLUMNS, query.where, before, CSV_PAGE_ROWS)
        yield [(*row[:-1], between_cell(row[-1])) for row in rows]
        if len(rows) < CSV_PAGE_ROWS:
            return
        before = (rows[-1][_CSV_PLACED_AT], rows[-1][_CSV_MEASUREMENT_ID])


def result_detail(store: Store, measurement_id: str) -> dict[str, Any] | None:
    """One result: its stored columns, and quality and classification from its payload."""
    row = store.result_row(measurement_id)
    if row is None:
        return None
    payload = json.loads(row.pop("payload"))
    not_validated = not_validated_keys(row.pop("not_validated"))
    features = {k: row[k] for k in FEATURE_KEYS}
    raw = _set_aside(features, not_validated)
    return {
        "result": {k: v for k, v in row.items() if k not in FEATURE_KEYS},
        "features": features,
        "quality": payload.get("quality", {}),
        "classification": payload.get("classification"),
        "grade_withheld": _withheld_in(payload),
        "grade_between": _between_in(payload),
        "subject": payload.get("subject"),
        "not_validated": not_validated,
        "not_validated_raw": raw,
    }


def shown_quality(quality: dict[str, Any]) -> dict[str, Any]:
    """A result's quality block as its page shows it: each reason with its control and
    bidirectional-text characters escaped (they could show it in another order than it has)
    and cut to SHOWN_REASON_CHARS, the first SHOWN_SCORES scores with their names escaped and
    cut, and how many scores were left off. The API gives the block as the kiosk sent it."""
    scores, left_off = shown_numbers(quality.get("scores") or {})
    return {
        "verdict": quality.get("verdict"),
        "reasons": [shorten(reason, SHOWN_REASON_CHARS) for reason in quality.get("reasons") or []],
        "scores": scores,
        "scores_left_off": left_off,
    }


def shown_numbers(named: dict[str, float]) -> tuple[list[tuple[str, float]], int]:
    """The first SHOWN_SCORES of a kiosk's named numbers (quality scores, a grade's
    probabilities), names escaped and cut to SHOWN_NAME_CHARS, and how many were left off."""
    items = list(named.items())
    shown = [(shorten(name, SHOWN_NAME_CHARS), value) for name, value in items[:SHOWN_SCORES]]
    return shown, max(len(items) - SHOWN_SCORES, 0)


def _set_aside(values: dict[str, Any], not_validated: list[str]) -> dict[str, Any]:
    """Null the features that were not measured in ``values``; their raw numbers, for audit."""
    raw = {key: values[key] for key in not_validated if key in values}
    values.update(dict.fromkeys(raw))
    return raw


def _withheld_in(payload: dict[str, Any]) -> dict[str, object] | None:
    """Why a stored result has no grade when the kiosk withheld it, from its quality reasons
    (None: graded, or no model on the kiosk)."""
    reasons = (payload.get("quality") or {}).get("reasons") or []
    withheld = None if payload.get("classification") else grade_withheld(reasons)
    return withheld.as_json() if withheld is not None else None


def _between_in(payload: dict[str, Any]) -> list[str] | None:
    """The two grades a stored result lies between when its grade is a near-tie, from the
    probabilities it was sent with (edge/grade_margin.py); None: one grade, or none."""
    return grade_between((payload.get("classification") or {}).get("probabilities"))


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 6)


def cohort_json(figures: CohortFigures) -> dict[str, Any]:
    """The cohort figures as JSON (NaN as null), with the time they were computed."""
    views, repeats = figures.views, figures.repeats
    return {
        "computed_at": figures.computed_at,
        "period": dataclasses.asdict(figures.period),
        "features": {
            v.key: {
                "pearson": {"r": _number(v.pearson.r), "ci95": [_number(v.pearson.low),
                            _number(v.pearson.high)], "p": _number(v.pearson.p_value),
                            "n": v.pearson.n},
                "bands": [{"band": b.band, "n": b.n, "mean": _number(b.mean), "sd": _number(b.sd),
                           "ci95": [_number(b.low), _number(b.high)]} for b in v.bands],
                "not_measured_left_out": v.not_measured,
            }
            for v in views
        },
        "repeated_subjects": [
            {**r, "cv_percent": {k: _number(c) for k, c in r["cv_percent"].items()}}
            for r in repeats
        ],
    }


@dataclass(frozen=True)
class CohortFigures:
    """The cohort figures and when they were computed (UTC, to the second), which the page
    and the API say: a visit that finds them stale gets them while newer ones are computed."""

    views: list[FeatureView]
    repeats: list[dict[str, Any]]
    computed_at: str
    period: Period  # the capture times they cover, and a retention cut-off before them


class CohortCache:
    """The cohort figures, refreshed in the background once older than ``max_age_s``.

    Over a million results the grouped queries take about a second, so a page never waits for
    them: it gets the last figures while a thread computes new ones. Only the very first
    request after start waits (``warm`` starts that computation when the console starts), and
    the first after an erasure (``appliance results erase``, another process: one small query
    per request tells), since the figures before it name the erased subject's repeats.
    """

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._value: tuple[float, CohortFigures] | None = None
        self._erasure_mark = 0  # the newest erasure the figures were computed after

    def _compute(self, store: Store, only_if_missing: bool = False) -> None:
        with self._refreshing:
            if only_if_missing and self._value is not None:
                return  # the start-up warm-up finished while this request waited for it
            computed_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            mark = store.erasure_mark()  # before the figures: an erasure meanwhile is newer
            figures = CohortFigures(feature_views(store.band_sums(REPORT_FEATURES)),
                                    repeat_rows(store), computed_at, store.covered_period())
            with self._lock:
                self._value = (time.monotonic(), figures)
                self._erasure_mark = mark

    def warm(self, pool: Any) -> None:
        """Compute the figures in a background thread (at console start)."""
        threading.Thread(target=self._refresh_from, args=(pool,), name="CohortWarm",
                         daemon=True).start()

    def _refresh_from(self, pool: Any) -> None:
        try:
            with pool.store() as store:
                self._compute(store)
        except Exception:  # the next page request computes them itself and shows the error
            log.exception("cohort figures not computed in the background")

    def get(self, store: Store, pool: Any = None) -> CohortFigures:
        """The latest figures; stale ones trigger a background refresh (through ``pool``)."""
        with self._lock:
            value = self._value
        if value is None:
            self._compute(store, only_if_missing=True)
            return self._latest()
        if store.erasure_mark() != self._erasure_mark:  # never shown again, even stale
            self._compute(store)
            return self._latest()
        stale = time.monotonic() - value[0] > self.max_age_s
        if stale and pool is not None and not self._refreshing.locked():
            self.warm(pool)
        elif stale and pool is None:
            self._compute(store)
            return self._latest()
        return value[1]

    def _latest(self) -> CohortFigures:
        """The figures just computed, whatever their age: with ``max_age_s`` 0 they are stale
        at once, and asking ``get`` again would compute them again without end."""
        with self._lock:
            value = self._value
        assert value is not None  # _compute set it
        return value[1]
