"""The console application: FastAPI with the pages, the /api/v1 API and their guards.

Guards that apply to every request live here: a request naming another host than this
console is refused (console/hostnames.py: DNS rebinding), the query string and request body
are bounded (a larger one is refused before any handler runs), refused input gets a clear
400 that names the field, a store that failed (a StoreError: unreachable, or refusing inside a
handler) is a 503 whose store and cause go to the log, and a request that failed otherwise
inside the console is a 500 whose cause goes to the log, not to the visitor. A URL no page
answers (404, or 405 for a method it does not take) gets the console's error page. Every API
error, whatever refused it, is one JSON shape, ``{"detail": TEXT}`` (api.ApiError); HEAD is
answered as GET, head only, without the store reads that fill only the body.
SECURITY_HEADERS keep pages from being framed or sniffed, scripts from loading from elsewhere
and the browser from keeping a copy: the server sends them with every answer (server.py),
refusals, the 500 and uvicorn's own 503 included.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from appliance import __version__
from appliance.backoffice.accounts import Login
from appliance.backoffice.storeerrors import StoreError
from appliance.backoffice.storeurl import store_name
from appliance.config import ConsoleConfig
from appliance.config.mqtt import DEFAULT_TOPIC_PREFIX
from appliance.console import (
    account,
    api,
    devicemodels,
    jobs,
    letterspage,
    pages,
    rangepage,
    rollouts,
    tokenpage,
)
from appliance.console.api import ApiError
from appliance.console.auth import PASSWORD_CHECKS_AT_ONCE
from appliance.console.db import StoreBusyError, StorePool
from appliance.console.filters import MAX_FORM_BYTES, MAX_QUERY_CHARS, InputError
from appliance.console.guard import (
    HEAD_ASKED,
    PAGE_TYPE,
    CsrfError,
    HeadAnsweredError,
    LoginRequiredError,
    RoleError,
    head_answer,
    known_parameters,
    visitor_login,
)
from appliance.console.hostnames import host_refusal, own_names
from appliance.console.inflight import (
    RETRY_AFTER_S,
    AnswersInFlight,
    FinishedAnswers,
    UserBusyError,
)
from appliance.console.throttle import LoginGuard
from appliance.console.views import CohortCache
from appliance.edge.grade_margin import NEAR_TIE_MARGIN
from appliance.httpbounds import Tally
from appliance.logsafe import LineBudget, escape_controls, shorten

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; "
    # markup slipped into a page can neither re-point its relative links (a <base>) nor
    # send a form, a password included, anywhere but to the console
    "base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # pages, CSV, API answers and pictures hold results and patient pictures: none is kept by
    # the browser, so after logout its Back button and cache show nothing of them
    "Cache-Control": "no-store",
}

# every page and API call of the console
ROUTERS = (pages.router, account.router, tokenpage.router, api.router, rollouts.pages,
           rollouts.api, devicemodels.pages, devicemodels.api, jobs.pages, jobs.api,
           rangepage.pages, letterspage.pages)
# the pages whose form a refusal of their input shows again, as it was sent (_input_error)
REFUSED_FORMS: dict[str, Callable[[Request, Login, InputError], Response | None]] = {
    **pages.REFUSED_FORMS, "/dead-letters": letterspage.refused_letters}


def create_app(pool: StorePool, settings: ConsoleConfig,
               pathology_results: Path | None = None, *,
               topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> FastAPI:
    """The console app on a store pool; pathology pictures are served from
    ``pathology_results`` (the pathology server's ``pathology.results_dir``) when given;
    ``topic_prefix`` (``mqtt.topic_prefix``): the fleet's, under which the dead-letters page
    reads a site's or a kiosk's topics."""
    app = FastAPI(
        title="appliance console API",
        version=__version__,
        description="Fleet, results and cohort figures of the appliance back office. "
        "Every call needs `Authorization: Bearer TOKEN` (appliance console token create NAME).",
        docs_url=None, redoc_url=None, openapi_url=None,
        dependencies=[Depends(known_parameters)],
    )
    app.state.pool = pool
    app.state.settings = settings
    app.state.host_names = own_names(settings.bind, settings.server_names)
    app.state.logins = LoginGuard(settings.login_max_failures, settings.login_window_s)
    # a refused login is a request anyone can repeat: said at most once a minute, counted
    app.state.login_refusals = Tally(log, "console: logins refused for too many failed ones")
    app.state.store_lines = LineBudget(log, "console busy or store failed answers")
    app.state.password_checks = asyncio.Semaphore(PASSWORD_CHECKS_AT_ONCE)  # others wait
    app.state.answers = AnswersInFlight(settings.answers_in_flight_per_user)
    app.state.busy_refusals = Tally(log, "console: requests refused, their user having "
                                    "console.answers_in_flight_per_user answers being sent")
    app.state.pathology_results = pathology_results
    app.state.topic_prefix = topic_prefix
    app.state.cohort = CohortCache(settings.cohort_cache_s)
    app.state.cohort.warm(pool)
    app.state.templates = Environment(
        loader=PackageLoader("appliance.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=visible,
    )
    app.state.templates.filters["code_spans"] = code_spans
    app.state.templates.globals["NEAR_TIE_MARGIN"] = NEAR_TIE_MARGIN  # grade.html's near_tie
    for router in ROUTERS:
        app.include_router(router)
    _add_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # FastAPI's own hook
    app.middleware("http")(_limits)
    app.add_middleware(FinishedAnswers, answers=app.state.answers)
    app.add_middleware(HeadAsGet)
    return app



def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document (/openapi.json, /docs) without the 422 answers FastAPI lists for
    every call with parameters: bad input is answered 400 naming the field (``invalid``
    below), never 422, so a client generated from the document expected an answer that
    never comes."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = document.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = document
    return app.openapi_schema


_CODE_SPAN = re.compile(r"(`{1,2})([^`\n]+)\1")


def visible(value: object) -> object:
    """Every text a page prints, with its control characters as visible escapes: a kiosk's
    free text (a label, a version, a reason) may hold bidirectional-text controls that show it
    in another order than it has, or terminal escapes; markup the console built is left as is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return escape_controls(value)
    return value


def code_spans(text: object) -> Markup:
    """``text`` HTML-escaped, with its `backticked` spans (the API's docstrings mark names
    so) set as <code>."""
    escaped = str(escape("" if text is None else text))
    return Markup(_CODE_SPAN.sub(r"<code>\2</code>", escaped))


Handler = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


async def _limits(request: Request, call_next: Handler) -> Response:
    elsewhere = host_refusal(request.headers.get("host"), request.app.state.host_names)
    if elsewhere:
        return _refusal(request, 400, elsewhere)
    query = request.url.query
    if len(query) > MAX_QUERY_CHARS:
        return _refusal(request, 414, f"query string of {len(query)} characters refused: "
                        f"at most {MAX_QUERY_CHARS}")
    length = request.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        return _refusal(request, 413, f"request body of {html.escape(length)} bytes refused: "
                        f"at most {MAX_FORM_BYTES}")
    return await call_next(request)


def _refusal(request: Request, status: int, message: str,
             headers: Mapping[str, str] | None = None, login: Login | None = None) -> Response:
    """A refusal as JSON for the API (``{"detail": TEXT}``, the shape of every API error:
    api.ApiError) and as a small escaped page otherwise (under the console's header for
    ``login``)."""
    if _is_api(request):
        return JSONResponse(ApiError(detail=message).model_dump(), status_code=status,
                            headers=headers)
    templates: Environment = request.app.state.templates
    page = templates.get_template("error.html").render(status=status, message=message,
                                                       login=login)
    return HTMLResponse(page, status_code=status, headers=headers)


async def _visitor_refusal(request: Request, status: int, message: str,
                           headers: Mapping[str, str] | None = None) -> Response:
    """A refusal of a routed request: a logged-in visitor's error page keeps the header
    (navigation, account, logout) that every page of theirs has."""
    login = None if _is_api(request) else await run_in_threadpool(visitor_login, request)
    return _refusal(request, status, message, headers, login)


def _is_api(request: Request) -> bool:
    """Whether a refusal is answered as the API's JSON: the API and its OpenAPI document."""
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def _no_route_text(request: Request, exc: StarletteHTTPException) -> str:
    """Starlette's 404 and 405 for a URL no page answers, said for a person."""
    path = shorten(request.url.path, 120)
    if exc.status_code == 404:
        return f"no page at {path}"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return f"{path} does not take {request.method} requests (only {allowed})"
    return str(exc.detail)


class HeadAsGet:
    """ASGI middleware that routes HEAD as GET: FastAPI routes only the methods a route
    names, so HEAD on a page was a 405. uvicorn sends the answer's head alone (it keeps
    the request's own method). The scope keeps that it was a HEAD (guard.HEAD_ASKED), so
    a handler whose body costs a query answers without running it (guard.body_store)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, a HEAD as a GET."""
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET", HEAD_ASKED: True}
        await self.app(scope, receive, send)


def _add_handlers(app: FastAPI) -> None:
    """Answer each refusal and failure a handler raises as the console's error page, or the
    API's JSON: the status, text and headers each handler below gives."""
    handlers: dict[type[Exception], ExceptionHandler] = {
        HeadAnsweredError: _head_answered,
        InputError: _input_error,
        RequestValidationError: _invalid,
        CsrfError: _forbidden,
        UserBusyError: _user_busy,
        RoleError: _forbidden,
        StoreBusyError: _busy,
        StoreError: _store_failed,  # StoreUnreachableError too
        LoginRequiredError: _login_required,
        StarletteHTTPException: _http_error,
        Exception: _failed,
    }
    for refused, handler in handlers.items():
        app.add_exception_handler(refused, handler)


async def _head_answered(request: Request, exc: Exception) -> Response:
    """A HEAD stopped where its GET reads the body from the store (guard.body_store): the
    GET's status (200: its login and input were checked) and type, the API's JSON or a page."""
    return head_answer("application/json" if _is_api(request) else PAGE_TYPE)


async def _user_busy(request: Request, exc: Exception) -> Response:
    """A user with its bound of answers being sent (inflight.py): 429, to try again shortly;
    said in the log at most once a minute with a count (a client can repeat it in a loop).
    A page's refusal has the user's header from the login just checked: the session is not
    read again for it."""
    assert isinstance(exc, UserBusyError)
    refusals: Tally = request.app.state.busy_refusals
    if refusals.count(f"for {shorten(exc.login.name, 64)}"):
        asyncio.get_running_loop().call_later(refusals.interval_s, refusals.say_due)
    return _refusal(request, 429, str(exc), {"Retry-After": str(RETRY_AFTER_S)},
                    None if _is_api(request) else exc.login)


async def _input_error(request: Request, exc: Exception) -> Response:
    """Input a page or API call refused (filters.InputError): its status, 400 by default. A
    logged-in visitor's refused results filter or fleet site is that page with its form as
    it was sent (REFUSED_FORMS), not an error page that lost what was typed; a page that is
    not for the visitor's role answers None, and the refusal is the error page."""
    assert isinstance(exc, InputError)
    shown_again = REFUSED_FORMS.get(request.url.path)
    if shown_again is not None:
        login = await run_in_threadpool(visitor_login, request)
        answer = shown_again(request, login, exc) if login is not None else None
        if answer is not None:
            return answer
    return await _visitor_refusal(request, exc.status, str(exc))


async def _invalid(request: Request, exc: Exception) -> Response:
    """A parameter FastAPI could not convert: 400 naming the field, as InputError does
    (FastAPI's own answer is a 422 JSON document, on a page too)."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = str((first.get("loc") or ("request",))[-1])
    value = first.get("input")
    refused = InputError(field[:40], value if isinstance(value, str) else "",
                         str(first.get("msg", "a valid value")))
    return await _visitor_refusal(request, 400, str(refused))


async def _forbidden(request: Request, exc: Exception) -> Response:
    """A forged or missing CSRF token, or a page not for the user's role: 403."""
    return await _visitor_refusal(request, 403, str(exc))


def _warn(request: Request, message: str, *args: object) -> None:
    """A busy or failed store's answer, said within the app's budget of lines a minute: any
    request with a session cookie, made up or not, asks the store, so a client repeating one
    while the store is away or overloaded wrote a line each."""
    budget: LineBudget = request.app.state.store_lines
    if budget.warn(message, *args):
        asyncio.get_running_loop().call_later(budget.window_s, budget.say_due)


async def _busy(request: Request, exc: Exception) -> Response:
    """No store connection came free in time (the console is overloaded): 503, said in the
    log."""
    _warn(request, "console busy: %s", exc)
    return _refusal(request, 503, f"{exc}; try again shortly")


async def _store_failed(request: Request, exc: Exception) -> Response:
    """A store that none could reach (StoreUnreachableError), or that refused inside a
    handler (any StoreError): 503; which store and why go to the log, not to visitors."""
    _warn(request, "console store failed, %s: %s", store_name(request.app.state.pool.url),
          shorten(str(exc), 500))
    return _refusal(request, 503, "the console's store cannot be reached now (its log "
                    "says why); try again shortly")


async def _failed(request: Request, exc: Exception) -> Response:
    """Any other failure: 500. It is answered outside every middleware (Starlette's
    ServerErrorMiddleware), which logs the traceback after this answer."""
    return _refusal(request, 500, "the console could not answer this request; its log "
                    "says why")


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405 and the API's own HTTPExceptions, which FastAPI answers as
    JSON, a page URL too: the API keeps its text, pages get the error page."""
    assert isinstance(exc, StarletteHTTPException)
    text = str(exc.detail) if _is_api(request) else _no_route_text(request, exc)
    return await _visitor_refusal(request, exc.status_code, text, exc.headers)


async def _login_required(request: Request, exc: Exception) -> Response:
    """A page that needs a login, asked without one: 303 to the login page."""
    assert isinstance(exc, LoginRequiredError)
    return RedirectResponse(exc.location, status_code=303)
