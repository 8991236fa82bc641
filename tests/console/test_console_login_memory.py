"""Anyone can start a password check (argon2id, 64 MiB each): the console runs at most
PASSWORD_CHECKS_AT_ONCE of them at a time, however many logins arrive together; the others
wait their turn and are answered."""

from __future__ import annotations

import threading

import pytest
from argon2 import PasswordHasher
from console_helpers import Console, logins_at_once

from appliance.console.auth import PASSWORD_CHECKS_AT_ONCE

LOGINS = 3 * PASSWORD_CHECKS_AT_ONCE


def test_many_logins_at_once_check_a_few_passwords_at_a_time(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_verify = PasswordHasher.verify
    lock, crowded = threading.Lock(), threading.Event()
    inside, most = [0], [0]

    def counted_verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            if inside[0] > PASSWORD_CHECKS_AT_ONCE:
                crowded.set()
        try:
            crowded.wait(0.5)  # let more checks in, if the console lets them
            return bool(real_verify(hasher, stored, password))
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(PasswordHasher, "verify", counted_verify)
    answers = logins_at_once(console, "mallory", "wrong password!", LOGINS)
    assert most[0] <= PASSWORD_CHECKS_AT_ONCE
    assert len(answers) == LOGINS  # every login was answered (refused: wrong password)
    assert set(answers) <= {303, 429}
