"""The console's pathology jobs page and API: each job's state and its slides' results.

Read-only views of the tables the pathology server keeps (appliance/pathology/jobstore.py):
state, owner, reason and takeovers of each job, and per slide its label (MSI, MSS or
unsupported), score, tile count, in-distribution share and error, with its heatmap and CAM
panel: files in ``pathology.results_dir`` that the console serves (to logged-in users only)
when the slide's stored result names them (appliance/console/pictures.py). Jobs are submitted
and cancelled with ``appliance pathology job``. A job's id is ``LOGIN/NAME``, its submitter's
login first (appliance/pathology/jobs.py), so its page is ``/pathology/LOGIN/NAME``; a job
stored before ids named their submitter has one level.

An unsupported slide (its tissue unlike the model's training data, docs/pathology-ood.md) has
no score: the server stores what the model computed for it, but a score beside "unsupported"
reads as the MSI answer its label withholds, so the page and the API give its reason and its
share of tiles in distribution, as ``pathology run`` and ``job submit --wait`` print it, and
keep the computed figures apart, for audit only, under ``unsupported_raw``.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import HTMLResponse

from appliance.backoffice.accounts import Login
from appliance.console.api import ERROR_RESPONSES, ApiLogin, NextCursor, error
from appliance.console.filters import (
    InputError,
    listed_cursor,
    older_link,
    parse_listed_cursor,
)
from appliance.console.guard import (
    asked_head,
    body_store,
    head_ends_here,
    page_login,
    pool_of,
)
from appliance.console.pages import render
from appliance.console.pictures import (
    PICTURE_COLUMNS,
    PictureError,
    picture_size,
    read_picture,
)
from appliance.pathology.jobs import JOB_ID, JOB_ID_LEVEL
from appliance.pathology.verdict import UNSUPPORTED

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["api"], responses=ERROR_RESPONSES)
SLIDE_INDEX = re.compile(r"^[0-9]{1,6}\Z")
JOBS_SHOWN = 100  # a page of the jobs list, on the page and in the API
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "the PNG picture"},
    403: error("the stored path is outside the pathology results folder: not served"),
    404: error("no such slide result, or its picture is gone")}
# what the model computed for a slide that reads as an answer: withheld from an unsupported one
WITHHELD_FIGURES = ("score", "mean_probability", "msi_tile_share")


# the API's path parameters, described for its OpenAPI document
JobId = Annotated[str, Path(description="the job's `job_id`, as in the jobs list")]


def checked_job_id(job_id: str) -> str:
    """``job_id`` when it is one a server stores (LOGIN/NAME, or, stored before job ids named
    their submitter, one level); else InputError (400): no such job was ever accepted."""
    if not (JOB_ID.match(job_id) or JOB_ID_LEVEL.match(job_id)):
        raise InputError("job id", job_id, "LOGIN/NAME, each letters, digits and _ . - (at "
                         "most 64)")
    return job_id


def _job(request: Request, job_id: str) -> dict[str, Any] | None:
    """One job with its slide results, or None (a HEAD is answered once it is found)."""
    checked_job_id(job_id)
    with pool_of(request).store() as store:
        found = store.pathology_job_rows(1, job_id)
        if not found:
            return None
        head_ends_here(request)
        slides = store.pathology_slide_rows(job_id)
    return {**found[0], "slides": [shown_slide(row) for row in slides]}


def shown_slide(row: dict[str, Any]) -> dict[str, Any]:
    """A stored slide as the console gives it: an unsupported one with its score, mean
    probability and MSI tile share null, those figures kept apart under ``unsupported_raw``
    (empty for every other slide)."""
    if row["label"] != UNSUPPORTED:
        return {**row, "unsupported_raw": {}}
    return {**row, **dict.fromkeys(WITHHELD_FIGURES),
            "unsupported_raw": {figure: row[figure] for figure in WITHHELD_FIGURES}}


def _picture(request: Request, job_id: str, slide_index: str, picture: str) -> Response:
    """One slide's heatmap or CAM panel as image/png; PictureError when there is none to serve."""
    checked_job_id(job_id)
    if not SLIDE_INDEX.match(slide_index):
        raise InputError("slide index", slide_index, "a whole number (0 is the first slide)")
    if picture not in PICTURE_COLUMNS:
        raise InputError("picture", picture, f"one of {', '.join(PICTURE_COLUMNS)}")
    with pool_of(request).store() as store:
        stored = store.pathology_picture_path(job_id, int(slide_index), PICTURE_COLUMNS[picture])
    what = f"{picture} of slide {slide_index} of pathology job {job_id}"
    if stored is None:
        raise PictureError(f"{what}: no such slide result")
    results = request.app.state.pathology_results
    if asked_head(request):  # the GET's status and length, from the file's size
        size = picture_size(results, stored, what)
        return Response(media_type="image/png", headers={"Content-Length": str(size)})
    data = read_picture(results, stored, what)
    return Response(data, media_type="image/png")  # not kept by the browser: app.py


