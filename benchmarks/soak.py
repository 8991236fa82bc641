"""Soak: the kiosk daemon and the back office run for a while; do they stay bounded?

Prints ONE JSON object. Starts, as child processes, a private mosquitto on a free port, a back
office (`appliance backoffice`) on a throw-away SQLite store and the kiosk daemon (`appliance
edge`) on the synthetic microscope, its intervals at the fastest the config allows (status every
1 s, one steady frame a measurement, one frame to re-arm, resends after 1 s) and the camera at
`--fps` (16 frames a simulated customer: `--fps 16` is about a result a second, and a core).
Every `--sample-s` it reads each process's resident memory, open file descriptors, threads and
CPU time (/proc/PID), the kiosk's and the worker's metrics, the outbox, store, broker and log
sizes on disk, and the broker's clients ($SYS). During the run it kills the back office with
SIGKILL and starts it again (at 30 % of the run), and restarts the broker (at 50 %). At the end
it waits for the outbox to drain, stops both daemons in order, and accounts for every result
the kiosk's log says it committed: stored, kept as a dead letter, or still in its outbox (none
in neither: `results_lost` 0). Figures: the slope of RSS, fds and threads per 1,000 results
after the warm-up (the kiosk's from `--warmup` of the run on; the worker's and the broker's
over their lives after the kill and the restart, from `--warmup` after them), the largest sizes,
and the store file's bytes a result.
Options: `--customers N` shows N customers over and over (a result then costs the measurement
only, for more results an hour); `--clock-jump-s S` moves the kiosk's wall clock by S at 60 %
of the run and back at 80 % (no root: its Python's clocks, via sitecustomize); `--full-disk-mib
M` (root) puts the kiosk's state folder on a tmpfs of M MiB, filled at 70 % for 20 s.
Several kiosks, the console and the screen: `--kiosks N` runs N kiosk daemons (each its own
device id, state folder, camera seed and metrics port; the first is never killed, for its
slopes) and `--kiosk-kill-every-s S` kills the others in turn with SIGKILL and starts them again;
every result any kiosk committed is accounted for, and `duplicates_stored` counts rows beyond
one a measurement id. `--console` runs `appliance console` on the store with an operator on it
(benchmarks/soak_clients.py: login, every page, one result, the CSV export, the API, logout);
`--screen` serves the first kiosk's screen to a browser-like client; `--browser-every-s S` has
a real chromium visit both. Every process's sockets (TCP by state, to PostgreSQL) are read
with its memory, and `lives` gives each process's figures over its last life (its slope an
hour), so a killed kiosk and the console are read like the rest.
Usage: nice .venv/bin/python benchmarks/soak.py [--minutes 10] [--fps 16] [--sample-s 5]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KILL_AT = 0.3  # fraction of the run: the back office killed with SIGKILL, then started again
BROKER_RESTART_AT = 0.5  # fraction of the run: the broker stopped (SIGTERM) and started again
CLOCK_JUMP_AT, CLOCK_BACK_AT = 0.6, 0.8  # fractions of the run: the kiosk's clock moved, restored
FULL_DISK_AT, FULL_DISK_S = 0.7, 20.0  # the kiosk's disk filled then, for so long
OUTAGE_S = 3.0  # how long the broker and the killed back office stay away
DRAIN_S = 120.0  # the most the end waits for the outbox to drain
MAX_KIOSKS = 8
CONSOLE_USER = "soak"
CONSOLE_PASSWORD = "soak operator password"  # a throw-away store's, never a real one


def _positive(kind: type, text: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _assignment(text: str) -> tuple[str, str]:
    """KEY=VALUE as (KEY, VALUE); KEY a name an environment takes."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    return key, value


def command_line() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=lambda t: _positive(float, t), default=10.0,
                        help="how long the kiosk measures (default 10; the end's drain extra)")
    parser.add_argument("--fps", type=lambda t: _positive(float, t), default=16.0,
                        help="the synthetic camera's frame rate (default 16: a customer a "
                        "second; lower it on a shared machine)")
    parser.add_argument("--sample-s", type=lambda t: _positive(float, t), default=5.0,
                        help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=lambda t: _positive(float, t), default=0.2,
                        help="fraction of the run left out of the slopes (default 0.2)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the logs, outbox and store here (default: a temp folder)")
    parser.add_argument("--pg-url", default=None,
                        help="the store on PostgreSQL instead: a schema of its own (made, and "
                        "dropped at the end) in this database, e.g. "
                        "postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--customers", type=lambda t: _positive(int, t), default=None,
                        help="the synthetic camera shows this many customers over and over, "
                        "each drawn once (a result then costs the measurement only; default: "
                        "a new customer each time, as the daemon's camera does)")
    parser.add_argument("--tracemalloc-s", type=lambda t: _positive(float, t), default=None,
                        help="trace the kiosk's Python allocations (tracemalloc, 4 frames, "
                        "from this long after its start; slower) and snapshot them this often "
                        "after that, each after a full collection; the figures then name the "
                        "lines whose memory grew most from the first snapshot after the "
                        "warm-up to the last")
    parser.add_argument("--clock-jump-s", type=float, default=0.0,
                        help="move the kiosk's wall clock by this many seconds (negative: "
                        "back) at 60 %% of the run and back again at 80 %% (its process only: "
                        "time.time and the payloads' clock, read from a file; no root)")
    parser.add_argument("--full-disk-mib", type=lambda t: _positive(int, t), default=None,
                        help="root only: the kiosk's state folder on a tmpfs of this many MiB, "
                        "filled at 70 %% of the run and freed 20 s later")
    parser.add_argument("--kiosk-env", action="append", type=_assignment, default=[],
                        metavar="KEY=VALUE",
                        help="put KEY=VALUE in the kiosk's environment (repeatable; an empty "
                        "VALUE takes KEY out), e.g. GLIBC_TUNABLES=glibc.malloc.hugetlb=1 as "
                        "deploy/appliance-edge.service sets it")
    parser.add_argument("--samples-out", type=Path, default=None,
                        help="also write every sample as JSON lines to this file")
    parser.add_argument("--kiosks", type=lambda t: _positive(int, t), default=1,
                        help="this many kiosk daemons, each its own device id, state folder, "
                        "camera seed and metrics port (default 1; at most 8)")
    parser.add_argument("--kiosk-kill-every-s", type=lambda t: _positive(float, t),
                        default=None,
                        help="with --kiosks 2 or more: this often one of the kiosks after the "
                        "first, in turn, is killed with SIGKILL and started again (the first "
                        "runs throughout, for its slopes)")
    parser.add_argument("--console", action="store_true",
                        help="also run the console on the store, an operator on it (login, "
                        "every page, one result, the CSV export, the API, logout) every "
                        "--console-every-s")
    parser.add_argument("--console-every-s", type=lambda t: _positive(float, t), default=5.0,
                        help="seconds between the operator's visits (default 5)")
    parser.add_argument("--screen", action="store_true",
                        help="the first kiosk serves its screen, read by a browser-like client "
                        "(its files, the state every second, the overlay, the events stream, "
                        "the preview now and then)")
    parser.add_argument("--browser-every-s", type=lambda t: _positive(float, t), default=None,
                        help="with --console or --screen: a real chromium (Playwright) visits "
                        "them this often")
    parser.add_argument("--pg-schema", default=None,
                        help="with --pg-url: the schema's name (default soak_PID)")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    command_line().parse_args()

