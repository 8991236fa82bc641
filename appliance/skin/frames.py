"""Reading microscope frames from files, with errors that name the file and the problem."""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from appliance.jpegscans import MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS, count_scans
from appliance.logsafe import escape_controls
from appliance.skin.frame_colour import ColourProfileError, in_srgb

FRAME_HEIGHT_PX = 960
FRAME_WIDTH_PX = 1280
MAX_FRAME_BYTES = 50 * 1024 * 1024
_READ_CHUNK_BYTES = 1024 * 1024
# Largest image decoded at all (white references, other cameras), and the most bytes its
# decoding may hold beyond the file (an image that would take more is refused before decoding;
# `analyze` itself takes about 120 MB). Decoding holds Pillow's image (1 byte a pixel for grey
# or palette, 2 for 16-bit grey, 4 for any mode of several bands, RGB too), its EXIF-turned
# copy where it has one, and the RGB array (3); OpenCV's (TIFF, WebP), its decoder's buffers
# and the BGR and RGB arrays (measured with a TIFF: 6.6 bytes a pixel).
MAX_DECODE_PIXELS = 48_000_000
MAX_DECODE_BYTES = 200_000_000
_PILLOW_BYTES_A_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}
_OPENCV_BYTES_A_PIXEL = 7
_RGB_STRIP_ROWS = 256
# what to do with a picture of another size: a crop keeps the scale, a resize does not
_FRAME_SIZE_ADVICE = ("the microscope delivers {w}x{h} px frames: crop it to that size, or "
                      "check the camera mode (resizing it changes its micrometres per pixel, "
                      "the scale it must be measured at)")
_JPEG_MAGIC = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_PNG_MAGIC = b"\x89PNG"
_BMP_MAGIC = b"BM"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_KNOWN_MAGIC = (_JPEG_MAGIC, _PNG_MAGIC, _BMP_MAGIC, *_TIFF_MAGIC, b"RIFF")
_RIFF_WEBP = slice(8, 12), b"WEBP"  # a RIFF file's form type: WebP's, not a WAV's or an AVI's
# a well-formed TIFF whose samples no reader here takes (``tiff_sample_kind`` tells which)
UNREADABLE_TIFF = ("a TIFF of {kind}, which cannot be read here; save the frame as JPEG, "
                   "or as 8- or 16-bit PNG or TIFF")
