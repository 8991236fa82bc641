"""Console under a slowloris flood: how many of a visitor's requests are answered while one
client keeps opening connections that send their request a byte a second, and opens a new one
as soon as one is closed (by the console's request deadline, for room, or refused 503).

Prints ONE JSON object. The console runs on a fresh SQLite store (no user: the visitor asks
for the login page, which needs none) in this process; the flood runs in another process
(asyncio), ``--clients`` connections at a time for ``--seconds``; the visitor asks for
``/login`` every 0.5 s from the third second on, one connection each, and counts the answers
by status (``error``: no answer within 5 s). ``flood``: connections the flood opened, and how
many the console closed (for room, at its deadline, or after its 503).

``--readers N`` runs the logged-in case instead: the store holds ``--results`` results, and
one user's N connections each download ``/results.csv`` reading 4 KiB every 0.5 s (never long
enough stalled to be cut off), a new download as soon as one ends, 5 s after one is refused
or cut off (a 429's Retry-After); a second user
asks for ``/fleet`` every 0.5 s from the fifth second on. ``readers``: downloads started, and
how they were answered (``refused_429``: over the user's bound of answers being sent at once).
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

FLOOD = """
import asyncio, json, sys, time
port, clients, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
opened = closed = 0
HEAD = b"GET /login HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nX-Pad: " + b"x" * 4000

async def one(end):
    global opened, closed
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        opened += 1
        try:
            for byte in HEAD:
                writer.write(bytes([byte]))
                try:
                    if await asyncio.wait_for(reader.read(1), 1.0) is not None:
                        closed += 1  # an answer or the end: the console let it go
                        break
                except asyncio.TimeoutError:
                    if time.monotonic() >= end:
                        break
        except OSError:
            closed += 1
        writer.close()

async def main():
    end = time.monotonic() + seconds
    await asyncio.gather(*(one(end) for _ in range(clients)))
    print(json.dumps({"opened": opened, "closed_by_console": closed}))

asyncio.run(main())
"""


def _visitor(url: str, start_s: float, end: float, answers: collections.Counter[str],
             headers: dict[str, str] | None = None) -> None:
    time.sleep(start_s)
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                        timeout=5) as response:
                answers[str(response.status)] += 1
        except urllib.error.HTTPError as exc:
            answers[str(exc.code)] += 1
        except OSError:
            answers["error"] += 1
        time.sleep(0.5)


def run(clients: int, seconds: float) -> dict[str, object]:
    """The flood and the visitor's answers."""
    from appliance.backoffice.store import open_store
    from appliance.config import ConsoleConfig
    from appliance.console.db import StorePool
    from appliance.console.server import ConsoleThread

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'console.sqlite3'}"
        open_store(url).close()
        settings = ConsoleConfig(port=_free_port())
        pool = StorePool(url)
        server = ConsoleThread(settings, pool)
        server.start()
        assert server.wait_started(), "console did not start"
        answers: collections.Counter[str] = collections.Counter()
        visitor = threading.Thread(target=_visitor, args=(
            f"http://127.0.0.1:{settings.port}/login", 3.0, time.monotonic() + seconds, answers))
        visitor.start()
        flood = subprocess.run([sys.executable, "-c", FLOOD, str(settings.port), str(clients),
                                str(seconds)], capture_output=True, text=True, check=True)
        visitor.join()
        server.stop()
        pool.close()
    return {"clients": clients, "seconds": seconds, "flood": json.loads(flood.stdout),
            "visitor_answers": dict(answers)}


