"""The console's HTTP API, ``/api/v1``: fleet, results, one result, cohort figures (JSON).

Every call needs a bearer token (``appliance console token create NAME``); without one the
answer is 401. Filters are checked exactly as on the pages (``filters.py``). A feature outside
the validated range is null where measurements are read, as the pages say "not measured"
(``views.py``; the OpenAPI descriptions below say the same to API users).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from appliance.backoffice.accounts import Login
from appliance.console.filters import (
    check_measurement_id,
    once_each,
    parse_device_cursor,
    parse_limit,
    parse_query,
)
from appliance.console.guard import api_login, body_store, head_ends_here, pool_of
from appliance.console.knownvalues import refuse_unknown_values
from appliance.console.views import (
    cohort_json,
    fleet,
    fleet_after,
    result_detail,
    results_page,
)
from appliance.edge.grade_margin import NEAR_TIE_MARGIN


class ApiError(BaseModel):
    """The body of every API error, whatever its status (400, 401, 404, 405, 413, 414, 500,
    503): FastAPI's own ``detail``, always one text."""

    detail: str = Field(description="what was refused or what failed, in words; for a refused "
                        "field it starts with the field's name and a colon")


def error(description: str) -> dict[str, Any]:
    """An error answer for the OpenAPI document: its description and the ApiError body."""
    return {"description": description, "model": ApiError}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error("refused input; `detail` names the field and what it expects"),
    401: error("no valid bearer token"),
    503: error("the console's store cannot be reached now, or every connection is busy"),
}
router = APIRouter(prefix="/api/v1", tags=["api"], responses=ERROR_RESPONSES)
ApiLogin = Annotated[Login, Depends(api_login)]
# a list answered a page at a time (jobs, rollouts): where the previous answer's `next` left off
NextCursor = Annotated[str | None, Query(description="`next` of the previous answer")]


@router.get("/fleet", summary="Every kiosk with its state, versions, camera and outbox",
            response_description="`devices`, one object a kiosk (a page of them, with `next`, "
            "when `limit` or `after` is given)",
            description="For an offline kiosk, `camera`, the versions and the outbox figures are "
            "those it last reported; `camera_text` says so in words ('online, 2h ago', or "
            "'unknown (offline)' when it never reported its camera). That report was sent at "
            "`status_sent_at` as the back office's clock places it (which `camera_text` counts "
            "from, and which orders a kiosk's statuses), and at `status_at` by the kiosk's own "
            "clock, which may be off (`clock_ahead_s`: 2000-01-01 after a dead CMOS battery); "
            "`last_seen` is when the back office last heard from the kiosk: a status it "
            "had heard already, or one sent before it (a worker back from a stop takes "
            "those the broker queued meanwhile), leaves it. "
            "`measuring_paused` is why an online kiosk's latest status says it does not "
            "measure ('disk_full', 'storage'; null while it measures), `state_text` the "
            "state with it in words ('online, measuring paused: disk full'). "
            "`outbox_in_use` is the file other than its outbox an online kiosk's latest "
            "status says it keeps its results in ('repaired_copy': the damaged outbox cannot "
            "be moved aside; null otherwise), in `state_text` as 'online, outbox on its "
            "repaired copy'. Without "
            "`limit` and `after` the answer is `devices`, every kiosk by site and device id. "
            "With either it is one page of them: `devices` (`limit` kiosks) and `next`, the "
            "cursor (`SITE~DEVICE`) that, given as `after`, continues them (null after the "
            "last).")
def api_fleet(
    request: Request,
    login: ApiLogin,
    *,
    limit: Annotated[str | None, Query(description="kiosks per page, 1 to 200 (50 when not "
                                         "given); a page, with `next`, when given")] = None,
    after: Annotated[str | None, Query(description="`next` of the previous page: the kiosks "
                                       "after it, by site and device id")] = None,
) -> dict[str, Any]:
    """The fleet registry: every kiosk, or one page of them when ``limit`` or ``after`` is
    given."""
    if not (limit or after):
        with body_store(request) as store:
            return {"devices": fleet(store)}
    size, start = parse_limit(limit, sizes=None), parse_device_cursor("after", after)
    with body_store(request) as store:
        devices, following = fleet_after(store, size, start)
    return {"devices": devices, "next": following}


NOT_MEASURED_DOC = (
    "A feature the result names in `not_validated` lies outside the range the measurement was "
    "validated on (the console's page /validated-range lists it): it was not measured, and "
    "its value is `null`. "
    "What the kiosk computed for it is kept for audit only, apart, under `not_validated_raw` "
    "(feature -> number); never read it as a measurement."
)


@router.get("/results", summary="Stored results, newest first, a page at a time",
            response_description="`results`, one page of them, newest first, with the cursors "
            "`next` and `previous`",
            description="Results are ordered, and `from` and `to` select them, by `placed_at`: "
            "the capture as the back office places it (its kiosk's clock as read, never after "
            "its receipt), so a kiosk whose clock said 2000 has its results of today among "
            "today's. `captured_at` is the capture time as the kiosk's clock wrote it. "
            "Each result's key columns (`kime_score`, `hill_density_per_mm2`, "
            "`furrow_density_mm_per_mm2`, `pore_count`), grade (`label`) and quality verdict; "
            "`grade_withheld` and `grade_between` as for one result (`grade_withheld` null "
            "when graded, or when the kiosk had no model); `next` continues the list (null on "
            "the last page), `previous`, given as `after`, goes back to the page before (null "
            "on the newest). " + NOT_MEASURED_DOC)
