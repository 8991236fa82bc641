"""A slide stored in more pieces than its pixels need is refused before Pillow opens it, which
handles each piece in Python (appliance/pathology/pieces.py; a JPEG's scans and marker segments:
tests/pathology/test_pathology_slide_memory.py)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.hostile import blank_png
from appliance.pathology.slides import SlideError, read_slide

PIECES = (r"stored in more {} than its pixels need \(at most 4096, and one more for every 256 "
          r"pixels\)")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_png_of_thousands_of_empty_chunks_is_refused(tmp_path: Path) -> None:
    """5,000 empty private chunks after the header of a 64 x 64 px PNG (a million of them, 12 MB,
    took Pillow 5.4 s to open)."""
    png = blank_png(64, 64, colour_type=2, channels=3)
    path = tmp_path / "chunks.png"
    path.write_bytes(png[:33] + _chunk(b"prIv", b"") * 5000 + png[33:])  # 33: signature, IHDR
    with pytest.raises(SlideError, match=rf"^{path}: {PIECES.format('chunks')}"):
        read_slide(path, 0.5, 0.5)


def test_a_tiff_of_one_pixel_a_strip_is_refused(tmp_path: Path) -> None:
    """1 x 10,000 px, one row a strip (a million of them, 9 MB, took Pillow 10 s to read)."""
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, np.full((10_000, 1, 3), 128, np.uint8), rowsperstrip=1,
                     photometric="rgb")
    with pytest.raises(SlideError, match=rf"^{path}: {PIECES.format('strips or tiles')}"):
        read_slide(path, 0.5, 0.5)


@pytest.mark.parametrize("layout", [{"rowsperstrip": 1}, {"tile": (16, 16)}])
def test_a_tiff_in_rows_or_in_the_smallest_tiles_is_read(tmp_path: Path,
                                                         layout: dict[str, object]) -> None:
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, np.full((1500, 1024, 3), (200, 120, 170), np.uint8),
                     photometric="rgb", **layout)
    assert read_slide(path, 0.5, 0.5).size_px == (1024, 1500)
