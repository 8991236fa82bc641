"""The console's pathology jobs page and API: each job's state and its slides' results.

Read-only views of the tables the pathology server keeps (appliance/pathology/jobstore.py):
state, owner, reason and takeovers of each job, and per slide its label (MSI, MSS or
unsupported), score, tile count, in-distribution share and error. Heatmaps and CAMs stay files
on the pathology server; the pages name them. Jobs are submitted and cancelled with
``appliance pathology job``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from appliance.backoffice.queries import Login
from appliance.console.filters import InputError
from appliance.console.guard import api_login, page_login, pool_of
from appliance.console.pages import render
from appliance.console.rollouts import api as rollouts_api

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["api"], responses=rollouts_api.responses)
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _job(request: Request, job_id: str) -> dict[str, Any] | None:
    """One job with its slide results, or None."""
    if not JOB_ID.match(job_id):
        raise InputError("job id", job_id, "letters, digits and _ . - (at most 64)")
    with pool_of(request).store() as store:
        found = store.pathology_job_rows(1, job_id)
        return {**found[0], "slides": store.pathology_slide_rows(job_id)} if found else None


@pages.get("/pathology")
def jobs_page(request: Request, login: Annotated[Login, Depends(page_login)]) -> HTMLResponse:
    """The newest pathology jobs."""
    with pool_of(request).store() as store:
        jobs = store.pathology_job_rows()
    return render(request, "jobs.html", login=login, jobs=jobs)


@pages.get("/pathology/{job_id}")
def job_page(request: Request, job_id: str,
             login: Annotated[Login, Depends(page_login)]) -> HTMLResponse:
    """One pathology job and its slide results."""
    job = _job(request, job_id)
    if job is None:
        return render(request, "error.html", status=404, login=login,
                      message=f"no pathology job {job_id}")
    return render(request, "job.html", login=login, j=job)


@api.get("/pathology/jobs", summary="the newest pathology jobs with their state")
def api_jobs(request: Request, login: Annotated[Login, Depends(api_login)]) -> dict[str, Any]:
    """Pathology jobs, newest first."""
    with pool_of(request).store() as store:
        return {"jobs": store.pathology_job_rows()}


@api.get("/pathology/jobs/{job_id}", summary="one pathology job and its slide results")
def api_job(request: Request, job_id: str,
            login: Annotated[Login, Depends(api_login)]) -> dict[str, Any]:
    """One pathology job with its slides."""
    job = _job(request, job_id)
    if job is None:
        raise HTTPException(404, f"no pathology job {job_id}")
    return job
