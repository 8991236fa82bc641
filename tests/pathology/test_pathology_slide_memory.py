"""A slide's decode bound counts what decoding it really holds: Pillow keeps an RGBA or CMYK
pixel in 4 bytes and the RGB copy in 4 more, so such a slide the bound would have let through as
3 bytes a pixel is refused before its pixels are decoded. Each slide is read in a process of
its own, with the bound scaled down to a 40 Mpx slide, and its peak memory measured there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from appliance.hostile import blank_png, progressive_jpeg
from appliance.pathology.slides import SlideError, read_slide

MAX_PIXELS = 40_000_000
MAX_BYTES = 5 * MAX_PIXELS  # what an 8-bit RGB slide of MAX_PIXELS holds while decoded

READ = """
import json, resource, sys
from pathlib import Path
from appliance.pathology import slides
slides.MAX_SLIDE_PIXELS, slides.MAX_DECODED_BYTES = int(sys.argv[2]), int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
try:
    slides.read_slide(Path(sys.argv[1]), 0.5, 0.5)
    refused = None
except slides.SlideError as exc:
    refused = str(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"refused": refused, "grown_bytes": grown}))
"""


def _read_alone(path: Path) -> tuple[str | None, int]:
    """read_slide in a fresh process under the scaled-down bound: its refusal and how far the
    process's peak memory grew while reading."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", READ, str(path), str(MAX_PIXELS),
                           str(MAX_BYTES)], capture_output=True, text=True, env=env, check=True)
    answer = json.loads(done.stdout)
    return answer["refused"], int(answer["grown_bytes"])


@pytest.mark.parametrize("name", ["rgba.png", "cmyk.tif"])
def test_a_four_band_slide_over_the_decode_bound_is_refused_before_decoding(
        tmp_path: Path, name: str) -> None:
    """30 Mpx of RGBA or CMYK is 90 MB as 3 bytes a pixel, under the 200 MB bound, but
    decoding it held 240 MB (4 bytes a pixel, then its RGB copy)."""
    path = tmp_path / name
    if name.endswith(".png"):
        path.write_bytes(blank_png(6000, 5000))
    else:
        tifffile.imwrite(path, np.zeros((5000, 6000, 4), np.uint8), photometric="separated",
                         compression="zlib")
    refused, grown_bytes = _read_alone(path)
    assert refused == (
        f"{path}: 30000000 pixels ({'RGBA' if 'rgba' in name else 'CMYK'}) need 270080000 bytes "
        f"while decoded, more than the {MAX_BYTES} of an 8-bit RGB slide of {MAX_PIXELS} "
        "pixels; split the slide or export it as 8-bit RGB")
    assert grown_bytes < MAX_BYTES


def test_a_four_band_slide_within_the_bound_decodes_within_it(tmp_path: Path) -> None:
    """20 Mpx of RGBA (180 MB at the peak, by the table) is read, and holds less than the
    bound while it is."""
    path = tmp_path / "rgba.png"
    path.write_bytes(blank_png(5000, 4000))
    refused, grown_bytes = _read_alone(path)
    assert refused is None
    assert grown_bytes < MAX_BYTES


PREPARE = """
import json, resource, sys
import numpy as np
from appliance.pathology.ood_stats import tile_statistics
from appliance.pathology.prepare import TileSettings
from appliance.pathology.slideworker import prepare_for_model
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
got = prepare_for_model("memory", 0, sys.argv[1], 4.0,
                        TileSettings(tile_px=128, tile_um=256.0, normalize=False))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
same = bool(np.array_equal(got.statistics[:300], tile_statistics(got.pixels[:300])))
print(json.dumps({"error": got.error, "tile_bytes": got.pixels.nbytes, "grown_bytes": grown,
                  "same_statistics": same}))
"""


