"""Reading slide images (JPEG, PNG, TIFF) at the resolution the model needs, one copy in memory.

A JPEG is decoded straight to a reduced scale (libjpeg's DCT scaling via PIL ``draft``), so a
20,000 px slide scanned at 0.5 µm/px never exists at full size when tiles want 1-2 µm/px. Other
formats are decoded once at full size and reduced with ``Image.reduce``; the full image is
dropped before tiling starts. An uncompressed YCbCr TIFF, which Pillow cannot decode itself, is
decoded by libtiff, as every compressed TIFF is. A TIFF of 16-bit, 32-bit or float samples is
brought to 8 bits as a slide viewer shows it (appliance/pathology/bitdepth.py); one Pillow
cannot read (float RGB) is decoded by tifffile. A slide is refused, before its pixels are
decoded, when decoding it would at its peak hold more bytes than an 8-bit RGB slide of
MAX_SLIDE_PIXELS does: Pillow keeps every pixel of more than one band in 4 bytes (RGB included),
and the conversions below hold the old and the new image together for a moment (an RGBA or CMYK
slide, or a YCbCr TIFF that libtiff converts through its RGBA buffer: up to 9 bytes a pixel; an
RGB one reduced 2x: 4 + 1; and each image's pointer to each of its rows, 8 bytes a row: 1 x 40
million px held 480 MB, so 10^9 rows would hold 12 GB), and, for a progressive JPEG, the whole
frame's coefficients libjpeg holds at full size (appliance/jpegscans.py, which also refuses a
JPEG of more scans than a slide viewer's decoder reads).
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
from PIL import Image, ImageFile, JpegImagePlugin, TiffImagePlugin, UnidentifiedImageError

from appliance.jpegscans import (
    JpegScans,
    coefficient_bytes,
    count_scans,
    too_many_scans,
)
from appliance.pathology.bitdepth import eight_bit
from appliance.pathology.pieces import MAX_TIFF_PAGES, TiffPage, tiff_pages, too_many_pieces
from appliance.pathology.resolution import resolution_problem

SLIDE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
MAX_SLIDE_PIXELS = 1_000_000_000
# Pillow holds a pointer to each row of an image (8 bytes), and _decode two images at once:
# nothing for a square slide, but a 1 px wide one held 8 bytes a pixel more than its pixels
_ROW_TABLES_BYTES_A_ROW = 2 * 8
# what decoding an 8-bit RGB slide of MAX_SLIDE_PIXELS holds at its peak (5 bytes a pixel, and
# the row tables of a square one)
MAX_DECODED_BYTES = 5 * MAX_SLIDE_PIXELS + _ROW_TABLES_BYTES_A_ROW * math.isqrt(MAX_SLIDE_PIXELS)
_SIGNATURES = (b"\xff\xd8", b"\x89PNG", b"II*\x00", b"MM\x00*")
# Pixels that are palette indices or single bits, and the mode they are averaged in when the
# slide is reduced (Pillow refuses "P" and "1", and averages a "PA" image's indices into other
# colours); single bits become grey, a byte a pixel, not RGB's three.
_AVERAGED_AS = {"1": "L", "P": "RGB", "PA": "RGBA"}
# Pillow's modes of samples wider than a byte (16-bit, 32-bit, float grey), bytes a pixel
_DEEP_MODES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I;16S": 2, "I": 4, "F": 4}
# Bytes a pixel that _decode holds at its peak, by the mode Pillow opens (as measured with
# each mode's slide, reduced or not): a byte-a-pixel mode, then its RGB copy (1 + 4); RGB, then
# its reduced copy (4 + 1); any other mode of several bands (RGBA, CMYK, LA, PA, YCbCr ...),
# then its RGB copy (4 + 4), or, reduced, the premultiplied copy Pillow reduces (4 + 4 + 1);
# deep samples: three times their own size (the image, its array and the bytes it came from).
_PEAK_BYTES_A_PIXEL = {"1": 5, "L": 5, "P": 5, "RGB": 5,
                       **{mode: 3 * size for mode, size in _DEEP_MODES.items()}}
_PEAK_BYTES_OTHER_MODES = 9
_BITS_PER_SAMPLE, _MAX_SAMPLE_VALUE, _PHOTOMETRIC, _MIN_IS_WHITE = 258, 281, 262, 0  # TIFF
_YCBCR = 6  # TIFF's PhotometricInterpretation of YCbCr samples


class SlideError(ValueError):
    """A slide that cannot be processed; the message names the file, the problem and the fix."""


@dataclass
class Slide:
    """A slide image held once, at a working resolution no coarser than the tiles need."""

    name: str
    path: Path
    image: Image.Image
    um_per_px: float
    source_size_px: tuple[int, int]
    source_um_per_px: float
    page: int = 1  # the page of the file read as the slide, from 1 (a TIFF's, else 1)
    pages: int = 1  # how many the file has

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the working image."""
        return self.image.size

    def thumbnail(self, um_per_px: float) -> np.ndarray:
        """RGB uint8 array of the slide at about um_per_px (never finer than the working image)."""
        factor = max(1, int(um_per_px / self.um_per_px))
        small = self.image.reduce(factor) if factor > 1 else self.image
        return np.asarray(small.convert("RGB"))

    def close(self) -> None:
        """Release the decoded image."""
        self.image.close()


