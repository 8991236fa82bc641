"""Writing an image file so that a full disk or an unwritable folder is one clear error.

``cv2.imwrite`` reports a failed write as ``False`` and libpng/libjpeg print their own lines
to stderr, and a disk that fills mid-write leaves a truncated image under the final name.
Here the image is encoded in memory first (format from the file's suffix), written to a hidden
temporary file beside the target and renamed over it: the name holds the old image or the new
one, never part of one, and any failure raises ``OSError`` naming the file and the reason.
As for exports (appliance/outfile.py), the file is flushed to disk before the rename and the
folder after it, so a power cut after the call returned finds the whole new image there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from appliance.outfile import created_afresh, flush_folder_of, temp_name_part


def temporary_of(path: Path) -> Path:
    """The hidden file ``write_image`` writes ``path``'s image to before renaming it into
    place: a process killed while writing leaves it behind."""
    return path.with_name(f".{temp_name_part(path.name)}.tmp")


def write_image(path: Path, bgr: np.ndarray, params: Sequence[int] = ()) -> None:
    """Write a BGR (or grey) image to ``path`` whole, or raise OSError saying why."""
    try:
        ok, encoded = cv2.imencode(path.suffix, bgr, list(params))
    except cv2.error as exc:
        raise OSError(f"{path}: cannot encode an image as {path.suffix or 'no suffix'!r}: "
                      f"{str(exc).strip().splitlines()[-1]}") from exc
    if not ok:
        raise OSError(f"{path}: cannot encode an image as {path.suffix!r}")
    temp = temporary_of(path)
    try:
        with created_afresh(temp) as stream:  # a FIFO left there is not waited on
            stream.write(encoded.data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise OSError(f"{path}: could not write the image: {exc.strerror or exc}") from exc
    except BaseException:  # Ctrl-C (a pool worker gets it too) leaves no temporary behind
        temp.unlink(missing_ok=True)
        raise
    flush_folder_of(path)
