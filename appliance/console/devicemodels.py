"""The console's page of one kiosk's model history: the last model reports it sent, as the
ingest workers stored them (appliance/backoffice/model_reports.py).

Which model a kiosk ran, refused or went back from, when and why: the broker keeps only a
kiosk's newest report, the store every one. The fleet page links each kiosk's model here; the
API pages through all of them; ``appliance models status --history`` shows as many as asked
on the command line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from appliance.backoffice.accounts import Login
from appliance.console.api import ERROR_RESPONSES, ApiLogin, error
from appliance.console.filters import InputError, checked_id, parse_limit
from appliance.console.guard import body_store, page_login
from appliance.console.pages import render

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["api"], responses=ERROR_RESPONSES)
_REPORT_ID = re.compile(r"^[1-9][0-9]{0,17}$")  # a stored report's id (under 2**63)
REPORTS_SHOWN = 10  # a kiosk's newest model reports on its page


@pages.get("/fleet/{site}/{device}/models")
def device_models_page(request: Request, site: str, device: str,
                       login: Annotated[Login, Depends(page_login)]) -> HTMLResponse:
    """One kiosk's REPORTS_SHOWN newest model reports, newest first."""
    site, device = checked_id("site", site), checked_id("device", device)
    with body_store(request) as store:
        reports = store.model_reports(device, site, limit=REPORTS_SHOWN)
        known = bool(reports) or store.knows_device(site, device)
    if not known:
        return render(request, "error.html", status=404, login=login,
                      message=f"no kiosk {device} at site {site}")
    return render(request, "device_models.html", login=login, site=site, device=device,
                  reports=reports, shown=REPORTS_SHOWN)


@api.get("/fleet/{site}/{device}/model-reports",
         summary="One kiosk's model reports, newest first, a page at a time",
         response_description="`reports`, newest first, and the cursor `next`",
         description="Every report the kiosk sent on its `model/state` topic that the back "
         "office stored (docs/model-updates.md, History): `state`, the model it is about "
         "(`model_name`, `model_version`), the one serving after it (`running_name`, "
         "`running_version`), `reason`, `healthy`, `rollout`, the kiosk's time "
         "(`reported_at`) and the back office's receipt (`received_at`), in the order the "
         "back office stored them. `next` (given as `before`) continues them; null after "
         "the oldest.",
         responses={404: error("no kiosk with that site and device id")})
def api_model_reports(
    request: Request,
    site: Annotated[str, Path(description="the kiosk's site id, as in the fleet")],
    device: Annotated[str, Path(description="the kiosk's device id, as in the fleet")],
    login: ApiLogin, *,
    limit: Annotated[str | None, Query(description="reports per page, 1 to 200 (50 when not "
                                         "given)")] = None,
    before: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    """One kiosk's model reports, newest first; ``next`` continues them."""
    site, device = checked_id("site", site), checked_id("device", device)
    size = parse_limit(limit, sizes=None)
    if before is not None and not _REPORT_ID.match(before):
        raise InputError("before", before, "`next` of a page: a report's id")
    with body_store(request) as store:
        reports = store.model_reports(device, site, limit=size + 1,
                                      before_id=None if before is None else int(before))
        known = bool(reports) or store.knows_device(site, device)
    if not known:
        raise HTTPException(404, f"no kiosk {device} at site {site}")
    following = str(reports[size - 1]["id"]) if len(reports) > size else None
    return {"reports": reports[:size], "next": following}
