"""How many pieces a PNG or TIFF slide is stored in, read from its headers before Pillow opens
it: a PNG's chunks, a TIFF's strips or tiles (of each of its pages, whose sizes are read here
too: appliance/pathology/slides.py reads the page a scanner means).

Pillow handles each piece in Python: a PNG of a million empty private chunks (12 MB) took 5.4 s
to open, and a TIFF of 1 x 1,000,000 px stored one row a strip (9 MB) 10.2 s to read (about
5 and 10 µs a piece), where a real 42 MB slide decodes in about a second: a file of a few hundred
MB held a preparation worker for minutes. A slide's pieces are bounded by its pixels: at most
MAX_PIECES_ANY_SLIDE, and one more for every PIXELS_A_PIECE pixels beyond (a PNG written in 8 KB
chunks, as libpng writes them, has one for every 1,000 pixels or more; a TIFF one a row of the
slide or one a 256 px tile, far fewer). The headers' layout: the PNG specification 5.3 (a chunk:
length, type, data, CRC) and TIFF 6.0 section 2 (an IFD: count, then 12-byte entries).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

MAX_PIECES_ANY_SLIDE = 4096
PIXELS_A_PIECE = 256
_IEND = b"IEND"
_WIDTH, _LENGTH, _STRIP_OFFSETS, _TILE_OFFSETS = 256, 257, 273, 324
_SHORT = 3
_NEW_SUBFILE_TYPE = 254
_REDUCED_OR_MASK = 1 | 4  # NewSubfileType bits: a reduced-resolution image, a transparency mask
MAX_TIFF_PAGES = 64  # a scanner's TIFF: the image, a few reduced levels, a label, an overview


@dataclass(frozen=True)
class TiffPage:
    """What one TIFF page's directory (IFD) says of its image."""

    width: int
    length: int
    pieces: int  # strips or tiles
    subfile_type: int

    @property
    def pixels(self) -> int:
        """Width x length."""
        return self.width * self.length

    @property
    def full_resolution(self) -> bool:
        """Whether the file does not call it a reduced copy or a mask of another page."""
        return not self.subfile_type & _REDUCED_OR_MASK


def too_many_pieces(handle: BinaryIO) -> str | None:
    """Why the PNG or TIFF file ``handle`` reads is refused for the pieces it is stored in, or
    None (also for a file whose headers cannot be walked: Pillow then says what is wrong). The
    handle is left at its start."""
    try:
        head = handle.read(8)
        if head.startswith(b"\x89PNG") and _png_chunks_over_bound(handle):
            kind = "chunks"
        elif head[:4] in (b"II*\x00", b"MM\x00*") and _tiff_pieces_over_bound(handle, head):
            kind = "strips or tiles"
        else:
            return None
    finally:
        handle.seek(0)
    return (f"stored in more {kind} than its pixels need (at most {MAX_PIECES_ANY_SLIDE}, and "
            f"one more for every {PIXELS_A_PIECE} pixels); export the slide again")


def piece_bound(pixels: int) -> int:
    """The most pieces a slide of ``pixels`` may be stored in."""
    return MAX_PIECES_ANY_SLIDE + pixels // PIXELS_A_PIECE


def _png_chunks_over_bound(handle: BinaryIO) -> bool:
    """Whether the PNG has more chunks than its IHDR's pixels allow (walked up to one past)."""
    handle.seek(16)  # IHDR's data: width, height
    size = handle.read(8)
    if len(size) < 8:
        return False
    width, height = struct.unpack(">II", size)
    bound, chunks, at = piece_bound(width * height), 0, 8
    while chunks <= bound:
        handle.seek(at)
        header = handle.read(8)
        if len(header) < 8:
            return False
        chunks += 1
        if header[4:] == _IEND:
            return False
        at += 12 + struct.unpack(">I", header[:4])[0]
    return True


def _tiff_pieces_over_bound(handle: BinaryIO, head: bytes) -> bool:
    """Whether any image of the TIFF (of the first MAX_TIFF_PAGES + 1, the most read: the
    slide is read from the page a scanner means, not always the first) names more strips or
    tiles than its pixels allow."""
    return any(page.pieces > piece_bound(page.pixels) for page in tiff_pages(handle, head))


def tiff_pages(handle: BinaryIO, head: bytes) -> list[TiffPage]:
    """The TIFF's pages in order, read from their directories, at most MAX_TIFF_PAGES + 1 (a
    longer list is refused); the walk stops at a directory that cannot be read or one met
    before (a loop). ``head``: the file's first 8 bytes."""
    order = "<" if head.startswith(b"II") else ">"
    pages: list[TiffPage] = []
    seen: set[int] = set()
    at = struct.unpack(f"{order}I", head[4:8])[0]
    while at and at not in seen and len(pages) <= MAX_TIFF_PAGES:
        seen.add(at)
        handle.seek(at)
        count_bytes = handle.read(2)
        if len(count_bytes) < 2:
            break
        count = struct.unpack(f"{order}H", count_bytes)[0]
        entries = handle.read(12 * count)
        pages.append(_page(entries, order))
        following = handle.read(4)
        if len(entries) < 12 * count or len(following) < 4:
            break
        at = struct.unpack(f"{order}I", following)[0]
    return pages


def _page(entries: bytes, order: str) -> TiffPage:
    """A page from its directory's entries."""
    found: dict[int, int] = {}
    for first in range(0, len(entries) - 11, 12):
        tag, kind, values = struct.unpack(f"{order}HHI", entries[first:first + 8])
        if tag in (_WIDTH, _LENGTH, _NEW_SUBFILE_TYPE):
            found[tag] = struct.unpack(f"{order}{'H' if kind == _SHORT else 'I'}",
                                       entries[first + 8:first + (10 if kind == _SHORT else 12)])[0]
        elif tag in (_STRIP_OFFSETS, _TILE_OFFSETS):
            found[tag] = values
    pieces = max(found.get(_STRIP_OFFSETS, 0), found.get(_TILE_OFFSETS, 0))
    return TiffPage(found.get(_WIDTH, 0), found.get(_LENGTH, 0), pieces,
                    found.get(_NEW_SUBFILE_TYPE, 0))
