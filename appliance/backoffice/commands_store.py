"""``appliance store migrate``: bring the back-office store's schema up to date.

Writers and servers (``backoffice``, ``console``, ``demo``, ``models deploy``) migrate the store
when they start; read commands (``fleet``, ``results``, ``report``, ``models status``, ...)
never change it and refuse a store whose schema is missing or older than this code, pointing
here. This command creates the tables (the pathology server's included) in an empty database
too: that is how a new PostgreSQL database is made ready before anything reads it. A database
the server lacks it creates first when the role may (pgdatabase.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.backoffice import store_backup_cli
from appliance.backoffice.commands import add_store_options, store_url_of


def _migrate(args: argparse.Namespace) -> int:
    from appliance.backoffice.pgdatabase import create_missing_database  # noqa: PLC0415
    from appliance.backoffice.store import StoreError  # noqa: PLC0415  (psycopg loads on use)
    from appliance.backoffice.store_schema import LATEST_VERSION  # noqa: PLC0415
    from appliance.backoffice.storeerrors import STORE_ERRORS, explained  # noqa: PLC0415
    from appliance.backoffice.storeurl import POSTGRES_SCHEMES, store_name  # noqa: PLC0415
    from appliance.pathology.jobstore import PathologyStore  # noqa: PLC0415

    url = store_url_of(args)
    if url is None:
        return 2
    try:
        postgres = url.startswith(POSTGRES_SCHEMES)
        if postgres and (created := create_missing_database(url)) is not None:
            print(created)
        store = PathologyStore(url)
        try:
            applied = store.migrate()
            store.migrate_pathology()
            version = store.schema_version()
        finally:
            store.close()
    except StoreError as exc:  # a URL of no store, or one that cannot be opened: it names it
        print(f"store migrate: {exc}", file=sys.stderr)
        return 2
    except STORE_ERRORS as exc:  # the database refused a statement, or another held its lock
        print(f"store migrate: cannot migrate the {store_name(url)}: {explained(exc)}",
              file=sys.stderr)
        return 2
    if version > LATEST_VERSION:  # a newer appliance migrated it (this one was rolled back)
        print(f"{store_name(url)}: at schema version {version}, newer than this appliance's "
              f"{LATEST_VERSION}; left as it is")
        return 0
    done = (f"applied migration(s) {', '.join(map(str, applied))}" if applied
            else "already up to date")
    print(f"{store_name(url)}: {done}; schema version {version}")
    return 0


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add ``store migrate`` to the command line."""
    store = root.add_parser("store", help="the back-office store's schema, backup and restore")
    sub = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    migrate = sub.add_parser(
        "migrate", help="create or update the store's tables (read commands never do)")
    add_store_options(migrate)
    migrate.set_defaults(handler=_migrate)
    store_backup_cli.register(sub)