def check_um_per_px(um_per_px: float, name: str) -> None:
    """Refuse a resolution outside what brightfield slide scans have."""
    if np.isnan(um_per_px):
        raise SlideError(
            f"{name}: resolution unknown; give an um_per_px column in labels.csv or --um-per-px"
        )
    problem = resolution_problem(um_per_px)
    if problem is not None:
        raise SlideError(
            f"{name}: {problem}; fix the um_per_px column of labels.csv or --um-per-px")


def read_slide(path: Path, um_per_px: float, target_um_per_px: float,
               roots: Sequence[Path] = ()) -> Slide:
    """Open a slide and decode it at the coarsest power-of-two scale still finer than target;
    with ``roots``, only a file whose path leads inside one of them, before it is opened and as
    opened (links resolved)."""
    check_um_per_px(um_per_px, path.name)
    reduction = _reduction(um_per_px, target_um_per_px)
    if roots:  # before opening: a file elsewhere is refused alike, there or not
        _check_leads_inside(Path(os.path.realpath(path)), path, roots)
    with _open_slide(path) as handle, warnings.catch_warnings():
        if roots:
            _check_leads_inside(Path(os.readlink(f"/proc/self/fd/{handle.fileno()}")), path,
                                roots)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image, source_size, (page, pages) = _decode(handle, path, reduction)
    scale = image.size[0] / source_size[0]
    return Slide(
        name=path.stem,
        path=path,
        image=image,
        um_per_px=um_per_px / scale,
        source_size_px=source_size,
        source_um_per_px=um_per_px,
        page=page + 1,
        pages=pages,
    )


def _reduction(um_per_px: float, target_um_per_px: float) -> int:
    """Largest of 1, 2, 4, 8 that keeps the working image at least as fine as the target."""
    reduction = 1
    while reduction < 8 and um_per_px * reduction * 2 <= target_um_per_px:
        reduction *= 2
    return reduction


