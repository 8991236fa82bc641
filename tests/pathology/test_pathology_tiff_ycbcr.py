"""YCbCr TIFF slides stored uncompressed: Pillow cannot decode their samples itself (it read
past the strips: "corrupt or truncated image (image file is truncated ...)"), so libtiff
converts them, honouring the file's subsampling, YCbCrCoefficients and ReferenceBlackWhite
(TIFF 6.0 section 21). The files here are written by hand from a known RGB image, so the
conversion is checked against the colours, not against another reader's."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from appliance.cli import main
from appliance.pathology import slides
from appliance.pathology.slides import SlideError, read_slide
from appliance.synthetic.he import SlideSpec
from tests.he_slides import painted
from tests.pathology_helpers import results_rows

BT601 = (0.299, 0.587, 0.114)
BT709 = (0.2126, 0.7152, 0.0722)


def ycbcr_tiff(rgb: np.ndarray, coefficients: tuple[float, float, float],
               subsampling: tuple[int, int]) -> bytes:
    """An uncompressed one-strip little-endian TIFF of ``rgb``'s YCbCr samples: luma with
    ``coefficients``, chroma averaged over ``subsampling`` (horizontal, vertical) blocks and
    stored in TIFF's data units (the block's lumas, then Cb and Cr), full-range
    ReferenceBlackWhite (0 255 128 255 128 255)."""
    height, width, _ = rgb.shape
    kr, kg, kb = coefficients
    red, green, blue = (rgb[..., band].astype(float) for band in range(3))
    luma = kr * red + kg * green + kb * blue
    cb, cr = (blue - luma) / (2 - 2 * kb) + 128, (red - luma) / (2 - 2 * kr) + 128
    across, down = subsampling
    units: list[float] = []
    for top in range(0, height, down):
        for left in range(0, width, across):
            block = np.s_[top:top + down, left:left + across]
            units += [*luma[block].ravel(), cb[block].mean(), cr[block].mean()]
    samples = np.clip(np.round(units), 0, 255).astype(np.uint8).tobytes()
    blobs = [struct.pack("<HHH", 8, 8, 8),
             b"".join(struct.pack("<II", round(v * 10_000), 10_000) for v in coefficients),
             b"".join(struct.pack("<II", v, 1) for v in (0, 255, 128, 255, 128, 255))]
    entries = 12
    at = 8 + 2 + 12 * entries + 4
    offsets = []
    for blob in blobs:
        offsets.append(at)
        at += len(blob)
    short, long_, rational = 3, 4, 5
    tags = [(256, short, 1, struct.pack("<HH", width, 0)),
            (257, short, 1, struct.pack("<HH", height, 0)),
            (258, short, 3, struct.pack("<I", offsets[0])),
            (259, short, 1, struct.pack("<HH", 1, 0)),  # no compression
            (262, short, 1, struct.pack("<HH", 6, 0)),  # YCbCr
            (273, long_, 1, struct.pack("<I", at)),
            (277, short, 1, struct.pack("<HH", 3, 0)),
            (278, short, 1, struct.pack("<HH", height, 0)),
            (279, long_, 1, struct.pack("<I", len(samples))),
            (529, rational, 3, struct.pack("<I", offsets[1])),
            (530, short, 2, struct.pack("<HH", *subsampling)),
            (532, rational, 6, struct.pack("<I", offsets[2]))]
    assert len(tags) == entries
    ifd = struct.pack("<H", entries) + b"".join(
        struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in tags)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + b"".join(blobs) + samples


@pytest.mark.parametrize("subsampling", [(1, 1), (2, 1), (2, 2)], ids=["1x1", "2x1", "2x2"])
@pytest.mark.parametrize("coefficients", [BT601, BT709], ids=["bt601", "bt709"])
def test_an_uncompressed_ycbcr_tiff_is_read_as_the_rgb_it_was_written_from(
    coefficients: tuple[float, float, float], subsampling: tuple[int, int], tmp_path: Path
) -> None:
    """Each 2x2 block one colour, so subsampling loses nothing: the colours come back within
    the rounding of 8-bit samples (on main: refused as corrupt or truncated)."""
    blocks = np.random.default_rng(7).integers(30, 226, (40, 48, 3))
    rgb = np.kron(blocks, np.ones((2, 2, 1))).astype(np.uint8)
    path = tmp_path / "ycbcr.tif"
    path.write_bytes(ycbcr_tiff(rgb, coefficients, subsampling))
    slide = read_slide(path, 1.0, 1.0)
    read = np.asarray(slide.image).astype(int)
    assert read.shape == rgb.shape
    assert np.abs(read - rgb).max() <= 2


def test_the_coefficients_the_file_names_are_the_ones_used(tmp_path: Path) -> None:
    """Samples written with BT.709 luma but labelled BT.601 come back other colours: the
    reader does not assume one set of coefficients."""
    blocks = np.random.default_rng(8).integers(30, 226, (16, 16, 3))
    rgb = np.kron(blocks, np.ones((2, 2, 1))).astype(np.uint8)
    right, wrong = tmp_path / "right.tif", tmp_path / "wrong.tif"
    right.write_bytes(ycbcr_tiff(rgb, BT709, (2, 2)))
    data = ycbcr_tiff(rgb, BT709, (2, 2))
    label = b"".join(struct.pack("<II", round(v * 10_000), 10_000) for v in BT709)
    wrong.write_bytes(data.replace(label, b"".join(
        struct.pack("<II", round(v * 10_000), 10_000) for v in BT601), 1))
    assert np.abs(np.asarray(read_slide(right, 1.0, 1.0).image).astype(int) - rgb).max() <= 2
    assert np.abs(np.asarray(read_slide(wrong, 1.0, 1.0).image).astype(int) - rgb).max() > 10


def test_a_slide_saved_as_an_uncompressed_ycbcr_tiff_is_scored_like_its_rgb_original(
        tmp_path: Path) -> None:
    """As Pillow saves one (YCbCr, no compression, no subsampling)."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).convert("YCbCr").save(folder / "ycbcr.tif")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1",
                 "--no-pictures"]) == 0
    rows = results_rows(out)
    assert rows["ycbcr"]["error"] == ""
    assert rows["ycbcr"]["tile_count"] == rows["rgb"]["tile_count"]
    assert float(rows["ycbcr"]["mean_probability"]) == pytest.approx(
        float(rows["rgb"]["mean_probability"]), abs=0.02)


