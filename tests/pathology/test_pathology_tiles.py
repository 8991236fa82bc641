"""Slide reading, tissue mask and tiling, on made-up images and on the real H&E tiles."""

from __future__ import annotations

import os
import stat
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from appliance.pathology.prepare import TileSettings, prepare_slide, tumour_tiles
from appliance.pathology.slides import Slide, SlideError, read_slide, slide_files
from appliance.pathology.tiles import read_tiles, slide_tissue_mask, tile_grid, tissue_mask
from tests.shared_data import SHARED_DATA

REAL_TILES = SHARED_DATA / "he-tiles-crc-val-7k"
PINK = (200, 120, 170)


def _half_tissue(width_px: int = 1024, height_px: int = 512) -> np.ndarray:
    """Left half glass (near white), right half stained tissue with texture."""
    rng = np.random.default_rng(0)
    image = np.full((height_px, width_px, 3), 236, np.uint8)
    noise = rng.integers(-25, 25, (height_px, width_px // 2, 3))
    image[:, width_px // 2 :] = np.clip(np.array(PINK) + noise, 0, 255).astype(np.uint8)
    return image


def _save(tmp_path: Path, rgb: np.ndarray, name: str = "slide.png") -> Path:
    path = tmp_path / name
    Image.fromarray(rgb).save(path)
    return path


def test_mask_finds_the_tissue_half_only() -> None:
    mask = tissue_mask(_half_tissue(), um_per_px=2.0)
    assert mask.mask[:, 600:].mean() > 0.98
    assert mask.mask[:, :400].mean() < 0.02


def test_tiles_cover_only_tissue_with_the_physical_size(tmp_path: Path) -> None:
    slide = read_slide(_save(tmp_path, _half_tissue()), um_per_px=1.0, target_um_per_px=1.0)
    tiles = tile_grid(slide, slide_tissue_mask(slide), tile_um=128.0)
    # 1024 x 512 px at 1 µm/px in 128 µm tiles: an 8 x 4 grid, the right 4 columns are tissue.
    assert len(tiles) == 16
    assert {tile.col for tile in tiles} == {4, 5, 6, 7}
    assert all(tile.size_px == 128 for tile in tiles)
    pixels = read_tiles(slide, tiles[:3], tile_px=64)
    assert pixels.shape == (3, 64, 64, 3)
    assert pixels.dtype == np.uint8


def test_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(_half_tissue(2048, 1024)).save(path, quality=90)
    slide = read_slide(path, um_per_px=0.5, target_um_per_px=2.0)
    assert slide.size_px == (512, 256)
    assert slide.um_per_px == pytest.approx(2.0)


def test_blank_slide_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = _save(tmp_path, np.full((600, 600, 3), 240, np.uint8))
    with pytest.raises(SlideError, match="no tissue tile"):
        prepare_slide(path, 1.0, TileSettings(tile_px=64, tile_um=128.0))


def test_a_grey_slide_is_refused_as_grey_not_as_blank(tmp_path: Path) -> None:
    """A greyscale export of a tissue slide (PNG mode L, 16-bit grey TIFF, or grey saved as
    RGB) has no colour for the tissue mask: it used to be asked whether it was blank or
    overexposed."""
    settings = TileSettings(tile_px=64, tile_um=128.0)
    tissue = _half_tissue()
    grey = np.asarray(Image.fromarray(tissue).convert("L"))
    paths = [_save(tmp_path, grey, "mode_l.png"),
             _save(tmp_path, np.repeat(grey[..., None], 3, axis=2), "grey_rgb.png")]
    tifffile.imwrite(tmp_path / "grey16.tif", grey.astype(np.uint16) * 257)
    for path in [*paths, tmp_path / "grey16.tif"]:
        with pytest.raises(SlideError, match=rf"{path.name}: no tissue tile: the image has "
                           r"no colour \(a greyscale scan or export\)"):
            prepare_slide(path, 1.0, settings)
    assert prepare_slide(_save(tmp_path, tissue, "colour.png"), 1.0, settings).tiles
    with pytest.raises(SlideError, match="blank or overexposed"):  # no detail: still blank
        prepare_slide(_save(tmp_path, np.zeros((600, 600), np.uint8), "black.png"), 1.0,
                      settings)


def test_sparse_tissue_is_said_to_be_sparse_not_blank(tmp_path: Path) -> None:
    """Pink fragments scattered over glass (16 % tissue, as a slide of fat is): no 128 µm tile
    is half tissue, and the slide was asked whether it was blank or overexposed."""
    image = np.full((1024, 1024, 3), 236, np.uint8)
    for top in range(30, 1024, 100):
        for left in range(30, 1024, 100):
            image[top : top + 40, left : left + 40] = PINK
    with pytest.raises(SlideError, match=r"no tissue tile: tissue covers 1\d\.\d% of the slide, "
                       r"but no 128 µm tile is 50% tissue \(sparse tissue"):
        prepare_slide(_save(tmp_path, image), 1.0, TileSettings(tile_px=64, tile_um=128.0))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"hello world, not a picture", "not a JPEG"),
     (b"\xff\xd8\xff\xe0" + bytes(200), "corrupt or truncated")],
)
def test_unreadable_files_name_the_problem(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(SlideError, match=message):
        read_slide(path, 1.0, 2.0)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_half_tissue()).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SlideError, match="truncated"):
        read_slide(path, 1.0, 1.0)