_PILLOW_GREY16_MODES = ("I;16", "I;16B", "I")  # a 16-bit grey PNG, as Pillow opens it
_NOT_REGULAR = (  # what a path names when it is no file to read, as `ls -l` would say
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device (like /dev/zero)"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FrameError(ValueError):
    """A file that is not a usable microscope frame; the message names the file and why."""


def load_frame(
    path: str | Path, expected_shape: tuple[int, int] | None = (FRAME_HEIGHT_PX, FRAME_WIDTH_PX)
) -> np.ndarray:
    """Read an image file as RGB uint8; it must be ``expected_shape`` (rows, cols) unless None."""
    file = Path(path)
    return decode_frame(_read_bytes(file), shown_name(file), expected_shape)


def shown_name(path: str | Path) -> str:
    """A file name fit to print: control characters (a terminal's escape codes) and undecodable
    bytes written as visible escapes (``\\xNN``, as ``record_name`` writes them)."""
    return escape_controls(record_name(path))


def record_name(path: str | Path) -> str:
    """A file name fit for a JSON record: as given, but with bytes that are not UTF-8 (Python
    holds them as lone surrogates, which strict JSON readers refuse) written as ``\\xNN``."""
    text = str(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file system byte made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _read_bytes(file: Path) -> bytes:
    name = shown_name(file)
    _check_frame_file(_stat(file, name), name)
    try:
        return file.read_bytes()
    except OSError as exc:
        raise FrameError(_unreadable(name, exc)) from exc


def read_frame_file(
    open_file: Callable[[], int], name: str, progress: Callable[[], object] | None = None
) -> bytes:
    """The bytes of the frame file ``open_file()`` opens (and this closes), checked through the
    descriptor as ``load_frame`` checks a path, so no swap of the file between a look and the
    read can matter; no more than MAX_FRAME_BYTES are read even if it grows meanwhile.
    ``progress`` is called after each chunk (a slow share that goes on answering is no hang)."""
    try:
        fd = open_file()
    except FileNotFoundError as exc:
        raise FrameError(f"{name}: file not found; check the path") from exc
    except OSError as exc:
        raise FrameError(_unreadable(name, exc)) from exc
    try:
        _check_frame_file(os.fstat(fd), name)
        data = _read_at_most(fd, MAX_FRAME_BYTES + 1, progress)
    except OSError as exc:
        raise FrameError(_unreadable(name, exc)) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"{name}: grew past {MAX_FRAME_BYTES} bytes as it was read, larger than "
                         "any microscope frame; refused")
    return data


def _read_at_most(fd: int, limit_bytes: int, progress: Callable[[], object] | None) -> bytes:
    """Up to ``limit_bytes`` of ``fd``, a chunk at a time (one read of a share is no hang)."""
    chunks: list[bytes] = []
    size_bytes = 0
    while chunk := os.read(fd, min(_READ_CHUNK_BYTES, limit_bytes - size_bytes)):
        chunks.append(chunk)
        size_bytes += len(chunk)
        if progress is not None:
            progress()
    return b"".join(chunks)


def _check_frame_file(info: os.stat_result, name: str) -> None:
    """Refuse what is no frame file by its kind and size alone: a folder, a FIFO, a device, an
    empty file, one larger than any frame."""
    kind = next((what for is_kind, what in _NOT_REGULAR if is_kind(info.st_mode)), None)
    if stat.S_ISDIR(info.st_mode):  # `analyze frames/` for `analyze frames/*.jpg`
        raise FrameError(f"{name}: a folder, not an image file; name the image files in it "
                         f"({os.path.join(name, '*.jpg')}, say)")
    if kind is not None:
        raise FrameError(f"{name}: {kind}, not an image file; pass image files")
    if info.st_size == 0:
        raise FrameError(f"{name}: empty file (0 bytes); the capture was not saved")
    if info.st_size > MAX_FRAME_BYTES:
        raise FrameError(f"{name}: {info.st_size} bytes is larger than any microscope frame; "
                         "refused")


def _stat(file: Path, name: str) -> os.stat_result:
    try:
        return file.stat()
    except FileNotFoundError as exc:
        if file.is_symlink():
            raise FrameError(f"{name}: broken symlink (its target does not exist); check the "
                             "link") from exc
        raise FrameError(f"{name}: file not found; check the path") from exc
    except OSError as exc:
        raise FrameError(_unreadable(name, exc)) from exc


def _unreadable(name: str, exc: OSError) -> str:
    """Why ``name`` could not be read, said once (the OSError's own text repeats the name)."""
    if isinstance(exc, PermissionError):
        return f"{name}: permission denied; check the file's (and its folder's) permissions"
    if exc.errno == errno.ELOOP:
        return f"{name}: symlink loop (the link leads back to itself); fix the link"
    return f"{name}: cannot read ({exc.strerror or exc}); check the file and the disk"


def decode_frame(
    data: bytes, name: str = "frame", expected_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode JPEG/PNG/BMP/TIFF bytes into RGB uint8, refusing truncated or non-image data.

    The size is read from the header first and checked (against ``expected_shape`` when
    given, else MAX_DECODE_PIXELS), so a small file claiming a huge image is refused before
    any pixel memory is taken; the decoded frame is checked against ``expected_shape`` again
    (an EXIF orientation may turn it). Its colours are those a colour-managed viewer shows:
    sRGB (``frame_colour.in_srgb``).
    """
    rgb, stored_upright = _decode(data, name, expected_shape)
    if expected_shape is not None:
        _check_upright(rgb, name, expected_shape, stored_upright)
    try:
        return in_srgb(rgb, data)
    except ColourProfileError as exc:
        raise FrameError(f"{name}: {exc}") from exc


def _decode(
    data: bytes, name: str, expected_shape: tuple[int, int] | None
) -> tuple[np.ndarray, bool]:
    """The RGB pixels, and whether the header's size was ``expected_shape`` (not turned)."""
    form, webp = _RIFF_WEBP
    if not data.startswith(_KNOWN_MAGIC) or (data.startswith(b"RIFF") and data[form] != webp):
        raise FrameError(f"{name}: not an image (no JPEG/PNG/BMP/TIFF/WebP signature); pass "
                         "image files")
    if data.startswith(_JPEG_MAGIC) and not data.rstrip(b"\x00").endswith(_JPEG_END):
        data = _jpeg_before_trailer(data, name)
    width, height = header_size(data, name)
    if expected_shape is not None and expected_shape not in ((height, width), (width, height)):
        raise FrameError(f"{name}: wrong size {width}x{height} px (from the header); "
                         f"{_FRAME_SIZE_ADVICE.format(w=expected_shape[1], h=expected_shape[0])}")
    if width * height > MAX_DECODE_PIXELS:
        raise FrameError(
            f"{name}: header says {width}x{height} px, over {MAX_DECODE_PIXELS} pixels; refused "
            "before decoding"
        )
    if data.startswith(_JPEG_MAGIC):
        _check_jpeg_scans(data, name)
        _check_jpeg(data, name)
    stored_upright = (height, width) == expected_shape
    if data.startswith((_JPEG_MAGIC, _PNG_MAGIC, _BMP_MAGIC)):
        return _decode_with_pillow(data, name), stored_upright
    _check_decode_bytes(name, width, height, "", width * height * _OPENCV_BYTES_A_PIXEL)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # libtiff's "Sorry, ..."
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if (bgr is None or bgr.size == 0) and (kind := tiff_sample_kind(data)):
        raise FrameError(f"{name}: {UNREADABLE_TIFF.format(kind=kind)}")
    if bgr is None or bgr.size == 0:
        raise FrameError(f"{name}: corrupt image data (could not decode); copy the file again")
    rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb, stored_upright


def _jpeg_before_trailer(data: bytes, name: str) -> bytes:
    """The JPEG up to its end-of-image marker where bytes follow it that are not zero padding:
    a phone's motion photo (its video), a maker's trailer; viewers show the picture and skip
    them, and so does this. A JPEG whose markers end before one is cut short: refused."""
    scans = count_scans(io.BytesIO(data))
    if scans.end is not None:
        return data[:scans.end]
    if scans.too_many:  # the walk stopped at its bound: _check_jpeg_scans says so
        return data
    raise FrameError(f"{name}: truncated JPEG (no end-of-image marker); copy the file again")


def _check_upright(
    rgb: np.ndarray, name: str, expected_shape: tuple[int, int], stored_upright: bool
) -> None:
    """Refuse a frame that is not ``expected_shape`` as shown (after its EXIF orientation, as
    every viewer turns it): a frame stored on its side with a tag that turns it upright is the
    frame the user sees, and is measured so."""
    height, width = expected_shape
    if rgb.shape[:2] == (width, height) and stored_upright:  # EXIF turned it on its side
        raise FrameError(
            f"{name}: stored {width}x{height} px, but its EXIF orientation turns it "
            f"to {height}x{width} px; the microscope delivers {width}x{height} px frames "
            "upright (save it without the orientation tag)"
        )
    if rgb.shape[:2] == (width, height):
        raise FrameError(
            f"{name}: {height}x{width} px, a portrait picture; the microscope delivers "
            f"{width}x{height} px landscape frames: turn it a quarter turn, or check the "
            "camera mode"
        )
    if rgb.shape[:2] != (height, width):
        raise FrameError(f"{name}: wrong size {rgb.shape[1]}x{rgb.shape[0]} px; "
                         f"{_FRAME_SIZE_ADVICE.format(w=width, h=height)}")


def _check_jpeg_scans(data: bytes, name: str) -> None:
    """Refuse a JPEG of more scans or marker segments than a camera writes, before decoding.

    libjpeg goes over the whole frame's coefficients once a scan, and a progressive JPEG may
    send one scan again and again: 10,000 scans in 110 KB held ``analyze`` 1.35 s a frame, and
    a file of a few MB would hold it for minutes (appliance/jpegscans.py, where a pathology
    slide meets the same bound)."""
    if count_scans(io.BytesIO(data)).too_many:
        raise FrameError(
            f"{name}: a JPEG of more than {MAX_JPEG_SCANS} scans or {MAX_JPEG_SEGMENTS} marker "
            "segments (a camera's has about 10 and a few dozen; each scan is decoded over the "
            "whole frame); save it again as a baseline JPEG or as PNG")


def _check_jpeg(data: bytes, name: str) -> None:
    """Refuse a JPEG whose entropy-coded data libjpeg finds damaged.

    A flipped bit in a JPEG usually still decodes, to a frame whose lower part is shifted and
    recoloured; libjpeg then warns ("Corrupt JPEG data: 75 extraneous bytes before marker
    0xd9") and both OpenCV and Pillow carry on. simplejpeg's strict decode turns that warning
    into an error, so the frame is refused by name instead of measured. (It catches about nine
    in ten of the bit flips that visibly change a frame; the rest decode without a warning.)
    """
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError as exc:
        raise FrameError(f"{name}: corrupt JPEG data ({_one_line(str(exc))}); copy the file "
                         "again") from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())[:120]


def _decode_with_pillow(data: bytes, name: str) -> np.ndarray:
    """Decode a JPEG, PNG or BMP with Pillow, turned upright by its EXIF orientation as OpenCV
    would.

    Why Pillow: OpenCV's libjpeg and libpng print damage straight to the process's stderr
    ("Corrupt JPEG data: ...", "libpng error: IDAT: CRC error"), past any log level, and so does
    its BMP reader on a cut file ("[ERROR:0@0.1] global loadsave.cpp ... Unexpected end of
    input stream"); Pillow raises instead (its PNG reader checks the chunk CRCs itself), so a
    damaged frame is judged by its pixels or refused, and reported once, by the command. The
    pixels are OpenCV's: the same libjpeg-turbo with the same defaults, PNG samples of 16 bits
    cut to their high byte as ``IMREAD_COLOR`` does, a BMP's pixels as stored.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            # exif_transpose copies even an upright image: 4 bytes a pixel of a 48 Mpx photo
            _check_pillow_bytes(image, name, turned=False)  # before getexif: a PNG's loads
            turned = image.getexif().get(_EXIF_ORIENTATION, 1) != 1
            if turned:
                _check_pillow_bytes(image, name, turned=True)
            rgb = _rgb8(ImageOps.exif_transpose(image) if turned else image)
    except FrameError:
        raise
    except UnidentifiedImageError as exc:  # its text names the in-memory file object
        raise FrameError(f"{name}: corrupt image data (header unreadable); copy the file "
                         "again") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for undecodable data
        raise FrameError(f"{name}: corrupt image data (could not decode: {exc}); copy the file "
                         "again") from exc
    return rgb


def _check_pillow_bytes(image: Image.Image, name: str, turned: bool) -> None:
    """Refuse an image whose Pillow decoding (and turned copy) would hold too much."""
    stored = _PILLOW_BYTES_A_PIXEL.get(image.mode, 4) * (2 if turned else 1)
    _check_decode_bytes(name, image.width, image.height, f" {image.mode}",
                        image.width * image.height * (stored + 3))


def _check_decode_bytes(name: str, width: int, height: int, mode: str, peak_bytes: int) -> None:
    """Refuse an image whose decoding would hold more than MAX_DECODE_BYTES (before decoding)."""
    if peak_bytes > MAX_DECODE_BYTES:
        raise FrameError(
            f"{name}: {width}x{height} px{mode} need {peak_bytes} bytes while decoded, more than "
            f"{MAX_DECODE_BYTES}; refused before decoding (save it smaller: about "
            f"{MAX_DECODE_BYTES // 7 // 1_000_000} Mpx of RGB fit)")


def _rgb8(image: Image.Image) -> np.ndarray:
    """A writable RGB uint8 copy (as OpenCV gives), made a strip of rows at a time so that
    only the decoded image and the result are ever whole; alpha is dropped, not blended."""
    rgb = np.empty((image.height, image.width, 3), np.uint8)
    for top in range(0, image.height, _RGB_STRIP_ROWS):
        strip = image.crop((0, top, image.width, min(top + _RGB_STRIP_ROWS, image.height)))
        rgb[top:top + strip.height] = _strip_rgb8(strip)
    return rgb


def _strip_rgb8(strip: Image.Image) -> np.ndarray:
    """RGB uint8 of a strip (16-bit grey as its top byte in each channel)."""
    if strip.mode in _PILLOW_GREY16_MODES:  # convert("RGB") would clip, not scale, 16 bits
        grey = (np.asarray(strip, dtype=np.uint32) >> 8).astype(np.uint8)
        return grey[:, :, None]  # the same grey in R, G and B
    return np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"))


_EXIF_ORIENTATION = 0x0112  # EXIF 2.3 tag 274


def header_size(data: bytes, name: str = "frame") -> tuple[int, int]:
    """(width, height) from the image header alone; no pixel is decoded to answer."""
    if data.startswith(_PNG_MAGIC) and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])  # IHDR, first chunk (PNG spec 11.2.2)
        return int(width), int(height)
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_size(data, name)
    if kind := tiff_sample_kind(data):  # before Pillow, which logs its own ERROR line on them
        raise FrameError(f"{name}: {UNREADABLE_TIFF.format(kind=kind)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cut TIFF's "Corrupt EXIF data": its error says it
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FrameError(f"{name}: image too large ({exc}); refused before decoding") from exc
    except UnidentifiedImageError as exc:  # its text names the in-memory file object
        if kind := tiff_sample_kind(data):  # Pillow reads no floating-point RGB
            raise FrameError(f"{name}: {UNREADABLE_TIFF.format(kind=kind)}") from exc
        raise FrameError(f"{name}: corrupt image data (header unreadable); copy the file "
                         "again") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for a bad header
        reason = f"corrupt image data (header: {exc}); copy the file again"
        raise FrameError(f"{name}: {reason}") from exc
    return int(width), int(height)


_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLES_PER_PIXEL, _TIFF_SAMPLE_FORMAT = 258, 277, 339  # TIFF 6.0
_TIFF_FLOAT = 3  # SampleFormat: IEEE floating point
_TIFF_MAX_SAMPLES_PER_PIXEL = 4  # RGB and alpha; more (a multispectral stack) is read by none


def tiff_sample_kind(data: bytes) -> str | None:
    """"floating-point samples", "32-bit samples" or "40 samples a pixel" when a TIFF's first
    image has samples no reader here takes (its first directory's SampleFormat, BitsPerSample
    and SamplesPerPixel, TIFF 6.0 section 2), else None (an 8- or 16-bit TIFF of 1 to 4
    samples a pixel, or one too damaged to say: that is then called corrupt)."""
    if not data.startswith(_TIFF_MAGIC):
        return None
    order = "<" if data.startswith(b"II") else ">"
    try:
        (first,) = struct.unpack_from(f"{order}I", data, 4)
        (entries,) = struct.unpack_from(f"{order}H", data, first)
        tags: dict[int, int] = {}
        for index in range(min(entries, 4096)):
            tag, kind, count, value = struct.unpack_from(f"{order}HHII", data,
                                                         first + 2 + 12 * index)
            if tag in (_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLES_PER_PIXEL, _TIFF_SAMPLE_FORMAT) \
                    and kind == 3:  # SHORT
                at = first + 2 + 12 * index + 8 if count <= 2 else value  # inline, or there
                (tags[tag],) = struct.unpack_from(f"{order}H", data, at)
    except struct.error:  # cut short: damage
        return None
    if tags.get(_TIFF_SAMPLE_FORMAT) == _TIFF_FLOAT:
        return "floating-point samples"
    if tags.get(_TIFF_BITS_PER_SAMPLE, 8) > 16:
        return f"{tags[_TIFF_BITS_PER_SAMPLE]}-bit samples"
    if tags.get(_TIFF_SAMPLES_PER_PIXEL, 1) > _TIFF_MAX_SAMPLES_PER_PIXEL:
        return f"{tags[_TIFF_SAMPLES_PER_PIXEL]} samples a pixel"
    return None


def _jpeg_size(data: bytes, name: str) -> tuple[int, int]:
    """Walk the JPEG markers to the frame header (SOFn, ITU T.81 B.2.2) and read its size."""
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    raise FrameError(f"{name}: corrupt image data (no JPEG frame header); copy the file again")
