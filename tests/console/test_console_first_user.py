"""A console whose store has no user yet says on its login page how to add one."""

from __future__ import annotations

from pathlib import Path

from console_helpers import PASSWORD, Console, free_port, post_login

from appliance.backoffice.store import open_store
from appliance.config import ConsoleConfig
from appliance.console.auth import add_user
from appliance.console.db import StorePool
from appliance.console.server import ConsoleThread


def test_the_login_page_names_the_command_until_a_user_is_added(tmp_path: Path) -> None:
    """A newcomer who started the console before adding a user saw a bare login form that
    answered every try "Wrong user name or password"; only the terminal said that nobody
    could log in yet (and how to add someone)."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    open_store(url).close()
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0)
    pool = StorePool(url, size=4)
    thread = ConsoleThread(config, pool, tmp_path / "pathology-results")
    thread.start()
    assert thread.wait_started(), "console did not start"
    try:
        console = Console(f"http://127.0.0.1:{config.port}", "", "", url, tmp_path)
        status, _, page = console.get("/login")
        assert status == 200
        assert b'id="no-user"' in page
        assert b"appliance console user add NAME --role operator" in page
        store = open_store(url)
        try:
            add_user(store, "alice", "operator", PASSWORD)
        finally:
            store.close()
        status, _, page = console.get("/login")
        assert status == 200
        assert b'id="no-user"' not in page  # the console took the new user at once
        assert post_login(console)[0] == 303
    finally:
        thread.stop()
        pool.close()
