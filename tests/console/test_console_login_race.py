"""Wrong passwords sent together count as they are let in: a user name is never checked more
than ``console.login_max_failures`` times a window, however many guesses arrive at once."""

from __future__ import annotations

import threading

import pytest
from argon2 import PasswordHasher
from console_helpers import Console, logins_at_once

from appliance.config import ConsoleConfig

GUESSES = 12


def test_guesses_sent_together_get_no_more_checks_than_the_limit(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_verify = PasswordHasher.verify
    checked, lock, never = [0], threading.Lock(), threading.Event()

    def counted_verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
        with lock:
            checked[0] += 1
        never.wait(1.0)  # the other guesses arrive while this one is being checked
        return bool(real_verify(hasher, stored, password))

    monkeypatch.setattr(PasswordHasher, "verify", counted_verify)
    answers = logins_at_once(console, "alice", "a wrong guess", GUESSES)
    limit = ConsoleConfig().login_max_failures
    assert checked[0] == limit  # was every guess sent together
    assert sorted(answers) == [303] * limit + [429] * (GUESSES - limit)
