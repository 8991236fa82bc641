"""The console's pages: login, fleet, results (filter, keyset pages, CSV), one result, cohort.

Server-rendered with Jinja2 (autoescaped: anything a filter echoes is shown as text, never
markup); no page needs JavaScript.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import logging
import math
import secrets
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from jinja2 import Environment
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from appliance.backoffice import storeerrors
from appliance.backoffice.accounts import Login
from appliance.console.auth import USER_NAME, digest, open_session, session_login
from appliance.console.cohortview import plotted_bands, svg_plot
from appliance.console.db import StoreBusyError, anyone_can_log_in
from appliance.console.filters import (
    DEFAULT_LIMIT,
    FILTER_FIELDS,
    KIOSK_FIELDS,
    PAGE_SIZES,
    InputError,
    check_measurement_id,
    once_each,
    one_way,
    parse_device_cursor,
    parse_query,
    parse_site,
)
from appliance.console.guard import (
    PAGE_TYPE,
    asked_head,
    body_store,
    check_csrf,
    client_address,
    head_answer,
    head_ends_here,
    judged_password,
    login_csrf_cookie,
    login_name_cookie,
    page_login,
    page_or_api_login,
    password_login,
    pool_of,
    read_form,
    safe_next,
    session_cookie,
    session_cookie_name,
)
from appliance.console.knownvalues import refuse_unknown_values
from appliance.console.throttle import LoginGuard, retry_after
from appliance.console.views import (
    CSV_COLUMNS,
    RESULTS_COUNTED,
    ExportEndedError,
    csv_pages,
    fleet_page,
    result_detail,
    results_page,
    shown_numbers,
    shown_quality,
)
from appliance.csvcells import csv_safe
from appliance.httpbounds import Tally
from appliance.logsafe import shorten

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
PageLogin = Annotated[Login, Depends(page_login)]
# The store ends a session (console.session_hours, on its clock); the browser keeps the cookie
# a day longer, so a visit after its time ran out is told that the session ended instead of
# getting a bare login page. The cookie is worth nothing then: the store refuses it.
SESSION_COOKIE_AFTER_END_S = 24 * 3600
CSV_TYPE = "text/csv; charset=utf-8"
LOGIN_NAME_KEPT_S = 600  # a refused login's user name, for its login page (a shared browser)


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page from its template, which sees the answer's ``status`` too (the error page
    shows it)."""
    templates: Environment = request.app.state.templates
    page = templates.get_template(name).render(status=status, **context)
    return HTMLResponse(page, status_code=status)


@router.get("/login")
def login_form(request: Request, next: str | None = None, failed: bool = False,
               ended: bool = False, logged_out: bool = False) -> Response:
    """The login page; its form carries a CSRF token that is also set as a cookie. A HEAD
    gets the page's status and type alone: no store read (whether anyone can log in yet) and
    no CSRF cookie, which would replace the one of a login form open in another tab for a
    form it does not send."""
    if asked_head(request):
        return head_answer(PAGE_TYPE, status=401 if failed else 200)
    typed = request.cookies.get(login_name_cookie(request), "") if failed else ""
    return _login_page(request, next, 401 if failed else 200, failed=failed, ended=ended,
                       logged_out=logged_out, nobody=_nobody_can_log_in(request), user=typed)


def _login_page(request: Request, next: str | None, status: int, *, failed: bool = False,
                wait_s: float = 0.0, store_failed: bool = False,
                ended: bool = False, logged_out: bool = False,
                nobody: bool = False, user: str = "") -> HTMLResponse:
    """The login page; ``user``: the name typed in the login just refused, filled in again
    (only one that could be a user's: a password typed into that field by mistake is not
    shown back)."""
    token = secrets.token_urlsafe(24)
    page = render(request, "login.html", status=status, csrf=token, next=safe_next(next),
                  failed=failed, wait_min=math.ceil(wait_s / 60.0) if wait_s else 0,
                  store_failed=store_failed, ended=ended and not failed,
                  logged_out=logged_out and not (failed or ended), login=None,
                  nobody=nobody, user=user if USER_NAME.match(user) else "")
    # Secure behind a TLS proxy, as the session cookie: not sent again over plain HTTP
    page.set_cookie(login_csrf_cookie(request), token, httponly=True, samesite="strict",
                    path="/login", secure=request.url.scheme == "https")
    if wait_s:
        page.headers["Retry-After"] = retry_after(wait_s)
    return page