import yaml
from paho.mqtt import client as mqtt
from soak_clients import BrowserVisits, Operator, ScreenClient

from appliance.transport.broker import PrivateBroker, free_port

PROCESSES = ("edge", "backoffice", "broker")
# Put first on the kiosk's PYTHONPATH as sitecustomize, read before the daemon imports anything.
# With SOAK_CLOCK_OFFSET_FILE: the kiosk's clock, moved without root. time.time, time.time_ns
# and the payloads' utc_now (the capture time, the status's `at`, the outbox's ages, the
# measurement ids) follow an offset read from that file every 0.2 s; the monotonic and boot
# clocks do not move, as on a kiosk whose date is set by hand or by NTP. With SOAK_CUSTOMERS=N:
# the synthetic camera shows N customers over and over, each drawn once, so a result costs the
# measurement only (the skin generator draws a new customer in 0.3-0.7 CPU-s).
KIOSK_SITECUSTOMIZE = """
import functools, os, threading, time
from datetime import UTC, datetime

if os.environ.get("SOAK_CLOCK_OFFSET_FILE"):
    _file = os.environ["SOAK_CLOCK_OFFSET_FILE"]
    _offset = [0.0]
    _time, _time_ns, _sleep = time.time, time.time_ns, time.sleep

    def _follow():
        while True:
            try:
                with open(_file) as f:
                    _offset[0] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
            _sleep(0.2)

    time.time = lambda: _time() + _offset[0]
    time.time_ns = lambda: _time_ns() + int(_offset[0] * 1e9)
    threading.Thread(target=_follow, name="soak-clock", daemon=True).start()
    import appliance.transport.payloads as _payloads

    _payloads.utc_now = lambda: datetime.fromtimestamp(time.time(), UTC)

if os.environ.get("SOAK_TRACEMALLOC_DIR"):
    import gc, tracemalloc

    _folder, _every_s = os.environ["SOAK_TRACEMALLOC_DIR"], float(os.environ["SOAK_TRACEMALLOC_S"])

    def _dump():
        time.sleep(_every_s)  # started late: drawing a customer under it is slower
        tracemalloc.start(4)
        count = 0
        while True:
            time.sleep(_every_s)
            count += 1
            path = os.path.join(_folder, f"snapshot-{count:04d}")
            # a full collection first: it frees cyclic garbage and empties CPython's free
            # lists (up to 2,000 tuples of each length), whose blocks stay traced at the line
            # that first allocated them (the 16-name tuple of SkinFeatures(**picked))
            gc.collect()
            tracemalloc.take_snapshot().dump(path + ".part")
            os.replace(path + ".part", path)

    threading.Thread(target=_dump, name="soak-tracemalloc", daemon=True).start()

if os.environ.get("SOAK_CUSTOMERS"):
    import appliance.synthetic.camera as _camera

    _customers = int(os.environ["SOAK_CUSTOMERS"])
    _drawn = functools.lru_cache(maxsize=_customers)(_camera._generated.__wrapped__)
    _camera._generated = lambda seed, index, preset: _drawn(seed, index % _customers, preset)
"""


def proc_figures(pid: int) -> dict[str, float] | None:
    """RSS (MiB), fds, threads and CPU seconds of a live process; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    ticks = os.sysconf("SC_CLK_TCK")
    after_name = stat.rsplit(")", 1)[1].split()
    return {
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 2),
        "fds": fds,
        "threads": int(fields["Threads"].strip()),
        "cpu_s": round((int(after_name[11]) + int(after_name[12])) / ticks, 2),
        **rollup_figures(pid),
    }


def rollup_figures(pid: int) -> dict[str, float]:
    """Anonymous memory and the part of it on transparent huge pages (MiB), from
    /proc/PID/smaps_rollup ({} where it cannot be read)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    kib = {name: int(rest.split()[0]) for name, rest in
           (line.split(":", 1) for line in text.splitlines()[1:] if ":" in line)}
    return {"anon_mib": round(kib.get("Anonymous", 0) / 1024, 2),
            "anon_huge_mib": round(kib.get("AnonHugePages", 0) / 1024, 2)}


ARENA_ALIGN = 64 * 1024 * 1024  # glibc's thread arenas live in heaps mmapped at 64 MiB bounds
LIBRARY_GROUPS = (("onnxruntime", "ONNX Runtime"), ("opencv", "OpenCV"), ("cv2", "OpenCV"),
                  ("numpy", "NumPy"), ("scipy", "SciPy"), ("openblas", "NumPy"),
                  ("skimage", "scikit-image"), ("pydantic", "pydantic"))


