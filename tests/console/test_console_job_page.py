"""A pathology job's page says what scored each slide in words, not as the stored JSON."""

from __future__ import annotations

import json
import re

from console_helpers import Console, get_with, login_cookie

from appliance.console.jobs import backend_text
from appliance.pathology.jobs import JobRequest, SlideRequest
from appliance.pathology.jobstore import SLIDE_COLUMNS, open_pathology_store

# what appliance/pathology/backends.py reports and the finisher stores with each slide
ONNX_INT8 = {"backend": "onnx-cpu", "model": "/opt/appliance/models/msi-vgg19-w16.int8.onnx",
             "providers": ["CPUExecutionProvider"], "threads": 0, "quantization": "int8"}
TORCH = {"backend": "torch-cuda", "model": "/opt/appliance/models/msi-vgg19.onnx",
         "dtype": "bfloat16", "channels_last": True, "compiled": False}


def _store_job(console: Console, job_id: str, backends: list[str]) -> None:
    store = open_pathology_store(console.store_url)
    try:
        slides = tuple(SlideRequest(f"/slides/s{index}.jpg", 1.0, f"s{index}")
                       for index in range(len(backends)))
        assert store.accept(JobRequest(job_id, slides, "2026-12-05T08:00:00.000000Z"), "srv", 60.0)
        for index, backend in enumerate(backends):
            row = dict.fromkeys(SLIDE_COLUMNS, "")
            row.update(job_id=job_id, slide_index=index, slide=f"s{index}", label="MSS",
                       score=0.2, mean_probability=0.2, msi_tile_share=0.1, tile_count=100,
                       in_distribution_share=0.99, backend=backend)
            assert store.store_slide(row)
        assert store.finish(job_id, "srv", "done")
    finally:
        store.close()


def test_a_slide_s_backend_reads_as_words_with_the_settings_in_its_tooltip(
        console: Console) -> None:
    """The backend column held each slide's stored settings as a JSON object, the server's
    model path included, that widened the table past the pictures (seen in chromium on a job
    of `appliance pathology job submit`)."""
    _store_job(console, "job-words", [json.dumps(ONNX_INT8), json.dumps(TORCH)])
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, "/pathology/job-words", cookie)
    assert status == 200
    cells = re.findall(r'<td class="backend" title="([^"]*)">([^<]*)</td>', body.decode())
    assert [text for _, text in cells] == ["onnx-cpu, int8, msi-vgg19-w16.int8.onnx",
                                           "torch-cuda, bfloat16, msi-vgg19.onnx"]
    assert all(title.startswith("{&#34;backend&#34;: ") for title, _ in cells)
    _, _, answer = console.get("/api/v1/pathology/jobs/job-words", console.token)
    assert [json.loads(s["backend"]) for s in json.loads(answer)["slides"]] == [ONNX_INT8, TORCH]


def test_a_backend_stored_as_other_text_is_shown_as_it_is() -> None:
    assert backend_text("onnx-cpu") == "onnx-cpu"
    assert backend_text("") == ""
    assert backend_text("[1, 2]") == "[1, 2]"
    assert backend_text('{"threads": 0}') == '{"threads": 0}'
