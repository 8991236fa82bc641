"""The console fixture: one running console per test module (tests only read its store)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from console_helpers import Console, running_console


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A console on a seeded store (console_helpers.running_console)."""
    with running_console(tmp_path_factory.mktemp("console")) as running:
        yield running
