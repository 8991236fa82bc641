"""An image decoded at any size (a white reference, a micrometer photo) is refused before
decoding when decoding it would hold more than MAX_DECODE_BYTES: the pixel bound alone let a
48 Mpx PNG through, whose decoding held 480 MB as RGB and 670 MB as RGBA. Each image is read
in a process of its own and the growth of its peak memory measured there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from appliance.hostile import blank_png
from appliance.skin.frames import MAX_DECODE_BYTES

READ = """
import json, resource, sys
from appliance.skin.frames import FrameError, load_frame
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
try:
    shape, refused = list(load_frame(sys.argv[1], expected_shape=None).shape), None
except FrameError as exc:
    shape, refused = None, str(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"shape": shape, "refused": refused, "grown_bytes": grown}))
"""


def _read_alone(path: Path) -> dict[str, object]:
    """load_frame in a fresh process: the frame's shape or its refusal, and how far the
    process's peak memory grew while reading."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True,
                          text=True, env=env, check=True)
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_an_rgba_photo_whose_decoding_would_exceed_the_bound_is_refused_first(
        tmp_path: Path) -> None:
    """30 Mpx of RGBA, under the 48 Mpx bound: Pillow's 4 bytes a pixel and the RGB array's 3
    are 210 MB (it held 420 MB before)."""
    path = tmp_path / "white.png"
    path.write_bytes(blank_png(6000, 5000))
    read = _read_alone(path)
    assert read["refused"] == (
        f"{path}: 6000x5000 px RGBA need 210000000 bytes while decoded, more than "
        f"{MAX_DECODE_BYTES}; refused before decoding (save it smaller: about 28 Mpx of RGB fit)")
    assert int(str(read["grown_bytes"])) < MAX_DECODE_BYTES


def test_a_large_photo_within_the_bound_decodes_within_it(tmp_path: Path) -> None:
    """20 Mpx of RGBA (140 MB by the count) is decoded, and holds less than the bound."""
    path = tmp_path / "white.png"
    path.write_bytes(blank_png(5000, 4000))
    read = _read_alone(path)
    assert read["refused"] is None
    assert read["shape"] == [4000, 5000, 3]
    assert int(str(read["grown_bytes"])) < MAX_DECODE_BYTES
