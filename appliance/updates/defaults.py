"""The model repository's signing roles, how long each one's metadata lasts by default and how
many kiosks its server takes at once: plain values, so that ``appliance models repo --help``
names them without loading python-tuf (repository.py) or the server (serve.py). The four top
roles are TUF's own names (``Root.type``, ...; tests/updates/test_updates_defaults.py holds
them to python-tuf's)."""

from __future__ import annotations

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
FLEET = "fleet"  # the delegated role that assigns models to devices
ROLES = (*TOP_ROLES, FLEET)
DEFAULT_EXPIRY_S = {
    "root": 365 * 86400,
    "targets": 180 * 86400,
    FLEET: 30 * 86400,
    "snapshot": 7 * 86400,
    "timestamp": 86400,
}
MAX_CONNECTIONS = 64  # `models repo serve`: kiosks fetch a few small files each, one at a time
