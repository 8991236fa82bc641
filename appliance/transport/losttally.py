"""Results lost to refused commits, counted in a small file beside the outbox.

A refused commit (full disk, I/O error) cannot count its loss in the outbox it could not write;
``LostTally`` counts it in place in 8 bytes beside the outbox (appliance/transport/outbox.py),
which needs no new block, so a full disk takes the count too and it survives a restart. A
count no kiosk reaches (below 0, or over ``highwater.MAX_COUNT``: bytes garbled on the card) is
said in the journal and counted from 0 again: followed, it would show the fleet a nonsense loss,
and one near the largest 8-byte number made the kiosk's status (dropped past 2**63 - 1) invalid,
so the daemon could not even start.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

from appliance.sidefile import open_side_file
from appliance.transport.highwater import MAX_COUNT

log = logging.getLogger(__name__)


class LostTally:
    """Results lost to refused commits, counted in place in a small file (``path``).

    The file (8 bytes, a little-endian count) is made while the disk has room, when the outbox
    opens; a count then overwrites those bytes (``pwrite`` and ``fsync``), which needs no new
    block, so it is kept on a full disk and across a restart. OSError when the file cannot be
    made or read, or is no regular file (appliance/sidefile.py)."""

    SIZE = 8

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = open_side_file(path, create=True)  # never through a link, never a FIFO
        try:
            data = os.pread(self._fd, self.SIZE, 0)
            if len(data) < self.SIZE:  # new (or cut by a crash while it was made)
                data = self._restart(bytes(self.SIZE))
            elif not 0 <= struct.unpack("<q", data)[0] <= MAX_COUNT:
                data = self._restart(data)
        except OSError:
            os.close(self._fd)
            raise
        self.value = struct.unpack("<q", data)[0]

    def _restart(self, found: bytes) -> bytes:
        """Count from 0 in place (a new tally, or a garbled one, said in the journal)."""
        if any(found):
            log.error("%s: holds %d, which is no count of lost results (garbled bytes "
                      "%s); counting from 0 again: results lost to a refused commit before "
                      "this start are not counted", self.path, struct.unpack("<q", found)[0],
                      found.hex())
        data = bytes(self.SIZE)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)
        return data

    def add(self, count: int) -> bool:
        """Count ``count`` more in place; False (nothing changed) when the file refuses."""
        total = self.value + count
        try:
            os.pwrite(self._fd, struct.pack("<q", total), 0)
            os.fsync(self._fd)
        except OSError:
            return False
        self.value = total
        return True

    def close(self) -> None:
        """Close the file (the count stays in it)."""
        os.close(self._fd)

def count_lost_beside(path: Path, count: int) -> bool:
    """Count ``count`` lost results in the tally beside the outbox at ``path``, without opening
    the outbox (one that cannot be opened or repaired now); False when the tally refuses too."""
    try:
        tally = LostTally(path.with_name(path.name + ".lost"))
    except OSError:
        return False
    try:
        return tally.add(count)
    finally:
        tally.close()
