"""The account page: who is logged in, and changing one's own password.

A new password needs the current one, checked as a login is: held against the user name's
and the address's failed logins (console/throttle.py; a stolen session cannot guess the
password faster than the login form could), and at most PASSWORD_CHECKS_AT_ONCE hashes at
once. A changed password ends the user's other sessions and revokes its API tokens; the
session it was changed from stays. A change done is answered with a redirect to the page
(POST, redirect, GET), which says what it ended when the link carries the session's mark of it
(auth.session_mark): reloading the page sent the form again, the old password now wrong,
counted as a failed login, and the page said the current password was wrong.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from appliance.backoffice import storeerrors
from appliance.backoffice.accounts import Login, Revoked
from appliance.console.auth import (
    AccessError,
    check_user,
    digest,
    marked,
    password_hash,
    session_mark,
)
from appliance.console.guard import (
    check_csrf,
    client_address,
    judged_password,
    page_login,
    password_login,
    pool_of,
    read_form,
    session_cookie,
)
from appliance.console.pages import render
from appliance.console.throttle import LoginGuard, retry_after
from appliance.logsafe import shorten

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


@router.get("/account")
def account_page(request: Request, login: Annotated[Login, Depends(page_login)],
                 ended: str | None = None, revoked: str | None = None,
                 mark: str | None = None) -> HTMLResponse:
    """The logged-in user and the form to change its password; after a change (``ended``,
    ``revoked``, ``mark``: the redirect's), what it ended."""
    if ended and revoked and marked(login.csrf, _changed(ended, revoked), mark):
        return render(request, "account.html", login=login,
                      done=_changed_text(Revoked(int(ended), int(revoked))))
    return render(request, "account.html", login=login)


def _changed(sessions: object, tokens: object) -> str:
    """What a password change ended, as the session marks it (auth.session_mark)."""
    return f"password changed: {sessions} session(s) ended, {tokens} token(s) revoked"


@router.post("/account/password", response_model=None)
async def change_password(request: Request) -> HTMLResponse | RedirectResponse:
    """Set a new password after checking the current one (the form's CSRF token first);
    done, 303 to the account page, which says so."""
    login = await run_in_threadpool(page_login, request)
    form = await read_form(request)
    check_csrf(login.csrf, form)
    refused = _refused(login, form)
    if refused:
        return render(request, "account.html", 400, login=login, error=refused)
    guard: LoginGuard = request.app.state.logins
    wait_s = guard.admit(login.name, client_address(request))  # counted as failed until it succeeds
    if wait_s:
        page = render(request, "account.html", 429, login=login,
                      error=f"Too many wrong passwords: try again in "
                      f"{math.ceil(wait_s / 60.0)} min.")
        page.headers["Retry-After"] = retry_after(wait_s)
        return page
    keep = digest(session_cookie(request) or "")

    def attempt() -> Revoked | None:
        if password_login(pool_of(request), login.name, form.get("password", "")) is None:
            return None
        new_hash = password_hash(form["new_password"])  # slow: no store held
        with pool_of(request).store() as store:
            return store.change_password(login.name, new_hash, keep)

    try:  # a busy store (no connection came free: nothing checked) is the 503 page
        revoked = await judged_password(request, login.name, attempt)
    except storeerrors.STORE_ERRORS as exc:  # a full disk, a lost server: nothing was changed
        log.error("console password change of %s: the store did not record it: %s",
                  shorten(login.name, 64), exc)
        return render(request, "account.html", 503, login=login, error=(
            "The console's store could not record the new password (its log says why); "
            "the password is unchanged."))
    if revoked is None:
        return render(request, "account.html", 403, login=login,
                      error="The current password is wrong; the password is unchanged.")
    said = {"ended": revoked.sessions, "revoked": revoked.tokens,
            "mark": session_mark(login.csrf, _changed(revoked.sessions, revoked.tokens))}
    return RedirectResponse(f"/account?{urlencode(said)}", status_code=303)


def _refused(login: Login, form: dict[str, Any]) -> str | None:
    """Why the new password cannot be used, or None."""
    new = form.get("new_password", "")
    if new != form.get("new_password_again"):
        return "The two new passwords differ; the password is unchanged."
    try:
        check_user(login.name, login.role, new)
    except AccessError as exc:
        return f"New {exc}; the password is unchanged."
    return None


def _changed_text(revoked: Revoked) -> str:
    return (f"Password changed: {revoked.sessions} other session(s) ended, "
            f"{revoked.tokens} API token(s) revoked. This session goes on.")
