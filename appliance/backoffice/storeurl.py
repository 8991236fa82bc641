"""Store URLs: the default SQLite file, a PostgreSQL URL that names no database (refused), and
a URL named in messages and logs without its password (appliance/backoffice/store.py opens what
they name).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from appliance.filekind import not_a_folder
from appliance.logsafe import SHOWN_ARGUMENT_CHARS, shorten_quoted

DEFAULT_SQLITE_NAME = "backoffice.sqlite3"
_PASSWORD_PARAMETER = re.compile(r"((?:^|&)password=)[^&]*")
# a database named in the query, or a pg_service.conf entry that names one
_DBNAME_PARAMETER = re.compile(r"(?:^|&)(?:dbname|service)=[^&]")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def store_url_for(url: str | None, state_dir: str) -> str:
    """The configured store URL, or the default SQLite file under ``state_dir``."""
    return url or f"sqlite:///{Path(state_dir) / DEFAULT_SQLITE_NAME}"


def url_problem(url: str) -> str | None:
    """Why ``url`` can name no store (neither SQLite nor PostgreSQL, a PostgreSQL URL without
    its database, ``sqlite:///`` without a file, a SQLite file whose folder is a file),
    decided without opening anything; or None."""
    if not url.startswith((*POSTGRES_SCHEMES, "sqlite:///")):
        shown = shorten_quoted(masked_url(url), SHOWN_ARGUMENT_CHARS)
        return f"store url {shown}: use sqlite:///PATH or postgresql://...{_as_sqlite(url)}"
    return missing_database(url) or missing_path(url) or folder_not_a_folder(url)


def folder_not_a_folder(url: str) -> str | None:
    """Why a SQLite store cannot be in the folder ``url`` names: that folder, or a part of its
    path, is a file (a ``state_dir`` set to a file): ``store migrate`` said only "File
    exists", the demo that it could not make its lock file "(File exists)", and a read command
    that nothing was ever stored there. None when it is a folder or could be made, and for
    every other URL."""
    if not url.startswith("sqlite:///") or missing_path(url):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    if (problem := not_a_folder(path.parent.absolute())) is None:
        return None
    return (f"the store {sqlite_path_shown(path)} cannot be in its folder: {problem} (the "
            "config's state_dir, store.url or --store names it); name a folder")


def _as_sqlite(url: str) -> str:
    """The URL of a SQLite file for a bare file path given as a store (``--store
    state/backoffice.sqlite3``), since the slashes are easy to get wrong: four before an
    absolute path. '' for anything that is no bare path (a scheme, a blank)."""
    if not url.strip() or ":" in url:
        return ""
    shown = shorten_quoted(f"sqlite:///{url}", SHOWN_ARGUMENT_CHARS)
    return f"; for a SQLite file at that path: {shown}"


def missing_folder(url: str) -> str | None:
    """Why a new SQLite store cannot be made where ``url`` names it: its folder is not there
    (a typo, or a relative path read as an absolute one). None when it is, and for every
    other URL."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    if path.parent.is_dir():
        return None
    return (f"no folder {path.parent.absolute()} for the store {sqlite_path_shown(path)}: "
            "a new store's file is made in a folder that is there; make the folder, or name "
            "another one")


def missing_database(url: str) -> str | None:
    """Why a PostgreSQL store URL names no store: it has no database name, so libpq would pick
    one (``PGDATABASE``, else the database named after the role, such as the shared
    ``postgres``) and the store's tables would land there. None for a URL that names its
    database (after the host, as ``?dbname=``, or by ``?service=``) and for every other URL."""
    if not url.startswith(POSTGRES_SCHEMES):
        return None
    where, _, query = url.partition("://")[2].partition("?")
    path = where.rpartition("@")[2].partition("/")[2]  # after the hosts, which hold no '/'
    if unquote(path) or _DBNAME_PARAMETER.search(query):
        return None
    return (f"store URL {masked_url(url)!r} names no database: add the store's database "
            "after the host (postgresql://USER@HOST:PORT/DATABASE); without one PostgreSQL "
            "picks the database named after the role (or PGDATABASE), not the store's")


def postgres_hosts(url: str) -> list[str]:
    """The host names a PostgreSQL store URL's authority lists (``h1:5432,[::1]:5433`` ->
    ``h1``, ``::1``); none for a URL without (a socket folder, a service) and for SQLite."""
    if not url.startswith(POSTGRES_SCHEMES):
        return []
    authority = url.partition("://")[2].partition("?")[0].partition("/")[0]
    hosts = []
    for entry in unquote(authority.rpartition("@")[2]).split(","):
        host = entry[1:].partition("]")[0] if entry.startswith("[") else entry.partition(":")[0]
        if host:
            hosts.append(host)
    return hosts


def missing_path(url: str) -> str | None:
    """Why a SQLite store URL names no file: ``sqlite:///`` with nothing after it (the path
    would be empty, which reads as the working folder). None for a URL that names a path and
    for every other URL."""
    if url != "sqlite:///":
        return None
    return (f"store URL {url!r} names no file: give the SQLite file's path after sqlite:/// "
            f"(sqlite:///state/{DEFAULT_SQLITE_NAME}, say)")


def sqlite_path_shown(path: Path) -> str:
    """The path of a SQLite store URL for a message: absolute, and for a relative one how it was
    read, since ``sqlite:///tmp/x`` names ``./tmp/x`` (four slashes name ``/tmp/x``)."""
    if path.is_absolute():
        return str(path)
    return (f"{path.absolute()} (the path after sqlite:/// is relative to the working folder; "
            f"sqlite:////{path} names /{path})")


def store_name(url: str) -> str:
    """The database a store URL names, for messages: the SQLite file (its absolute path: which
    file a relative one is depends on the folder), or the PostgreSQL URL without its password."""
    if url.startswith("sqlite:///"):
        return f"SQLite store {Path(url.removeprefix('sqlite:///')).absolute()}"
    return f"PostgreSQL database {masked_url(url)}"


def masked_url(url: str) -> str:
    """``url`` fit to print or log: a password in it (``user:PASSWORD@``, or libpq's
    ``?password=``) reads ``***``; a SQLite URL holds none and is returned as it is."""
    if url.startswith("sqlite:///"):
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL urlsplit takes (a bad [IPv6] host): hide all before '@'
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.partition('@')[2]}" if "@" in rest else url
    query = _PASSWORD_PARAMETER.sub(r"\1***", parts.query)
    if password is None and query == parts.query:
        return url  # as given: urlunsplit would drop an empty host ('sqlite://' -> 'sqlite:')
    if password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return urlunsplit(parts._replace(query=query))
