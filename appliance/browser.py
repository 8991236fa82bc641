"""Debian's chromium driven by Playwright for Python (browser downloads cannot work here).

Headless pages of the web pages the product serves (the kiosk screen, the console), for the
browser tests and for the README's screenshots (docs/make_screen_images.py). Playwright comes
with the dev extra and is imported only when a page is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, under Playwright (its ``Browser``); closed afterwards."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415  (the dev extra)

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} missing: ./dev installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page_in(browser: Any, width: int = 1280, height: int = 800,
            locale: str = "en-US") -> Iterator[Any]:
    """A page of ``browser`` in a context of its own, which shares no cookies, storage or cache
    with another context's pages, as a fresh browser's page would; closed afterwards."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale=locale,
                                  accept_downloads=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
    finally:
        context.close()


@contextmanager
def chromium_page(width: int = 1280, height: int = 800, locale: str = "en-US") -> Iterator[Any]:
    """A fresh page in a fresh headless chromium; closed afterwards."""
    with chromium() as browser, page_in(browser, width, height, locale) as page:
        yield page
