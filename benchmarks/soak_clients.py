"""The soak's visitors: an operator on the back-office console, a browser-like client on the
kiosk screen, and now and then a real browser (chromium under Playwright) on both.

Each runs on a thread of its own until its stop event is set, and counts what it was answered
(status codes by path, failures by kind), so the soak can say whether a server kept answering
for the whole run while its memory, descriptors and threads were read from outside.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import urlencode

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CONSOLE_PAGES = ("/fleet", "/results", "/results?grade=fine", "/cohort", "/dead-letters",
                 "/account", "/tokens")
CONSOLE_API = ("/api/v1/fleet", "/api/v1/results?limit=50", "/api/v1/cohort")
SCREEN_STATIC = ("/", "/kiosk.js", "/kiosk.css", "/messages.json", "/icon.svg")
TIMEOUT_S = 30.0


class Tally:
    """Answers counted by path and status (``failed:KIND`` where none came), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.answers: Counter[str] = Counter()
        self.visits = 0

    def count(self, path: str, status: int | str) -> None:
        where = path.split("?", 1)[0]
        if where.startswith("/results/"):
            where = "/results/{measurement_id}"
        key = f"{where} {status}"
        with self._lock:
            self.answers[key] += 1

    def figures(self) -> dict[str, Any]:
        with self._lock:
            answers = dict(sorted(self.answers.items()))
        bad = {key: n for key, n in answers.items()
               if not key.endswith((" 200", " 303"))}
        return {"visits": self.visits, "answers": answers, "not_ok": bad,
                "not_ok_total": sum(bad.values())}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects answered as they are (the login's 303 is counted, not followed)."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class Operator(threading.Thread):
    """An operator on the console: every ``every_s`` logs in (the form, its CSRF cookie),
    reads every page, one result, the CSV export and the API with a bearer token, and logs
    out again (the page's CSRF token)."""

    def __init__(self, base: str, user: str, password: str, *, token: str, every_s: float,
                 stop: threading.Event) -> None:
        super().__init__(name="soak-operator", daemon=True)
        self.base, self.user, self.password, self.token = base, user, password, token
        self.every_s, self.stop = every_s, stop
        self.tally = Tally()
        self.csv_bytes_max = 0

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self.visit()
            except (OSError, ValueError) as exc:  # a refused connection, a page not as expected
                self.tally.count("visit", f"failed:{type(exc).__name__}")
            self.tally.visits += 1

    def _opener(self) -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
        jar = http.cookiejar.CookieJar()
        return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                           _NoRedirect()), jar

    def _call(self, opener: urllib.request.OpenerDirector, path: str,
              data: dict[str, str] | None = None, headers: dict[str, str] | None = None
              ) -> bytes:
        request = urllib.request.Request(self.base + path, headers=headers or {},
                                         data=urlencode(data).encode() if data else None)
        try:
            with opener.open(request, timeout=TIMEOUT_S) as answer:
                body: bytes = answer.read()
                self.tally.count(path, answer.status)
                return body
        except urllib.error.HTTPError as exc:
            exc.read()
            self.tally.count(path, exc.code)
            exc.close()
            return b""

    def visit(self) -> None:
        opener, _jar = self._opener()
        form = self._call(opener, "/login").decode()
        found = CSRF.search(form)
        if found is None:
            raise ValueError("the login page has no csrf field")
        self._call(opener, "/login", {"csrf": found.group(1), "user": self.user,
                                      "password": self.password})
        page = ""
        for path in CONSOLE_PAGES:
            page = self._call(opener, path).decode(errors="replace") or page
        newest = self._newest()
        if newest:
            self._call(opener, f"/results/{newest}")
        self.csv_bytes_max = max(self.csv_bytes_max, len(self._call(opener, "/results.csv")))
        found = CSRF.search(page)
        if found is not None:
            self._call(opener, "/logout", {"csrf": found.group(1)})

    def _newest(self) -> str | None:
        bearer = {"Authorization": f"Bearer {self.token}"}
        opener = urllib.request.build_opener()
        newest = None
        for path in CONSOLE_API:
            body = self._call(opener, path, headers=bearer)
            if path.startswith("/api/v1/results") and body:
                items = json.loads(body).get("results") or []
                newest = items[0].get("measurement_id") if items else None
        return newest