@pytest.mark.parametrize("compression", [None, "tiff_lzw"], ids=["raw", "lzw"])
def test_a_ycbcr_tiff_counts_libtiffs_rgba_buffer_against_the_decode_bound(
    compression: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libtiff converts YCbCr through an RGBA buffer beside the image (7-8 bytes a pixel
    measured for one strip), so such a TIFF counts 9 bytes a pixel, as other modes of
    several bands do, where an RGB one counts 5: a bound between the two passes the RGB file
    and refuses the YCbCr one, before decoding (on main it was counted as RGB)."""
    rgb = np.full((200, 300, 3), (180, 90, 140), np.uint8)
    plain, ycbcr = tmp_path / "rgb.tif", tmp_path / "ycbcr.tif"
    Image.fromarray(rgb).save(plain, compression=compression)
    Image.fromarray(rgb).convert("YCbCr").save(ycbcr, compression=compression)
    monkeypatch.setattr(slides, "MAX_DECODED_BYTES", 7 * 200 * 300)
    assert read_slide(plain, 1.0, 1.0).image.size == (300, 200)
    with pytest.raises(SlideError, match=r"60000 pixels \(RGB\) need 5\d{5} bytes"):
        read_slide(ycbcr, 1.0, 1.0)


def test_reading_a_ycbcr_tiff_gives_libtiff_to_no_other_tiff_opened_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread opening an uncompressed RGB TIFF at any moment of a YCbCr slide's read
    (here: at each Image.open the read makes) gets Pillow's own decoder, and the slide's page
    still gets libtiff (on main Pillow's module switch READ_LIBTIFF was on while the slide was
    opened again: that other TIFF got libtiff too)."""
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))[:96, :128]
    other = tmp_path / "other.tif"
    Image.fromarray(rgb).save(other)  # uncompressed RGB: Pillow decodes it itself
    slide = tmp_path / "ycbcr.tif"
    Image.new("RGB", (8, 8)).convert("YCbCr").save(  # a thumbnail first: the page is read
        slide, save_all=True, append_images=[Image.fromarray(rgb).convert("YCbCr")])
    real_open, others = Image.open, []

    def open_meanwhile(*args: object, **kwargs: object) -> Image.Image:
        with real_open(other) as opened:
            others.append(getattr(opened, "use_load_libtiff", None))
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", open_meanwhile)
    read = read_slide(slide, 1.0, 1.0)
    assert others  # the read opened the file
    assert not any(others)
    assert np.abs(np.asarray(read.image).astype(int) - rgb).max() <= 3
