"""What the store's mixins use of the one connection ``Store`` holds.

``Store`` is one class made of mixins, one per area: its reads (``store_reads.py``), the
ingest worker's writes and their dead letters (``store_writes.py``, ``letter_writes.py``,
``letter_shares.py``), the console's accounts (``accounts.py``) and the schema's versions
(``store_schema.py``). Each runs its SQL through
the connection members ``Store`` defines; they are declared once here, for the type checker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any


class StoreConnection:
    """The connection members ``Store`` defines and its mixins call."""

    url: str
    postgres: bool
    _conn: Any
    if TYPE_CHECKING:

        def _sql(self, text: str) -> str: ...
        def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
        def _transaction(self, lock_wait_ms: int | None = None
                         ) -> AbstractContextManager[Any]: ...
        def _stream(self, sql: str, params: Sequence[Any],
                    rows_at_once: int = 1000) -> Iterator[tuple[Any, ...]]: ...
        def reopened_after_close(self, error: BaseException,
                                 abandon: threading.Event | None = None) -> bool: ...