class ScreenClient(threading.Thread):
    """What the kiosk screen's page does, without a browser: its files once a visit, the
    state every second, the overlay picture when the state changes, the events stream held
    open and opened again every ``events_s``, and the preview read for a few seconds now and
    then."""

    def __init__(self, base: str, stop: threading.Event, events_s: float = 20.0,
                 preview_every_s: float = 60.0) -> None:
        super().__init__(name="soak-screen", daemon=True)
        self.base, self.stop = base, stop
        self.events_s, self.preview_every_s = events_s, preview_every_s
        self.tally = Tally()
        self.events_read = 0
        self.preview_bytes = 0

    def run(self) -> None:
        streams = threading.Thread(target=self._streams, name="soak-screen-streams",
                                   daemon=True)
        streams.start()
        version = None
        while not self.stop.is_set():
            for path in SCREEN_STATIC:
                self._get(path)
            self.tally.visits += 1
            for _ in range(30):
                if self.stop.wait(1.0):
                    break
                body = self._get("/state")
                state = json.loads(body) if body else {}
                if state.get("version") != version:
                    version = state.get("version")
                    self._get("/overlay.png")
        streams.join(TIMEOUT_S)

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(self.base + path, timeout=TIMEOUT_S) as answer:
                body: bytes = answer.read()
                self.tally.count(path, answer.status)
                return body
        except urllib.error.HTTPError as exc:
            self.tally.count(path, exc.code)
            exc.close()
        except (OSError, ValueError) as exc:
            self.tally.count(path, f"failed:{type(exc).__name__}")
        return b""

    def _streams(self) -> None:
        next_preview = time.monotonic() + self.preview_every_s
        while not self.stop.is_set():
            self._read_stream("/events", self.events_s, count_events=True)
            if time.monotonic() >= next_preview:
                self._read_stream("/preview.mjpg", 3.0, count_events=False)
                next_preview = time.monotonic() + self.preview_every_s

    def _read_stream(self, path: str, seconds: float, *, count_events: bool) -> None:
        """Read a stream for ``seconds`` (or until the stop), then drop the connection."""
        deadline = time.monotonic() + seconds
        try:
            with urllib.request.urlopen(self.base + path, timeout=5.0) as answer:
                self.tally.count(path, answer.status)
                while time.monotonic() < deadline and not self.stop.is_set():
                    chunk = answer.fp.read1(65536) if answer.fp else b""
                    if not chunk:
                        break
                    if count_events:
                        self.events_read += chunk.count(b"data: ")
                    else:
                        self.preview_bytes += len(chunk)
        except TimeoutError:
            return  # a quiet stream: no change within the read's timeout
        except urllib.error.HTTPError as exc:
            self.tally.count(path, exc.code)
            exc.close()
        except (OSError, ValueError) as exc:
            self.tally.count(path, f"failed:{type(exc).__name__}")
            self.stop.wait(1.0)


class BrowserVisits(threading.Thread):
    """Every ``every_s`` a real chromium (Playwright): the console's login, fleet, results and
    cohort pages and its logout; the kiosk screen's page for a few seconds. Each visit a fresh
    browser, as a person opening one in the morning."""

    def __init__(self, console: str | None, screen: str | None, user: str, password: str, *,
                 every_s: float, stop: threading.Event) -> None:
        super().__init__(name="soak-browser", daemon=True)
        self.console, self.screen, self.user, self.password = console, screen, user, password
        self.every_s, self.stop = every_s, stop
        self.tally = Tally()

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self.visit()
            except Exception as exc:  # a browser's failure is a figure, not the soak's end
                self.tally.count("browser", f"failed:{type(exc).__name__}:{str(exc)[:80]}")
            self.tally.visits += 1

    def visit(self) -> None:
        from appliance.browser import chromium

        with chromium() as browser:
            page = browser.new_page()
            if self.console:
                self._console(page, self.console)
            if self.screen:
                answer = page.goto(self.screen + "/", timeout=30_000)
                self.tally.count("screen /", answer.status if answer else "none")
                page.wait_for_timeout(5_000)
                shown = page.evaluate("document.body.innerText.length")
                self.tally.count("screen text", "200" if shown else "empty")
            page.close()

    def _console(self, page: Any, console: str) -> None:
        page.goto(console + "/login", timeout=30_000)
        page.fill("input[name=user]", self.user)
        page.fill("input[name=password]", self.password)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        self.tally.count("console login", "200" if "/login" not in page.url else "refused")
        for path in ("/fleet", "/results", "/cohort"):
            answer = page.goto(console + path, timeout=30_000)
            self.tally.count(f"console {path}", answer.status if answer else "none")
        page.click("form[action='/logout'] button")
        page.wait_for_load_state()
        self.tally.count("console logout", "200" if "/login" in page.url else "stayed")