def _jobs_page(request: Request, before: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """JOBS_SHOWN jobs, newest first, after the ``before`` cursor (None: the newest), and the
    cursor of the page after them (None: these are the oldest)."""
    after = parse_listed_cursor(before)
    with body_store(request) as store:
        jobs = store.pathology_job_rows(JOBS_SHOWN + 1, before=after)
    return jobs[:JOBS_SHOWN], listed_cursor(jobs, JOBS_SHOWN, "accepted_at", "job_id")


@pages.get("/pathology")
def jobs_page(request: Request, login: Annotated[Login, Depends(page_login)],
              before: str | None = None) -> HTMLResponse:
    """The pathology jobs, JOBS_SHOWN a page, newest first; Older pages through them all."""
    jobs, cursor = _jobs_page(request, before)
    return render(request, "jobs.html", login=login, jobs=jobs,
                  older=older_link("/pathology", cursor), older_page=bool(before))


def backend_text(stored: str) -> str:
    """What ran a slide, as its page says it: "onnx-cpu, float32, msi-vgg19-w16.onnx" from the
    server's backend settings stored as JSON (the API gives them whole); other text as it is."""
    try:
        settings = json.loads(stored)
    except ValueError:
        return stored
    if not isinstance(settings, dict):
        return stored
    model = settings.get("model")
    parts = (settings.get("backend"), settings.get("quantization") or settings.get("dtype"),
             PurePath(model).name if isinstance(model, str) and model else None)
    return ", ".join(str(part) for part in parts if part) or stored


# a job id holds a slash: matched as a path, the pictures before the job (the path would take
# "LOGIN/NAME/slides/0/heatmap" whole)
@pages.get("/pathology/{job_id:path}/slides/{slide_index}/{picture}")
def picture_page(request: Request, job_id: str, slide_index: str, picture: str,
                 login: Annotated[Login, Depends(page_login)]) -> Response:
    """A slide's heatmap or CAM panel (PNG) for the job page."""
    try:
        return _picture(request, job_id, slide_index, picture)
    except PictureError as exc:
        return render(request, "error.html", status=exc.status, login=login, message=str(exc))


@pages.get("/pathology/{job_id:path}")
def job_page(request: Request, job_id: str,
             login: Annotated[Login, Depends(page_login)]) -> HTMLResponse:
    """One pathology job and its slide results."""
    job = _job(request, job_id)
    if job is None:
        return render(request, "error.html", status=404, login=login,
                      message=f"no pathology job {job_id}")
    slides = [{**slide, "backend_text": backend_text(slide["backend"])} for slide in job["slides"]]
    return render(request, "job.html", login=login, j={**job, "slides": slides})


@api.get("/pathology/jobs", summary="Pathology jobs with their state, newest first, "
         f"{JOBS_SHOWN} an answer", response_description="`jobs` and the cursor `next`",
         description=f"`jobs`: at most {JOBS_SHOWN}, newest first; "
         "`next` continues the list (give it as `before`; null in the answer with the oldest).")
def api_jobs(request: Request, login: ApiLogin,
             before: NextCursor = None) -> dict[str, Any]:
    """Pathology jobs, newest first; ``next`` continues them (null after the oldest)."""
    jobs, cursor = _jobs_page(request, before)
    return {"jobs": jobs, "next": cursor}


@api.get("/pathology/jobs/{job_id:path}/slides/{slide_index}/{picture}",
         summary="A slide's heatmap or CAM panel as PNG",
         description="The picture the pathology server drew of one slide of a finished job: "
         "its tile-score heatmap or its CAM panel.",
         response_class=Response, responses=PNG_RESPONSE)
def api_picture(
    request: Request, job_id: JobId,
    slide_index: Annotated[str, Path(description="the slide's place in the job, 0 for the "
                                     "first")],
    picture: Annotated[str, Path(description=f"one of {', '.join(PICTURE_COLUMNS)}")],
    login: ApiLogin,
) -> Response:
    """One slide's heatmap or CAM panel."""
    try:
        return _picture(request, job_id, slide_index, picture)
    except PictureError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


@api.get("/pathology/jobs/{job_id:path}", summary="One pathology job and its slide results",
         description="The job as the pathology server stored it (state, server, takeovers, "
         "reason) and `slides`: each slide's label, score, MSI tile share, tiles, "
         "in-distribution share and error. A slide labelled `unsupported` (tissue unlike the "
         "model's training data: docs/pathology-ood.md) has no answer: its `score`, "
         "`mean_probability` and `msi_tile_share` are `null`, and what the model computed "
         "for them is kept for audit only, apart, under `unsupported_raw` (figure -> number; "
         "`{}` for every other slide); never read it as the slide's score.",
         response_description="the job with its `slides`",
         responses={404: error("no pathology job with that id")})
def api_job(request: Request, job_id: JobId,
            login: ApiLogin) -> dict[str, Any]:
    """One pathology job with its slides."""
    job = _job(request, job_id)
    if job is None:
        raise HTTPException(404, f"no pathology job {job_id}")
    return job
