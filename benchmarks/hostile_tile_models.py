"""Hostile pathology tile models: what the server's backend does with each, and at what cost.

Prints ONE JSON object. Each case runs in its own Python process, under an 8 GiB address-space
limit (so code without the bounds fails rather than filling the host), and does what the
pathology server does with its model: open the onnx-cpu backend (the load, with its warm-up),
then answer one batch of 64 blank tiles (the first job's first batch). Per case: the seconds of
each step, the process's peak memory (VmHWM, interpreter and imports included) and the outcome.
The models are the small files of tests/tile_model_helpers.py (about 150 KB each, the shipped
model's metadata and out-of-distribution guard included): a ConstantOfShape sized from the input
asking 2.5 GB or 40 GB for 64 tiles; two 572 MiB constants a loader folds; no 'probabilities';
one row of probabilities for the batch; features the guard cannot score; 2,000 px class
activation maps; a fixed batch of 100,000; 46341 px tiles. Run it with the code before and
after a change (PYTHONPATH); appliance/pathology/model.py says what bounds them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 8 * 2**30

CASE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    import tile_model_helpers as build
    model = eval(sys.argv[3])(Path(sys.argv[1]))
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[4]), int(sys.argv[4])))
    from appliance.config import PathologyConfig
    from appliance.pathology.backends import open_backend

    def peak_mb():
        return int([line.split()[1] for line in open("/proc/self/status")
                    if line.startswith("VmHWM:")][0]) / 1024

    result = {}
    started = time.perf_counter()
    try:
        backend = open_backend(PathologyConfig(model=str(model), backends=["onnx-cpu"]))
        result["load"] = "loaded"
    except Exception as exc:
        backend, result["load"] = None, f"{type(exc).__name__}: {exc}"[:320]
    result["load_seconds"] = round(time.perf_counter() - started, 3)
    if backend is not None:
        px = backend.info.tile_px
        started = time.perf_counter()
        try:
            answered = backend.infer(np.zeros((64, px, px, 3), np.uint8))
            result["batch"] = f"answered {np.shape(answered.probability)}"
        except Exception as exc:
            result["batch"] = f"{type(exc).__name__}: {exc}"[:320]
        result["batch_seconds"] = round(time.perf_counter() - started, 3)
    result["peak_mb"] = round(peak_mb(), 1)
    print(json.dumps(result))
    """
)

CASES = {
    "asks_2_5_gb_at_a_batch": "lambda p: build.asking_at_each_run(p, 10_000_000, guard=True)",
    "asks_40_gb_at_a_batch": "lambda p: build.asking_at_each_run(p, 156_250_000, guard=True)",
    "folds_two_572_mib_constants": "lambda p: build.asking_while_loading(p, 150_000_000, "
                                   "guard=True)",
    "no_probabilities": "lambda p: build.tile_model(p, guard=True, probabilities='scores')",
    "one_row_a_batch": "lambda p: build.tile_model(p, guard=True, one_row=True)",
    "features_unlike_its_guard": "lambda p: build.tile_model(p, guard=True, features=5)",
    "cams_of_2000_px": "lambda p: build.tile_model(p, guard=True, cam=2000)",
    "fixed_batch_of_100000": "lambda p: build.tile_model(p, guard=True, batch=100_000)",
    "tiles_of_46341_px": "lambda p: build.tile_model(p, guard=True, side='side', "
                         "metadata={'tile_px': '46341'})",
}


def run_case(name: str, builder: str, folder: Path) -> dict[str, object]:
    """One case in a fresh process; its JSON line, or what went wrong."""
    done = subprocess.run(
        [sys.executable, "-c", CASE, str(folder / f"{name}.onnx"), str(REPO / "tests"),
         builder, str(LIMIT_BYTES)],
        capture_output=True, text=True, timeout=900, check=False, cwd=folder,  # not the repo's
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:320] if done.stderr else "?"}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Run every case (or those named) and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"cases (all): {', '.join(CASES)}")
    names = parser.parse_args().cases or list(CASES)
    if unknown := sorted(set(names) - set(CASES)):
        parser.error(f"no case {', '.join(unknown)}; the cases: {', '.join(CASES)}")
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps({name: run_case(name, CASES[name], Path(folder)) for name in names},
                         indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
