"""A frame file's colours as a colour-managed viewer shows them: in sRGB.

The colour features (CIELAB, melanin and erythema indices: docs/measurement.md) read a frame's
pixels as sRGB. A file may say its numbers mean other colours, by an ICC profile (ICC.1:2001-04)
of an RGB space such as Adobe RGB or Display P3; its pixels are then converted to sRGB here,
as every colour-managed viewer converts them for the screen.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageCms

# An ICC colour profile read from a frame file: a display's (sRGB, Adobe RGB, Display P3) is
# 0.5-4 kB, a camera's with lookup tables well under this
MAX_ICC_PROFILE_BYTES = 1_048_576
_STRIP_ROWS = 256  # rows converted at a time: no second whole frame is held
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class ColourProfileError(ValueError):
    """A colour profile refused unread; the message says why (the caller names the file)."""


def in_srgb(rgb: np.ndarray, data: bytes) -> np.ndarray:
    """The frame's colours in sRGB, as a colour-managed viewer shows them and as the colour
    features read them (CIELAB from sRGB): a frame whose file carries an RGB ICC profile other
    than sRGB (Adobe RGB, Display P3) has its pixels converted, a strip of rows at a time, in
    place. Without a profile, with an sRGB one, a grey or CMYK one, or one too damaged to read,
    the pixels are taken as sRGB, as viewers take them."""
    transform = _srgb_transform(data)
    if transform is None:
        return rgb
    for top in range(0, rgb.shape[0], _STRIP_ROWS):
        strip = Image.fromarray(rgb[top:top + _STRIP_ROWS])
        rgb[top:top + _STRIP_ROWS] = np.asarray(ImageCms.applyTransform(strip, transform))
    return rgb


def _srgb_transform(data: bytes) -> ImageCms.ImageCmsTransform | None:
    """A transform from the file's RGB ICC profile to sRGB; None where there is nothing to do
    (no profile, an sRGB one, one of another colour space, a damaged one). A profile larger
    than any display's is refused before littlecms reads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file was decoded already: its header reads
        with Image.open(io.BytesIO(data)) as image:
            icc = image.info.get("icc_profile")
    if not icc:
        return None
    if len(icc) > MAX_ICC_PROFILE_BYTES:
        raise ColourProfileError(f"a colour profile of {len(icc)} bytes, more than any "
                                 f"display's ({MAX_ICC_PROFILE_BYTES}); refused (save the frame "
                                 "as sRGB)")
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        described = ImageCms.getProfileDescription(profile)
        if profile.profile.xcolor_space != "RGB " or "srgb" in described.casefold():
            return None
        return ImageCms.buildTransform(profile, _SRGB, "RGB", "RGB",
                                       ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (OSError, ValueError, TypeError):  # ImageCms.PyCMSError is an OSError
        return None
