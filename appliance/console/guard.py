"""Request guards of the console: who is logged in (page session or API token), CSRF, and a
password check (login form, account page) counted by the login guard (console/throttle.py).

Pages answer an anonymous visitor with a redirect to the login page; the API answers 401 with
``WWW-Authenticate: Bearer``. A form must carry its session's CSRF token (the login form the
one in its own cookie); a missing or forged one is refused with 403 and changes nothing. So is
a form a browser says came from another origin's page (``Sec-Fetch-Site``): SameSite keeps
cookies from other sites only, and a page on another port of the console's host (or, behind
a proxy, on a sibling name) is the same site: it could plant the login form's cookie with a
token of its own and log the browser in as a user of its choosing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, TypeVar
from urllib.parse import parse_qsl, quote

from fastapi import Depends, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from appliance.backoffice import storeerrors
from appliance.backoffice.accounts import Login
from appliance.backoffice.store import Store
from appliance.backoffice.storeerrors import StoreError
from appliance.console.auth import (
    MAX_PASSWORD_CHARS,
    bearer_login,
    check_password,
    known_user,
    same_token,
    session_login,
)
from appliance.console.db import StoreBusyError, StorePool
from appliance.console.filters import (
    LETTER_PARAMETERS,
    MAX_FIELD_CHARS,
    MAX_FORM_BYTES,
    RESULT_PARAMETERS,
    InputError,
    once_each,
    refuse_unknown,
)
from appliance.console.inflight import hold_answer
from appliance.console.throttle import LoginGuard
from appliance.logsafe import shorten

# the session cookie's prefix behind a TLS proxy: a browser keeps a __Host- cookie only when
# it is Secure, of path / and set by this very host (RFC 6265bis 4.1.3.2), so no page on a
# sibling name (another.example.org) can plant one for the whole domain in its place
HOST_PREFIX = "__Host-"
PASSWORD_FIELDS = ("password", "new_password", "new_password_again")  # up to 256 characters
# \Z, not $: $ also matches before a line break that ends the text
_LOCAL_PATH = re.compile(r"^/(?!/)[A-Za-z0-9/_.?=&%~+-]{0,500}\Z")
MAX_NEXT_CHARS = 501  # the login form's `next`: a console page's path and query, as above
_FORM_PAGES = {"/tokens/revoke": "/tokens", "/account/password": "/account"}
_READ_BY_HAND = {"/results": RESULT_PARAMETERS, "/results.csv": RESULT_PARAMETERS,
                 "/dead-letters": LETTER_PARAMETERS}
T = TypeVar("T")


def _check_not_judged() -> tuple[type[Exception], ...]:
    """What ends a password check having judged nothing: no store connection came free, or the
    store failed. Read in an ``except`` only, when one is raised: the store's error tuples load
    psycopg, which a console on SQLite does not otherwise need (backoffice/storeerrors.py)."""
    return (StoreBusyError, *storeerrors.STORE_ERRORS)


_BEARER = HTTPBearer(auto_error=False, description="a token from `appliance console token create`")


class LoginRequiredError(Exception):
    """No valid session: send the visitor to the login page."""

    def __init__(self, next_path: str, ended: bool = False) -> None:
        super().__init__("login required")
        self.location = f"/login?next={quote(next_path, safe='/')}" + ("&ended=1" if ended
                                                                       else "")


class CsrfError(Exception):
    """A form without its session's CSRF token (or with a forged one)."""


class RoleError(Exception):
    """The user's role does not allow this page."""


class BodyTooLargeError(InputError):
    """A form larger than the console accepts."""

    status = 413


PAGE_TYPE = "text/html; charset=utf-8"  # a page's content type, as HTMLResponse sends it
# set in a request's ASGI scope by app.HeadAsGet when it was a HEAD, routed as a GET
HEAD_ASKED = "appliance.head_asked"


def asked_head(request: Request) -> bool:
    """Whether the request was a HEAD (routed as a GET): a handler whose body costs a
    query (the CSV export) answers its head alone, as the GET would start it."""
    return bool(request.scope.get(HEAD_ASKED))


class HeadAnsweredError(Exception):
    """A HEAD got as far as reading its body from the store, its login, role and input
    checked as for the GET: the app answers the GET's head there (app._head_answered)."""


