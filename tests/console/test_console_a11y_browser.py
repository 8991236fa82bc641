"""The console as a screen reader and a keyboard meet it, in a real browser (Debian
chromium): what a plot shows is said in text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import Console, operator_page
from playwright.sync_api import expect


@pytest.fixture(scope="module")
def page(console: Console) -> Iterator[Any]:
    """A browser page logged in as the operator alice."""
    with operator_page(console) as opened:
        yield opened


def test_each_cohort_plot_says_its_figures_in_text(console: Console, page: Any) -> None:
    """A plot was an image named "kime_score by age band" and nothing more: a screen reader
    heard neither the band means nor their intervals."""
    figures = json.loads(console.get("/api/v1/cohort", console.token)[2])["features"]
    page.goto(console.url + "/cohort")
    for key, feature in figures.items():
        plot = page.get_by_role("img", name=f"{key} by age band", exact=True)
        said = " ".join(f"{band['band']} {band['n']} {band['mean']:.4g} "
                        f"{band['ci95'][0]:.4g} to {band['ci95'][1]:.4g}"
                        for band in feature["bands"])
        expect(plot).to_have_accessible_description(re.compile(re.escape(said)))
    page.get_by_text("kime_score as a table").click()  # the same figures, to the eye
    rows = page.locator("#bands-kime_score tr")
    expect(rows).to_have_count(1 + len(figures["kime_score"]["bands"]))
    first = figures["kime_score"]["bands"][0]
    expect(rows.nth(1)).to_have_text(re.compile(f"^{first['band']}\\s*{first['n']}\\s*"
                                                f"{first['mean']:.4g}"))