@pytest.mark.parametrize("um_per_px", [0.0, -1.0, 50.0, float("nan")])
def test_implausible_resolution_is_refused(tmp_path: Path, um_per_px: float) -> None:
    with pytest.raises(SlideError, match=r"µm/px|resolution unknown"):
        read_slide(_save(tmp_path, _half_tissue()), um_per_px, 1.0)


def test_every_real_tile_is_tissue() -> None:
    files = slide_files(REAL_TILES)
    assert len(files) == 32
    for path in files:
        slide = read_slide(path, um_per_px=0.5, target_um_per_px=1.0)
        mask = slide_tissue_mask(slide)
        tiles = tile_grid(slide, mask, tile_um=112.0)
        assert mask.tissue_fraction > 0.9, path.name
        assert len(tiles) == 1, path.name


def test_tumour_filter_keeps_tumour_and_drops_fat() -> None:
    def class_tiles(name: str) -> np.ndarray:
        paths = sorted((REAL_TILES / name).glob("*.png"))
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])

    assert tumour_tiles(class_tiles("TUM")).all()
    assert not tumour_tiles(class_tiles("ADI")).any()


def test_a_slide_swapped_for_a_pipe_as_it_is_decoded_is_read_as_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is replaced by a FIFO just as the decoder opens it: the slide is read from
    the descriptor opened and checked first, never from the FIFO (which waits for a writer,
    so a worker hung there for good)."""
    path = _save(tmp_path, _half_tissue())
    decoder_open = Image.open

    def swap_then_open(source: Any, *args: Any, **kwargs: Any) -> Image.Image:
        if path.is_file():  # the first open: the check has passed, now the swap
            path.unlink()
            os.mkfifo(path)
        return decoder_open(source, *args, **kwargs)

    monkeypatch.setattr(Image, "open", swap_then_open)
    read: list[Slide] = []
    reader = threading.Thread(target=lambda: read.append(read_slide(path, 1.0, 1.0)),
                              daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive():
        with path.open("wb"):  # a writer that closes at once: the waiting read ends
            pass
        reader.join(10)
        pytest.fail("reading the slide waited on the pipe put in its place")
    assert read[0].size_px == (1024, 512)
    assert not stat.S_ISREG(path.stat().st_mode)  # the swap did happen


def test_a_pipe_named_as_a_slide_is_refused_without_waiting(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.tif"
    os.mkfifo(pipe)
    with pytest.raises(SlideError, match=r"pipe\.tif: not a regular file \(a pipe"):
        read_slide(pipe, 1.0, 1.0)


def _deep_tiffs(tmp_path: Path, rgb: np.ndarray) -> dict[str, tuple[Path, np.ndarray]]:
    """The same slide written as a scanner or a converter writes 16-bit and float TIFF, each
    with the 8-bit RGB a slide viewer shows for it."""
    grey = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.int64)
    grey_rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)
    written: dict[str, tuple[Path, np.ndarray]] = {}

    def write(name: str, samples: np.ndarray, shown: np.ndarray, **options: Any) -> None:
        tifffile.imwrite(tmp_path / name, samples, **options)
        written[name] = (tmp_path / name, shown)

    write("grey16.tif", (grey * 257).astype(np.uint16), grey_rgb)  # top byte: >> 8
    write("grey12.tif", ((grey * 4095 + 127) // 255).astype(np.uint16), grey_rgb,  # 12 bits
          extratags=[(281, "H", 1, 4095, False)])  # MaxSampleValue
    write("rgb12.tif", ((rgb.astype(np.int64) * 4095 + 127) // 255).astype(np.uint16), rgb,
          photometric="rgb", extratags=[(281, "H", 1, 4095, False)])  # not its top byte
    write("grey_float.tif", grey.astype(np.float32) / 255, grey_rgb)  # within [0, 1]
    write("rgb_float.tif", rgb.astype(np.float32) / 255, rgb, photometric="rgb")
    stretched = rgb.astype(np.float64) * 40 - 1000  # outside [0, 1]: min-max
    shown = np.round((stretched - stretched.min()) / np.ptp(stretched) * 255).astype(np.uint8)
    write("rgb_float_planes.tif", np.moveaxis(stretched, 2, 0), shown, photometric="rgb",
          planarconfig="separate")
    return written


def test_sixteen_bit_and_float_tiffs_are_read_as_a_viewer_shows_them(tmp_path: Path) -> None:
    """16-bit grey came out white (Pillow clips it to 255), float grey black, float RGB was
    called corrupt."""
    rgb = _half_tissue(256, 128)
    rgb[0, 0], rgb[0, 1] = (0, 0, 0), (255, 255, 255)  # the full range, for min-max
    for name, (path, shown) in _deep_tiffs(tmp_path, rgb).items():
        slide = read_slide(path, um_per_px=1.0, target_um_per_px=1.0)
        got = np.asarray(slide.image).astype(int)
        assert got.shape == shown.shape, name
        assert np.abs(got - shown).max() <= 1, name


def test_a_cut_float_tiff_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.random.default_rng(1).random((400, 300, 3), np.float32),
                     photometric="rgb")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SlideError, match=r"cut\.tif: corrupt or truncated"):
        read_slide(path, 1.0, 1.0)


def test_a_float_tiff_too_large_to_decode_is_refused_before_decoding(tmp_path: Path) -> None:
    """Its header claims 30,000 x 30,000 float samples: 10.8 GB while decoded (12 bytes a
    pixel), more than the 5 GB an 8-bit RGB slide of the pixel limit takes (the file itself is
    a few hundred bytes)."""
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.float32))
    header = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tiff:
        sizes = [tiff.pages[0].tags[code] for code in (256, 257)]  # ImageWidth, ImageLength
    for tag in sizes:  # an IFD entry: code, type, count, then the value
        struct.pack_into("<H" if tag.dtype == 3 else "<I", header, tag.offset + 8, 30_000)
    path.write_bytes(bytes(header))
    with pytest.raises(SlideError, match=r"huge\.tif: 900000000 pixels \(F\) need 10800480000 "
                       r"bytes while decoded, more than the 5000505952 of an 8-bit RGB slide"):
        read_slide(path, 1.0, 1.0)
