"""The console's page of one kiosk's model history: the last model reports it sent, as the
ingest workers stored them (appliance/backoffice/model_reports.py).

Which model a kiosk ran, refused or went back from, when and why: the broker keeps only a
kiosk's newest report, the store every one. The fleet page links each kiosk's model here.
``appliance models status --history`` shows as many as asked on the command line.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from appliance.backoffice.accounts import Login
from appliance.console.filters import checked_id
from appliance.console.guard import page_login, pool_of
from appliance.console.pages import render

pages = APIRouter(include_in_schema=False)
REPORTS_SHOWN = 10  # a kiosk's newest model reports on its page


@pages.get("/fleet/{site}/{device}/models")
def device_models_page(request: Request, site: str, device: str,
                       login: Annotated[Login, Depends(page_login)]) -> HTMLResponse:
    """One kiosk's REPORTS_SHOWN newest model reports, newest first."""
    site, device = checked_id("site", site), checked_id("device", device)
    with pool_of(request).store() as store:
        reports = store.model_reports(device, site, limit=REPORTS_SHOWN)
    return render(request, "device_models.html", login=login, site=site, device=device,
                  reports=reports, shown=REPORTS_SHOWN)
