"""The store's first migration and the payload it stores. (``store backup`` once loaded no
payload models; it now reads the config, which needs them, for the erasure journal it copies
beside each archive: appliance/backoffice/journal_copy.py.)"""

from __future__ import annotations

import re

from appliance.backoffice.migrations import MIGRATIONS
from appliance.transport.payloads import FEATURE_KEYS


def test_the_first_migration_makes_a_column_of_each_feature_a_result_carries() -> None:
    """Migration 1 writes its feature columns out (a migration is never edited); they are the
    payload's features, in order (a new feature needs a migration of its own)."""
    first = MIGRATIONS[0][2]
    results = first[first.index("CREATE TABLE results"):first.index(");")]
    columns = re.findall(r"^    (\w+) (?:BIGINT|\{real\}) NOT NULL,$", results, re.MULTILINE)
    assert tuple(columns) == FEATURE_KEYS
