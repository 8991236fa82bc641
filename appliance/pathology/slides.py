"""Reading slide images (JPEG, PNG, TIFF) at the resolution the model needs, one copy in memory.

A JPEG is decoded straight to a reduced scale (libjpeg's DCT scaling via PIL ``draft``), so a
20,000 px slide scanned at 0.5 µm/px never exists at full size when tiles want 1-2 µm/px. Other
formats are decoded once at full size and reduced with ``Image.reduce``; the full image is
dropped before tiling starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    name = path.name
    check_um_per_px(um_per_px, name)
    _check_file(path)
    reduction = _reduction(um_per_px, target_um_per_px)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _decode(path, reduction)
    scale = image.size[0] / _source_size(path)[0]
    return Slide(
        name=path.stem,
        path=path,
        image=image,
        um_per_px=um_per_px / scale,
        source_size_px=_source_size(path),
        source_um_per_px=um_per_px,
    )


def _reduction(um_per_px: float, target_um_per_px: float) -> int:
    """Largest of 1, 2, 4, 8 that keeps the working image at least as fine as the target."""
    reduction = 1
    while reduction < 8 and um_per_px * reduction * 2 <= target_um_per_px:
        reduction *= 2
    return reduction


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise SlideError(f"{path}: a folder, not a slide image; pass slide files, or score a "
                         "folder with `appliance pathology run`")
    if path.exists() and not path.is_file():  # reading a pipe would wait for a writer
        raise SlideError(f"{path}: not a regular file (a pipe, socket or device); pass slide "
                         "image files")
    if not path.is_file():
        raise SlideError(f"{path}: slide file not found; check the folder and labels.csv")
    try:
        if path.stat().st_size == 0:
            raise SlideError(f"{path}: empty file (0 bytes); copy the slide again")
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:  # its owner or mode keeps us out, or it went away meanwhile
        raise SlideError(f"{path}: slide file cannot be read ({exc.strerror or exc}); check its "
                         "owner and mode") from exc
    if not head.startswith(_SIGNATURES):
        raise SlideError(f"{path}: not a JPEG, PNG or TIFF image; pass slide images only")


def _source_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        size: tuple[int, int] = image.size
    return size


def _decode(path: Path, reduction: int) -> Image.Image:
    """Decode once at 1/reduction scale (draft for JPEG, reduce after load otherwise)."""
    Image.MAX_IMAGE_PIXELS = MAX_SLIDE_PIXELS
    try:
        image: Image.Image = Image.open(path)
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
    return image


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
