"""Wrong passwords sent together count as they are let in: a user name is never checked more
than ``console.login_max_failures`` times a window, however many guesses arrive at once."""

from __future__ import annotations

import threading
from urllib.parse import urlencode

import pytest
from argon2 import PasswordHasher
from console_helpers import Console, post

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
    _, headers, _ = console.get("/login")
    cookie = headers["set-cookie"].split(";")[0]
    form = urlencode({"csrf": cookie.split("=", 1)[1], "user": "alice",
                      "password": "a wrong guess"}).encode()
    answers: list[int] = []

    def guess() -> None:
        status, _, _ = post(console.url + "/login", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        answers.append(status)

    guesses = [threading.Thread(target=guess) for _ in range(GUESSES)]
    for thread in guesses:
        thread.start()
    for thread in guesses:
        thread.join(60)
    limit = ConsoleConfig().login_max_failures
    assert checked[0] == limit  # was every guess sent together
    assert sorted(answers) == [303] * limit + [429] * (GUESSES - limit)
