"""A PostgreSQL store URL must name its database: without one libpq picks the role's own (the
shared ``postgres`` for role postgres). Refused wherever a store URL is taken, before any
connection, in one line with the password masked. A SQLite URL must name its file:
``sqlite:///`` alone is refused naming the URL, not read as the working folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.backoffice.store import Store, StoreError
from appliance.backoffice.storeurl import missing_database
from appliance.cli import main
from appliance.config import ConfigError, config_from_mapping

NO_DATABASE = [
    "postgresql://postgres@127.0.0.1:5432/",
    "postgresql://postgres:s3cret@127.0.0.1:5432",
    "postgres://db.example.org",
    "postgresql://app@h1:5432,h2:5432/?sslmode=require&password=s3cret",
    "postgresql://app@h/?dbname=",
    "postgresql:///",
]
NAMED = [
    "postgresql://postgres@127.0.0.1:5432/store",
    "postgresql://app:pa%2Fss@h1:5432,h2:5432/store?sslmode=require",
    "postgresql:///store?host=/run/postgresql",
    "postgresql://app@h/?dbname=store",
    "postgresql://?service=appliance",
    "postgresql://app@h/st%40re",
    "sqlite:///relative/store.sqlite3",
]


@pytest.mark.parametrize("url", NO_DATABASE)
def test_a_postgresql_url_without_a_database_name_is_refused_before_connecting(url: str) -> None:
    with pytest.raises(StoreError) as refused:
        Store(url)
    text = str(refused.value)
    assert text.startswith("store URL 'postgres")
    assert "names no database" in text
    assert "s3cret" not in text
    assert "\n" not in text


@pytest.mark.parametrize("url", NAMED)
def test_a_url_that_names_its_database_is_taken(url: str) -> None:
    assert missing_database(url) is None


def test_a_read_command_refuses_it_with_exit_2_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["results", "dead-letters", "--store",
                 "postgresql://viewer:s3cret@127.0.0.1:5432/"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "results dead-letters: store error: store URL 'postgresql://viewer:***@127.0.0.1:5432/' "
        "names no database: "
        "add the store's database after the host (postgresql://USER@HOST:PORT/DATABASE); "
        "without one PostgreSQL picks the database named after the role (or PGDATABASE), not "
        "the store's"]


def test_the_config_refuses_it_naming_store_url() -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({"store": {"url": "postgresql://app:s3cret@db:5432"}})
    assert "store.url: store URL 'postgresql://app:***@db:5432' names no database" in str(
        refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("command", [["store", "migrate"], ["results", "query"],
                                     ["console", "user", "list"]])
def test_a_sqlite_url_without_a_path_is_named_not_taken_for_the_working_folder(
    command: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--store", "sqlite:///"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.endswith("store URL 'sqlite:///' names no file: give the SQLite file's path "
                         "after sqlite:/// (sqlite:///state/backoffice.sqlite3, say)")
    assert "folder" not in line
    assert list(tmp_path.iterdir()) == []  # nothing made where it runs


@pytest.mark.parametrize("url", ["sqlite://", "sqlite://store.sqlite3", "mysql://"])
def test_a_url_of_no_store_is_named_as_given(url: str) -> None:
    with pytest.raises(StoreError) as refused:
        Store(url)
    assert str(refused.value) == f"store url {url!r}: use sqlite:///PATH or postgresql://..."


@pytest.mark.parametrize(("given", "meant"), [
    ("/tmp/kept/backoffice.sqlite3", "sqlite:////tmp/kept/backoffice.sqlite3"),
    ("state/backoffice.sqlite3", "sqlite:///state/backoffice.sqlite3"),
])
def test_a_bare_file_path_as_store_is_answered_with_its_sqlite_url(
    given: str, meant: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`appliance fleet --store /tmp/kept/backoffice.sqlite3` said only "use sqlite:///PATH
    or postgresql://...", leaving the reader to count the slashes an absolute path needs."""
    monkeypatch.chdir(tmp_path)
    assert main(["fleet", "--store", given]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(f"use sqlite:///PATH or postgresql://...; for a SQLite file at that "
                         f"path: {meant!r}")
    assert list(tmp_path.iterdir()) == []