def head_ends_here(request: Request) -> None:
    """A HEAD is answered here (HeadAnsweredError): what the handler reads after this only
    fills the body. What decides the status (the login, a filter, whether a rollout exists)
    is read before it, for a HEAD too."""
    if asked_head(request):
        raise HeadAnsweredError(request.url.path)


@contextlib.contextmanager
def body_store(request: Request) -> Iterator[Store]:
    """A borrowed store for what only fills the answer's body (a list, a count, figures);
    a HEAD is answered instead, without reading them (head_ends_here)."""
    head_ends_here(request)
    with pool_of(request).store() as store:
        yield store


def head_answer(media_type: str, headers: Mapping[str, str] | None = None,
                status: int = 200) -> StreamingResponse:
    """The head of a GET's answer of ``media_type``: no body, and no length, which is known
    only once the body is made (RFC 9110, 9.3.2 lets a HEAD leave it out)."""
    return StreamingResponse(iter(()), status_code=status, media_type=media_type,
                             headers=headers)


def session_cookie_name(request: Request) -> str:
    """The session cookie's name. It carries the console's port: a browser sends a host's
    cookies to each of its ports (RFC 6265, section 8.5), so two consoles on one host (:8080
    and :8081) with one name would each replace the other's cookie, and a login to one log the
    browser out of the other. For a visitor who came over HTTPS (a trusted TLS proxy says so)
    it takes HOST_PREFIX; plain HTTP cannot (a __Host- cookie needs Secure)."""
    name = f"appliance_session_{request.app.state.settings.port}"
    return HOST_PREFIX + name if request.url.scheme == "https" else name


def session_cookie(request: Request) -> str | None:
    """The request's session cookie, of the name its scheme takes (session_cookie_name)."""
    return request.cookies.get(session_cookie_name(request))


def pool_of(request: Request) -> StorePool:
    """The app's store pool."""
    pool: StorePool = request.app.state.pool
    return pool


def password_login(pool: StorePool, name: str, password: str) -> Login | None:
    """``name``'s login when ``password`` is right, else None: the user is looked up on a
    borrowed store, given back before the slow hash (auth.check_password). Blocking: call it
    from a worker thread."""
    with pool.store() as store:
        found = known_user(store, name)
    return check_password(found, name, password)


def client_address(request: Request) -> str:
    """The address the request came from, as the login guard counts it ("?" when unknown)."""
    return request.client.host if request.client else "?"


async def judged_password(request: Request, name: str, attempt: Callable[[], T | None]
                          ) -> T | None:
    """``attempt``, a check of ``name``'s password that returns None when it is wrong, run as
    one of the app's few password checks at once (each hash holds 64 MiB: auth.py) in a
    worker thread, its outcome told to the login guard, which admitted it as a failure: a
    right password clears the failures of ``name`` (the address's others stay); a store that
    failed on the way (busy, or any store error, raised on) found no password wrong."""
    guard: LoginGuard = request.app.state.logins
    try:
        async with request.app.state.password_checks:
            outcome = await run_in_threadpool(attempt)
    except _check_not_judged():
        guard.not_judged(name, client_address(request))
        raise
    if outcome is not None:
        guard.succeeded(name, client_address(request))
    return outcome


def known_parameters(request: Request) -> None:
    """Refuse a query parameter the page or API call does not take, or one given twice, before
    anything runs: ``/api/v1/rollouts?limit=5`` must not answer as if the limit held."""
    params = once_each(request.query_params.multi_items())
    route = request.scope.get("route")
    if params and isinstance(route, APIRoute):
        known = _READ_BY_HAND.get(route.path) or tuple(sorted(_declared(route.dependant)))
        refuse_unknown(params, known)


