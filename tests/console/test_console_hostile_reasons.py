"""The console reads a hostile kiosk's withheld-grade reason bounded, on the page and the API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from console_helpers import make_result

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.console.filters import parse_query
from appliance.console.views import result_detail, results_page
from appliance.edge.reasons import NOT_GRADED
from appliance.transport import payloads


def test_a_made_up_withheld_reason_names_only_known_features(tmp_path: Path) -> None:
    named = ", ".join(["<b>x</b>", "kime_score", *["pore_count"] * 20_000,
                       *(f"f{i}" for i in range(5_000))])
    hostile = make_result(1, "lab", "k1", "30-39").model_copy(update={
        "classification": None,
        "quality": payloads.Quality(verdict="ok", reasons=[f"{NOT_GRADED} ({named})"])})
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        row = result_row(hostile, iso_utc(datetime.now(UTC)), hostile.to_json().decode())
        store.write_batch(Batch(results=[row]), 100)
        (item,), _ = results_page(store, parse_query({}))
        detail = result_detail(store, hostile.measurement_id)
    finally:
        store.close()
    expected = {"features": ["kime_score", "pore_count"], "frame": False}
    assert item["grade_withheld"] == expected
    assert detail is not None
    assert detail["grade_withheld"] == expected
