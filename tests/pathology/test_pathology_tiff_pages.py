"""Multi-page TIFF slides: the slide is the page a scanner means, the largest full-resolution
image (a scanner's TIFF holds the scan, reduced levels, a label and an overview); a file whose
largest size two full-resolution pages share, or of more pages than a scanner writes, is
refused naming its pages. On main the first page was read, whatever the others were."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from appliance.cli import main
from appliance.pathology.pieces import MAX_TIFF_PAGES
from appliance.pathology.slides import SlideError, read_slide
from appliance.synthetic.he import SlideSpec
from tests.he_slides import painted
from tests.pathology_helpers import results_rows


def _slide_pixels() -> np.ndarray:
    return painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))[:512, :640]


def test_a_thumbnail_before_the_scan_is_passed_over_for_the_scan(tmp_path: Path) -> None:
    """An 8x8 first page before the slide (on main: the 8x8 page was the slide, refused as
    smaller than one tile)."""
    rgb = _slide_pixels()
    path = tmp_path / "thumb-first.tif"
    Image.new("RGB", (8, 8), (200, 120, 170)).save(
        path, save_all=True, append_images=[Image.fromarray(rgb)])
    slide = read_slide(path, 1.0, 1.0)
    assert slide.source_size_px == (640, 512)
    assert np.array_equal(np.asarray(slide.image), rgb)


def test_a_pyramid_is_read_at_its_full_resolution_page_not_a_larger_reduced_one(
        tmp_path: Path) -> None:
    """Reduced levels flagged in NewSubfileType (as scanners write them) are never the slide,
    even one the file lists before the scan, as a label page of another size is not."""
    rgb = _slide_pixels()
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(np.zeros((1024, 1280, 3), np.uint8), subfiletype=1, photometric="rgb")
        tiff.write(rgb, photometric="rgb")
        tiff.write(rgb[::2, ::2], subfiletype=1, photometric="rgb")
        tiff.write(np.zeros((60, 90, 3), np.uint8), photometric="rgb")  # a label
    slide = read_slide(path, 1.0, 1.0)
    assert np.array_equal(np.asarray(slide.image), rgb)


def test_two_full_resolution_pages_of_one_size_are_refused_naming_them(tmp_path: Path) -> None:
    """A z-stack or two slides in one file: which is meant cannot be told."""
    path = tmp_path / "stack.tif"
    Image.new("RGB", (8, 8)).save(path, save_all=True, append_images=[
        Image.new("RGB", (300, 200), (200, 120, 170)), Image.new("RGB", (300, 200))])
    with pytest.raises(SlideError) as caught:
        read_slide(path, 1.0, 1.0)
    assert str(caught.value) == (
        f"{path}: a TIFF of 3 pages, 2 of them full-resolution images of 300x200 px (pages 2, "
        "3): a z-stack, channels or several slides in one file, so which is the slide cannot "
        "be told; export that page alone")


def test_a_tiff_of_more_pages_than_a_scanner_writes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.tif"
    with tifffile.TiffWriter(path) as tiff:
        for size in range(1, MAX_TIFF_PAGES + 3):
            tiff.write(np.zeros((size, size), np.uint8))
    with pytest.raises(SlideError, match=f"a TIFF of more than {MAX_TIFF_PAGES} pages"):
        read_slide(path, 1.0, 1.0)


def test_a_later_page_stored_in_too_many_strips_is_refused_before_it_is_opened(
        tmp_path: Path) -> None:
    """The pieces bound holds for every page now that another than the first may be read."""
    path = tmp_path / "strips.tif"
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(np.zeros((8, 8, 3), np.uint8), photometric="rgb")
        tiff.write(np.zeros((20_000, 1, 3), np.uint8), photometric="rgb", rowsperstrip=1)
    with pytest.raises(SlideError, match="stored in more strips or tiles than its pixels need"):
        read_slide(path, 1.0, 1.0)


def test_a_page_chain_that_loops_is_read_as_the_pages_before_the_loop(tmp_path: Path) -> None:
    """A last page whose next-page offset points back at itself."""
    rgb = _slide_pixels()
    path = tmp_path / "loop.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    data = bytearray(path.read_bytes())
    first = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[first:first + 2])[0]
    data[first + 2 + 12 * count:first + 6 + 12 * count] = struct.pack("<I", first)
    path.write_bytes(bytes(data))
    assert np.array_equal(np.asarray(read_slide(path, 1.0, 1.0).image), rgb)


def test_the_page_read_is_in_the_slides_result_and_its_summary_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pathology run`'s results.csv says which page of how many was read (the scan, page 2
    of 4, after a thumbnail and before a reduced level and a label), and its line says it
    too; a one-page file reads page 1 of 1, not said in its line (on main: neither)."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    with tifffile.TiffWriter(folder / "scan.tif") as tiff:
        tiff.write(np.full((8, 8, 3), 200, np.uint8), photometric="rgb")
        tiff.write(rgb, photometric="rgb")
        tiff.write(rgb[::2, ::2], subfiletype=1, photometric="rgb")
        tiff.write(np.zeros((60, 90, 3), np.uint8), photometric="rgb")
    Image.fromarray(rgb).save(folder / "flat.png")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1",
                 "--no-pictures"]) == 0
    rows = results_rows(out)
    assert (rows["scan"]["page"], rows["scan"]["pages"]) == ("2", "4")
    assert (rows["flat"]["page"], rows["flat"]["pages"]) == ("1", "1")
    lines = {line.split(":", 1)[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["scan"].endswith(" tiles, page 2 of 4)")
    assert "page" not in lines["flat"]
