"""The console's results CSV neutralises every cell a spreadsheet would run as a formula, as
``appliance results export`` does (appliance/backoffice/export.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from console_helpers import Console, get_with, login_cookie, make_result

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.transport import payloads

FORMULAS = {"label": "-2+3+cmd|' /C calc'!A0", "model_version": "@SUM(1+1)*cmd|' /C calc'!A0",
            "software_version": "=1+1"}


def test_a_kiosk_s_formula_text_is_quoted_in_the_results_csv(console: Console) -> None:
    hostile = make_result(900, "csvlab", "kiosk-f", "30-39").model_copy(update={
        "software_version": FORMULAS["software_version"],
        "classification": payloads.Classification(
            model="skin-texture-grade", version=FORMULAS["model_version"],
            label=FORMULAS["label"], probabilities={FORMULAS["label"]: 1.0})})
    store = open_store(console.store_url)
    try:
        row = result_row(hostile, iso_utc(datetime.now(UTC)), hostile.to_json().decode())
        store.write_batch(Batch(results=[row]), 100)
    finally:
        store.close()
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, "/results.csv?site=csvlab", cookie)
    assert status == 200
    (cells,) = list(csv.DictReader(io.StringIO(body.decode())))
    for column, text in FORMULAS.items():
        assert cells[column] == "'" + text, column
    assert float(cells["kime_score"]) == hostile.features.kime_score  # numbers stay numbers