def smaps_breakdown(text: str) -> dict[str, dict[str, float]]:
    """/proc/PID/smaps grouped by what holds the memory: RSS and AnonHugePages (MiB) and the
    mappings of each group. glibc's thread arenas are heaps mmapped at 64 MiB bounds, 64 MiB
    each: an anonymous mapping within 64 MiB of such a start belongs to one (NumPy's madvise
    of a large array splits a heap into several mappings); [heap] is the main arena; other
    anonymous mappings are Python's object arenas, thread stacks and large mmaps; files by
    their library."""
    mappings: list[tuple[int, str, dict[str, int]]] = []
    for line in text.splitlines():
        head = line.split()
        if head and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            mappings.append((int(head[0].split("-")[0], 16),
                             head[5] if len(head) > 5 else "", {}))
        elif head and head[0] in ("Rss:", "AnonHugePages:") and mappings:
            mappings[-1][2][head[0]] = int(head[1])
    heaps = {start for start, path, _ in mappings if not path and start % ARENA_ALIGN == 0}
    groups: dict[str, dict[str, float]] = {}
    for start, path, kib in mappings:
        group = _mapping_group(start - start % ARENA_ALIGN in heaps, path)
        entry = groups.setdefault(group, {"rss_mib": 0.0, "anon_huge_mib": 0.0,
                                          "mappings": 0})
        entry["mappings"] += 1
        entry["rss_mib"] += kib.get("Rss:", 0) / 1024
        entry["anon_huge_mib"] += kib.get("AnonHugePages:", 0) / 1024
    return {name: {k: round(v, 2) for k, v in entry.items()}
            for name, entry in sorted(groups.items(), key=lambda item: -item[1]["rss_mib"])}


def _mapping_group(in_heap: bool, path: str) -> str:
    if not path:
        return "malloc thread arenas" if in_heap else "other anonymous"
    if path.startswith("["):
        return "main arena [heap]" if path == "[heap]" else path
    within = path.rsplit("site-packages/", 1)[-1].lower()  # a package's path, else the file's
    for needle, name in LIBRARY_GROUPS:
        if needle in within:
            return name
    if os.path.basename(path).startswith(("python3", "libpython")):
        return "Python"
    return "other files"


TCP_STATES = {"01": "established", "0A": "listen", "08": "close_wait", "06": "time_wait"}


def tcp_table() -> dict[str, tuple[int, int, str]]:
    """Every TCP socket of this host by inode: local port, remote port, state (/proc/net)."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                local, remote = fields[1], fields[2]
                table[fields[9]] = (int(local.rsplit(":", 1)[1], 16),
                                    int(remote.rsplit(":", 1)[1], 16),
                                    TCP_STATES.get(fields[3], fields[3]))
    return table


def socket_figures(pid: int, table: dict[str, tuple[int, int, str]],
                   pg_port: int = 5432) -> dict[str, int]:
    """A process's sockets: all of them, and its TCP ones by state and to PostgreSQL."""
    figures = {"sockets": 0, "tcp_established": 0, "tcp_listen": 0, "tcp_close_wait": 0,
               "pg_connections": 0}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return figures
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if not target.startswith("socket:["):
            continue
        figures["sockets"] += 1
        entry = table.get(target[8:-1])
        if entry is None:
            continue
        _local, remote, state = entry
        if f"tcp_{state}" in figures:
            figures[f"tcp_{state}"] += 1
        if remote == pg_port and state == "established":
            figures["pg_connections"] += 1
    return figures


def folder_bytes(folder: Path) -> tuple[int, int]:
    """Bytes and files under ``folder`` (0, 0 where it is not there)."""
    total = files = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except FileNotFoundError:
                continue
    return total, files


def file_bytes(path: Path) -> int:
    """Bytes of a file and its SQLite WAL and shared-memory files, where there."""
    total = 0
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            total += candidate.stat().st_size
        except FileNotFoundError:
            continue
    return total


def scrape(port: int) -> dict[str, float]:
    """A Prometheus text page as name -> value ({} where it cannot be read)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and " " in line:
            name, value = line.rsplit(" ", 1)
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return values


def scrape_status(url: str) -> int | None:
    """The status a GET of ``url`` is answered with (None where none came)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


class Visitors:
    """The console's operator, the screen's client and the browser's visits, where asked."""

    def __init__(self, soak: Soak, arguments: argparse.Namespace) -> None:
        self.soak, self.arguments = soak, arguments
        self.stopping = threading.Event()
        self.threads: dict[str, Any] = {}

    def start(self) -> None:
        soak, arguments = self.soak, self.arguments
        console = f"http://127.0.0.1:{soak.console_port}" if soak.console_port else None
        screen = f"http://127.0.0.1:{soak.screen_port}" if soak.screen_port else None
        if console:
            self.threads["operator"] = Operator(console, CONSOLE_USER, CONSOLE_PASSWORD,
                                                token=soak.console_token,
                                                every_s=arguments.console_every_s,
                                                stop=self.stopping)
        if screen:
            self.threads["screen"] = ScreenClient(screen, self.stopping)
        if arguments.browser_every_s and (console or screen):
            self.threads["browser"] = BrowserVisits(console, screen, CONSOLE_USER,
                                                    CONSOLE_PASSWORD,
                                                    every_s=arguments.browser_every_s,
                                                    stop=self.stopping)
        for thread in self.threads.values():
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads.values():
            thread.join(60)

    def figures(self) -> dict[str, Any]:
        figures = {name: thread.tally.figures() for name, thread in self.threads.items()}
        if "operator" in self.threads:
            figures["operator"]["csv_bytes_max"] = self.threads["operator"].csv_bytes_max
        if "screen" in self.threads:
            figures["screen"] |= {"events_read": self.threads["screen"].events_read,
                                  "preview_bytes": self.threads["screen"].preview_bytes}
        return figures


def table_counts(store: Path) -> dict[str, int]:
    """Rows in each table of the SQLite store, read-only ({} where it cannot be read now)."""
    if not store.exists():
        return {}
    try:
        connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=2)
        try:
            names = [row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                    for name in names}
        finally:
            connection.close()
    except sqlite3.Error:
        return {}


