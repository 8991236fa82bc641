"""The console's pages that say "not measured (outside the validated range)" lead to that
range: they cited docs/measurement.md, a file in the source repository that the console does
not serve and its users may never have. The page lists the limits the measurement checks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from console_helpers import NOT_VALIDATED_IN_SEED, Console, operator_page
from playwright.sync_api import expect

from appliance.skin.validity import validated_range

MEASUREMENT_DOC = Path(__file__).parents[2] / "docs" / "measurement.md"


def _flagged_result(console: Console) -> str:
    """The measurement id of a seeded result with a feature outside the validated range."""
    _, _, body = console.get("/api/v1/results?limit=200", console.token)
    flagged = [r["measurement_id"] for r in json.loads(body)["results"] if r["not_validated"]]
    assert len(flagged) == len(NOT_VALIDATED_IN_SEED)
    return str(flagged[0])


def test_a_not_measured_feature_links_to_the_range_it_lies_outside(
    console: Console, chromium_browser: Any,
) -> None:
    with operator_page(console, chromium_browser) as page:
        page.goto(f"{console.url}/results/{_flagged_result(console)}")
        expect(page.locator("td.not-measured").first).to_be_visible()
        page.get_by_role("link", name="validated range").click()  # on main: no link, a path
        expect(page).to_have_url(console.url + "/validated-range")
        expect(page.locator("h1")).to_have_text("Validated range")
        rows = page.locator("#range tr td.allowed").all_inner_texts()
        assert rows == [c.allowed for c in validated_range()]
        assert "7-13 µm/px" in rows
        for listing in ("/results?limit=200", "/cohort"):  # their n/m notes lead there too
            page.goto(console.url + listing)
            assert page.locator("a[href='/validated-range']").count() >= 1, listing


def test_the_page_and_docs_measurement_name_the_same_limits() -> None:
    """The page reads the limits from the code; the document's table must say the same."""
    section = MEASUREMENT_DOC.read_text().split("## Validated range", 1)[1]
    table = section[section.index("| condition"):].split("\n\n", 1)[0]  # its first table
    documented = [line.split("|")[2].strip() for line in table.splitlines()[2:]]
    assert documented == [c.allowed for c in validated_range()]
    assert all(re.search(r"\d", allowed) for allowed in documented)
