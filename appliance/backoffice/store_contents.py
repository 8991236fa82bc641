"""What a back-office store holds, as a backup or a restore says it: its schema version, the
results of each kiosk with the newest one's receipt, the dead letters and the erasures recorded.

The receipt times are the back office's clock (``results.received_at``), so the newest one says
from when on a restored store lacks what the kiosks sent (README, "Back up and restore the back
office").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.logsafe import escape_controls

# one SELECT's rows: a sqlite3 connection's execute(...).fetchall(), or Store.query
Query = Callable[[str], Sequence[Sequence[Any]]]


@dataclass(frozen=True)
class KioskResults:
    """The results one kiosk has in a store, and when the newest of them was received."""

    site: str
    device_id: str
    results: int
    newest_received_at: str


@dataclass(frozen=True)
class StoreContents:
    """What one store holds (``contents_of``)."""

    schema_version: int
    kiosks: tuple[KioskResults, ...]
    dead_letters: int
    erasures: int

    @property
    def results(self) -> int:
        """The results of every kiosk together."""
        return sum(kiosk.results for kiosk in self.kiosks)

    @property
    def newest_received_at(self) -> str | None:
        """When the newest result was received (the back office's clock), or None."""
        return max((kiosk.newest_received_at for kiosk in self.kiosks), default=None)

    def summary(self) -> str:
        """One line: results, kiosks, the newest receipt, dead letters, erasures."""
        newest = self.newest_received_at
        received = f", the newest received {newest}" if newest else ""
        return (f"{self.results} result(s) of {len(self.kiosks)} kiosk(s){received}; "
                f"{self.dead_letters} dead letter(s), {self.erasures} erasure(s) recorded; "
                f"schema version {self.schema_version}")

    def kiosk_lines(self) -> list[str]:
        """A line a kiosk: site/device, its results, its newest receipt."""
        return [f"  {escape_controls(kiosk.site)}/{escape_controls(kiosk.device_id)}: "
                f"{kiosk.results} result(s), newest received {kiosk.newest_received_at}"
                for kiosk in self.kiosks]


def contents_of(query: Query, table_names: frozenset[str]) -> StoreContents:
    """What the store ``query`` reads holds; ``table_names``: the tables it has (an older
    schema may lack the erasures)."""
    version = query("SELECT MAX(version) FROM schema_migrations")[0][0]
    kiosks = tuple(KioskResults(str(site), str(device), int(count), str(newest))
                   for site, device, count, newest in query(
                       "SELECT site, device_id, COUNT(*), MAX(received_at) FROM results "
                       "GROUP BY site, device_id ORDER BY site, device_id"))
    return StoreContents(
        schema_version=int(version or 0), kiosks=kiosks,
        dead_letters=_count(query, "dead_letters", table_names),
        erasures=_count(query, "erasures", table_names))


def _count(query: Query, table: str, table_names: frozenset[str]) -> int:
    if table not in table_names:
        return 0
    return int(query(f"SELECT COUNT(*) FROM {table}")[0][0])
