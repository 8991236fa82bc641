"""Reading slide images (JPEG, PNG, TIFF) at the resolution the model needs, one copy in memory.

A JPEG is decoded straight to a reduced scale (libjpeg's DCT scaling via PIL ``draft``), so a
20,000 px slide scanned at 0.5 µm/px never exists at full size when tiles want 1-2 µm/px. Other
formats are decoded once at full size and reduced with ``Image.reduce``; the full image is
dropped before tiling starts.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, JpegImagePlugin

from appliance.pathology.resolution import resolution_problem

SLIDE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
MAX_SLIDE_PIXELS = 1_000_000_000
_SIGNATURES = (b"\xff\xd8", b"\x89PNG", b"II*\x00", b"MM\x00*")
# Pixels that are palette indices or single bits, and the mode they are averaged in when the
# slide is reduced (Pillow refuses "P" and "1", and averages a "PA" image's indices into other
# colours); single bits become grey, a byte a pixel, not RGB's three.
_AVERAGED_AS = {"1": "L", "P": "RGB", "PA": "RGBA"}


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


def read_slide(path: Path, um_per_px: float, target_um_per_px: float) -> Slide:
    """Open a slide and decode it at the coarsest power-of-two scale still finer than target."""
    check_um_per_px(um_per_px, path.name)
    reduction = _reduction(um_per_px, target_um_per_px)
    with _open_slide(path) as handle, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image, source_size = _decode(handle, path, reduction)
    scale = image.size[0] / source_size[0]
    return Slide(
        name=path.stem,
        path=path,
        image=image,
        um_per_px=um_per_px / scale,
        source_size_px=source_size,
        source_um_per_px=um_per_px,
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
        raise SlideError(f"{path}: slide file not found; check the folder and labels.csv") \
            from exc
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


def _decode(handle: BinaryIO, path: Path, reduction: int) -> tuple[Image.Image, tuple[int, int]]:
    """Decode once at 1/reduction scale (draft for JPEG, reduce after load otherwise); the
    image and the slide's full size."""
    Image.MAX_IMAGE_PIXELS = MAX_SLIDE_PIXELS
    try:
        image: Image.Image = Image.open(handle)
        width, height = image.size
        if isinstance(image, JpegImagePlugin.JpegImageFile) and reduction > 1:
            image.draft("RGB", (width // reduction, height // reduction))
        image.load()
        if image.mode in _AVERAGED_AS:
            image = _replace(image, image.convert(_AVERAGED_AS[image.mode]))
        if reduction > 1 and image.size[0] == width:
            image = _replace(image, image.reduce(reduction))
        if image.mode != "RGB":
            image = _replace(image, image.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SlideError(
            f"{path}: larger than {MAX_SLIDE_PIXELS} pixels; split or downsample the slide"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise SlideError(
            f"{path}: corrupt or truncated image ({exc}); copy or export the slide again"
        ) from exc
    return image, (width, height)


def _replace(old: Image.Image, new: Image.Image) -> Image.Image:
    """Drop the old decoded pixels as soon as the new image exists."""
    old.close()
    return new


def slide_files(folder: Path, skipped: Sequence[Path] = ()) -> list[Path]:
    """Slide images in a folder and its subfolders, sorted by path; none from inside the
    ``skipped`` folders (a run's pictures, when its --out lies in the slide folder)."""
    away = [path.resolve() for path in skipped]
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in SLIDE_SUFFIXES
        and not any(path.resolve().is_relative_to(pictures) for pictures in away)
    )