def _open_slide(path: Path) -> BinaryIO:
    """The slide file opened for reading, checked on the opened descriptor: a path swapped for
    a pipe or a device after any earlier look is refused, never read (O_NONBLOCK: opening a
    pipe does not wait for a writer)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise SlideError(f"{path}: slide file not found; check its path") from exc
    except OSError as exc:  # its owner or mode keeps us out
        raise SlideError(f"{path}: slide file cannot be read ({exc.strerror or exc}); check its "
                         "owner and mode") from exc
    try:
        _check_kind(os.fstat(descriptor).st_mode, path)
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    try:
        _check_start(handle, path)
    except BaseException:
        handle.close()
        raise
    return handle


def _check_leads_inside(opened: Path, path: Path, roots: Sequence[Path]) -> None:
    """Refuse a slide that leads outside the roots: a job's paths are checked when it comes
    in, and a slide replaced by a link (or a folder on its way) since then leads elsewhere.
    Checked on where its path resolves before it is opened, so a link into another lab's
    folder is refused alike whether a file is there or not (opening says which), and again
    on the opened file (Linux names an open descriptor's file in /proc/self/fd), which a
    swap between the two cannot pass. Where it leads is not said: the error is its job's
    result, which its submitter reads, and a link to another lab's link leads to a name of
    that lab's (``readlink -f`` on the path shows it to an operator)."""
    if not any(opened.is_relative_to(root.resolve()) for root in roots):
        raise SlideError(f"{path}: leads outside the slide roots now (a link, or a folder on "
                         "its way, replaced since its job was taken); refused")


def _check_kind(mode: int, path: Path) -> None:
    """Refuse a folder, a pipe, a socket or a device (what the opened descriptor is)."""
    if stat.S_ISDIR(mode):
        raise SlideError(f"{path}: a folder, not a slide image; pass slide files, or score a "
                         "folder with `appliance pathology run`")
    if not stat.S_ISREG(mode):  # reading a pipe would wait for a writer
        raise SlideError(f"{path}: not a regular file (a pipe, socket or device); pass slide "
                         "image files")


def _check_start(handle: BinaryIO, path: Path) -> None:
    """Refuse an empty file, or one that starts like no JPEG, PNG or TIFF."""
    try:
        head = handle.read(8)
        handle.seek(0)
    except OSError as exc:
        raise SlideError(f"{path}: slide file cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise SlideError(f"{path}: empty file (0 bytes); copy the slide again")
    if not head.startswith(_SIGNATURES):
        raise SlideError(f"{path}: not a JPEG, PNG or TIFF image; pass slide images only")


def _decode(handle: BinaryIO, path: Path, reduction: int
            ) -> tuple[Image.Image, tuple[int, int], tuple[int, int]]:
    """Decode once at 1/reduction scale (draft for JPEG, reduce after load otherwise); the
    image, the slide's full size and which page of how many it is (from 0)."""
    Image.MAX_IMAGE_PIXELS = MAX_SLIDE_PIXELS
    scans = _pieces(handle, path)  # before Pillow walks them, in Python
    page, pages = _slide_page(handle, path)
    try:
        image = _open_image(handle, path, page)
        width, height = image.size
        held_by_libjpeg = 0
        if isinstance(image, JpegImagePlugin.JpegImageFile):
            held_by_libjpeg = _jpeg_coefficient_bytes(scans, image)
            if reduction > 1:
                image.draft("RGB", (width // reduction, height // reduction))
        decoded_pixels = image.size[0] * image.size[1]  # a JPEG's, at its draft scale
        bytes_a_pixel = (_PEAK_BYTES_OTHER_MODES if _ycbcr_converted_by_libtiff(image)
                         else _PEAK_BYTES_A_PIXEL.get(image.mode, _PEAK_BYTES_OTHER_MODES))
        peak_bytes = (held_by_libjpeg + _ROW_TABLES_BYTES_A_ROW * image.size[1]
                      + decoded_pixels * bytes_a_pixel)
        if held_by_libjpeg:
            _check_decoded_size(path, width * height, f"{image.mode}, a progressive or "
                                "multi-scan JPEG, whose coefficients libjpeg holds whole",
                                peak_bytes, "export it again as a baseline JPEG")
        _check_decoded_size(path, width * height, image.mode, peak_bytes)
        image.load()
        if image.mode in _DEEP_MODES:
            image = _replace(image, _eight_bit_image(image))
        if image.mode in _AVERAGED_AS:
            image = _replace(image, image.convert(_AVERAGED_AS[image.mode]))
        if reduction > 1 and image.size[0] == width:
            image = _replace(image, image.reduce(reduction))
        if image.mode != "RGB":
            image = _replace(image, image.convert("RGB"))
    except SlideError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SlideError(
            f"{path}: larger than {MAX_SLIDE_PIXELS} pixels; split or downsample the slide"
        ) from exc
    except UnidentifiedImageError as exc:  # its text names our file object, not the file
        raise SlideError(f"{path}: corrupt or truncated image: it starts as a JPEG, PNG or "
                         "TIFF does, but its header cannot be read; copy or export the "
                         "slide again") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise SlideError(
            f"{path}: corrupt or truncated image ({exc}); copy or export the slide again"
        ) from exc
    return image, (width, height), (page, pages)


def _slide_page(handle: BinaryIO, path: Path) -> tuple[int, int]:
    """Which page of a TIFF is the slide (from 0; 0 of 1 for any other file), and how many
    pages it has: the largest full-resolution
    image, as a scanner's TIFF holds the scan, its reduced levels, a label and an overview (its
    first page, usually; an 8 px thumbnail first was read as the slide). A file of more pages
    than a scanner writes, or whose largest size two full-resolution pages share (a z-stack,
    channels, several slides in one file), is refused naming its pages: which one was meant
    cannot be told."""
    try:
        head = handle.read(8)
        pages = tiff_pages(handle, head) if head.startswith(_SIGNATURES[2:]) else []
    except OSError as exc:
        raise SlideError(f"{path}: slide file cannot be read ({exc.strerror or exc})") from exc
    finally:
        handle.seek(0)
    if len(pages) <= 1:
        return 0, 1
    if len(pages) > MAX_TIFF_PAGES:
        raise SlideError(f"{path}: a TIFF of more than {MAX_TIFF_PAGES} pages (a scanner's holds "
                         "the slide, a few reduced levels, a label and an overview); export "
                         "the slide's image alone")
    full = [index for index, one in enumerate(pages) if one.full_resolution] or \
        list(range(len(pages)))
    largest = max(pages[index].pixels for index in full)
    biggest = [index for index in full if pages[index].pixels == largest]
    if len(biggest) > 1:
        raise SlideError(
            f"{path}: a TIFF of {len(pages)} pages, {len(biggest)} of them full-resolution "
            f"images of {_size(pages[biggest[0]])} (pages {', '.join(str(i + 1) for i in biggest)}"
            "): a z-stack, channels or several slides in one file, so which is the slide cannot "
            "be told; export that page alone")
    return biggest[0], len(pages)


def _size(page: TiffPage) -> str:
    return f"{page.width}x{page.length} px"


def _open_image(handle: BinaryIO, path: Path, page: int = 0) -> Image.Image:
    """The slide (a TIFF's ``page``) as Pillow opens it; as tifffile decodes it, already brought
    to 8 bits, for a TIFF Pillow cannot identify (float RGB, 64-bit float) or one of 16-bit
    colour samples whose MaxSampleValue is below 65535 (Pillow keeps their top byte: 12-bit
    data came out sixteen times too dark)."""
    try:
        image = Image.open(handle)
    except UnidentifiedImageError:
        handle.seek(0)
        if handle.read(4) not in _SIGNATURES[2:]:
            raise
        return _tifffile_image(handle, path, page)
    if page:
        image.seek(page)
    if _colour_below_sixteen_bits(image):
        with suppress(SlideError):  # a compression tifffile lacks: Pillow's top bytes, then
            return _tifffile_image(handle, path, page)
    if _ycbcr_left_to_pillow(image):
        return _decoded_by_libtiff(image)
    return image


def _ycbcr_left_to_pillow(image: Image.Image) -> bool:
    """Whether Pillow would decode a TIFF's YCbCr samples itself: it does so only for a TIFF
    stored uncompressed, and cannot (it reads past the strips, "image file is truncated",
    whatever their subsampling); libtiff, which Pillow hands every compressed TIFF, converts
    them to RGB with the file's subsampling, YCbCrCoefficients and ReferenceBlackWhite (TIFF
    6.0 section 21), as it does an LZW or deflate YCbCr TIFF's."""
    return (isinstance(image, TiffImagePlugin.TiffImageFile)
            and _tag_number(image.tag_v2, _PHOTOMETRIC) == _YCBCR
            and not getattr(image, "use_load_libtiff", True))


def _ycbcr_converted_by_libtiff(image: Image.Image) -> bool:
    """Whether libtiff converts the TIFF's YCbCr samples to RGB through its RGBA buffer, a
    strip of 4 bytes a pixel beside the image (any compression but JPEG's, which libjpeg turns
    to RGB: 7-8 bytes a pixel measured for a one-strip 36 Mpx slide, where RGB holds 4)."""
    return (isinstance(image, TiffImagePlugin.TiffImageFile)
            and _tag_number(image.tag_v2, _PHOTOMETRIC) == _YCBCR
            and image.info.get("compression") not in ("jpeg", "tiff_jpeg"))


def _decoded_by_libtiff(image: Image.Image) -> Image.Image:
    """``image`` (a TIFF's page, not loaded yet) set to be decoded by libtiff, for it alone:
    the one tile of the whole page that Pillow gives libtiff for every compressed TIFF
    (TiffImageFile._setup), read by libtiff from the page's directory (``tag_v2.offset``).
    Pillow's own switch, TiffImagePlugin.READ_LIBTIFF, is the module's: set while this file
    opened, it gave libtiff to every TIFF another thread opened meanwhile. libtiff converts
    YCbCr through its RGBA interface, so the pixels come as RGBX, as Pillow's table of TIFF
    modes says for a YCbCr TIFF (TiffImagePlugin.OPEN_INFO: "RGB" read as "RGBX")."""
    assert isinstance(image, TiffImagePlugin.TiffImageFile)  # _ycbcr_left_to_pillow's
    rawmode = "RGBX" if image.mode == "RGB" else image.mode
    # Pillow's tile type (ImageFile._Tile, a NamedTuple its decoders read, with no public
    # name: https://github.com/python-pillow/Pillow/blob/main/src/PIL/ImageFile.py); an
    # upgrade that renames it fails tests/pathology/test_pathology_tiff_ycbcr.py at once
    image.tile = [ImageFile._Tile(  # noqa: SLF001  (see above)
        "libtiff", (0, 0, *image.size), 0,
        (rawmode, image.info["compression"], False, image.tag_v2.offset))]
    image.use_load_libtiff = True
    return image


def _pieces(handle: BinaryIO, path: Path) -> JpegScans | None:
    """A JPEG's scans (None for another format), refusing a slide stored in more pieces than a
    slide viewer's decoder reads: a JPEG's scans and marker segments
    (appliance/jpegscans.py), a PNG's chunks, a TIFF's strips or tiles
    (appliance/pathology/pieces.py); Pillow handles each piece in Python."""
    try:
        scans = count_scans(handle) if handle.read(2) == _SIGNATURES[0] else None
        handle.seek(0)
        refusal = too_many_scans(scans) if scans is not None else too_many_pieces(handle)
    except OSError as exc:
        raise SlideError(f"{path}: slide file cannot be read ({exc.strerror or exc})") from exc
    if refusal is not None:
        raise SlideError(f"{path}: {refusal}")
    return scans


def _jpeg_coefficient_bytes(scans: JpegScans | None,
                            image: JpegImagePlugin.JpegImageFile) -> int:
    """The bytes libjpeg holds beside the decoded image for this JPEG: its whole frame's
    coefficients, for a progressive one or one of several scans."""
    if scans is None or not scans.whole_frame_held:
        return 0
    width, height = image.size
    return coefficient_bytes(width, height, [(h, v) for _, h, v, _ in image.layer])


def _colour_below_sixteen_bits(image: Image.Image) -> bool:
    """Whether Pillow cut 16-bit colour samples to their top byte though the file says they
    reach less than 65535."""
    tags = getattr(image, "tag_v2", None)
    if tags is None or image.mode not in ("RGB", "RGBA"):
        return False
    bits, top = _tag_number(tags, _BITS_PER_SAMPLE), _tag_number(tags, _MAX_SAMPLE_VALUE)
    return bits == 16 and top is not None and 0 < top < 65535


def _check_decoded_size(path: Path, pixels: int, kind: str, peak_bytes: int,
                        fix: str = "export it as 8-bit RGB") -> None:
    """Refuse a slide whose decoding would hold more than the memory bound at its peak
    (checked before decoding)."""
    if pixels > MAX_SLIDE_PIXELS:
        raise SlideError(
            f"{path}: larger than {MAX_SLIDE_PIXELS} pixels; split or downsample the slide")
    if peak_bytes > MAX_DECODED_BYTES:
        raise SlideError(
            f"{path}: {pixels} pixels ({kind}) need {peak_bytes} bytes while decoded, more "
            f"than the {MAX_DECODED_BYTES} of an 8-bit RGB slide of {MAX_SLIDE_PIXELS} pixels; "
            f"split the slide or {fix}")


def _eight_bit_image(image: Image.Image) -> Image.Image:
    """8-bit grey of a Pillow image of 16-bit, 32-bit or float samples (bitdepth.py's rules)."""
    tags = getattr(image, "tag_v2", {})
    return Image.fromarray(eight_bit(np.asarray(image), _tag_number(tags, _MAX_SAMPLE_VALUE),
                                     _tag_number(tags, _PHOTOMETRIC) == _MIN_IS_WHITE))


def _tag_number(tags: Any, tag: int) -> int | None:
    """A TIFF tag's (first) whole number, or None when absent or no number."""
    value = tags.get(tag)
    value = value[0] if isinstance(value, tuple) and value else value
    return value if isinstance(value, int) else None


def _tifffile_image(handle: BinaryIO, path: Path, index: int = 0) -> Image.Image:
    """The page ``index`` of a TIFF Pillow cannot read, decoded by tifffile and brought to 8
    bits; the pixel and byte bounds are checked before the samples are decoded."""
    handle.seek(0)
    try:
        with tifffile.TiffFile(handle, name=path.name) as tiff:
            page = tiff.pages[index]
            if not isinstance(page, tifffile.TiffPage) or page.dtype is None:
                raise ValueError(f"no image in its page {index + 1}")
            pixels = page.imagewidth * page.imagelength
            # the samples, their 8-bit copy and its Pillow image (at most 3 + 4 bytes a pixel)
            _check_decoded_size(path, pixels, f"{page.samplesperpixel} {page.dtype} samples",
                                page.size * page.dtype.itemsize + 7 * pixels
                                + _ROW_TABLES_BYTES_A_ROW * page.imagelength)
            samples = page.asarray()
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and samples.ndim == 3:
                samples = np.moveaxis(samples, 0, -1)
            tags = {tag.code: tag.value for tag in page.tags.values()}
        return Image.fromarray(eight_bit(samples, _tag_number(tags, _MAX_SAMPLE_VALUE),
                                         page.photometric == _MIN_IS_WHITE))
    except SlideError:
        raise
    except Exception as exc:  # tifffile raises many kinds on a damaged file
        raise SlideError(f"{path}: corrupt or truncated image, or a TIFF compression this "
                         f"reader lacks ({type(exc).__name__}: {exc}); export the slide again "
                         "(uncompressed or deflate TIFF, or JPEG/PNG)") from exc


def _replace(old: Image.Image, new: Image.Image) -> Image.Image:
    """Drop the old decoded pixels as soon as the new image exists."""
    old.close()
    return new


def slide_files(folder: Path, skipped: Sequence[Path] = ()) -> list[Path]:
    """Slide images in a folder and its subfolders, sorted by path; none from inside the
    ``skipped`` folders (a run's pictures, when its --out lies in the slide folder)."""
    return find_slides(folder, skipped).files


@dataclass(frozen=True)
class SlideListing:
    """What a folder holds under slide image names: the regular files, sorted by path, and
    the entries that are none (path, why), which are never opened."""

    files: list[Path]
    unusable: list[tuple[Path, str]]


def find_slides(folder: Path, skipped: Sequence[Path] = ()) -> SlideListing:
    """Slide images in a folder and its subfolders (none from inside the ``skipped`` folders),
    and the entries named like slides that are no regular file: a pipe, socket or device
    (opening a pipe waits for a writer), a link to nothing, one that cannot be looked at; and
    each subfolder that cannot be read (its slides, if any, would be missing unsaid)."""
    away = [path.resolve() for path in skipped]
    files, unusable = [], []
    unreadable: list[OSError] = []
    for top, _, names in os.walk(folder, onerror=unreadable.append):
        for name in names:
            path = Path(top) / name
            if path.suffix.lower() not in SLIDE_SUFFIXES or any(
                    Path(os.path.realpath(path)).is_relative_to(pictures) for pictures in away):
                continue
            problem = _not_a_file(path)
            if problem == "":
                files.append(path)
            elif problem is not None:
                unusable.append((path, problem))
    unusable += [(Path(error.filename), f"a folder that cannot be read "
                  f"({error.strerror or error}); slides in it, if any, are not scored")
                 for error in unreadable]
    return SlideListing(sorted(files), sorted(unusable))


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_a_file(path: Path) -> str | None:
    """Why a path named like a slide is no slide file ("" for a regular file, None for a
    folder, whose files the walk finds), looked at without opening it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a link to a file that does not exist"
    except OSError as exc:  # a link loop, a folder we may not enter
        return f"cannot be looked at ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a slide image file"