def _declared(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' included."""
    names = {field.alias for field in dependant.query_params}
    return names.union(*(_declared(sub) for sub in dependant.dependencies))


def login_csrf_cookie(request: Request) -> str:
    """The name of this console's login-form CSRF cookie, which carries its port (as
    ``session_cookie_name``: a login form opened on another console must not replace it)."""
    return f"appliance_login_csrf_{request.app.state.settings.port}"


def login_name_cookie(request: Request) -> str:
    """The name of the cookie that keeps the user name of a failed login for the login page
    it is sent back to (carrying the port, as ``login_csrf_cookie``)."""
    return f"appliance_login_name_{request.app.state.settings.port}"


def page_login(request: Request) -> Login:
    """The logged-in user of a page request, or a redirect to the login page; its answer
    counts as one the user has being sent (inflight.py: UserBusyError past the bound)."""
    cookie = session_cookie(request)
    with pool_of(request).store() as store:
        login = session_login(store, cookie)
    if login is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        # after the login the browser GETs ``next``: a form's address has no page, so back to
        # the page the form is on (the fleet for /logout)
        back = request.method == "GET" and _LOCAL_PATH.match(path)
        form_page = _FORM_PAGES.get(request.url.path, "/fleet")
        # a cookie the store no longer knows: the login page says the session ended
        raise LoginRequiredError(path if back else form_page, ended=bool(cookie))
    hold_answer(request.scope, request.app.state.answers, login)
    return login


def visitor_login(request: Request) -> Login | None:
    """Who is logged in on this page request, or None (no session, or a store that cannot
    say now: a refusal page is shown without the header rather than not at all). Blocking:
    call it from a worker thread."""
    cookie = session_cookie(request)
    if not cookie:
        return None
    try:
        with pool_of(request).store() as store:
            return session_login(store, cookie)
    except (StoreError, StoreBusyError):
        return None


def api_login(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Login:
    """The owner of the request's bearer token, or 401; its answer counts as one the user
    has being sent (inflight.py)."""
    login = None
    if credentials is not None:
        with pool_of(request).store() as store:
            login = bearer_login(store, f"Bearer {credentials.credentials}")
    if login is None:
        raise HTTPException(401, "a valid bearer token is required "
                            "(Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"})
    hold_answer(request.scope, request.app.state.answers, login)
    return login


def page_or_api_login(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Login:
    """For what both a browser and an API client read (the OpenAPI document): the bearer
    token's owner when the request carries an ``Authorization`` header (401 when it is no
    valid token), else the page's logged-in user (the login page when there is none)."""
    if "authorization" in request.headers:
        return api_login(request, credentials)
    return page_login(request)


def operator(login: Annotated[Login, Depends(page_login)]) -> Login:
    """A logged-in operator, or 403 for a viewer."""
    if login.role != "operator":
        raise RoleError(f"user {login.name!r} is a {login.role}; this page is for operators")
    return login


def safe_next(value: str | None) -> str:
    """Where to go after login: a local path only, never another site."""
    return value if value and _LOCAL_PATH.match(value) else "/fleet"


def check_csrf(expected: str, form: dict[str, str]) -> None:
    """Refuse a form whose CSRF token is missing or not the session's."""
    if not same_token(expected, form.get("csrf")):
        raise CsrfError("CSRF token missing or wrong: this form did not come from this "
                        "console's page. Reload the page and try again.")


async def read_form(request: Request) -> dict[str, str]:
    """A small URL-encoded form, bounded in bytes, fields and field length, sent from the
    console's own page (CsrfError when the browser says another origin's page sent it)."""
    sender = request.headers.get("sec-fetch-site", "same-origin")  # absent: no browser's
    if sender != "same-origin":
        raise CsrfError(f"a form sent by a page of another origin (Sec-Fetch-Site: "
                        f"{shorten(sender, 20)}) is refused: use the console's own page.")
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        raise InputError("content-type", ctype, "a form (application/x-www-form-urlencoded)")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BodyTooLargeError("form", f"{len(body)}+ bytes",
                                        f"at most {MAX_FORM_BYTES} bytes")
    except ClientDisconnect as exc:  # gone, or closed as too slow (console/server.py)
        raise InputError("form", f"{len(body)} bytes", "the whole form; the connection "
                         "closed before it arrived") from exc
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:  # its bytes may hold a password: unshown
        raise InputError("form", f"{len(body)} bytes", str(exc)) from exc
    for name, value in pairs:
        limit = (MAX_PASSWORD_CHARS if name in PASSWORD_FIELDS else
                 MAX_NEXT_CHARS if name == "next" else MAX_FIELD_CHARS)
        if len(value) > limit:
            shown = f"{len(value)} characters" if name in PASSWORD_FIELDS else value
            raise InputError(name[:20], shown, f"at most {limit} characters")
    return dict(pairs)
