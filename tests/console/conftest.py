"""Fixtures the console tests share: a fresh back-office store of each backend, one chromium
for the folder's browser tests (each test's pages in a context of their own), and quick
argon2id password hashes."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from appliance.backoffice.store import Store, open_store
from appliance.browser import chromium
from appliance.console import auth
from tests.store_helpers import BACKENDS, fresh_store

FOLDER = Path(__file__).resolve().parent
# argon2id at its least cost (one pass over 8 KiB, one lane): the same hashes, checks and
# refusals, without the 0.15-0.2 CPU-s and 64 MiB of each hash and check at argon2-cffi's
# defaults (RFC 9106), which the console keeps (test_console_unknown_user_hash.py holds them)
QUICK_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend (PostgreSQL in a throw-away schema named for
    the test module); a module with a store of its own (seeded, say) keeps it."""
    prefix = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    with fresh_store(request.param, tmp_path, prefix, open_store) as opened:
        yield opened


@pytest.fixture(scope="module", autouse=True)
def quick_password_hashes(request: pytest.FixtureRequest) -> Iterator[None]:
    """The console's passwords hashed and checked with QUICK_HASHER while a module's tests run
    (its module fixtures' users too), unless the module sets ``REAL_PASSWORD_HASHES = True``:
    these tests show who may log in and what a login does, not what a hash costs; a console
    command run as a process hashes at the console's own cost."""
    if getattr(request.module, "REAL_PASSWORD_HASHES", False):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth, "_HASHER", QUICK_HASHER)
        yield


class FolderChromium:
    """One headless chromium (appliance/browser.py) that this folder's browser modules run one
    after another share, started by the first that needs it: a chromium costs ~1 CPU-s to
    start, a context of its own ~0.2. It is closed where the next module does not begin by
    asking for it (tests/console's hook below): Playwright's sync API runs one instance a
    thread and holds an event loop running in it (a test's ``asyncio.run`` fails meanwhile),
    so it stays open no longer than a module-scoped browser would have."""

    def __init__(self) -> None:
        self._open: ExitStack | None = None
        self._browser: Any = None

    def browser(self) -> Any:
        """The folder's chromium, started if it is not running."""
        if self._open is None:
            self._open = ExitStack()
            self._browser = self._open.enter_context(chromium())
        return self._browser

    def close(self) -> None:
        """Close the chromium, if running (the next ``browser()`` starts another)."""
        opened, self._open, self._browser = self._open, None, None
        if opened is not None:
            opened.close()


_FOLDER_CHROMIUM = FolderChromium()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """After a module's last test (its module fixtures torn down), close the folder's chromium
    unless the next test is of this folder and asks for it."""
    yield
    if nextitem is not None and nextitem.path == item.path:
        return
    if (nextitem is None or FOLDER not in Path(nextitem.path).parents
            or "chromium_browser" not in getattr(nextitem, "fixturenames", ())):
        _FOLDER_CHROMIUM.close()


@pytest.fixture(scope="module")
def chromium_browser() -> Any:
    """The folder's chromium (tests/conftest.py's fixture starts one per module); each test
    takes its pages from it with ``page_in``, in a context of their own."""
    return _FOLDER_CHROMIUM.browser()
