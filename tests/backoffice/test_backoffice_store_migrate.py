"""``appliance store migrate`` on a PostgreSQL server without the store's database: it creates
the database when the role may, else one line naming it and what an administrator runs.
Throw-away databases and roles on the suite's server, dropped afterwards."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from appliance.backoffice.store import LATEST_VERSION, open_existing_store

pytestmark = pytest.mark.postgres
SERVER = "postgres@127.0.0.1:5432"
ADMIN_URL = f"postgresql://{SERVER}/test"


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql)


def _exists(database: str) -> bool:
    import psycopg

    with psycopg.connect(ADMIN_URL) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        return found.fetchone() is not None


@pytest.fixture
def missing_database() -> Iterator[str]:
    """The name of a database the server does not have; dropped afterwards if made."""
    name = f"deadletter_migrate_{uuid.uuid4().hex[:12]}"
    assert not _exists(name)
    try:
        yield name
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def role_without_createdb() -> Iterator[str]:
    """A login role that may not create databases; dropped afterwards."""
    role = f"deadletter_role_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE ROLE {role} LOGIN NOCREATEDB")
    try:
        yield role
    finally:
        _admin(f"DROP ROLE IF EXISTS {role}")


def _migrate(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", "store", "migrate", "--store", url],
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_missing_database_is_created_when_the_role_may_then_migrated(
    missing_database: str,
) -> None:
    """It failed with the server's 'database ... does not exist'."""
    url = f"postgresql://{SERVER}/{missing_database}"
    done = _migrate(url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"PostgreSQL database {url}: created (it did not exist)",
        f"PostgreSQL database {url}: applied migration(s) "
        f"{', '.join(map(str, range(1, LATEST_VERSION + 1)))}; schema version {LATEST_VERSION}"]
    store = open_existing_store(url)  # a read command takes it now
    try:
        assert store.count_dead_letters() == 0
    finally:
        store.close()
    again = _migrate(url)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"PostgreSQL database {url}: already up to date; schema version " \
                           f"{LATEST_VERSION}\n"


def test_a_role_that_may_not_create_the_database_is_told_what_to_run_in_one_line(
    missing_database: str, role_without_createdb: str
) -> None:
    url = f"postgresql://{role_without_createdb}@127.0.0.1:5432/{missing_database}"
    done = _migrate(url)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"store migrate: PostgreSQL database {url} does not exist and role "
        f"'{role_without_createdb}' may not create databases (no CREATEDB): have an "
        f"administrator run `createdb --host 127.0.0.1 --port 5432 --owner "
        f"{role_without_createdb} {missing_database}` (a role with CREATEDB), then "
        "`appliance store migrate` again\n")
    assert not _exists(missing_database)
