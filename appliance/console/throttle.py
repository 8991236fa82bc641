"""Failed console logins, counted per user name and per client address, so that passwords
cannot be guessed at the speed of the password hash.

A user name that has failed ``console.login_max_failures`` times within
``console.login_window_s``, or an address (the request's: behind the documented reverse
proxy, the client's) that has failed ``ADDRESS_FACTOR`` times as often (several people may
share one), is refused until the oldest of those failures is that old, before any password
is checked: a refused attempt costs no hash and counts no further. An attempt let in counts as
a failure from that moment (``admit``), so guesses sent together are held as if sent one after
another: they cannot all pass before the first has failed; one the console could not judge (its
store failed on the way) is taken back (``not_judged``). A correct password clears its user
name's failures and takes back its own from its address's count; the address's other failures
stay until they leave the window: cleared too, anyone with a login of their own could clear
their address's count at will and guess every other user's password from it at the name's
limit, which the address's bound is there to stop. Someone who knows a user name can thus keep that
user out for a window at a time, never guess faster than the limit. The counts live in the
console's process (several console processes each count their own) and are bounded: at most
``max_keys`` keys, so a spray of made-up names cannot grow them without end; the longest idle
key that holds no attempt back is forgotten first, so such a spray (from many addresses) does
not clear the count of a name being guessed either.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_KEYS = 10_000
ADDRESS_FACTOR = 4


class LoginThrottle:
    """Sliding-window counts of failed logins per key; thread-safe."""

    def __init__(self, max_failures: int, window_s: float, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.max_keys = max_failures, window_s, max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, keys: tuple[str, ...]) -> float:
        """0 when an attempt for ``keys`` may go on; else how long until one may (s)."""
        now = self._clock()
        with self._lock:
            waits = [self._wait(key, now) for key in keys]
        return max(waits, default=0.0)

    def failed(self, keys: tuple[str, ...]) -> None:
        """Count a failed attempt against each of ``keys``."""
        now = self._clock()
        with self._lock:
            for key in keys:
                times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
                times.append(now)
                self._failures[key] = times  # the most recently failed last
            while len(self._failures) > self.max_keys:
                self._forget_one(now)

    def _forget_one(self, now: float) -> None:
        """Forget the longest idle key that holds no attempt back (lock held); only when every
        key does, the longest idle: a spray of made-up names, one failure each, must not clear
        the count of a name that is being guessed."""
        for key, times in self._failures.items():  # the longest idle first
            if len(times) < self.max_failures or now - times[0] >= self.window_s:
                del self._failures[key]
                return
        self._failures.popitem(last=False)

    def uncount(self, keys: tuple[str, ...]) -> None:
        """Take back the newest failure of each of ``keys`` (an attempt that was never
        judged)."""
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                if times:
                    times.pop()

    def succeeded(self, keys: tuple[str, ...]) -> None:
        """Forget the failures of ``keys`` (a correct password)."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _wait(self, key: str, now: float) -> float:
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < self.max_failures:
            return 0.0
        return self.window_s - (now - times[0])


class LoginGuard:
    """The two counts a login attempt is held against: its user name's and its address's."""

    def __init__(self, max_failures: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = LoginThrottle(max_failures, window_s, clock=clock)
        self.addresses = LoginThrottle(ADDRESS_FACTOR * max_failures, window_s, clock=clock)
        self._lock = threading.Lock()

    def admit(self, user: str, address: str) -> float:
        """0 when the attempt may be checked, counted as failed until it ``succeeded``; else
        how long until one may (s), counting nothing."""
        with self._lock:
            wait_s = self.wait_s(user, address)
            if not wait_s:
                self.failed(user, address)
            return wait_s

    def wait_s(self, user: str, address: str) -> float:
        """0 when the attempt may be checked; else how long until one may (s)."""
        return max(self.users.wait_s((user,)), self.addresses.wait_s((address,)))

    def failed(self, user: str, address: str) -> None:
        self.users.failed((user,))
        self.addresses.failed((address,))

    def not_judged(self, user: str, address: str) -> None:
        """Take back what ``admit`` counted for an attempt the console could not judge (its
        store failed on the way: no password was found wrong). Another attempt of the same
        key let in meanwhile may be the one taken back: the count is the same."""
        self.users.uncount((user,))
        self.addresses.uncount((address,))

    def succeeded(self, user: str, address: str) -> None:
        """A right password: the user's failures cleared, the attempt taken back from its
        address's count (``admit`` counted it), whose other failures stay."""
        self.users.succeeded((user,))
        self.addresses.uncount((address,))


def retry_after(wait_s: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