def _nobody_can_log_in(request: Request) -> bool:
    """Whether the store has no enabled user yet (a new console: the page then says which
    command adds one); False when the store cannot tell now, which the login itself says.
    Once someone could log in the store is not asked again (the last enabled operator cannot
    be removed or disabled; a console left with no user at all says nothing more here)."""
    state = request.app.state
    if getattr(state, "someone_can_log_in", False):
        return False
    try:
        state.someone_can_log_in = anyone_can_log_in(pool_of(request))
    except StoreBusyError:
        return False
    except storeerrors.STORE_ERRORS:
        return False
    return not state.someone_can_log_in


def _say_refused(request: Request, name: str, address: str) -> None:
    """A login refused for too many failed ones, said at most once a minute with a count:
    one line each, a client posting the form in a loop wrote as many lines as it liked."""
    refusals: Tally = request.app.state.login_refusals
    if refusals.count(f"for {shorten(name, 64)} from {shorten(address, 64)}"):
        asyncio.get_running_loop().call_later(refusals.interval_s, refusals.say_due)


@router.post("/login", response_model=None)
async def login_submit(request: Request) -> RedirectResponse | HTMLResponse:
    """Check the password; on success open a session (ending the user's others when the form
    asks) and go where the user was going. A user name or address with too many failed logins
    lately is refused before any check (429, ``console/throttle.py``)."""
    form = await read_form(request)
    check_csrf(request.cookies.get(login_csrf_cookie(request), ""), form)
    pool, hours = pool_of(request), request.app.state.settings.session_hours
    guard: LoginGuard = request.app.state.logins
    name, address = form.get("user", ""), client_address(request)
    held = session_cookie(request)  # a session this browser holds: the login replaces it
    wait_s = guard.admit(name, address)  # counted as failed until it succeeds
    if wait_s:
        _say_refused(request, name, address)
        return _login_page(request, form.get("next"), 429, wait_s=wait_s, user=name)

    def attempt() -> Any:
        login = password_login(pool, name, form.get("password", ""))
        if login is None:
            return None
        with pool.store() as store:
            return open_session(store, login, hours, end_others=form.get("end_others") == "1",
                                replaced_cookie=held)

    try:  # a busy store (no connection came free: nothing checked) is the 503 page
        session = await judged_password(request, name, attempt)
    except storeerrors.STORE_ERRORS as exc:  # a full disk, a lost server: say so on the login page
        log.error("console login for %s: the store did not answer or record it: %s",
                  shorten(name, 64), exc)
        return _login_page(request, form.get("next"), 503, store_failed=True, user=name)
    target = safe_next(form.get("next"))
    secure = request.url.scheme == "https"
    if session is None:  # the page it is sent to fills in the name again, not the password
        refused = RedirectResponse(f"/login?{urlencode({'next': target, 'failed': 1})}", 303)
        if USER_NAME.match(name):
            refused.set_cookie(login_name_cookie(request), name, max_age=LOGIN_NAME_KEPT_S,
                               httponly=True, samesite="strict", path="/login", secure=secure)
        return refused
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(session_cookie_name(request), session.cookie,
                        max_age=int(hours * 3600) + SESSION_COOKIE_AFTER_END_S, httponly=True,
                        samesite="strict", secure=secure, path="/")
    response.delete_cookie(login_csrf_cookie(request), path="/login")
    response.delete_cookie(login_name_cookie(request), path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (the form must carry the session's CSRF token). When the store cannot
    end it (a full disk), the browser forgets it anyway and the page says it stays valid."""
    login = await run_in_threadpool(page_login, request)
    check_csrf(login.csrf, await read_form(request))
    cookie = session_cookie(request) or ""

    def forget() -> None:
        with pool_of(request).store() as store:
            store.end_session(digest(cookie))

    response: Response
    try:
        await run_in_threadpool(forget)
        response = RedirectResponse("/login?logged_out=1", status_code=303)
    except storeerrors.STORE_ERRORS as exc:
        log.error("console logout of %s: the store did not end the session: %s",
                  shorten(login.name, 64), exc)
        response = render(request, "error.html", 503, login=None, message=(
            "This browser is logged out, but the console's store could not end the session "
            "(its log says why): whoever holds its cookie can use it until it expires. Log "
            "in and out again once the store works, or have an operator remove the session "
            "(console user add sets a new password and ends every session)."))
    response.delete_cookie(session_cookie_name(request), path="/",
                           secure=request.url.scheme == "https")  # a __Host- one needs it
    return response


@router.get("/")
def home(login: PageLogin) -> RedirectResponse:
    """The fleet is the console's first page."""
    return RedirectResponse("/fleet", status_code=303)


@router.get("/fleet")
def fleet_list(request: Request, login: PageLogin, site: str | None = None,
               after: str | None = None, before: str | None = None) -> HTMLResponse:
    """The kiosks (or one site's), FLEET_SHOWN a page by site and device id: online or
    offline, versions, camera, outbox, last seen; Next and Previous page through them all."""
    chosen = parse_site({"site": site or ""})
    one_way(after, before)
    start, end = parse_device_cursor("after", after), parse_device_cursor("before", before)
    with body_store(request) as store:
        shown = fleet_page(store, chosen, start, end)
    narrowed = {"site": chosen} if chosen else {}

    def link(name: str, key: tuple[str, str] | None) -> str | None:
        return None if key is None else f"/fleet?{urlencode({**narrowed, name: '~'.join(key)})}"

    first = "/fleet" + (f"?{urlencode(narrowed)}" if narrowed else "")
    return render(request, "fleet.html", login=login, fleet=shown, site=chosen,
                  next=link("after", shown.next), previous=link("before", shown.previous),
                  first=first if start or end else None)


@router.get("/results")
def results_list(request: Request, login: PageLogin) -> HTMLResponse:
    """Stored results, newest first, filtered, one keyset page at a time (Older and Newer
    lead to the pages beside it), and how many match (counted up to RESULTS_COUNTED)."""
    query = parse_query(once_each(request.query_params.multi_items()))
    with pool_of(request).store() as store:
        refuse_unknown_values(store, query.where)  # decides the status: a HEAD's too
        head_ends_here(request)
        page = results_page(store, query)
        matching = store.count_results_up_to(query.where, RESULTS_COUNTED)
    shared = {**query.echo, "limit": str(query.limit)}  # the next pages keep the page size

    def link(name: str, cursor: str | None) -> str | None:
        return None if cursor is None else f"/results?{urlencode({**shared, name: cursor})}"

    # Newest only where it leads further than Newer, which leads to the first page itself
    # where that is the newest (else both led to the same results)
    newest = f"/results?{urlencode(shared)}"
    newer = newest if page.newer_is_newest else link("after", page.newer)
    return render(request, "results.html", login=login, items=page.items, echo=query.echo,
                  limit=query.limit, older=link("before", page.older), newer=newer,
                  csv="/results.csv" + (f"?{urlencode(query.echo)}" if query.echo else ""),
                  newest=newest if page.newer and not page.newer_is_newest else None,
                  matching=matching.text())


def refused_filter(request: Request, login: Login, refused: InputError) -> HTMLResponse:
    """The results page for a filter it refused (its status, 400): the form filled in as it
    was sent, the refused field marked, named and focused, and no results, as nothing was
    looked up; the person corrects that field instead of typing the others again."""
    given: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        # a field given twice: its first value; site and device as sent (read unstripped)
        given.setdefault(name, value if name in KIOSK_FIELDS else value.strip())
    echo = {name: given[name] for name in FILTER_FIELDS if given.get(name)}
    limit = given.get("limit", "")
    return render(request, "results.html", refused.status, login=login, items=[], echo=echo,
                  limit=int(limit) if limit in map(str, PAGE_SIZES) else DEFAULT_LIMIT,
                  refused=str(refused), refused_field=refused.field, csv=None, older=None,
                  newer=None, newest=None, matching=None)


def refused_site(request: Request, login: Login, refused: InputError) -> HTMLResponse:
    """The fleet page for a site or page it refused (400): the site field as it was sent,
    marked, named and focused where it was the site, and no kiosks, as nothing was looked
    up."""
    typed = next((value for name, value in request.query_params.multi_items()
                  if name == "site"), "")  # as sent: it is read unstripped
    return render(request, "fleet.html", refused.status, login=login, fleet=None, site=typed,
                  refused=str(refused), refused_field=refused.field)


# the pages whose form a refusal of their input shows again, as it was sent (app.py)
REFUSED_FORMS = {"/results": refused_filter, "/fleet": refused_site}


@router.get("/results.csv")
def results_csv(request: Request, login: PageLogin) -> StreamingResponse:
    """Every result matching the filter as CSV, streamed a page of rows at a time (no store
    connection is held while the client reads: views.csv_pages). A cursor or page size is
    checked as the results page checks it, then has no effect: the CSV holds every page.
    A HEAD gets the headers alone, the filter checked, without running the export's query."""
    query = parse_query(once_each(request.query_params.multi_items()))
    headers = {"Content-Disposition": 'attachment; filename="results.csv"'}
    with pool_of(request).store() as store:  # a typo's empty file would read as "none"
        refuse_unknown_values(store, query.where)
    if asked_head(request):  # the GET's own head: streamed, no length
        return head_answer(CSV_TYPE, headers)
    cookie = session_cookie(request)
    pages = csv_pages(pool_of(request), query,
                      lambda store: session_login(store, cookie) is not None)
    first = next(pages)  # read here: a busy store is a 503 page, not a cut-off download

    def stream() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        sent = 0
        try:
            for rows in itertools.chain([first], pages):
                writer.writerows([csv_safe(v) for v in row] for row in rows)  # formulas defused
                yield buffer.getvalue()
                sent += len(rows)
                buffer.seek(0)
                buffer.truncate()
        except ExportEndedError:  # the download is cut short: the client sees it incomplete
            log.warning("console: the CSV export of %s stopped after %d rows: the session "
                        "ended while it was being sent", shorten(login.name, 64), sent)
            raise

    return StreamingResponse(stream(), media_type=CSV_TYPE, headers=headers)


@router.get("/results/{measurement_id}")
def result_page(request: Request, measurement_id: str, login: PageLogin) -> HTMLResponse:
    """One result: its numbers, quality and classification."""
    check_measurement_id(measurement_id)
    with pool_of(request).store() as store:
        detail = result_detail(store, measurement_id)
    if detail is None:
        return render(request, "error.html", status=404, login=login,
                      message=f"no stored result {measurement_id}")
    grade = detail["classification"] or {}
    return render(request, "result.html", login=login, d=detail,
                  quality=shown_quality(detail["quality"]),
                  probabilities=shown_numbers(grade.get("probabilities") or {}))


@router.get("/cohort")
def cohort_page(request: Request, login: PageLogin) -> HTMLResponse:
    """Report features by age band (means with 95 % CIs), correlation with age, repeats."""
    with body_store(request) as store:
        figures = request.app.state.cohort.get(store, pool_of(request))
    views = figures.views
    plots = {v.key: Markup(svg_plot(v, described_by=f"bands-{v.key}"))  # text escaped
             for v in views}
    total = sum(b.n for b in views[0].bands) + views[0].not_measured if views else 0
    left_out = sum(v.not_measured for v in views)
    return render(request, "cohort.html", login=login, views=views, plots=plots,
                  bands={v.key: plotted_bands(v) for v in views},
                  repeats=figures.repeats, total=total, left_out=left_out,
                  isfinite=math.isfinite, computed_at=figures.computed_at,
                  period=figures.period.text(), max_age_s=request.app.state.cohort.max_age_s,
                  stored=figures.period.captured_from is not None,
                  pruned=figures.period.removed_before is not None)


@router.get("/docs")
def api_docs(request: Request, login: PageLogin) -> HTMLResponse:
    """The API's OpenAPI document as a page (no outside scripts: works offline); a HEAD
    is answered without rendering it."""
    head_ends_here(request)
    return render(request, "docs.html", login=login, api=request.app.openapi())


@router.get("/openapi.json")
def openapi(request: Request,
            login: Annotated[Login, Depends(page_or_api_login)]) -> JSONResponse:
    """The API's OpenAPI document, for a logged-in user or an API token: it documents the
    calls a token makes (a client generator reads it with the token it then uses)."""
    return JSONResponse(request.app.openapi())
