"""Files written whole or not at all (appliance/outfile.py), and what is never replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.outfile import OutputError, replaced_when_complete


def test_a_pipe_or_device_is_never_replaced(tmp_path: Path) -> None:
    """`console reference --out /dev/null` as root replaced the system's /dev/null with a
    regular file (a pipe stands in for the device here)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with (pytest.raises(OutputError, match=f"^{pipe}: not a regular file") as refused,
          replaced_when_complete(pipe) as temp):
        temp.write_text("never written")
    assert refused.value.filename == str(pipe)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert list(tmp_path.iterdir()) == [pipe]

