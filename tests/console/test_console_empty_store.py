"""A console over an empty store (a back office that has received nothing yet): each page
says there is nothing, and claims nothing about results that do not exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import PASSWORD, Console, free_port, get_with, login_cookie

from appliance.backoffice.store import open_store
from appliance.config import ConsoleConfig
from appliance.console.auth import add_user, create_token
from appliance.console.db import StorePool
from appliance.console.server import ConsoleThread


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, str]]:
    """A console on a store with one operator and nothing else; a logged-in cookie."""
    folder = tmp_path_factory.mktemp("empty")
    url = f"sqlite:///{folder / 'backoffice.sqlite3'}"
    store = open_store(url)
    add_user(store, "alice", "operator", PASSWORD)
    token = create_token(store, "alice").token
    store.close()
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0)
    pool = StorePool(url, size=4)
    thread = ConsoleThread(config, pool, folder / "pathology-results")
    thread.start()
    assert thread.wait_started(), "console did not start"
    try:
        console = Console(f"http://127.0.0.1:{config.port}", token, token, url, Path(folder))
        yield console, login_cookie(console)[0]
    finally:
        thread.stop()
        pool.close()


def _main(empty: tuple[Console, str], path: str) -> str:
    console, cookie = empty
    status, _, body = get_with(console, path, cookie)
    assert status == 200, body
    text = body.decode()
    return re.sub(r"<[^>]+>", "", text[text.index("<main"):])


def test_the_cohort_of_no_results_claims_nothing_about_them(
        empty: tuple[Console, str]) -> None:
    main = _main(empty, "/cohort")
    assert "No result is stored yet" in main
    assert "each kiosk sends its results over MQTT to the back office" in main
    assert "every feature of these results was measured" not in main


def test_the_cohort_of_no_results_explains_no_figures(empty: tuple[Console, str]) -> None:
    """The page said how its points and correlations are drawn, and how many results it
    had (0), as if it showed some: an empty store's page says only that there is none yet."""
    main = _main(empty, "/cohort")
    for said_of_figures in ("Points:", "Pearson r", "0 stored results",
                            "No stored result has an age band", "Repeat measurements",
                            "No subject was measured more than once"):
        assert said_of_figures not in main


def test_no_dead_letters_are_said_to_be_none_not_an_empty_table(
        empty: tuple[Console, str]) -> None:
    console, cookie = empty
    main = _main(empty, "/dead-letters")
    assert "No dead letter is kept" in main
    assert "0 newest of 0" not in main
    assert 'id="letters"' not in get_with(console, "/dead-letters", cookie)[2].decode()
