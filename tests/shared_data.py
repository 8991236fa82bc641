"""Where the project's shared data lies (real H&E tiles), from any clone location.

Imported as ``tests.shared_data``: a bare ``from conftest import`` picks whichever conftest
module pytest loaded last, which breaks as soon as a test folder has a conftest of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _shared_data() -> Path:
    """The project's shared data: $APPLIANCE_SHARED_DATA, ../shared/data, or /work/shared/data."""
    candidates = [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    if os.environ.get("APPLIANCE_SHARED_DATA"):
        candidates.insert(0, Path(os.environ["APPLIANCE_SHARED_DATA"]))
    return next((path for path in candidates if path.is_dir()), candidates[0])


SHARED_DATA = _shared_data()
