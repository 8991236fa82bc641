"""The API tokens page: an operator sees and revokes every user's tokens, any other user only
its own.

Tokens are listed by id (the start of their hash), never shown themselves: owner, label,
created, expiry and last use. A revoke form carries the session's CSRF token; a token id that
is not the user's own is answered as an unknown one (404), so a user learns nothing of
others' tokens. A revoke done is answered with a redirect to the page (POST, redirect, GET),
so reloading it does not send the revoke again; the page says what was revoked when the link
carries the session's mark of it (auth.session_mark), so a link made elsewhere cannot have it
say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from appliance.backoffice import storeerrors
from appliance.backoffice.accounts import TOKEN_ID, TOKEN_ID_CHARS, Login, TokenRow
from appliance.backoffice.keyset import Neighbours
from appliance.console.auth import (
    marked,
    session_mark,
    token_expiry_text,
    token_owner_text,
)
from appliance.console.filters import InputError, one_way, parse_token_cursor
from appliance.console.guard import body_store, check_csrf, page_login, pool_of, read_form
from appliance.console.pages import render
from appliance.logsafe import shorten

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
TOKENS_SHOWN = 100  # tokens on a page of them, oldest first (as the fleet's kiosks)


def _everyone(login: Login) -> bool:
    """Whether ``login`` sees and revokes every user's tokens (operators), not its own only."""
    return login.role == "operator"


TokenKey = tuple[str, str]  # (created at, token id): where a page starts or ends


@dataclass(frozen=True)
class TokensPage:
    """One page of the tokens (TOKENS_SHOWN, oldest first), how many there are in all, and
    the keys the pages beside it start after (``next``) or end before (``previous``)."""

    tokens: list[TokenRow]
    total: int
    next: TokenKey | None
    previous: TokenKey | None


def _tokens(request: Request, login: Login, after: TokenKey | None = None,
            before: TokenKey | None = None) -> TokensPage:
    owner = None if _everyone(login) else login.name
    with body_store(request) as store:
        listed: Neighbours[TokenRow, TokenKey] = Neighbours(
            lambda limit, onward, back: store.token_page(owner, limit, onward, back),
            lambda onward, back: bool(store.token_page(owner, 1, onward, back)),
            lambda token: (token.created_at, token.token_id))
        rows, following, preceding = listed.page(TOKENS_SHOWN, after, before)
        return TokensPage(rows, store.count_tokens(owner), following, preceding)


def _page(request: Request, login: Login, status: int = 200, after: TokenKey | None = None,
          before: TokenKey | None = None, **message: str) -> HTMLResponse:
    shown = _tokens(request, login, after, before)

    def link(name: str, key: TokenKey | None) -> str | None:
        return None if key is None else f"/tokens?{urlencode({name: '~'.join(key)})}"

    return render(request, "tokens.html", status, login=login, everyone=_everyone(login),
                  tokens=shown.tokens, total=shown.total, next=link("after", shown.next),
                  previous=link("before", shown.previous),
                  first="/tokens" if after or before else None,
                  expiry=lambda token: token_expiry_text(token, lambda at: at[:19]),
                  owner=token_owner_text, **message)


@router.get("/tokens")
def tokens_page(request: Request, login: Annotated[Login, Depends(page_login)], *,
                revoked: str | None = None, of: str | None = None, mark: str | None = None,
                after: str | None = None, before: str | None = None) -> HTMLResponse:
    """The API tokens the user may see, TOKENS_SHOWN a page, oldest first: every user's for
    an operator, else its own; Next and Previous page through them all (``after``,
    ``before``: their cursors); after a revoke (``revoked``, ``of``, ``mark``: the
    redirect's), what was revoked."""
    one_way(after, before)
    start, end = parse_token_cursor("after", after), parse_token_cursor("before", before)
    if revoked and of and marked(login.csrf, _revoked(revoked, of), mark):
        return _page(request, login, done=f"Revoked API token {revoked} of {of}: it is "
                     "refused from now on.")
    return _page(request, login, after=start, before=end)


def _revoked(token_id: str, owner: str) -> str:
    """What a revoke did, as the session marks it (auth.session_mark)."""
    return f"revoked {token_id} of {owner}"


@router.post("/tokens/revoke", response_model=None)
async def revoke(request: Request) -> HTMLResponse | RedirectResponse:
    """Revoke one API token by its id (the form's CSRF token first): any user's for an
    operator, else only the user's own; done, 303 to the page, which says so."""
    login = await run_in_threadpool(page_login, request)
    form = await read_form(request)
    check_csrf(login.csrf, form)
    shown_id = form.get("id", "")
    if not TOKEN_ID.match(shown_id):
        raise InputError("id", shown_id, f"a token id: {TOKEN_ID_CHARS} hex digits")

    def revoke_it() -> str | None:
        with pool_of(request).store() as store:
            return store.revoke_token(shown_id, None if _everyone(login) else login.name)

    try:
        owner = await run_in_threadpool(revoke_it)
    except storeerrors.STORE_ERRORS as exc:  # a full disk, a lost server: nothing was revoked
        log.error("console token revoke by %s: the store did not record it: %s",
                  shorten(login.name, 64), exc)
        return render(request, "error.html", 503, login=login, message=(
            f"The console's store could not revoke API token {shown_id} (its log says why): "
            "it still works. Try again once the store works, or use console token revoke."))
    if owner is None:
        whose = "" if _everyone(login) else " of yours"
        return await run_in_threadpool(lambda: _page(
            request, login, 404, error=f"No API token {shown_id}{whose}; nothing was revoked."))
    log.info("console: %s revoked API token %s of %s", shorten(login.name, 64), shown_id,
             shorten(owner, 64))
    said = {"revoked": shown_id, "of": owner,
            "mark": session_mark(login.csrf, _revoked(shown_id, owner))}
    return RedirectResponse(f"/tokens?{urlencode(said)}", status_code=303)
