"""One result's page shows the subject the kiosk sent in words."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from console_helpers import Console, get_with, login_cookie, make_result

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.transport import payloads


def test_consent_reads_yes_not_python_s_true(console: Console) -> None:
    """A demo customer who consented showed "consent True" (Python's spelling of JSON's
    true) in the Subject table of the result's page."""
    result = make_result(0, "paris", "k-consent", "30-39").model_copy(update={
        "subject": payloads.Subject(age_band="30-39", consent=True)})
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(results=[result_row(result, iso_utc(datetime.now(UTC)),
                                                    result.to_json().decode())]), 10)
    finally:
        store.close()
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, f"/results/{result.measurement_id}", cookie)
    assert status == 200
    subject = re.search(r"<h2>Subject</h2>\s*(?:<div[^>]*>\s*)?<table[^>]*>(.*?)</table>",
                        body.decode(), re.S)
    assert subject
    assert re.findall(r"<tr><th>(\w+)</th><td>([^<]*)</td></tr>", subject.group(1)) == [
        ("age_band", "30-39"), ("consent", "yes")]
