"""``store migrate`` against a PostgreSQL server that lacks the store's database: create it when
the role may (CREATEDB), else say who must create it and how.

A connection to a missing database fails with the server's FATAL text and no SQLSTATE (the
session never began), so whether the database is there is asked of a maintenance database
(``postgres``, else ``template1``), as ``createdb`` does. A role that cannot reach either is
left to the connection's own error; a server that does not answer is said at once (the
store's connection would wait as long again).
"""

from __future__ import annotations

import shlex
from typing import Any

from appliance.backoffice.pgconnect import cannot_connect, connect, not_answering
from appliance.backoffice.storeerrors import StoreError
from appliance.backoffice.storeurl import missing_database, store_name
from appliance.logsafe import escape_controls

MAINTENANCE_DATABASES = ("postgres", "template1")


def create_missing_database(url: str) -> str | None:
    """Create the database ``url`` names when the server lacks it; returns the line saying so,
    or None when it is there (or the server cannot be asked). A role without CREATEDB gets a
    StoreError naming the database and the command an administrator runs."""
    import psycopg  # noqa: PLC0415  (the backoffice extra; SQLite needs none)
    from psycopg import sql  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    if (problem := missing_database(url)) is not None:  # it would create the role's database
        raise StoreError(problem)
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return None  # not a URL libpq reads: the store's connection names it
    name = params.get("dbname") or params.get("user")
    admin = _maintenance_connection(url)
    if admin is None or not name:
        return None
    with admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return None
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
        except psycopg.errors.DuplicateDatabase:
            return None  # another migrate made it meanwhile
        except psycopg.errors.InsufficientPrivilege as exc:
            role = admin.execute("SELECT current_user").fetchone()[0]
            raise StoreError(_ask_an_administrator(url, params, str(name), str(role))) from exc
    return f"{store_name(url)}: created (it did not exist)"


def _maintenance_connection(url: str) -> Any:
    """An autocommit connection to the server's maintenance database as the URL's role, or
    None when the role reaches none; StoreError when the server does not answer."""
    import psycopg  # noqa: PLC0415

    for database in MAINTENANCE_DATABASES:
        try:
            return connect(url, dbname=database)
        except psycopg.Error as exc:
            if not_answering(exc):
                raise StoreError(cannot_connect(url, exc)) from exc
    return None


def _ask_an_administrator(url: str, params: dict[str, Any], name: str, role: str) -> str:
    """One line: the database is missing, this role may not create it, what to run."""
    where = [f"--{key} {shlex.quote(str(params[key]))}" for key in ("host", "port")
             if params.get(key)]
    command = " ".join(["createdb", *where, "--owner", shlex.quote(role), shlex.quote(name)])
    return (f"{store_name(url)} does not exist and role {escape_controls(role)!r} may not "
            f"create databases (no CREATEDB): have an administrator run "
            f"`{escape_controls(command)}` (a role with CREATEDB), then `appliance store "
            "migrate` again")
