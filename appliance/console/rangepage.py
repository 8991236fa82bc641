"""The console's page of the validated range: the conditions a frame is measured within.

The result, results and cohort pages say a feature outside the validated range was "not
measured"; this page says what that range is, for a console user who has no repository to
open docs/measurement.md in. It is read from the limits the measurement checks
(``appliance.skin.validity``), as this back office's software version has them; a result's
quality reasons give the value and the range its kiosk applied.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from appliance.backoffice.accounts import Login
from appliance.console.guard import page_login
from appliance.console.pages import render
from appliance.skin.validity import validated_range

pages = APIRouter(include_in_schema=False)


@pages.get("/validated-range")
def validated_range_page(request: Request,
                         login: Annotated[Login, Depends(page_login)]) -> HTMLResponse:
    """The validated range: each condition, its range and the features not measured
    outside it."""
    return render(request, "validated_range.html", login=login, conditions=validated_range())
