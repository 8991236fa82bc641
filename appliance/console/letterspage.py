"""The console's dead-letters page: the messages the back office refused, a page at a time,
of every kiosk or narrowed to a site or a kiosk as the results page is.

Its ``site`` and ``device`` fields are the results page's, read by the same reader
(filters.parse_kiosk) and refused as it refuses them: the form shown again as it was sent, the
field marked. A dead letter has no site column (a refused message may name none): the page
chooses letters by the topic they came on under the fleet's topic prefix (``mqtt.topic_prefix``
of the console's config), by the store's query that ``results dead-letters --site/--device``
uses (backoffice/queries.py ``LetterFilter``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from appliance.backoffice.accounts import Login
from appliance.backoffice.export import NAMED_DEVICES, SHOWN_CHARS
from appliance.backoffice.queries import LetterFilter, ResultFilter
from appliance.console.filters import (
    KIOSK_FIELDS,
    InputError,
    once_each,
    parse_kiosk,
    parse_letter_cursor,
)
from appliance.console.guard import body_store, operator
from appliance.console.pages import render
from appliance.kioskname import chosen_text
from appliance.logsafe import shorten

pages = APIRouter(include_in_schema=False)

DEAD_LETTERS_SHOWN = 100  # a page of them; Older pages through every one kept


@pages.get("/dead-letters")
def dead_letters(request: Request, login: Annotated[Login, Depends(operator)]) -> HTMLResponse:
    """Messages the back office refused, DEAD_LETTERS_SHOWN a page, newest first, of a site or
    a kiosk (``site``, ``device``) or of every one (operators only: payloads may hold personal
    data)."""
    params = once_each(request.query_params.multi_items())
    site, device_id = parse_kiosk(params)
    before_id = parse_letter_cursor(params.get("before"))
    prefix: str = request.app.state.topic_prefix
    of = LetterFilter(prefix, site, device_id)
    with body_store(request) as store:
        letters = store.dead_letters_before(before_id, DEAD_LETTERS_SHOWN + 1, of)
        kept = store.count_dead_letters(of)
        every = kept if site is None and device_id is None else store.count_dead_letters()
        lost = store.pruned_only_copies(NAMED_DEVICES, ResultFilter(site=site,
                                                                     device_id=device_id)).text()
    shown = letters[:DEAD_LETTERS_SHOWN]
    rows = [{"received_at": d.received_at, "topic": shorten(d.topic, SHOWN_CHARS),
             "reason": shorten(d.reason, SHOWN_CHARS),
             "bytes": d.payload_bytes, "head": d.payload[:120].decode("utf-8", "replace")}
            for _, d in shown]
    echo = _echo(params)
    older = (f"/dead-letters?{urlencode({**echo, 'before': shown[-1][0]})}"
             if len(letters) > DEAD_LETTERS_SHOWN else None)
    return render(request, "dead_letters.html", login=login, rows=rows, kept=kept, every=every,
                  lost=lost, older=older, older_page=before_id is not None, echo=echo,
                  newest=_newest(echo), chosen=chosen_text(site, device_id), prefix=prefix)


def refused_letters(request: Request, login: Login, refused: InputError) -> HTMLResponse | None:
    """The dead-letters page for a filter or page it refused (400), as the results page shows
    a refused filter: the form as it was sent, the refused field marked, named and focused,
    and no letters, as nothing was looked up. None for a viewer, whom the page is not for."""
    if login.role != "operator":
        return None
    given: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        given.setdefault(name, value)  # a field given twice: its first value
    return render(request, "dead_letters.html", refused.status, login=login, rows=[], kept=0,
                  every=0, lost="", older=None, older_page=False, echo=_echo(given),
                  newest=None, chosen="", prefix="", refused=str(refused),
                  refused_field=refused.field)


def _echo(params: dict[str, str]) -> dict[str, str]:
    """The filter fields as given (read unstripped, so shown so), for the form and the links
    to other pages."""
    return {name: params[name] for name in KIOSK_FIELDS if params.get(name)}


def _newest(echo: dict[str, str]) -> str:
    """The link to the newest page of the letters the filter chooses."""
    return "/dead-letters" + (f"?{urlencode(echo)}" if echo else "")
