"""How the user's shell calls this program, for the commands a message tells them to run.

After ``./dev demo`` the program is ``.venv/bin/appliance``, which no shell's PATH holds until
the venv is activated (README: "A tour"), so a hint naming plain ``appliance`` failed when
copied as printed ("appliance: command not found").
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def shell_command() -> str:
    """``appliance`` where the shell's PATH finds this very program, else its path (relative to
    the working folder when inside it)."""
    mine = Path(sys.executable).parent / "appliance"  # the venv's python, not where it links
    found = shutil.which("appliance")
    if not mine.exists() or (found is not None and Path(found).resolve() == mine.resolve()):
        return "appliance"
    return os.path.relpath(mine) if mine.is_relative_to(Path.cwd()) else str(mine)
