"""Slides stored with more than 8 bits a sample (16-bit, 32-bit or float TIFF) brought to the
8-bit grey or RGB the tiles are cut from, scaled as a slide viewer shows them.

1. Unsigned integers: divided by the file's MaxSampleValue (TIFF tag 281) where it gives one
   below the type's full range (12-bit data kept in 16 bits says 4095), else shifted to their
   top 8 bits (16-bit: ``>> 8``, what Pillow does itself with 16-bit RGB).
2. Floats: kept as they are where every finite sample lies in [0, 1] (times 255), else
   stretched from the smallest to the largest finite sample (min-max). NaN becomes 0; an
   infinity takes the end of the range it points to.
3. Signed integers: min-max, as floats outside [0, 1].
4. Grey that says 0 is white (PhotometricInterpretation 0, MinIsWhite) is inverted; of more
   than three samples the first three (RGB) are kept, as Pillow does with RGBA; of two (grey
   and alpha), the first.

The scaling runs over blocks of rows, so beyond the decoded samples and the 8-bit result it
holds only one block in float32.
"""

from __future__ import annotations

import numpy as np

ROWS_PER_BLOCK = 256


def eight_bit(samples: np.ndarray, max_sample: int | None = None,
              min_is_white: bool = False) -> np.ndarray:
    """uint8 grey (H x W) or RGB (H x W x 3) of a slide's decoded samples (rules above)."""
    colour = colour_samples(samples)
    if np.issubdtype(colour.dtype, np.unsignedinteger) and not _below_full_range(
            colour.dtype, max_sample):
        shift = colour.dtype.itemsize * 8 - 8
        out = np.empty(colour.shape, np.uint8)
        for rows in _blocks(len(colour)):
            out[rows] = colour[rows] >> shift
    else:
        offset, factor = _scaling(colour, max_sample)
        out = _scaled(colour, offset, factor)
    if min_is_white and out.ndim == 2:
        np.subtract(255, out, out=out)
    return out


def colour_samples(samples: np.ndarray) -> np.ndarray:
    """The grey (H x W) or RGB (H x W x 3) part of decoded samples (a view, no copy)."""
    if samples.ndim == 2:
        return samples
    if samples.ndim == 3 and samples.shape[2] in (1, 2):
        return samples[..., 0]
    if samples.ndim == 3 and samples.shape[2] >= 3:
        return samples[..., :3]
    raise ValueError(f"samples of shape {samples.shape}: neither grey nor RGB")


def _below_full_range(dtype: np.dtype[np.generic], max_sample: int | None) -> bool:
    """Whether a MaxSampleValue names less than the unsigned type's full range."""
    return max_sample is not None and 0 < max_sample < 2 ** (dtype.itemsize * 8) - 1


def _scaling(colour: np.ndarray, max_sample: int | None) -> tuple[float, float]:
    """(offset, factor) with which ``(sample - offset) * factor`` spans 0-255."""
    if np.issubdtype(colour.dtype, np.unsignedinteger) and max_sample:
        return 0.0, 255.0 / max_sample
    low, high = finite_range(colour)
    if np.issubdtype(colour.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return 0.0, 255.0
    return low, 255.0 / (high - low) if high > low else 0.0


def finite_range(colour: np.ndarray) -> tuple[float, float]:
    """Smallest and largest finite sample ((0, 0) when there is none)."""
    low, high = np.inf, -np.inf
    for rows in _blocks(len(colour)):
        block = colour[rows]
        finite = block[np.isfinite(block)] if np.issubdtype(block.dtype, np.floating) else block
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (0.0, 0.0) if low > high else (low, high)


def _scaled(colour: np.ndarray, offset: float, factor: float) -> np.ndarray:
    out = np.empty(colour.shape, np.uint8)
    for rows in _blocks(len(colour)):
        block = colour[rows].astype(np.float32)
        block = (block - np.float32(offset)) * np.float32(factor) + np.float32(0.5)
        np.nan_to_num(block, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        out[rows] = np.clip(block, 0, 255)
    return out


def _blocks(row_count: int) -> list[slice]:
    return [slice(start, start + ROWS_PER_BLOCK) for start in range(0, row_count, ROWS_PER_BLOCK)]
