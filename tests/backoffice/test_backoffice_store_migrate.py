"""``appliance store migrate`` on a PostgreSQL server without the store's database: it creates
the database when the role may, else one line naming it and what an administrator runs.
Throw-away databases and roles on the suite's server, dropped afterwards."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from appliance.backoffice.store import open_existing_store
from appliance.backoffice.store_schema import LATEST_VERSION

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


@pytest.fixture
def role_named_like_no_database() -> Iterator[str]:
    """A login role that may create databases, and whose name no database has yet; the role
    and a database of its name are dropped afterwards."""
    role = f"dlsum_role_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE ROLE {role} LOGIN CREATEDB")
    try:
        yield role
    finally:
        _admin(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
        _admin(f"DROP ROLE IF EXISTS {role}")


def test_a_url_without_a_database_name_is_refused_and_creates_nothing(
    role_named_like_no_database: str,
) -> None:
    """Without a database name libpq connects to the one named after the role: migrate made a
    database of the role's name and put the store's tables there (for role postgres: in the
    server's shared postgres database)."""
    role = role_named_like_no_database
    url = f"postgresql://{role}:hush@127.0.0.1:5432/"
    done = _migrate(url)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"store migrate: store URL 'postgresql://{role}:***@127.0.0.1:5432/' names no "
        "database: add the store's database after the host (postgresql://USER@HOST:PORT/"
        "DATABASE); without one PostgreSQL picks the database named after the role (or "
        "PGDATABASE), not the store's"]
    assert not _exists(role)
