"""Hostile inputs with known shape, for the tests and ``benchmarks/hostile_inputs.py``.

Each is small on disk and would be huge once parsed or decoded naively: the loaders must
refuse them with a reason, in bounded time and memory (docs/threat-model.md).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def yaml_alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    """~1 KB of YAML whose aliases expand to fan_out**levels values ("billion laughs")."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * fan_out)}]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * fan_out)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def yaml_deep_nesting(depth: int = 100_000) -> str:
    """A config whose one value is ``depth`` nested lists."""
    return "device: " + "[" * depth + "]" * depth + "\n"


def huge_png(side_px: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side_px x side_px (about 1 MB for 20,000: all rows are zero)."""
    row = b"\x00" * (1 + (side_px + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    chunks = [packer.compress(row * 1000) for _ in range(side_px // 1000)]
    chunks.append(packer.compress(row * (side_px % 1000)))
    chunks.append(packer.flush())
    header = struct.pack(">IIBBBBB", side_px, side_px, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(chunks))
        + _png_chunk(b"IEND", b"")
    )


def blank_png(width: int, height: int, colour_type: int = 6, channels: int = 4) -> bytes:
    """An 8-bit PNG of zeros (colour type 6, RGBA, unless told; PNG spec 11.2.2), a few hundred
    kB for 30 Mpx: its size in the header is true, and decoding it takes what its mode takes."""
    row = bytes(1 + width * channels)  # filter byte + samples
    packer = zlib.compressobj(9)
    rows_a_call = max(1, 1_000_000 // len(row))  # a tall narrow image: not one call a row
    body = b"".join(packer.compress(row * min(rows_a_call, height - first))
                    for first in range(0, height, rows_a_call)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
            + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def lying_jpeg(claimed_px: int = 65_000) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims claimed_px x claimed_px."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok, "OpenCV could not encode a 16x16 JPEG"
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, claimed_px, claimed_px)  # height, width
    return bytes(data)


def progressive_jpeg(width: int, height: int, repeated_scans: int = 0) -> bytes:
    """A 16x16 progressive JPEG whose frame header (SOF2) claims width x height, its last scan
    sent ``repeated_scans`` more times: libjpeg holds the whole frame's coefficients for it and
    goes over them once a scan (appliance/jpegscans.py)."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), (160, 90, 180), np.uint8),
                               [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok, "OpenCV could not encode a 16x16 progressive JPEG"
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc2")
    struct.pack_into(">HH", data, sof + 5, height, width)
    last_scan = data[data.rindex(b"\xff\xda"):data.rindex(b"\xff\xd9")]
    return bytes(data[:-2] + last_scan * repeated_scans + data[-2:])
