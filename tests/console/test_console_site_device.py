"""A device id two sites use (each site names its own kiosks): the console's site field
narrows the results page, its CSV and the API to one site's kiosk, as `results query|export
--site` and `--device SITE/DEVICE` do (tests/backoffice/test_backoffice_results_site.py)."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from console_helpers import Console, get_with, login_cookie, make_result, running_console

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main

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


def _cli_refusal(console: Console, capsys: pytest.CaptureFixture[str], option: str,
                 value: str) -> str:
    """Why `results query` refuses ``option`` ``value``: argparse's last line, after
    "argument --site: 'tokyo ': " ("not a site id (...)")."""
    with pytest.raises(SystemExit):
        main(["results", "query", "--store", console.store_url, option, value])
    said = capsys.readouterr().err.splitlines()[-1]
    return said.split(f"argument {option}: {value!r}: ", 1)[1]


def _answers(console: Console, cookie: str, query: str) -> dict[str, tuple[int, str]]:
    """The status and text of the results page, its CSV, the API, the dead letters and (for
    a site alone) the fleet asked with ``query``."""
    paths = ["/results", "/results.csv", "/dead-letters"]
    paths += ["/fleet"] if "device" not in query else []
    answers = {path: get_with(console, f"{path}?{query}", cookie) for path in paths}
    said = {path: (status, html.unescape(body.decode())) for path, (status, _, body)
            in answers.items()}
    status, _, body = console.get(f"/api/v1/results?{query}", console.token)
    said["/api/v1/results"] = (status, json.loads(body).get("detail", ""))
    return said


@pytest.mark.parametrize(("field", "value"), [
    ("site", "tokyo "),  # was read as tokyo: a site id that is none, taken as another
    ("site", " tokyo"),
    ("site", "\ttokyo"),
    ("device", "kiosk-1 "),
    ("device", "tokyo/kiosk-1\n"),
    ("device", "tokyo/"),
    ("site", "tok yo"),
], ids=["site-blank-after", "site-blank-before", "site-tab", "device-blank-after",
        "kiosk-new-line", "kiosk-no-device", "site-blank-inside"])
def test_a_site_or_device_the_cli_refuses_is_refused_naming_the_field_as_it_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str) -> None:
    with running_console(tmp_path) as console:
        cookie, _ = login_cookie(console)
        cli = _cli_refusal(console, capsys, f"--{field}", value)
        refusal = f"{field}: {value!r} refused: {cli}"
        for path, (status, text) in _answers(console, cookie,
                                             urlencode({field: value})).items():
            assert status == 400, path
            assert (refusal in text) if path != "/api/v1/results" else text == refusal, path


def test_the_device_field_takes_site_slash_device_as_the_cli_s_device_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_console(tmp_path) as console:
        _add_osaka_kiosk_1(console)
        cookie, _ = login_cookie(console)
        for query in ("device=osaka/kiosk-1", "site=osaka&device=osaka/kiosk-1"):
            status, _, page = get_with(console, f"/results?{query}", cookie)
            assert status == 200, query
            assert _kiosks_listed(page) == [("osaka", "kiosk-1")] * OSAKA_KIOSK_1, query
            status, _, body = console.get(f"/api/v1/results?{query}", console.token)
            assert [(r["site"], r["device_id"]) for r in json.loads(body)["results"]] == \
                [("osaka", "kiosk-1")] * OSAKA_KIOSK_1, query
            status, _, page = get_with(console, f"/dead-letters?{query}", cookie)
            assert status == 200, query
        cli = main(["results", "query", "--store", console.store_url,
                    "--site", "tokyo", "--device", "osaka/kiosk-1"])
        assert cli == 2
        assert "name two sites" in capsys.readouterr().err
        status, _, body = console.get("/api/v1/results?site=tokyo&device=osaka/kiosk-1",
                                      console.token)
        assert status == 400
        assert json.loads(body)["detail"] == (
            "device: 'osaka/kiosk-1' refused: tokyo and osaka/kiosk-1 name two sites; give the "
            "site once (in the device field as SITE/DEVICE, or in the site field)")
