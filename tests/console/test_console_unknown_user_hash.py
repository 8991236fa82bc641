"""An unknown user's login is checked against a written-out argon2id hash (auth._DUMMY_HASH):
as slow as a real user's wrong password, and no slow hash spent loading the module."""

from __future__ import annotations

import runpy

import argon2
import pytest

from appliance.console import auth

REAL_PASSWORD_HASHES = True  # the console's own hasher (tests/console/conftest.py)


def test_the_unknown_users_hash_is_made_as_the_users_hashes_are() -> None:
    assert auth._DUMMY_HASH.startswith("$argon2id$")  # noqa: SLF001 - the module's own constant
    # the same parameters (time, memory, lanes, lengths): an unknown user costs what a user does
    assert not auth._HASHER.check_needs_rehash(auth._DUMMY_HASH)  # noqa: SLF001
    # argon2-cffi's defaults (RFC 9106's second recommendation), which the other console tests
    # replace with quick ones (tests/console/conftest.py)
    assert (auth._HASHER.time_cost, auth._HASHER.memory_cost, auth._HASHER.parallelism) == (  # noqa: SLF001
        3, 65536, 4)
    assert auth._HASHER.verify(auth._DUMMY_HASH, "not a password of anyone")  # noqa: SLF001
    assert auth.check_password(None, "nobody", "not a password of anyone") is None


def test_loading_the_console_s_access_code_makes_no_password_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(hasher: argon2.PasswordHasher, password: str) -> str:
        raise AssertionError("a password hash made while the module loads")

    monkeypatch.setattr(argon2.PasswordHasher, "hash", refused)
    loaded = runpy.run_path(auth.__file__)  # a fresh copy of the module; sys.modules untouched
    assert loaded["_DUMMY_HASH"] == auth._DUMMY_HASH  # noqa: SLF001
