"""console/throttle.py: failed logins counted per key in a sliding window, bounded."""

from __future__ import annotations

from appliance.console.throttle import LoginGuard, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_held_until_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(3, 60.0, clock=clock)
    for step in range(3):
        assert throttle.wait_s(("eve",)) == 0.0
        throttle.failed(("eve",))
        clock.now += 10.0 * (step < 2)
    assert throttle.wait_s(("eve",)) == 40.0  # failures at 1000, 1010, 1020; now 1020
    assert throttle.wait_s(("alice",)) == 0.0
    clock.now = 1059.9
    assert throttle.wait_s(("eve",)) > 0.0
    clock.now = 1060.0
    assert throttle.wait_s(("eve",)) == 0.0  # the first failure left: one more attempt
    throttle.failed(("eve",))
    assert throttle.wait_s(("eve",)) == 10.0  # until 1010's leaves


def test_a_correct_password_clears_the_user_s_failures_not_the_address_s() -> None:
    clock = Clock()
    guard = LoginGuard(2, 60.0, clock=clock)
    guard.failed("eve", "10.0.0.1")
    guard.succeeded("eve", "10.0.0.1")
    guard.failed("eve", "10.0.0.1")
    assert guard.wait_s("eve", "10.0.0.1") == 0.0  # one failure since the success
    guard.failed("eve", "10.0.0.1")
    assert guard.wait_s("eve", "10.0.0.2") == 60.0  # the name is held from anywhere


def test_a_login_of_one_s_own_does_not_clear_the_address_s_count() -> None:
    """An admitted attempt counts against its address; a right one is taken back, the
    address's other failures stay: cleared, anyone with a login could guess other users'
    passwords from one address at each name's limit, past the address's."""
    clock = Clock()
    guard = LoginGuard(2, 60.0, clock=clock)  # an address: 8
    for name in range(7):
        assert guard.admit(f"user-{name}", "10.0.0.9") == 0.0  # wrong passwords
    assert guard.admit("mallory", "10.0.0.9") == 0.0
    guard.succeeded("mallory", "10.0.0.9")  # her own password
    assert guard.admit("user-7", "10.0.0.9") == 0.0  # the 8th failure
    assert guard.admit("user-8", "10.0.0.9") == 60.0  # on main: 0.0, the 7 cleared


def test_an_address_is_held_after_four_times_the_failures_spread_over_names() -> None:
    clock = Clock()
    guard = LoginGuard(2, 60.0, clock=clock)
    for name in range(7):
        guard.failed(f"user-{name}", "10.0.0.9")
    assert guard.wait_s("someone-new", "10.0.0.9") == 0.0  # 7 of 8
    guard.failed("user-7", "10.0.0.9")
    assert guard.wait_s("someone-new", "10.0.0.9") == 60.0
    assert guard.wait_s("someone-new", "10.0.0.10") == 0.0


def test_a_spray_of_names_keeps_at_most_max_keys() -> None:
    throttle = LoginThrottle(1, 60.0, max_keys=100, clock=Clock())
    for name in range(10_000):
        throttle.failed((f"made-up-{name}",))
    assert len(throttle._failures) == 100  # noqa: SLF001 (its bound is what is tested)
    assert throttle.wait_s(("made-up-9999",)) == 60.0  # the latest kept
    assert throttle.wait_s(("made-up-0",)) == 0.0  # the longest idle forgotten


def test_a_spray_of_made_up_names_does_not_forget_a_name_that_is_held() -> None:
    """Names sprayed from many addresses (an IPv6 block, say; one failure each) push the
    longest idle key out: never one that is holding its guesser back, or a spray of max_keys
    names would clear alice's count and let five more guesses at her password through."""
    clock = Clock()
    throttle = LoginThrottle(5, 900.0, max_keys=100, clock=clock)
    for _ in range(5):
        throttle.failed(("alice",))
    for name in range(1000):
        clock.now += 0.1
        throttle.failed((f"made-up-{name}",))
    assert throttle.wait_s(("alice",)) > 0.0  # on main: 0.0, her failures forgotten
    assert len(throttle._failures) == 100  # noqa: SLF001 (its bound is what is tested)
    assert throttle.wait_s(("made-up-999",)) == 0.0  # one failure of five: not held
    clock.now += 900.0  # alice's window passed: her key holds nobody back, and goes first
    throttle.failed(("made-up-1000",))
    assert "alice" not in throttle._failures  # noqa: SLF001


def test_an_attempt_not_judged_is_taken_back_and_a_judged_one_stays() -> None:
    clock = Clock()
    guard = LoginGuard(1, 60.0, clock=clock)
    assert guard.admit("eve", "10.0.0.1") == 0.0
    guard.not_judged("eve", "10.0.0.1")  # the store failed on the way
    assert guard.admit("eve", "10.0.0.1") == 0.0  # on main: no way to take it back
    assert guard.admit("eve", "10.0.0.1") == 60.0  # the judged one counts
    guard.not_judged("nobody", "10.0.0.2")  # nothing counted: nothing to take back
    assert guard.wait_s("nobody", "10.0.0.2") == 0.0
