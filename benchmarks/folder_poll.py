"""Folder source figures: what watching a quiet folder of saved captures costs, and how soon a
file saved over a measured one is noticed.

Prints ONE JSON object. Makes a folder of FILES small JPEG-named files, all recorded as measured
(as after years of captures), opens a ``DirectorySource`` on it and polls it for SECONDS: the CPU
the polling took (process time per second of polling, all threads), and how many polls ran.
Then it saves over the newest file in place (the same name, a new picture, as a tool that
always writes ``capture.jpg``) and over the oldest one, and times how long each took to be read
again (``null``: not read again within the wait).
Usage: .venv/bin/python benchmarks/folder_poll.py [--files N] [--seconds S] [--wait S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _whole_number(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=_whole_number, default=50_000)
    parser.add_argument("--seconds", type=_whole_number, default=30)
    parser.add_argument("--wait", type=_whole_number, default=90)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

import cv2
import numpy as np

from appliance.capture.folder import DirectorySource
from appliance.capture.replayed import FileStamp, ReplayRecord


def _picture(value: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((960, 1280, 3), value, np.uint8))
    assert ok
    return data.tobytes()


def quiet_folder(folder: Path, files: int, record: Path) -> list[str]:
    """FILES files, each recorded as measured; their names in order."""
    folder.mkdir()
    names = [f"{index:08d}.jpg" for index in range(files)]
    picture = _picture(128)
    an_hour_ago_ns = time.time_ns() - 3600 * 10**9
    for index, name in enumerate(names):
        path = folder / name
        path.write_bytes(picture)
        stamp_ns = an_hour_ago_ns + index * 1000  # the newest file is the last name
        os.utime(path, ns=(stamp_ns, stamp_ns))
    os.utime(folder, ns=(an_hour_ago_ns, an_hour_ago_ns))
    stamps = []
    for name in names:
        info = (folder / name).stat()
        stamps.append(FileStamp(name, info.st_size, info.st_mtime_ns))
    ReplayRecord(record).record(stamps)
    return names


def polling_cost(source: DirectorySource, seconds: float) -> dict[str, Any]:
    """CPU per second of polling a folder where nothing happens."""
    polls, read = 0, 0
    cpu_s, started_s = time.process_time(), time.monotonic()
    while time.monotonic() - started_s < seconds:
        read += source.read() is not None
        polls += 1
    wall_s = time.monotonic() - started_s
    used_s = time.process_time() - cpu_s
    return {"polls": polls, "frames_read": read, "cpu_ms_per_s": round(1000 * used_s / wall_s, 2)}


def noticed_after_s(source: DirectorySource, path: Path, value: int, wait_s: float) -> float | None:
    """Seconds until a picture saved over ``path`` in place is read; None if not within wait_s."""
    with path.open("r+b") as out:  # in place: the same file, the folder's time unchanged
        out.truncate(0)
        out.write(_picture(value))
    started_s = time.monotonic()
    while time.monotonic() - started_s < wait_s:
        frame = source.read()
        if frame is not None and frame.name == path.name:
            return round(time.monotonic() - started_s, 2)
    return None


def main(argv: list[str]) -> int:
    """Run the figures and print them."""
    options = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="folder-poll-") as work:
        folder, record = Path(work) / "captures", Path(work) / "replayed.sqlite3"
        names = quiet_folder(folder, options.files, record)
        source = DirectorySource(str(folder), record)
        source.open()
        source.read()  # the first poll: the folder listed, the record applied
        figures: dict[str, Any] = {"files": options.files, "load_average": os.getloadavg()}
        figures["quiet"] = polling_cost(source, options.seconds)
        figures["newest_saved_over_read_after_s"] = noticed_after_s(
            source, folder / names[-1], 30, options.wait)
        figures["oldest_saved_over_read_after_s"] = noticed_after_s(
            source, folder / names[0], 60, options.wait)
        source.close()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
