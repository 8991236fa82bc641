"""What a JPEG's markers say before its pixels are decoded: how many scans it has, and how many
bytes libjpeg holds for it beside the decoded image (a pathology slide's, appliance/pathology/
slides.py; a skin frame's scans are bounded too, appliance/skin/frames.py).

A baseline JPEG of one scan is decoded a band of rows at a time, and at 1/2-1/8 scale when a
slide is reduced (slides.py). A progressive JPEG (SOF2), or any of several scans, is not:
libjpeg keeps every block's DCT coefficients of the whole frame, at full size, 2 bytes each
(128 bytes an 8x8 block, 6 bytes a pixel at 4:4:4, 3 at 4:2:0), until its last scan is read,
whatever scale the output has; and it goes over that whole buffer once for every scan. A
524-byte progressive JPEG whose frame header says 20,000 x 20,000 px took 2.35 GB and 7 s to
read as a 2,500 px slide, and one scan repeated 1,000 times in 11 KB took 6 s at 8,000 px
(5.6 ms a scan, so 100,000 scans in 1.1 MB would hold a preparation worker for 9 minutes, and
for hours at 30,000 px). CVE-2019-13960 is the memory half; libjpeg-turbo leaves both bounds
to the application. Scans are counted by walking the
markers (ITU-T T.81 B.1.1.2-B.1.1.5: a marker segment gives its length; a scan's entropy-coded
data ends at the first 0xFF followed by neither 0x00, a stuffed byte, nor a restart marker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO

# NVIDIA's nvImageCodec refuses a progressive JPEG of more than 256 scans by default for the
# same reason (its NVIMGCODEC_MAX_JPEG_SCANS); a camera's or scanner's has about 10
MAX_JPEG_SCANS = 256
# A camera's or scanner's JPEG has a few dozen marker segments (APPn, DQT, DHT, SOF, SOS, COM);
# the walk stops past this many, which it takes 1.4 s a million to walk (libjpeg skips them in C)
MAX_JPEG_SEGMENTS = 4096
COEFFICIENT_BYTES_A_BLOCK = 64 * 2  # libjpeg's JCOEF is 16 bits
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # after a scan's entropy-coded data
_SOS, _EOI, _TEM = 0xDA, 0xD9, 0x01
_BLOCK_BYTES = 1 << 20
_PROGRESSIVE_FRAMES = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


@dataclass(frozen=True)
class JpegScans:
    """A JPEG's scans and marker segments as its markers tell them (each counted up to one
    past its bound, ``MAX_JPEG_SCANS`` and ``MAX_JPEG_SEGMENTS``), and ``end``, the offset
    just past its end-of-image marker (None where the walk met none: the file is cut short, or
    the walk stopped at a bound); bytes after it are no part of the picture."""

    scans: int
    progressive: bool
    segments: int = 0
    end: int | None = None

    @property
    def too_many(self) -> bool:
        """Whether it has more scans or marker segments than a slide viewer's decoder reads."""
        return self.scans > MAX_JPEG_SCANS or self.segments > MAX_JPEG_SEGMENTS

    @property
    def whole_frame_held(self) -> bool:
        """Whether libjpeg holds the whole frame's coefficients while decoding it."""
        return self.progressive or self.scans > 1


def count_scans(handle: BinaryIO) -> JpegScans:
    """The scans of the JPEG file ``handle`` reads, walked from its start marker (the handle
    is left at its start); a walk that meets no marker where one must be stops there, and
    Pillow says what is wrong with the file. Read a block at a time, not mapped: a file cut
    short while mapped would kill the process (SIGBUS)."""
    scans, segments, progressive, at = 0, 0, False, 2  # past SOI
    end: int | None = None
    try:
        while scans <= MAX_JPEG_SCANS and segments <= MAX_JPEG_SEGMENTS:
            handle.seek(at)
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0xFF:
                break
            marker = head[1]
            if marker == 0xFF:  # a fill byte before a marker
                at += 1
                continue
            if marker == _EOI:
                end = at + 2
                break
            if marker == _TEM or 0xD0 <= marker <= 0xD7:  # markers without a segment
                at += 2
                continue
            progressive |= marker in _PROGRESSIVE_FRAMES
            segments += 1
            at += 2 + int.from_bytes(head[2:4], "big")
            if marker == _SOS:
                scans += 1
                at = _next_marker(handle, at)
    finally:
        handle.seek(0)
    return JpegScans(scans, progressive, segments, end)


def _next_marker(handle: BinaryIO, at: int) -> int:
    """Where the first marker at or after ``at`` starts (the file's end when none does)."""
    while True:
        handle.seek(at)
        block = handle.read(_BLOCK_BYTES)
        found = _NEXT_MARKER.search(block)
        if found:
            return at + found.start()
        if len(block) < _BLOCK_BYTES:
            return at + len(block)
        at += len(block) - 1  # a 0xFF ending the block pairs with the next one's first byte


def too_many_scans(scans: JpegScans) -> str | None:
    """Why a JPEG of these scans and segments is refused, or None."""
    if not scans.too_many:
        return None
    return (f"a JPEG of more than {MAX_JPEG_SCANS} scans or {MAX_JPEG_SEGMENTS} marker segments "
            "(a camera's or scanner's has about 10 and a few dozen; each scan is decoded over "
            "the whole slide); export the slide again as a baseline JPEG, or as PNG or TIFF")


def coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """Bytes of the whole-frame coefficient buffer libjpeg holds for a JPEG of ``width`` x
    ``height`` px whose components are sampled (horizontally, vertically) as ``sampling``."""
    most_h = max(h for h, _ in sampling)
    most_v = max(v for _, v in sampling)
    blocks = sum(-(-width * h // (8 * most_h)) * -(-height * v // (8 * most_v))
                 for h, v in sampling)
    return blocks * COEFFICIENT_BYTES_A_BLOCK
