"""Answers in flight per user: a bound on the server's places one logged-in user holds.

Each connection being answered holds one of the server's places (console/server.py: PLACES)
until its answer is sent, however slowly its client reads: a client that reads a large answer
(the CSV export, the results API, a picture) a few bytes at a time, reading often enough never
to stall, held its place for as long as it liked, and one logged-in user opening PLACES such
downloads refused every other visitor 503. So a user has at most
``console.answers_in_flight_per_user`` answers being sent at once, whatever its sessions and
tokens; one more request is refused 429 with Retry-After before anything runs (UserBusyError).
An answer counts from its login until its end is sent (``FinishedAnswers``), which the server
does only once the client has read all but the connection buffer's low-water mark: each answer
leaves the app streamed, its end a message of its own (app._limits, a Starlette
BaseHTTPMiddleware, streams even a page handed to it whole), and uvicorn waits for a full
buffer to drain before it sends the next message.
"""

from __future__ import annotations

import threading
from collections import Counter

from starlette.types import ASGIApp, Receive, Scope, Send

from appliance.backoffice.accounts import Login

# set in a request's ASGI scope by FinishedAnswers: the users the answer holds a place of
ANSWERS_HELD = "appliance.answers_held"
RETRY_AFTER_S = 5


class UserBusyError(Exception):
    """A request of a user that already has its bound of answers being sent: 429."""

    def __init__(self, login: Login, per_user: int) -> None:
        super().__init__(f"user {login.name!r} has {per_user} answers being sent at once "
                         "(a download read slowly holds one until its end); try again once one "
                         "has finished")
        self.login = login  # its refusal page's header, without reading the session again


class AnswersInFlight:
    """How many answers each user has being sent, at most ``per_user`` (the config's
    ``console.answers_in_flight_per_user``); requests run on worker threads."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()

    def take(self, name: str) -> bool:
        """Count one more answer of ``name``; False (not counted) when it has ``per_user``."""
        with self._lock:
            if self._held[name] >= self.per_user:
                return False
            self._held[name] += 1
            return True

    def give_back(self, name: str) -> None:
        """One answer of ``name`` is sent."""
        with self._lock:
            self._held[name] -= 1
            if self._held[name] <= 0:
                del self._held[name]


def hold_answer(scope: Scope, answers: AnswersInFlight, login: Login) -> None:
    """Count the request's answer as one of ``login``'s until FinishedAnswers sees it sent
    (once, however many logins the request checks); UserBusyError when it has too many."""
    held = scope.get(ANSWERS_HELD)
    if held is None or login.name in held:
        return
    if not answers.take(login.name):
        raise UserBusyError(login, answers.per_user)
    held.append(login.name)


class FinishedAnswers:
    """ASGI middleware that gives a request's places (hold_answer) back when its answer has
    been sent, or has failed."""

    def __init__(self, app: ASGIApp, answers: AnswersInFlight) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request; give its places back when it ends."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[str] = []
        scope[ANSWERS_HELD] = held
        try:
            await self.app(scope, receive, send)
        finally:
            for name in held:
                self.answers.give_back(name)