READERS = """
import asyncio, json, socket, sys, time
port, cookie, readers, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ASK = (f"GET /results.csv HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nCookie: {cookie}\\r\\n\\r\\n").encode()
counts = {"started": 0, "answered_200": 0, "refused_429": 0, "other": 0, "cut_off": 0}

async def one(end):
    loop = asyncio.get_running_loop()
    while time.monotonic() < end:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: read slowly
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            await asyncio.sleep(0.05)
            continue
        reader, writer = await asyncio.open_connection(sock=sock)
        counts["started"] += 1
        writer.write(ASK)
        try:
            head = await asyncio.wait_for(reader.read(4096), 5)
            status = head[9:12]
            counts[{b"200": "answered_200", b"429": "refused_429"}.get(status, "other")] += 1
            while status == b"200" and time.monotonic() < end:
                await asyncio.sleep(0.5)
                if not await reader.read(4096):
                    break
        except (OSError, asyncio.TimeoutError):
            counts["cut_off"] += 1
            status = b""
        writer.close()
        if status != b"200":
            await asyncio.sleep(5)  # as a 429's Retry-After (and a 503's) asks

async def main():
    end = time.monotonic() + seconds
    await asyncio.gather(*(one(end) for _ in range(readers)))
    print(json.dumps(counts))

asyncio.run(main())
"""


def run_readers(readers: int, seconds: float, results: int) -> dict[str, object]:
    """One user's slowly read downloads and another user's answers."""
    from appliance.backoffice.schema import RESULT_READ_COLUMNS
    from appliance.backoffice.store import open_store
    from appliance.config import ConsoleConfig
    from appliance.console.auth import add_user, open_session
    from appliance.console.db import StorePool
    from appliance.console.guard import password_login
    from appliance.console.server import ConsoleThread

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'console.sqlite3'}"
        store = open_store(url)
        store.write(f"INSERT INTO results ({','.join(RESULT_READ_COLUMNS)}) VALUES "
                    f"({','.join('?' * len(RESULT_READ_COLUMNS))})",
                    [_result_row(i, RESULT_READ_COLUMNS) for i in range(results)])
        for name in ("reader", "visitor"):
            add_user(store, name, "viewer", "a long enough password")
        store.close()
        settings = ConsoleConfig(port=_free_port())
        pool = StorePool(url)
        cookies = {}
        for name in ("reader", "visitor"):
            login = password_login(pool, name, "a long enough password")
            assert login is not None
            with pool.store() as opened:
                session = open_session(opened, login, 1.0).cookie
            cookies[name] = f"appliance_session_{settings.port}={session}"
        server = ConsoleThread(settings, pool)
        server.start()
        assert server.wait_started(), "console did not start"
        answers: collections.Counter[str] = collections.Counter()
        visitor = threading.Thread(target=_visitor, args=(
            f"http://127.0.0.1:{settings.port}/fleet", 5.0, time.monotonic() + seconds, answers,
            {"Cookie": cookies["visitor"]}))
        visitor.start()
        flood = subprocess.run([sys.executable, "-c", READERS, str(settings.port),
                                cookies["reader"], str(readers), str(seconds)],
                               capture_output=True, text=True, check=True)
        visitor.join()
        server.stop()
        pool.close()
    return {"readers": readers, "seconds": seconds, "results": results,
            "reader_downloads": json.loads(flood.stdout), "visitor_answers": dict(answers)}


def _result_row(index: int, columns: tuple[str, ...]) -> tuple[object, ...]:
    """A stored result (RESULT_READ_COLUMNS order), one a minute from 2026-01-01."""
    day, minute = divmod(index, 24 * 60)
    at = (
        f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{minute // 60:02d}:{minute % 60:02d}"
        f":00.{index % 1000000:06d}Z")
    row = {"measurement_id": f"{uuid.UUID(int=index)}", "device_id": f"kiosk-{index % 4}",
           "site": "tokyo", "captured_at": at, "received_at": at, "placed_at": at,
           "software_version": "0.1.0", "quality_verdict": "ok", "label": "fine",
           "payload": "{}", "not_validated": ""}
    return tuple(row.get(c, 1.0 if c not in ("model_name", "model_version", "subject_id",
                                             "age_band") else None) for c in columns)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    """Parse the arguments, run, print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--readers", type=int, default=0,
                        help="the logged-in case: one user's slowly read downloads")
    parser.add_argument("--results", type=int, default=30_000)
    args = parser.parse_args()
    if args.readers:
        print(json.dumps(run_readers(args.readers, args.seconds, args.results)))
    else:
        print(json.dumps(run(args.clients, args.seconds)))


if __name__ == "__main__":
    main()
