"""The console's model rollout pages and API: each rollout, and where each kiosk stands in it.

Read-only views of the tables that ``appliance models deploy`` writes (appliance/updates/
rollout.py): the model and version, the decision (update or rollback), canaries, the state
(running, done, halted) with its reason, and per device its phase, state and running version.
Starting or halting a rollout stays with the signed command line (``appliance models``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse

from appliance.backoffice.accounts import Login
from appliance.console.api import ERROR_RESPONSES, ApiLogin, NextCursor, error
from appliance.console.filters import (
    checked_id,
    listed_cursor,
    older_link,
    parse_listed_cursor,
)
from appliance.console.guard import body_store, head_ends_here, page_login, pool_of
from appliance.console.pages import render

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["api"], responses=ERROR_RESPONSES)
ROLLOUTS_SHOWN = 100  # a page of the rollouts list, on the page and in the API


def _rollout(request: Request, rollout_id: str) -> dict[str, Any] | None:
    """One rollout with its devices, or None (a HEAD is answered once it is found)."""
    with pool_of(request).store() as store:
        found = store.rollout_rows(1, rollout_id)
        if not found:
            return None
        head_ends_here(request)
        return {**found[0], "device_states": store.rollout_devices(rollout_id)}


def _rollouts_page(request: Request, before: str | None
                   ) -> tuple[list[dict[str, Any]], str | None]:
    """ROLLOUTS_SHOWN rollouts, newest first, after the ``before`` cursor (None: the newest),
    and the cursor of the page after them (None: these are the oldest)."""
    after = parse_listed_cursor(before)
    with body_store(request) as store:
        rows = store.rollout_rows(ROLLOUTS_SHOWN + 1, before=after)
    return rows[:ROLLOUTS_SHOWN], listed_cursor(rows, ROLLOUTS_SHOWN, "created_at",
                                                "rollout_id")


@pages.get("/rollouts")
def rollouts_page(request: Request, login: Annotated[Login, Depends(page_login)],
                  before: str | None = None) -> HTMLResponse:
    """The model rollouts, ROLLOUTS_SHOWN a page, newest first; Older pages through them all."""
    rollouts, cursor = _rollouts_page(request, before)
    return render(request, "rollouts.html", login=login, rollouts=rollouts,
                  older=older_link("/rollouts", cursor), older_page=bool(before))


@pages.get("/rollouts/{rollout_id}")
def rollout_page(request: Request, rollout_id: str,
                 login: Annotated[Login, Depends(page_login)]) -> HTMLResponse:
    """One rollout: its plan, state and every device's phase and state."""
    rollout = _rollout(request, checked_id("rollout id", rollout_id))
    if rollout is None:
        return render(request, "error.html", status=404, login=login,
                      message=f"no rollout {rollout_id}")
    return render(request, "rollout.html", login=login, r=rollout)


@api.get("/rollouts", summary="Model rollouts with device counts per state, newest first, "
         f"{ROLLOUTS_SHOWN} an answer", response_description="`rollouts` and the cursor `next`",
         description=f"`rollouts`: at most {ROLLOUTS_SHOWN}, "
         "newest first; `next` continues the list (give it as `before`; null in the answer "
         "with the oldest).")
def api_rollouts(request: Request, login: ApiLogin,
                 before: NextCursor = None) -> dict[str, Any]:
    """Model rollouts, newest first; ``next`` continues them (null after the oldest)."""
    rollouts, cursor = _rollouts_page(request, before)
    return {"rollouts": rollouts, "next": cursor}


@api.get("/rollouts/{rollout_id}", summary="One rollout and where each device stands",
         description="The rollout (model, decision, canaries, state, reason) and its devices: "
         "each one's phase, state and running version.",
         response_description="the rollout with its devices",
         responses={404: error("no rollout with that id")})
def api_rollout(
    request: Request,
    rollout_id: Annotated[str, Path(description="the rollout's `rollout_id`, as in the "
                                    "rollouts list")],
    login: ApiLogin,
) -> dict[str, Any]:
    """One model rollout with its devices."""
    rollout = _rollout(request, checked_id("rollout id", rollout_id))
    if rollout is None:
        raise HTTPException(404, f"no rollout {rollout_id}")
    return rollout
