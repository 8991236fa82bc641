"""The result's optional picture (``thumbnail_jpeg_b64``) as README.md describes it: nothing in
the package fills it, and the back office keeps one it receives inside the stored result JSON
only, never on a page, in an API answer or in an export."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import cv2
import numpy as np

from appliance.backoffice.store import open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.cli import main
from appliance.console.views import result_detail
from appliance.synthetic import fleet

REPO = Path(__file__).resolve().parents[2]
FIELD = "thumbnail_jpeg_b64"


def _readme_contract() -> str:
    """README.md's "Payload contract" section, on one line."""
    text = " ".join((REPO / "README.md").read_text().split())
    return text.split("## Payload contract", 1)[1].split(" ## ", 1)[0]


def test_readme_says_the_thumbnail_is_off_and_no_module_fills_it() -> None:
    said = _readme_contract()
    assert f"`{FIELD}`" in said
    assert "nothing in this repository does: no config key turns it on" in said
    package = REPO / "appliance"
    naming = [path.relative_to(package).as_posix() for path in sorted(package.rglob("*.py"))
              if FIELD in path.read_text(encoding="utf-8")]
    assert naming == ["transport/payloads.py"]  # code that fills it must change README too


def test_the_back_office_keeps_a_thumbnail_as_readme_says_and_never_shows_or_exports_it(
    tmp_path: Path,
) -> None:
    said = _readme_contract()
    for claim in ("at most 64 KiB", "keeps it inside the stored result JSON (the `payload` column)",
                  "no page, API answer or export (CSV, JSON Lines, Parquet) includes it"):
        assert claim in said, claim
    picture = cv2.imencode(".jpg", np.full((48, 64, 3), 180, np.uint8))[1].tobytes()
    thumbnail = base64.b64encode(picture).decode()
    result = fleet.sample_result(random.Random(3), "lab", "k1", 0).model_copy(
        update={FIELD: thumbnail})
    triage = Triage("appliance", 10_000)
    batch, accepted = triage.sort([Inbound("appliance/lab/k1/result", result.to_json(), 1, 1)])
    assert [r.measurement_id for r in accepted] == [result.measurement_id]
    over = result.model_copy(update={FIELD: "A" * (64 * 1024 + 1)}).model_dump_json(by_alias=True)
    refused, none = triage.sort([Inbound("appliance/lab/k1/result", over.encode(), 2, 1)])
    assert none == []
    assert FIELD in refused.dead_letters[0].reason
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    store = open_store(url)
    try:
        assert store.write_batch(batch, 10) == [result.measurement_id]
        assert thumbnail in store.result_payloads([result.measurement_id])[result.measurement_id]
        detail = result_detail(store, result.measurement_id)  # the console's page and API
    finally:
        store.close()
    assert detail is not None
    assert detail["features"]["pore_count"] == result.features.pore_count
    assert thumbnail[:40] not in repr(detail)
    for kind in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"r.{kind}"
        assert main(["results", "export", "--store", url, "--format", kind, "--out", str(out)]) == 0
        exported = out.read_bytes()
        assert result.measurement_id.encode() in exported
        assert FIELD.encode() not in exported
        assert thumbnail[:40].encode() not in exported
