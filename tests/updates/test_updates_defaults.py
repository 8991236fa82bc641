"""The repository's role names (appliance/updates/defaults.py, plain strings so that the
command line names them without loading python-tuf) are python-tuf's own."""

from __future__ import annotations

from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from appliance.updates.defaults import DEFAULT_EXPIRY_S, ROLES, TOP_ROLES


def test_the_top_roles_are_python_tufs_and_each_role_has_a_default_expiry() -> None:
    assert (Root.type, Targets.type, Snapshot.type, Timestamp.type) == TOP_ROLES
    assert set(DEFAULT_EXPIRY_S) == set(ROLES)