class PgStore:
    """The back office's store in a schema of its own on a PostgreSQL server (made here,
    dropped at the end): its tables' rows, its bytes (tables, indexes and TOAST) and the
    connections to its database."""

    def __init__(self, url: str, schema: str) -> None:
        import psycopg

        self.url, self.schema = url, schema
        self._psycopg = psycopg
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        joiner = "&" if "?" in url else "?"
        self.store_url = f"{url}{joiner}options=-csearch_path%3D{schema}"

    def _rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        try:
            with self._psycopg.connect(self.url, autocommit=True, connect_timeout=5) as c:
                return list(c.execute(sql, params).fetchall())
        except self._psycopg.Error:
            return []

    def counts(self) -> dict[str, int]:
        names = [row[0] for row in self._rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            self.schema)]
        return {name: int(self._rows(f'SELECT count(*) FROM "{self.schema}"."{name}"')[0][0])
                for name in names}

    def bytes(self) -> int:
        rows = self._rows(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN "
            "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            self.schema)
        return int(rows[0][0]) if rows else 0

    def connections(self) -> int | None:
        rows = self._rows("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND pid <> pg_backend_pid()")
        return int(rows[0][0]) if rows else None

    def ids(self, sql: str) -> list[Any]:
        return [row[0] for row in self._rows(sql.replace("FROM ", f'FROM "{self.schema}".'))]

    def drop(self) -> None:
        self._rows(f'DROP SCHEMA "{self.schema}" CASCADE')


class SysWatcher:
    """The broker's $SYS figures (clients, subscriptions, stored messages), kept up to date
    by a client that reconnects by itself across the broker's restart."""

    def __init__(self, port: int) -> None:
        self.values: dict[str, str] = {}
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-sys",
                                   clean_session=True)
        self._client.on_connect = lambda c, *_: c.subscribe("$SYS/broker/#")
        self._client.on_message = self._keep
        self._client.reconnect_delay_set(0.2, 1)
        self._client.connect_async("127.0.0.1", port, keepalive=10)
        self._client.loop_start()

    def _keep(self, _client: Any, _userdata: Any, message: Any) -> None:
        self.values[message.topic.removeprefix("$SYS/broker/")] = message.payload.decode(
            errors="replace")

    def figure(self, name: str) -> int | None:
        try:
            return int(float(self.values[name]))
        except (KeyError, ValueError):
            return None

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Soak:
    """The three processes, their configs and their folders."""

    def __init__(self, workdir: Path, fps: float, *, shifted_clock: bool = False,
                 customers: int | None = None, pg_url: str | None = None,
                 tracemalloc_s: float | None = None,
                 extra_env: list[tuple[str, str]] | None = None, kiosks: int = 1,
                 console: bool = False, screen: bool = False,
                 pg_schema: str | None = None) -> None:
        self.workdir = workdir
        self.pg = PgStore(pg_url, pg_schema or f"soak_{os.getpid()}") if pg_url else None
        self.customize = workdir / "kiosk-python"
        self.customize.mkdir(parents=True, exist_ok=True)
        (self.customize / "sitecustomize.py").write_text(KIOSK_SITECUSTOMIZE)
        self.kiosk_env: dict[str, str] = {}
        self.extra_env = dict(extra_env or [])  # --kiosk-env, last word on the environment
        self.clock_file: Path | None = None
        if shifted_clock:
            self.clock_file = workdir / "kiosk-python" / "clock-offset"
            self.clock_file.write_text("0")
            self.kiosk_env["SOAK_CLOCK_OFFSET_FILE"] = str(self.clock_file)
        if customers:
            self.kiosk_env["SOAK_CUSTOMERS"] = str(customers)
        self.snapshots = workdir / "tracemalloc"
        if tracemalloc_s:
            self.snapshots.mkdir(parents=True, exist_ok=True)
            self.kiosk_env |= {"SOAK_TRACEMALLOC_DIR": str(self.snapshots),
                               "SOAK_TRACEMALLOC_S": str(tracemalloc_s)}
        self.broker = PrivateBroker(workdir=workdir / "broker")
        self.prefix = f"soak{os.getpid()}"
        # the kiosks: "edge" (the first, never killed), "edge2", "edge3", ...
        self.kiosks = ["edge", *(f"edge{n}" for n in range(2, kiosks + 1))]
        self.kiosk_metrics = {name: free_port() for name in self.kiosks}
        self.kiosk_state = {name: workdir / name / "state" for name in self.kiosks}
        self.edge_metrics = self.kiosk_metrics["edge"]
        self.backoffice_metrics = free_port()
        self.screen_port = free_port() if screen else None
        self.console_port = free_port() if console else None
        self.store = workdir / "backoffice" / "store.sqlite3"
        self.edge_state = self.kiosk_state["edge"]
        self.outbox = self.edge_state / "outbox.sqlite3"
        self.configs = {name: self._write(name, self._edge_config(fps, n))
                        for n, name in enumerate(self.kiosks)}
        self.edge_config = self.configs["edge"]
        self.backoffice_config = self._write("backoffice", self._backoffice_config())
        self.configs["backoffice"] = self.backoffice_config
        if console:
            self.configs["console"] = self._write("console", self._backoffice_config() | {
                "console": {"port": self.console_port}})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = dict.fromkeys(self.configs, 0)

    def start_all(self) -> None:
        """The back office, then the kiosks, then the console (its user and token made)."""
        self.start("backoffice")
        time.sleep(2.0)  # its subscription first: the kiosk's first results find it
        for kiosk in self.kiosks:
            self.start(kiosk)
        if self.console_port:
            self.start_console()

    def check_alive(self) -> None:
        """Raise when a daemon or server has ended on its own."""
        for name in self.names():
            if name != "broker" and self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited on its own with "
                                   f"{self.processes[name].returncode}: see "
                                   f"{self.workdir / name / (name + '.log')}")

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM the kiosks, the console, then the back office; their exit codes."""
        exits = {"kiosk_exit": self.stop("edge")}
        for kiosk in self.kiosks[1:]:
            exits[f"{kiosk}_exit"] = self.stop(kiosk)
        if self.console_port:
            exits["console_exit"] = self.stop("console")
        time.sleep(2.0)  # the worker stores what the kiosk's last moments sent
        exits["backoffice_exit"] = self.stop("backoffice")
        return exits

    def start_console(self) -> None:
        """A console user and an API token on the store, then the console, answering."""
        folder = self.workdir / "console"
        (folder / "password").write_text(CONSOLE_PASSWORD)
        base = [sys.executable, "-m", "appliance", "console", "--config",
                str(self.configs["console"])]
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("APPLIANCE__")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        subprocess.run([*base, "user", "add", CONSOLE_USER, "--role", "operator",
                        "--password-file", str(folder / "password")], check=True, env=env,
                       capture_output=True, cwd=folder)
        made = subprocess.run([*base, "token", "create", CONSOLE_USER], check=True, env=env,
                              capture_output=True, text=True, cwd=folder)
        self.console_token = made.stdout.splitlines()[0].strip()
        self.start("console")
        wait_for(lambda: scrape_status(f"http://127.0.0.1:{self.console_port}/login") == 200,
                 60)

    def outbox_of(self, kiosk: str) -> Path:
        return self.kiosk_state[kiosk] / "outbox.sqlite3"

    def _edge_config(self, fps: float, number: int = 0) -> dict[str, Any]:
        name = self.kiosks[number]
        return {
            "device": {"id": "soak-kiosk" if number == 0 else f"soak-kiosk-{number + 1}",
                       "site": "soak"},
            "camera": {"source": "synthetic", "seed": 11 + number},
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "topic_prefix": self.prefix},
            "state_dir": str(self.kiosk_state[name]),
            "edge": {
                "burst_frames": 1, "rearm_frames": 1, "synthetic_fps": fps,
                "status_interval_s": 1, "reconnect_initial_s": 0.1, "reconnect_cap_s": 1,
                "ack_resend_initial_s": 1, "ack_resend_cap_s": 10,
                "metrics_port": self.kiosk_metrics[name],
            },
            "screen": {"port": self.screen_port if number == 0 else None},
        }

    def _backoffice_config(self) -> dict[str, Any]:
        return {
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "topic_prefix": self.prefix},
            "state_dir": str(self.workdir / "backoffice"),
            "store": {"url": self.pg.store_url if self.pg else f"sqlite:///{self.store}"},
            "backoffice": {"client_id": "soak-backoffice", "metrics_port":
                           self.backoffice_metrics},
        }

    def _write(self, name: str, config: dict[str, Any]) -> Path:
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, name: str) -> None:
        """Start a kiosk (``edge``, ``edge2``, ...), ``backoffice`` or ``console`` as a
        child, its log appended to NAME/NAME.log."""
        config = self.configs[name]
        kiosk = name in self.kiosks
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("APPLIANCE__")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        if kiosk and self.kiosk_env:
            env["PYTHONPATH"] = os.pathsep.join((str(self.customize), env["PYTHONPATH"]))
            env |= self.kiosk_env
        if kiosk:
            env = kiosk_environment(env, self.extra_env)
        command = "edge" if kiosk else name
        with (self.workdir / name / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "appliance", command, "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir / name,
            )
        self.starts[name] += 1

    def stop(self, name: str, kill: bool = False) -> int | None:
        """SIGKILL (``kill``) or SIGTERM a child and wait for it; its exit code."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def table_counts(self) -> dict[str, int]:
        return self.pg.counts() if self.pg else table_counts(self.store)

    def store_file_bytes(self) -> int:
        """The store's bytes without its WAL (SQLite); its tables' on PostgreSQL."""
        if self.pg:
            return self.pg.bytes()
        return self.store.stat().st_size if self.store.exists() else 0

    def stored_ids(self) -> set[str]:
        if self.pg:
            return {str(i) for i in self.pg.ids("SELECT measurement_id FROM results")}
        return ids_in(self.store, "SELECT measurement_id FROM results")

    def lettered_ids(self) -> set[str]:
        if self.pg:
            payloads = [bytes(p).decode(errors="replace")
                        for p in self.pg.ids("SELECT payload FROM dead_letters")]
        else:
            payloads = list(ids_in(self.store, "SELECT CAST(payload AS TEXT) FROM dead_letters"))
        return measurement_ids(payloads)

    def pid(self, name: str) -> int | None:
        if name == "broker":
            proc = getattr(self.broker, "_proc", None)
            return proc.pid if proc is not None else None
        process = self.processes.get(name)
        return process.pid if process is not None and process.poll() is None else None

    def kiosk_memory(self) -> dict[str, Any]:
        """The kiosk's memory now, by what holds it (its smaps), and its malloc tunables."""
        pid = self.pid("edge")
        if pid is None:
            return {}
        try:
            text = Path(f"/proc/{pid}/smaps").read_text()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return {}
        tunables = [item.decode(errors="replace") for item in environ
                    if item.startswith(b"GLIBC_TUNABLES=")]
        return {"glibc_tunables": tunables[0].split("=", 1)[1] if tunables else None,
                "by_holder": smaps_breakdown(text)}

    def names(self) -> list[str]:
        """Every process the soak reads: the kiosks, the back office, the broker, the
        console where it runs."""
        return [*self.kiosks, "backoffice", "broker",
                *(["console"] if self.console_port else [])]

    def kiosk_figures(self) -> dict[str, dict[str, float | None]]:
        figures = {}
        for name in self.kiosks:
            metrics = scrape(self.kiosk_metrics[name])
            figures[name] = {key: metrics.get(f"appliance_edge_{metric}") for key, metric in (
                ("committed", "measurements_total"), ("outbox_depth", "outbox_depth"),
                ("dropped", "outbox_dropped_total"), ("resent", "results_resent_total"),
                ("reconnects", "mqtt_reconnects_total"))}
        return figures

    def duplicates_stored(self) -> int | None:
        """Rows of results beyond one a measurement id (None where it cannot be read)."""
        sql = "SELECT count(*) - count(DISTINCT measurement_id) FROM results"
        if self.pg:
            rows = self.pg.ids(sql)
            return int(rows[0]) if rows else None
        found = ids_in(self.store, sql)
        return int(next(iter(found))) if found else None

    def sample(self, started_s: float, sys_watch: SysWatcher) -> dict[str, Any]:
        edge = scrape(self.edge_metrics)
        worker = scrape(self.backoffice_metrics)
        counts = self.table_counts()
        row: dict[str, Any] = {
            "t_s": round(time.monotonic() - started_s, 1),
            "load1": round(os.getloadavg()[0], 2),
            "committed": edge.get("appliance_edge_measurements_total"),
            "confirmed": edge.get("appliance_edge_results_confirmed_total"),
            "outbox_depth": edge.get("appliance_edge_outbox_depth"),
            "dropped": edge.get("appliance_edge_outbox_dropped_total"),
            "resent": edge.get("appliance_edge_results_resent_total"),
            "reconnects": edge.get("appliance_edge_mqtt_reconnects_total"),
            "measuring_paused": edge.get("appliance_edge_measuring_paused"),
            "measurements_lost": edge.get("appliance_edge_measurements_lost_total"),
            "worker_dead_letters": worker.get("appliance_backoffice_dead_letters_total"),
            "worker_stored": worker.get("appliance_backoffice_results_stored_total"),
            "worker_received": worker.get("appliance_backoffice_messages_received_total"),
            "stored": counts.get("results"),
            "tables": counts,
            "outbox_bytes": file_bytes(self.outbox),
            "edge_state_bytes": folder_bytes(self.edge_state)[0],
            "edge_state_files": folder_bytes(self.edge_state)[1],
            "store_bytes": self.pg.bytes() if self.pg else file_bytes(self.store),
            "store_file_bytes": self.store_file_bytes(),
            "pg_connections": self.pg.connections() if self.pg else None,
            "backoffice_folder_bytes": folder_bytes(self.workdir / "backoffice")[0],
            "broker_folder_bytes": folder_bytes(self.workdir / "broker")[0],
            "edge_log_bytes": file_bytes(self.workdir / "edge" / "edge.log"),
            "backoffice_log_bytes": file_bytes(self.workdir / "backoffice" / "backoffice.log"),
            "mqtt_clients_total": sys_watch.figure("clients/total"),
            "mqtt_clients_connected": sys_watch.figure("clients/connected"),
            "mqtt_subscriptions": sys_watch.figure("subscriptions/count"),
            "mqtt_retained": sys_watch.figure("retained messages/count"),
            "mqtt_stored_messages": sys_watch.figure("store/messages/count"),
        }
        kiosks = self.kiosk_figures()
        row["kiosks"] = kiosks
        row["committed_all"] = sum(k["committed"] or 0 for k in kiosks.values())
        row["outbox_depth_all"] = sum(k["outbox_depth"] or 0 for k in kiosks.values())
        row["kiosk_states_bytes"] = sum(folder_bytes(self.kiosk_state[k])[0] for k in kiosks)
        row["kiosk_logs_bytes"] = sum(file_bytes(self.workdir / k / f"{k}.log")
                                      for k in kiosks)
        row["console_log_bytes"] = file_bytes(self.workdir / "console" / "console.log")
        table = tcp_table()
        for name in self.names():
            pid = self.pid(name)
            figures = proc_figures(pid) if pid is not None else None
            row[name] = (figures | socket_figures(pid, table) | {"pid": pid}
                         if figures and pid else None)
        return row


