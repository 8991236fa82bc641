"""A frame's colours are read as a colour-managed viewer shows them: in sRGB, whatever profile
its file carries."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from appliance.skin.frames import FrameError, load_frame

D50 = (0.9642, 1.0, 0.8249)


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(struct.pack(">i", round(v * 65536)) for v in (x, y, z))


def _rgb_profile(name: str, primaries: tuple[tuple[float, float, float], ...],
                 gamma: float) -> bytes:
    """An ICC v2 display profile of three primaries (XYZ, D50) and one gamma (ICC.1:2001-04,
    a matrix/TRC profile): no such profile file ships with the system here."""
    text = name.encode("ascii") + b"\0"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(79)),
        (b"wtpt", _xyz(*D50)),
        *((tag, _xyz(*primary)) for tag, primary in zip((b"rXYZ", b"gXYZ", b"bXYZ"),
                                                        primaries, strict=True)),
        *((tag, b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2))
          for tag in (b"rTRC", b"gTRC", b"bTRC")),
        (b"cprt", b"text" + bytes(4) + b"none\0\0\0\0"),
    ]
    start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    header = (struct.pack(">I4xI", start + len(body), 0x02100000) + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(28) + _xyz(*D50)[8:] + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


ADOBE_RGB = _rgb_profile("Adobe RGB (1998), as a test draws it",
                         ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087),
                          (0.14919, 0.06322, 0.74457)), 563 / 256)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _skin_coloured() -> np.ndarray:
    rows, cols = np.mgrid[0:960, 0:1280]
    return np.dstack([150 + cols // 20, 90 + rows // 20, 70 + (rows + cols) // 60]).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_a_frame_saved_in_adobe_rgb_reads_the_colours_it_shows(
    tmp_path: Path, suffix: str
) -> None:
    """Saved in Adobe RGB with its profile (as a camera or an editor set to it saves), a frame
    was read as if its numbers were sRGB: on a skin frame a* fell from 17.9 to 12.4, the
    erythema index by 23 %, the melanin index rose by 15 %."""
    srgb = _skin_coloured()
    adobe = ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_RGB))
    to_adobe = ImageCms.buildTransform(SRGB, adobe, "RGB", "RGB",
                                       ImageCms.Intent.RELATIVE_COLORIMETRIC)
    stored = ImageCms.applyTransform(Image.fromarray(srgb), to_adobe)
    assert stored is not None
    assert np.abs(np.asarray(stored).astype(int) - srgb).max() > 10  # really other numbers
    stored.save(tmp_path / f"adobe{suffix}", icc_profile=ADOBE_RGB, quality=95)
    read = load_frame(tmp_path / f"adobe{suffix}").astype(int)
    assert np.abs(read - srgb).mean() < 1.0
    assert np.abs(read - srgb).max() <= (8 if suffix == ".jpg" else 2)


def test_an_srgb_profile_or_none_leaves_every_pixel_as_stored(tmp_path: Path) -> None:
    srgb = _skin_coloured()
    Image.fromarray(srgb).save(tmp_path / "tagged.png", icc_profile=SRGB.tobytes())
    Image.fromarray(srgb).save(tmp_path / "broken.png", icc_profile=b"not a profile")
    for name in ("tagged.png", "broken.png"):
        assert np.array_equal(load_frame(tmp_path / name), srgb)


def test_a_colour_profile_larger_than_any_display_s_is_refused_unread(tmp_path: Path) -> None:
    """A 2 MB "profile" in a 1280x960 JPEG (31 APP2 segments) was handed to littlecms whole
    (any file from outside: `analyze`, the kiosk's folder source)."""
    padded = ADOBE_RGB + bytes(2_000_000)
    Image.fromarray(_skin_coloured()).save(tmp_path / "padded.jpg", icc_profile=padded)
    with pytest.raises(FrameError) as refused:
        load_frame(tmp_path / "padded.jpg")
    assert str(refused.value) == (
        f"{tmp_path / 'padded.jpg'}: a colour profile of {len(padded)} bytes, more than any "
        "display's (1048576); refused (save the frame as sRGB)")
