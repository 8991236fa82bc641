"""Console under a slowloris flood: how many of a visitor's requests are answered while one
client keeps opening connections that send their request a byte a second, and opens a new one
as soon as one is closed (by the console's request deadline, for room, or refused 503).

Prints ONE JSON object. The console runs on a fresh SQLite store (no user: the visitor asks
for the login page, which needs none) in this process; the flood runs in another process
(asyncio), ``--clients`` connections at a time for ``--seconds``; the visitor asks for
``/login`` every 0.5 s from the third second on, one connection each, and counts the answers
by status (``error``: no answer within 5 s). ``flood``: connections the flood opened, and how
many the console closed (for room, at its deadline, or after its 503).
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


def _visitor(url: str, start_s: float, end: float, answers: collections.Counter[str]) -> None:
    time.sleep(start_s)
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
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
    args = parser.parse_args()
    print(json.dumps(run(args.clients, args.seconds)))


if __name__ == "__main__":
    main()
