"""Skin colour: CIELAB, melanin and erythema indices and the shine (specular) share.

Melanin and erythema indices follow the reflectance definitions of Dawson et al. (1980) as
used by tristimulus skin meters: with red and green reflectances R and G in 0..1,
``melanin_index = 100 * log10(1 / R)`` and ``erythema_index = 100 * (log10(1 / G) - log10(1 / R))``.
A camera's channels only approximate those narrow bands, so the indices compare frames of the
same device; a white-reference frame removes the lamp's colour first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Specular shine: near-white and nearly colourless (the lamp's reflection, not skin).
SHINE_MIN_LEVEL = 235
SHINE_MAX_SATURATION = 40
WHITE_TARGET_LEVEL = 0.95  # a white reference tile reflects about 95 %
WHITE_MIN_LEVEL = 120.0  # brightest channel median of a lit white tile
WHITE_MIN_CHANNEL_RATIO = 0.35  # weakest / strongest channel: lamp tint, not a coloured object
WHITE_MAX_TEXTURE = 0.05  # fine-detail spread / level: sensor noise, not skin furrows


@dataclass(frozen=True)
class WhiteReference:
    """Per-channel gains (R, G, B) that map a white calibration frame to 95 % reflectance."""

    gains_rgb: tuple[float, float, float]

    @classmethod
    def from_frame(cls, white_rgb: np.ndarray) -> WhiteReference:
        """Gains from a frame of a white tile (median per channel, so dust does not count)."""
        medians = np.median(white_rgb.reshape(-1, 3), axis=0).astype(float)
        if float(medians.min()) < 20.0:
            raise ValueError(
                f"white reference too dark (channel medians {medians.round(0).tolist()}); "
                "take it of a white tile with the lamp on"
            )
        _refuse_non_white(white_rgb, medians)
        gains = WHITE_TARGET_LEVEL * 255.0 / medians
        return cls((float(gains[0]), float(gains[1]), float(gains[2])))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The frame with the lamp's colour removed (uint8, clipped)."""
        scaled = rgb.astype(np.float32) * np.asarray(self.gains_rgb, dtype=np.float32)
        out: np.ndarray = np.clip(scaled, 0, 255).astype(np.uint8)
        return out


def _refuse_non_white(white_rgb: np.ndarray, medians: np.ndarray) -> None:
    """ValueError unless the frame looks like a white tile: bright, near-neutral, featureless."""
    shown = medians.round(0).tolist()
    if float(medians.max()) < WHITE_MIN_LEVEL:
        raise ValueError(f"not a white tile: too dim (channel medians {shown}); "
                         "photograph a white tile with the lamp on, in focus")
    if float(medians.min()) < WHITE_MIN_CHANNEL_RATIO * float(medians.max()):
        raise ValueError(f"not a white tile: strongly coloured (channel medians {shown}); "
                         "a lamp tints white only slightly")
    grey = cv2.cvtColor(white_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    texture = float(np.std(grey - cv2.GaussianBlur(grey, (0, 0), 8.0)) / max(np.median(grey), 1))
    if texture > WHITE_MAX_TEXTURE:
        raise ValueError(f"not a white tile: textured ({texture:.0%} fine detail, a white tile "
                         f"has under {WHITE_MAX_TEXTURE:.0%}); is this a skin frame?")


def shine_mask(small_rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of specular pixels: bright and nearly colourless."""
    hsv = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2HSV)
    mask: np.ndarray = (hsv[..., 2] >= SHINE_MIN_LEVEL) & (hsv[..., 1] <= SHINE_MAX_SATURATION)
    return mask


def colour_features(
    rgb: np.ndarray, white_reference: WhiteReference | None = None
) -> dict[str, float]:
    """CIELAB L*, a*, b*, melanin and erythema indices of the skin and the shine ratio.

    Works on a 4x smaller copy (colour varies slowly; the area average also removes noise).
    Pass a frame at any size; a half-size copy from ``preprocess`` saves one resize.
    """
    small = rgb
    while small.shape[0] > 300:
        small = cv2.resize(
            small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
    if white_reference is not None:
        small = white_reference.apply(small)
    shine = shine_mask(small)
    skin = (~shine).astype(np.uint8)
    if not skin.any():
        skin[:] = 1
    mean_rgb = np.asarray(cv2.mean(small, mask=skin)[:3]) / 255.0
    lab = cv2.cvtColor(mean_rgb.astype(np.float32).reshape(1, 1, 3), cv2.COLOR_RGB2Lab)[0, 0]
    red, green = (max(float(c), 1e-3) for c in mean_rgb[:2])
    return {
        "lab_l": float(np.clip(lab[0], 0.0, 100.0)),
        "lab_a": float(np.clip(lab[1], -128.0, 128.0)),
        "lab_b": float(np.clip(lab[2], -128.0, 128.0)),
        "melanin_index": 100.0 * float(np.log10(1.0 / red)),
        "erythema_index": 100.0 * float(np.log10(red / green)),
        "shine_ratio": float(np.count_nonzero(shine)) / shine.size,
    }
