"""How many of a kiosk's model reports ``models status --history`` reads: plain numbers, so
that the command's options name them without loading the store's code (model_reports.py)."""

from __future__ import annotations

MAX_HISTORY_ROWS = 1000  # the most one read returns (``models status --history``'s bound)
HISTORY_ROWS = 20  # the reports ``models status --history`` shows by default, newest first