def api_results(
    request: Request,
    login: ApiLogin,
    *,
    site: Annotated[str | None, Query(description="site id, as in the fleet (a site no kiosk "
                                      "is at is refused, 400)")] = None,
    device: Annotated[str | None, Query(description="device id, as in the fleet (one the fleet "
                                        "does not hold, or not at `site`, is refused, 400)"
                                        )] = None,
    from_: Annotated[str | None, Query(alias="from", description="first day, YYYY-MM-DD, a UTC "
                                       "day: results captured from its 00:00 UTC (`placed_at`)"
                                       )] = None,
    to: Annotated[str | None, Query(description="last day, YYYY-MM-DD, a UTC day: results "
                                    "captured before the next day's 00:00 UTC (`placed_at`)"
                                    )] = None,
    grade: Annotated[str | None, Query(description="model label (one neither the shipped model "
                                       "gives nor a stored result carries is refused, 400, "
                                       "naming those known)")] = None,
    limit: Annotated[str | None, Query(description="results per page, 1 to 200 (50 when not "
                                         "given)")] = None,
    before: Annotated[str | None, Query(description="`next` of the previous page")] = None,
    after: Annotated[str | None, Query(description="`previous` of a page: the page of results "
                                       "just newer than it (not with `before`)")] = None,
) -> dict[str, Any]:
    """A page of results; ``next`` continues it (null on the last page), ``previous`` goes
    back (null on the newest)."""
    params = once_each(request.query_params.multi_items())
    query = parse_query(params, sizes=None)  # any page size 1-200
    with pool_of(request).store() as store:
        refuse_unknown_values(store, query.where)  # decides the status: a HEAD's too
        head_ends_here(request)
        page = results_page(store, query)
    return {"results": page.items, "next": page.older, "previous": page.newer}


@router.get("/results/{measurement_id}", summary="One result with its quality and classification",
            responses={404: error("no stored result with that id")},
            response_description="the result: `result`, `features`, `quality`, "
            "`classification`, `grade_withheld`, `grade_between`, `subject`",
            description="`result` (stored columns: `captured_at` by the kiosk's clock, "
            "`received_at` by the back office's, `placed_at` the capture as the back office "
            "places it, which lists and filters go by), `features` (every feature), `quality` "
            "(verdict, reasons, scores), `classification` (null when there is no grade), "
            "`grade_withheld` (when the kiosk withheld the grade because the model reads "
            "features that were not measured: `features` names them, `frame` is true when the "
            "frame as a whole is outside the validated range; null otherwise), `grade_between` "
            "(the two grades, in the model's label order, when the two most probable lie less "
            f"than {NEAR_TIE_MARGIN} apart in `classification.probabilities`: a near-tie, "
            "which the console shows as 'between fine and normal', never as one grade; null "
            "otherwise), "
            "`subject`. "
            + NOT_MEASURED_DOC)
def api_result(
    request: Request,
    measurement_id: Annotated[str, Path(description="the result's `measurement_id` (UUID), "
                                        "as in the results list")],
    login: ApiLogin,
) -> dict[str, Any]:
    """One stored result."""
    check_measurement_id(measurement_id)
    with pool_of(request).store() as store:
        detail = result_detail(store, measurement_id)
    if detail is None:
        raise HTTPException(404, f"no stored result {measurement_id}")
    return detail


@router.get("/cohort", summary="Features by age band with 95 % CIs, and repeated subjects",
            description="Per report feature (`features`): each age band's `n`, `mean`, `sd` "
            "and the mean's 95 % CI (Student t), the Pearson r with age (band midpoints) with "
            "its 95 % CI (Fisher z), p and n, and how many values were left out as not "
            "measured; `repeated_subjects`: subjects measured more than once, with each "
            "feature's CV %. `computed_at` says when the figures were computed: figures older "
            "than `console.cohort_cache_s` are computed again in the background, and a request "
            "meanwhile gets the older ones (the first request after an erasure waits for new "
            "ones). `period`: the first and last capture time of the stored results, as the "
            "back office places each (its kiosk's clock as read, never after its receipt; "
            "`captured_from`, `captured_to`), and `removed_before`, the newest retention "
            "cut-off (null: none), before which results were removed.",
            response_description="the cohort figures: `computed_at`, `period`, `features`, "
            "`repeated_subjects`")
def api_cohort(request: Request, login: ApiLogin) -> dict[str, Any]:
    """The cohort figures and when they were computed (``computed_at``): figures older than
    console.cohort_cache_s are computed again in the background, and a request meanwhile gets
    the older ones."""
    with body_store(request) as store:
        figures = request.app.state.cohort.get(store, pool_of(request))
    return cohort_json(figures)
