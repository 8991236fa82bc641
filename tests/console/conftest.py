"""Fixtures the console tests share: a fresh back-office store of each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.store import Store, open_store
from tests.store_helpers import BACKENDS, fresh_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend (PostgreSQL in a throw-away schema named for
    the test module); a module with a store of its own (seeded, say) keeps it."""
    prefix = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    with fresh_store(request.param, tmp_path, prefix, open_store) as opened:
        yield opened