def test_a_worker_holds_a_slide_and_its_tiles_not_copies_of_them(tmp_path: Path) -> None:
    """A 20 Mpx slide at 4 µm/px cut into 2 µm/px tiles: 80 MB decoded, 238 MB of tiles.
    Preparing it held its pixels and at most twice its tiles; before, it held them three times
    and the guard's statistics another 8 bytes a tile sample (1.25 GB in all)."""
    path = tmp_path / "pink.png"
    Image.new("RGB", (5000, 4000), (200, 120, 170)).save(path, compress_level=1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", PREPARE, str(path)], capture_output=True,
                          text=True, env=env, check=True)
    prepared = json.loads(done.stdout)
    assert prepared["error"] == ""
    assert prepared["same_statistics"]
    assert prepared["tile_bytes"] == 4836 * 128 * 128 * 3
    assert prepared["grown_bytes"] < 4 * 5000 * 4000 + 2 * prepared["tile_bytes"]


def test_a_progressive_jpeg_over_the_decode_bound_is_refused_before_decoding(
        tmp_path: Path) -> None:
    """A 30 Mpx progressive JPEG of 200 bytes: its RGB image (150 MB) is within the 200 MB
    bound, but libjpeg also holds its whole frame's coefficients (90 MB at 4:2:0) until its last
    scan; before, it was decoded and grew the process by both."""
    path = tmp_path / "progressive.jpg"
    path.write_bytes(progressive_jpeg(6000, 5000))
    refused, grown_bytes = _read_alone(path)
    assert refused is not None
    assert refused.startswith(f"{path}: 30000000 pixels (RGB, a progressive or multi-scan JPEG")
    assert refused.endswith("; split the slide or export it again as a baseline JPEG")
    assert grown_bytes < MAX_BYTES


def test_a_jpeg_of_more_scans_than_a_viewer_reads_is_refused(tmp_path: Path) -> None:
    """Each scan of a progressive JPEG is decoded over the whole frame: one scan sent 300
    times held a worker 300 times as long as one (at 30,000 px, about 85 ms a scan)."""
    path = tmp_path / "scans.jpg"
    path.write_bytes(progressive_jpeg(64, 64, repeated_scans=300))
    with pytest.raises(SlideError, match=rf"^{path}: a JPEG of more than 256 scans"):
        read_slide(path, 0.5, 0.5)


def test_a_jpeg_of_more_marker_segments_than_a_viewer_reads_is_refused(tmp_path: Path) -> None:
    """Pillow walks a JPEG's markers before its first scan in Python, 0.45 s a MB of them (a
    slide of 250 MB of comments: two minutes of a worker's time before a pixel was decoded);
    a camera's JPEG has a few dozen."""
    path = tmp_path / "comments.jpg"
    jpeg = progressive_jpeg(64, 64)
    path.write_bytes(jpeg[:2] + b"\xff\xfe\x00\x02" * 5000 + jpeg[2:])  # empty COM segments
    with pytest.raises(SlideError, match=rf"^{path}: a JPEG of more than 256 scans or 4096 "
                       "marker segments"):
        read_slide(path, 0.5, 0.5)


def test_a_progressive_jpeg_within_the_bounds_is_read(tmp_path: Path) -> None:
    path = tmp_path / "progressive.jpg"
    pixels = np.zeros((600, 800, 3), np.uint8)
    pixels[:, :, 0], pixels[:, :, 2] = np.arange(800) % 256, 200
    Image.fromarray(pixels).save(path, progressive=True, quality=90)
    slide = read_slide(path, 0.5, 2.0)  # reduced 4x as it is decoded
    assert slide.size_px == (200, 150)
    assert slide.thumbnail(2.0)[75, 100, 2] > 150


def test_a_slide_one_pixel_wide_counts_the_rows_pillow_points_to(tmp_path: Path) -> None:
    """A PNG of 1 x 30,000,000 px (117 KB): 150 MB of RGB by the bytes a pixel, under the
    200 MB bound, but Pillow also holds a pointer to each row (8 bytes, for each image the
    decoding holds): before, it was decoded and grew the process by 360 MB (a 1 px wide slide
    of the real pixel limit: 12 GB, past its 5 GB)."""
    path = tmp_path / "thread.png"
    path.write_bytes(blank_png(1, 30_000_000, colour_type=2, channels=3))
    refused, grown_bytes = _read_alone(path)
    assert refused == (
        f"{path}: 30000000 pixels (RGB) need 630000000 bytes while decoded, more than the "
        f"{MAX_BYTES} of an 8-bit RGB slide of {MAX_PIXELS} pixels; split the slide or export "
        "it as 8-bit RGB")
    assert grown_bytes < MAX_BYTES
