"""A device id two sites use (each site names its own kiosks): the console's site field
narrows the results page, its CSV and the API to one site's kiosk, as `results query|export
--site` and `--device SITE/DEVICE` do (tests/backoffice/test_backoffice_results_site.py)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

from console_helpers import Console, get_with, login_cookie, make_result, running_console

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store

OSAKA_KIOSK_1 = 3  # results of a kiosk-1 at osaka, beside the seed's 20 of tokyo's kiosk-1
TOKYO_KIOSK_1 = 20


def _add_osaka_kiosk_1(console: Console) -> None:
    results = [make_result(100 + index, "osaka", "kiosk-1", "30-39")
               for index in range(OSAKA_KIOSK_1)]
    store = open_store(console.store_url)
    try:
        store.write_batch(Batch(results=[
            result_row(r, iso_utc(r.captured_at + timedelta(seconds=5)), r.to_json().decode())
            for r in results]), 100)
    finally:
        store.close()


def _kiosks_listed(page: bytes) -> list[tuple[str, str]]:
    """The (site, device) of each row of the results page's table."""
    return re.findall(r"<td>([A-Za-z0-9_.-]+)</td><td>([A-Za-z0-9_.-]+)</td><td class=\"grade\">",
                      page.decode())


def test_the_site_field_narrows_a_device_id_two_sites_use_to_one_kiosk(tmp_path: Path) -> None:
    with running_console(tmp_path) as console:
        _add_osaka_kiosk_1(console)
        cookie, _ = login_cookie(console)
        for site, count in (("osaka", OSAKA_KIOSK_1), ("tokyo", TOKYO_KIOSK_1)):
            query = f"site={site}&device=kiosk-1"
            status, _, page = get_with(console, f"/results?{query}", cookie)
            assert status == 200
            assert _kiosks_listed(page) == [(site, "kiosk-1")] * count, site
            status, _, body = get_with(console, f"/results.csv?{query}", cookie)
            assert status == 200
            rows = list(csv.DictReader(io.StringIO(body.decode())))
            assert [(r["site"], r["device_id"]) for r in rows] == [(site, "kiosk-1")] * count
            status, _, body = console.get(f"/api/v1/results?{query}", console.token)
            assert status == 200
            answer = json.loads(body)["results"]
            assert [(r["site"], r["device_id"]) for r in answer] == [(site, "kiosk-1")] * count
        _, _, page = get_with(console, "/results?device=kiosk-1", cookie)
        assert sorted(set(_kiosks_listed(page))) == [("osaka", "kiosk-1"), ("tokyo", "kiosk-1")]
