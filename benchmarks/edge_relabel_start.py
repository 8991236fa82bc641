"""Kiosk start figures: what relabelling results waiting under another identity costs when the
outbox is full of this kiosk's own results.

Prints ONE JSON object. Fills an outbox with OWN results on this kiosk's result topic (each with
a thumbnail of THUMB_KIB KiB, as a kiosk that saves them sends) and FOREIGN ones on another
kiosk's topic, then times ``send_as_this_kiosk`` on it in a fresh process (as a kiosk start): wall
seconds, bytes read from the outbox file (``rchar``: an SD card reads them all on a cold start),
the peak of Python allocations (tracemalloc) and that process's peak resident memory.
Usage: .venv/bin/python benchmarks/edge_relabel_start.py [--own N] [--foreign N] [--thumb-kib K]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any


def _whole_number(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--own", type=_whole_number, default=30_000)
    parser.add_argument("--foreign", type=_whole_number, default=50)
    parser.add_argument("--thumb-kib", type=_whole_number, default=8)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the fresh process
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.edge.relabel import send_as_this_kiosk
from appliance.synthetic import fleet as fleetsim
from appliance.transport.outbox import Outbox

OWN_TOPIC, FOREIGN_TOPIC = "p/shop/me/result", "p/shop/twin/result"


def full_outbox(path: Path, own: int, foreign: int, thumb_kib: int) -> None:
    """An outbox of OWN own-topic results with thumbnails and FOREIGN results of the twin."""
    rng = random.Random(5)
    thumbnail = base64.b64encode(rng.randbytes(thumb_kib * 768)).decode()
    outbox = Outbox(path, max_rows=own + foreign + 1)
    for start in range(0, own + foreign, 1000):
        rows = []
        for index in range(start, min(start + 1000, own + foreign)):
            device, topic = ("me", OWN_TOPIC) if index < own else ("twin", FOREIGN_TOPIC)
            result = fleetsim.sample_result(rng, "shop", device, index)
            result = result.model_copy(update={"thumbnail_jpeg_b64": thumbnail})
            rows.append((result.measurement_id, topic, result.to_json()))
        outbox.add_many(rows)
    outbox.close()


def _read_bytes() -> int:
    """Bytes this process has read through read calls so far (Linux /proc/self/io)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"])


def start_cost(path: Path) -> dict[str, Any]:
    """Time and memory of the start's relabelling on the outbox at ``path``."""
    outbox = Outbox(path, max_rows=10**7)
    tracemalloc.start()
    read_before = _read_bytes()
    started_s = time.perf_counter()
    moved = send_as_this_kiosk(outbox, OWN_TOPIC, "shop", "me")
    wall_s = time.perf_counter() - started_s
    read_mib = (_read_bytes() - read_before) / 2**20
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    outbox.close()
    return {"relabelled": moved, "wall_s": round(wall_s, 3), "read_mib": round(read_mib, 1),
            "python_peak_mib": round(peak_bytes / 2**20, 1),
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str]) -> int:
    """Run the figures and print them."""
    options = _parser().parse_args(argv)
    if options.measure is not None:
        print(json.dumps(start_cost(options.measure)))
        return 0
    with tempfile.TemporaryDirectory(prefix="relabel-start-") as work:
        path = Path(work) / "outbox.sqlite3"
        full_outbox(path, options.own, options.foreign, options.thumb_kib)
        figures: dict[str, Any] = {"own": options.own, "foreign": options.foreign,
                                   "thumb_kib": options.thumb_kib,
                                   "file_mib": round(path.stat().st_size / 2**20, 1),
                                   "load_average": os.getloadavg()}
        measured = subprocess.run([sys.executable, __file__, "--measure", str(path)],
                                  check=True, capture_output=True, text=True).stdout
        figures["start"] = json.loads(measured)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