def kiosk_environment(env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """``env`` with ``--kiosk-env``'s assignments: an empty value takes the key out."""
    merged = env | extra
    return {key: value for key, value in merged.items() if value or key not in extra}


def slope_per_1000(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x, times 1,000 (None with fewer than 3 points or no spread)."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return round(1000 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread, 3)


def wait_for(condition: Any, timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


COMMITTED = re.compile(r"measurement (\S+) committed to the outbox")


def committed_ids(log: Path) -> set[str]:
    """The ids the kiosk's log says it committed to its outbox (a line each)."""
    return set(COMMITTED.findall(log.read_text(errors="replace"))) if log.exists() else set()


def ids_in(database: Path, sql: str) -> set[str]:
    """The first column of ``sql`` on a SQLite file, read-only (empty where it is not there)."""
    if not database.exists():
        return set()
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        return {str(row[0]) for row in connection.execute(sql)}
    except sqlite3.Error:
        return set()
    finally:
        connection.close()


def measurement_ids(payloads: list[str]) -> set[str]:
    """The measurement ids the payloads (of dead letters) name."""
    found = set()
    for payload in payloads:
        try:
            found.add(str(json.loads(payload)["measurement_id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return found


class FullDisk:
    """The kiosk's state folder on a small tmpfs (root only), filled and freed at will."""

    def __init__(self, folder: Path, mib: int) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs",
                               str(folder)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"soak: --full-disk-mib needs root to mount a tmpfs: "
                             f"{done.stderr.strip()}")
        self.filler = folder / "filler"

    def fill(self) -> int:
        """Write zeros until ENOSPC; the bytes written."""
        written = 0
        with self.filler.open("wb", buffering=0) as out:
            try:
                while True:
                    written += out.write(b"\0" * 65536)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], capture_output=True, check=False)


def summarise(samples: list[dict[str, Any]], seconds: float, warmup: float,
              killed_at_s: float | None) -> dict[str, Any]:
    """Slopes after the warm-up and the largest figures."""
    figures: dict[str, Any] = {}
    edge_from = warmup * seconds
    # the worker's life after its kill, from a warm-up after it on
    worker_from = (killed_at_s or 0.0) + warmup * seconds
    for name, since_s, x_key in (("edge", edge_from, "committed"),
                                 ("backoffice", worker_from, "stored"),
                                 ("broker", edge_from, "committed")):
        rows = [r for r in samples if r["t_s"] >= since_s and r.get(name) and r.get(x_key)
                is not None and r["t_s"] <= seconds]
        if name == "broker":  # the broker's life after its restart, likewise
            restarted = [r["t_s"] for r in samples if r.get("broker_restarted")]
            rows = [r for r in rows if not restarted or r["t_s"] >= restarted[0] + warmup * seconds]
        per: dict[str, Any] = {}
        for key in ("rss_mib", "anon_huge_mib", "fds", "threads"):
            keyed = [r for r in rows if key in r[name]]  # smaps_rollup may be unreadable
            points = [(float(r[x_key]), float(r[name][key])) for r in keyed]
            per[f"{key}_per_1000_results"] = slope_per_1000(points)
            values = [r[name][key] for r in samples if r.get(name) and key in r[name]]
            per[f"{key}_max"] = max(values) if values else None
            per[f"{key}_first_fit"] = keyed[0][name][key] if keyed else None
            per[f"{key}_last_fit"] = keyed[-1][name][key] if keyed else None
        if name == "backoffice":  # the store's own file (its WAL aside) a result
            slope = slope_per_1000([(float(r["stored"]), float(r["store_file_bytes"]))
                                    for r in rows])
            per["store_file_bytes_per_result"] = None if slope is None else round(slope / 1000)
        per["fit_samples"] = len(rows)
        per["fit_results"] = (
            [rows[0][x_key], rows[-1][x_key]] if rows else None)
        figures[name] = per
    for key in ("outbox_bytes", "edge_state_bytes", "edge_state_files", "store_bytes",
                "store_file_bytes",
                "backoffice_folder_bytes", "broker_folder_bytes", "edge_log_bytes",
                "backoffice_log_bytes", "outbox_depth", "mqtt_clients_total",
                "mqtt_clients_connected", "mqtt_subscriptions", "mqtt_retained",
                "mqtt_stored_messages", "pg_connections"):
        values = [r[key] for r in samples if r.get(key) is not None]
        figures[f"max_{key}"] = max(values) if values else None
    return figures


class Events:
    """What happens during the run, each once at its fraction of it: the back office killed,
    the broker restarted, the kiosk's clock moved and restored, its disk filled and freed."""

    def __init__(self, soak: Soak, disk: FullDisk | None, seconds: float,
                 clock_jump_s: float, kiosk_kill_every_s: float | None = None) -> None:
        self.soak, self.disk, self.seconds, self.clock_jump_s = soak, disk, seconds, clock_jump_s
        self.kiosk_kill_every_s = kiosk_kill_every_s if len(soak.kiosks) > 1 else None
        self.kiosk_kills = 0
        self.said: list[str] = []
        self.done: set[str] = set()
        self.killed_at_s: float | None = None

    def _due(self, what: str, at_s: float, elapsed_s: float, marks: dict[str, Any]) -> bool:
        if what in self.done or elapsed_s < at_s:
            return False
        self.done.add(what)
        marks[what] = True
        return True

    def happen(self, elapsed_s: float, started_s: float) -> dict[str, Any]:
        """Whatever is due at ``elapsed_s``; the marks for the sample."""
        marks: dict[str, Any] = {}
        soak, seconds, due = self.soak, self.seconds, self._due
        if due("backoffice_killed", KILL_AT * seconds, elapsed_s, marks):
            code = soak.stop("backoffice", kill=True)
            time.sleep(OUTAGE_S)
            soak.start("backoffice")
            self.killed_at_s = time.monotonic() - started_s
            self.said.append(f"back office SIGKILL at {elapsed_s:.0f} s (exit {code}), started "
                             "again")
        if due("broker_restarted", BROKER_RESTART_AT * seconds, elapsed_s, marks):
            soak.broker.stop()
            time.sleep(OUTAGE_S)
            soak.broker.start()
            self.said.append(f"broker stopped and started again at {elapsed_s:.0f} s")
        if self.kiosk_kill_every_s and elapsed_s >= (
                self.kiosk_kills + 1) * self.kiosk_kill_every_s:
            self.kiosk_kills += 1
            name = soak.kiosks[1 + (self.kiosk_kills - 1) % (len(soak.kiosks) - 1)]
            code = soak.stop(name, kill=True)
            time.sleep(OUTAGE_S)
            soak.start(name)
            marks[f"{name}_killed"] = True
            self.said.append(f"kiosk {name} SIGKILL at {elapsed_s:.0f} s (exit {code}), "
                             "started again")
        clock = soak.clock_file
        if clock is not None and due("clock_jumped", CLOCK_JUMP_AT * seconds, elapsed_s, marks):
            clock.write_text(str(self.clock_jump_s))
            self.said.append(f"kiosk clock moved by {self.clock_jump_s:+.0f} s at "
                             f"{elapsed_s:.0f} s")
        if clock is not None and due("clock_restored", CLOCK_BACK_AT * seconds, elapsed_s,
                                     marks):
            clock.write_text("0")
            self.said.append(f"kiosk clock back at the true time at {elapsed_s:.0f} s")
        if self.disk is not None:
            if due("disk_filled", FULL_DISK_AT * seconds, elapsed_s, marks):
                self.said.append(f"kiosk disk filled at {elapsed_s:.0f} s "
                                 f"({self.disk.fill()} bytes)")
            if due("disk_freed", FULL_DISK_AT * seconds + FULL_DISK_S, elapsed_s, marks):
                self.disk.free()
                self.said.append(f"kiosk disk freed at {elapsed_s:.0f} s")
        return marks


def run(arguments: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    seconds = arguments.minutes * 60
    workdir = workdir.resolve()
    soak = Soak(workdir, arguments.fps, shifted_clock=bool(arguments.clock_jump_s),
                customers=arguments.customers, pg_url=arguments.pg_url,
                tracemalloc_s=arguments.tracemalloc_s, extra_env=arguments.kiosk_env,
                kiosks=min(arguments.kiosks, MAX_KIOSKS), console=arguments.console,
                screen=arguments.screen, pg_schema=arguments.pg_schema)
    disk = (FullDisk(soak.edge_state, arguments.full_disk_mib)
            if arguments.full_disk_mib else None)
    soak.broker.start()
    sys_watch = SysWatcher(soak.broker.port)
    events = Events(soak, disk, seconds, arguments.clock_jump_s, arguments.kiosk_kill_every_s)
    out = arguments.samples_out.open("w") if arguments.samples_out else None
    visitors = Visitors(soak, arguments)
    try:
        soak.start_all()
        started_s = time.monotonic()
        first_result = wait_for(lambda: soak.processes["edge"].poll() is not None or (scrape(
            soak.edge_metrics).get("appliance_edge_measurements_total") or 0) >= 1, 120)
        events.said.append(f"first result committed: {first_result}, "
                           f"{time.monotonic() - started_s:.1f} s")
        started_s = time.monotonic()  # the run counts from the first result
        visitors.start()
        samples: list[dict[str, Any]] = []
        next_s = started_s
        while time.monotonic() - started_s < seconds:
            marks = events.happen(time.monotonic() - started_s, started_s)
            soak.check_alive()
            samples.append(soak.sample(started_s, sys_watch) | marks)
            if out:
                out.write(json.dumps(samples[-1]) + "\n")
                out.flush()
            next_s += arguments.sample_s
            time.sleep(max(0.0, next_s - time.monotonic()))
        # the end: wait for everything committed to be confirmed, then stop all in order
        visitors.stop()
        drained = wait_for(lambda: all(scrape(soak.kiosk_metrics[k]).get(
            "appliance_edge_outbox_depth") == 0 for k in soak.kiosks), DRAIN_S)
        samples.append(soak.sample(started_s, sys_watch))
        kiosk_memory = soak.kiosk_memory()
        exits = soak.stop_all()
        return {
            "minutes": arguments.minutes,
            "fps": arguments.fps,
            "customers": arguments.customers,
            "clock_jump_s": arguments.clock_jump_s,
            "kiosk_env": dict(arguments.kiosk_env),
            "full_disk_mib": arguments.full_disk_mib,
            "sample_s": arguments.sample_s,
            "samples": len(samples),
            "events": events.said,
            "outbox_drained": drained,
            **accounting(soak, workdir, samples[-1]),
            **exits,
            "store": "postgresql" if soak.pg else "sqlite",
            "store_tables_at_end": soak.table_counts(),
            "store_file_bytes_at_end": soak.store_file_bytes(),
            "cpu_fraction_of_a_core": cpu_fractions(samples),
            "load1_range": [min(r["load1"] for r in samples), max(r["load1"] for r in samples)],
            **summarise(samples, seconds, arguments.warmup, events.killed_at_s),
            "tracemalloc_growth": traced_growth(soak.snapshots, arguments.warmup),
            "kiosk_memory_at_end": kiosk_memory,
            "kiosks": len(soak.kiosks),
            "kiosk_kills": events.kiosk_kills,
            "lives": {name: life_figures(samples, name, arguments.warmup * seconds)
                      for name in soak.names()},
            "visitors": visitors.figures(),
            "duplicates_stored": soak.duplicates_stored(),
            "workdir": str(workdir),
        }
    finally:
        visitors.stop()
        for name in soak.processes:
            if soak.processes[name].poll() is None:
                soak.stop(name)
        sys_watch.close()
        soak.broker.close()
        if soak.pg is not None:
            soak.pg.drop()
        if disk is not None:
            disk.close()
        if out:
            out.close()


def accounting(soak: Soak, workdir: Path, last: dict[str, Any]) -> dict[str, Any]:
    """Every result the kiosk's log says it committed: stored, kept as a dead letter, or still
    in its outbox; those in none of them were lost."""
    by_kiosk = {k: committed_ids(workdir / k / f"{k}.log") for k in soak.kiosks}
    committed = set().union(*by_kiosk.values())
    stored = soak.stored_ids()
    lettered = soak.lettered_ids()
    waiting = set().union(*(ids_in(soak.outbox_of(k), "SELECT measurement_id FROM outbox")
                            for k in soak.kiosks))
    return {
        "results_committed_by_each_kiosk": {k: len(ids) for k, ids in by_kiosk.items()},
        "results_lost_by_each_kiosk": {k: len(ids - stored - lettered - waiting)
                                       for k, ids in by_kiosk.items()},
        "results_committed_by_kiosk": len(committed),
        "results_stored": len(stored),
        "results_dead_lettered": len(lettered),
        "results_left_in_outbox": len(waiting),
        "results_lost": len(committed - stored - lettered - waiting),
        "results_stored_not_committed": len(stored - committed),
        "results_dropped_by_kiosk": last["dropped"],
        "results_dropped_by_kiosks": sum(k["dropped"] or 0 for k in last["kiosks"].values()),
        "measurements_lost_by_kiosk": last["measurements_lost"],
        "results_resent": last["resent"],
        "kiosk_reconnects": last["reconnects"],
    }


def traced_growth(folder: Path, warmup: float, top: int = 10) -> dict[str, Any] | None:
    """The traced memory's growth between the first snapshot after the warm-up and the last
    one, in all and at the lines (4 frames each) where it grew most; None without snapshots."""
    import tracemalloc

    snapshots = sorted(folder.glob("snapshot-[0-9][0-9][0-9][0-9]")) if folder.is_dir() else []
    if len(snapshots) < 2:
        return None
    first = tracemalloc.Snapshot.load(str(snapshots[min(int(warmup * len(snapshots)),
                                                        len(snapshots) - 2)]))
    last = tracemalloc.Snapshot.load(str(snapshots[-1]))
    grown = sorted(last.compare_to(first, "traceback"), key=lambda stat: stat.size_diff,
                   reverse=True)[:top]
    total_kib = [sum(stat.size for stat in snapshot.statistics("filename")) / 1024
                 for snapshot in (first, last)]
    return {
        "snapshots": len(snapshots),
        "traced_kib_first_last": [round(kib, 1) for kib in total_kib],
        "grew_most": [{"kib": round(stat.size_diff / 1024, 1), "blocks": stat.count_diff,
                       "where": ["/".join(frame.filename.split("/")[-3:]) + f":{frame.lineno}"
                                 for frame in stat.traceback]}
                      for stat in grown],
    }


LIFE_KEYS = ("rss_mib", "fds", "threads", "sockets", "tcp_established", "tcp_close_wait",
             "pg_connections")


def life_figures(samples: list[dict[str, Any]], name: str, warmup_s: float) -> dict[str, Any]:
    """A process's figures over its last life (its last pid): each key's first value after the
    warm-up (from ``warmup_s`` after that life began), its last and largest, and its slope an
    hour over that span; its lives counted."""
    rows = [r for r in samples if r.get(name)]
    if not rows:
        return {}
    pids = [r[name]["pid"] for r in rows]
    last = [r for r in rows if r[name]["pid"] == pids[-1]]
    fit = [r for r in last if r["t_s"] >= last[0]["t_s"] + warmup_s]
    figures: dict[str, Any] = {"lives": len(dict.fromkeys(pids)),
                               "last_life_s": round(last[-1]["t_s"] - last[0]["t_s"], 1),
                               "fit_samples": len(fit)}
    for key in LIFE_KEYS:
        values = [r[name].get(key) for r in rows if r[name].get(key) is not None]
        fitted = [(r["t_s"] / 3600, float(r[name][key])) for r in fit if key in r[name]]
        slope = slope_per_1000(fitted)
        figures[key] = {"max": max(values) if values else None,
                        "first_fit": fitted[0][1] if fitted else None,
                        "last": fitted[-1][1] if fitted else None,
                        "per_hour": None if slope is None else round(slope / 1000, 3)}
    return figures


def cpu_fractions(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Each process's CPU seconds a second over its samples (the back office's last life)."""
    cpu = {}
    for name in PROCESSES:
        lives = [r for r in samples if r.get(name)]
        if name != "edge":  # its last life: after its kill, after its restart
            mark = "backoffice_killed" if name == "backoffice" else "broker_restarted"
            restarts = [i for i, r in enumerate(lives) if r.get(mark)]
            lives = lives[restarts[-1]:] if restarts else lives
        if len(lives) > 1 and lives[-1]["t_s"] > lives[0]["t_s"]:
            cpu[name] = round((lives[-1][name]["cpu_s"] - lives[0][name]["cpu_s"])
                              / (lives[-1]["t_s"] - lives[0]["t_s"]), 3)
    return cpu


def main() -> None:
    arguments = command_line().parse_args()
    if arguments.workdir is not None:
        arguments.workdir.mkdir(parents=True, exist_ok=True)
        figures = run(arguments, arguments.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="appliance-soak-") as folder:
            figures = run(arguments, Path(folder))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
