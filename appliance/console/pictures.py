"""Heatmap and CAM pictures of pathology slides, read for the console from the results folder.

The pathology server writes each slide's heatmap and CAM panel as PNG files under
``pathology.results_dir`` and stores their paths with the slide's result
(appliance/pathology/finisher.py). The console serves a picture only when a stored slide result
names it and the named file, with every link resolved, is a regular PNG file inside that
folder: a stored path with ``..``, an absolute path elsewhere or a symlink leading out of the
folder is refused, so a stored row cannot make the console read other files of its host.
Relative paths are relative to the working directory, as the pathology server wrote them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PICTURE_COLUMNS = {"heatmap": "heatmap_path", "cam": "cam_path"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # PNG spec 5.2
MAX_PICTURE_BYTES = 64 * 1024 * 1024  # far above any heatmap or CAM panel the server writes
log = logging.getLogger(__name__)


class PictureError(Exception):
    """No picture to serve (nothing stored, or the file is gone); the text says which."""

    status = 404


class PictureRefusedError(PictureError):
    """A stored picture path the console will not read (outside the folder, not a PNG)."""

    status = 403


def read_picture(results_dir: Path | None, stored: str, what: str) -> bytes:
    """The PNG that ``stored`` names inside ``results_dir``; ``what`` names it in errors."""
    with _opened_picture(results_dir, stored, what) as (file, _):
        data = file.read(MAX_PICTURE_BYTES + 1)
    _png_only(data, stored, what)
    return data


def picture_size(results_dir: Path | None, stored: str, what: str) -> int:
    """The length in bytes of the PNG read_picture would read, refused as it would refuse it,
    from the open file's size and signature alone: a HEAD's Content-Length."""
    with _opened_picture(results_dir, stored, what) as (file, info):
        signature = file.read(len(PNG_SIGNATURE))
    _png_only(signature, stored, what)
    return info.st_size


@contextlib.contextmanager
def _opened_picture(results_dir: Path | None, stored: str, what: str
                    ) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """The regular file that ``stored`` names inside ``results_dir``, open, and its status."""
    if results_dir is None:
        raise PictureError(f"{what}: this console was started without a pathology results "
                           "folder (pathology.results_dir)")
    if not stored:
        raise PictureError(f"{what}: the pathology server wrote none")
    target = _inside(results_dir, stored, what)
    try:
        # O_NOFOLLOW: a link put in place after the check is not followed; O_NONBLOCK: a FIFO
        # does not hang the request (it is refused as no regular file below)
        handle = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        log.warning("%s not served: %s: %s", what, stored[:300], exc.strerror)
        raise PictureError(f"{what}: its file cannot be opened ({exc.strerror})") from exc
    with os.fdopen(handle, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PICTURE_BYTES:
            raise _refused(what, stored, f"not a regular file of at most {MAX_PICTURE_BYTES} "
                           "bytes")
        yield file, info


def _png_only(start: bytes, stored: str, what: str) -> None:
    """Refuse a file whose first bytes, ``start``, are not a PNG's signature."""
    if not start.startswith(PNG_SIGNATURE):
        raise _refused(what, stored, "not a PNG file")


def _inside(results_dir: Path, stored: str, what: str) -> Path:
    """The stored path with every link and ``..`` resolved, refused unless in the folder."""
    try:
        target = Path(stored).resolve()
    except (OSError, ValueError) as exc:  # a link loop, a NUL byte
        raise _refused(what, stored, f"no usable path ({exc})", "no usable path") from exc
    root = results_dir.resolve()
    if not target.is_relative_to(root):
        raise _refused(what, stored, f"outside the pathology results folder {root}",
                       "outside the pathology results folder")
    return target


def _refused(what: str, stored: str, why: str, shown: str | None = None) -> PictureRefusedError:
    """The refusal: the stored path and ``why`` go to the log, only ``shown`` (else ``why``) to
    the viewer, so a page never tells where this host keeps its files."""
    log.warning("%s not served: %s is %s", what, stored[:300], why)
    return PictureRefusedError(f"{what}: its stored file is {shown or why}; not served (the "
                               "console's log names it)")
