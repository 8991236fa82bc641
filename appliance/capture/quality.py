"""The frame quality gate: is this camera frame sharp, well exposed, on skin and still?

It runs on every frame at 30 fps, so it works on downscaled copies (two exact 2x area
halvings, which OpenCV does fast) and uses only a few whole-image passes.

Sharpness is judged by the frame against itself, not against a fixed amount of edge: skin with
large hills and few deep furrows has little edge at all, however sharp (docs/measurement.md
"Frame sharpness"). On the half-size grey frame:
1. the sensor noise's level is estimated (Immerkaer 1996);
2. the fine band (the frame less its Gaussian blur at ``FINE_UM`` on the skin) and the mid band
   (that blur less the blur at ``MID_UM``) are taken, each less the energy the noise puts in it;
3. sharpness = fine energy / mid energy. Blur takes fine detail before mid detail, so the ratio
   falls with blur whatever the frame's contrast; the bands are set in µm (no finer than at the
   nominal 10 µm/px), so the same skin reads alike at 7-10 µm/px, and the score is continuous in
   ``um_per_px``.

Skin is found by its colour, so a frame with no colour at all (every pixel grey: a camera in a
mono mode, a greyscale file) can never be on skin; the gate says so instead of asking the
operator to press the scope on, which would send them the wrong way. On a colour camera a
lit frame has some colour (noise alone puts some in); a dark or clipped white field is grey on
any camera and keeps the usual reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from appliance.transport import payloads

Verdict = Literal["ok", "blurred", "overexposed", "underexposed", "no_contact", "moving"]
# When several checks fail the verdict names the most basic one: no skin before exposure,
# exposure before motion, motion before focus (motion blur also lowers the focus score).
_PRIORITY: tuple[Verdict, ...] = ("no_contact", "overexposed", "underexposed", "moving", "blurred")
# the largest chroma (distance of Cr or Cb from neutral 128, in the 4x smaller frame) that still
# counts as no colour: a grey frame shows 0, a converter's rounding 1
COLOURLESS_MAX_CHROMA = 1.0
# below this mean grey level the field is dark: no contact, whatever its colour
DARK_FIELD_MEAN_LEVEL = 12.0
# the sharpness bands' Gaussian blurs, in µm on the skin (at 10 µm/px: 1 and 2 half-size px),
# and the uncalibrated scale of the Scalar 25x lens at 1280x960
FINE_UM, MID_UM = 20.0, 40.0
NOMINAL_UM_PER_PX = 10.0
# below this sharpness the frame is blurred: set on the project's own generator only (its
# sharp frames, defocus 0.5-1.1 px, read 0.60 and more; the same frames blurred by a Gaussian of
# 3 px 0.48 and less; nearer the blurred side, as a sharp customer refused again and again is
# the failure met), docs/measurement.md "Frame sharpness"
MIN_SHARPNESS = 0.5
# a frame whose mid band (the skin's furrows and pits) holds less than this share of its mean
# level (RMS) shows no skin detail at all, a lens far out of focus: its ratio of two near-empty
# bands means nothing, so its sharpness is 0 (the generator's frames hold 0.037 and more even
# blurred by 2 px; a 16 px defocus leaves 0.001)
MIN_DETAIL_RMS = 0.007
# the Immerkaer (1996) noise kernel: zero on any plane or ramp, 36 times the noise's variance
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


@dataclass(frozen=True)
class FrameQuality:
    """The gate's verdict on one frame, the reasons behind it and the raw scores."""

    verdict: Verdict
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the frame is good enough to measure."""
        return self.verdict == "ok"

    def to_payload(self) -> payloads.Quality:
        """The quality block of a result payload."""
        return payloads.Quality(
            verdict=self.verdict, reasons=list(self.reasons), scores=dict(self.scores)
        )


def downscale_gray_rgb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 4x smaller copy of the frame (area average) and its grey level, both uint8."""
    small, gray, _ = _downscaled(rgb)
    return small, gray


def _downscaled(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 4x smaller copy, its grey level and the grey level of the 2x smaller copy."""
    half = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
    small = cv2.resize(half, (half.shape[1] // 2, half.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), cv2.cvtColor(half, cv2.COLOR_RGB2GRAY)


def clipped_fraction(small_rgb: np.ndarray) -> float:
    """Share of pixels with any colour channel clipped at white (>= 250)."""
    unclipped = cv2.inRange(small_rgb, (0, 0, 0), (249, 249, 249))
    return 1.0 - cv2.countNonZero(unclipped) / float(unclipped.size)


def skin_fraction(small_rgb: np.ndarray) -> float:
    """Share of pixels whose chroma is skin-like (YCrCb box of Chai & Ngan 1999, widened)."""
    return _skin_fraction(cv2.cvtColor(small_rgb, cv2.COLOR_RGB2YCrCb))


def _skin_fraction(ycrcb: np.ndarray) -> float:
    mask = cv2.inRange(ycrcb, (20, 133, 70), (255, 185, 130))
    return float(np.count_nonzero(mask)) / mask.size


def chroma_max(ycrcb: np.ndarray) -> float:
    """The largest distance of any pixel's Cr or Cb from neutral grey (128); 0 when R=G=B."""
    extremes = [cv2.minMaxLoc(ycrcb[:, :, channel])[:2] for channel in (1, 2)]
    return float(max(max(128.0 - low, high - 128.0) for low, high in extremes))


def focus_score(gray: np.ndarray) -> float:
    """Variance of the Laplacian relative to the mean grey level squared (brightness-free).

    It grows with the amount and contrast of edge in view as much as with sharpness, so the
    verdict no longer rests on it (``SharpnessBands``); it stays a score of the payload."""
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    _, deviation = cv2.meanStdDev(lap)
    mean = max(float(cv2.mean(gray)[0]), 1.0)
    return float(deviation[0, 0]) ** 2 / (mean * mean) * 1000.0


def noise_level(gray: np.ndarray) -> float:
    """The sensor noise's standard deviation in grey levels (Immerkaer 1996: the mean absolute
    response of a kernel blind to planes and ramps, so edges add little)."""
    response = cv2.filter2D(gray, cv2.CV_32F, _NOISE_KERNEL)
    return float(np.sqrt(np.pi / 2.0) * cv2.mean(np.abs(response))[0] / 6.0)


def _band_noise_gain(inner_sigma_px: float, outer_sigma_px: float) -> float:
    """The energy a band (blur at inner less blur at outer; inner 0: the frame itself) keeps of
    white noise of unit variance."""
    size = 2 * int(np.ceil(4.0 * outer_sigma_px)) + 3
    delta = np.zeros((size, size), np.float32)
    delta[size // 2, size // 2] = 1.0
    inner = _blurred(delta, inner_sigma_px)
    band = inner - _blurred(inner, _quadrature(outer_sigma_px, inner_sigma_px))
    return float(np.square(band).sum())


def _blurred(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """A Gaussian blur cut at 3 sigma (OpenCV's own float kernels reach 4: a third more taps
    for 0.3 % of the weight)."""
    if sigma_px <= 0:
        return image
    size = 2 * int(np.ceil(3.0 * sigma_px)) + 1
    return np.asarray(cv2.GaussianBlur(image, (size, size), sigma_px))


class SharpnessBands:
    """The fine and mid bands of the half-size frame at one calibration, with their noise gains."""

    def __init__(self, um_per_px: float) -> None:
        # in half-size pixels; never finer than at the nominal scale, where the fine band is
        # one half-size pixel: finer, it would read the lens's and the sensor's own few-pixel
        # blur, which every calibration shares, as the skin's lost detail
        fine_px = max(FINE_UM / (2.0 * um_per_px), FINE_UM / (2.0 * NOMINAL_UM_PER_PX))
        self.fine_sigma_px = fine_px
        self.mid_sigma_px = fine_px * MID_UM / FINE_UM
        self.fine_noise_gain = _band_noise_gain(0.0, self.fine_sigma_px)
        self.mid_noise_gain = _band_noise_gain(self.fine_sigma_px, self.mid_sigma_px)

    def sharpness(self, half_gray: np.ndarray) -> float:
        """Fine-band over mid-band energy of the half-size grey frame, the noise's share taken
        out of each; 0 where the frame shows no skin detail (``MIN_DETAIL_RMS``)."""
        gray = half_gray.astype(np.float32)
        noise_var = noise_level(gray) ** 2
        fine_blur = _blurred(gray, self.fine_sigma_px)
        mid_blur = _blurred(fine_blur, _quadrature(self.mid_sigma_px, self.fine_sigma_px))
        fine = _mean_square_difference(gray, fine_blur) - noise_var * self.fine_noise_gain
        mid = _mean_square_difference(fine_blur, mid_blur) - noise_var * self.mid_noise_gain
        detail_floor = (MIN_DETAIL_RMS * float(cv2.mean(gray)[0])) ** 2
        return max(fine, 0.0) / mid if mid > max(detail_floor, 1e-6) else 0.0


def _quadrature(total: float, done: float) -> float:
    """The Gaussian blur that, after one of ``done``, makes one of ``total``."""
    return float(np.sqrt(total * total - done * done))


def _mean_square_difference(image: np.ndarray, blurred: np.ndarray) -> float:
    """The mean energy of the band between two blurs of one frame."""
    return float(cv2.norm(image, blurred, cv2.NORM_L2SQR)) / image.size


class QualityGate:
    """Judges frames: sharpness, exposure, skin contact and motion against thresholds."""

    def __init__(
        self,
        *,
        um_per_px: float = NOMINAL_UM_PER_PX,
        min_sharpness: float = MIN_SHARPNESS,
        max_highlight_fraction: float = 0.25,
        max_shadow_fraction: float = 0.30,
        min_mean_level: float = 45.0,
        min_skin_fraction: float = 0.45,
        max_motion: float = 0.06,
    ) -> None:
        self.bands = SharpnessBands(um_per_px)
        self.min_sharpness = min_sharpness
        self.max_highlight_fraction = max_highlight_fraction
        self.max_shadow_fraction = max_shadow_fraction
        self.min_mean_level = min_mean_level
        self.min_skin_fraction = min_skin_fraction
        self.max_motion = max_motion
        # the last frame scored and its small grey copy: in a camera stream the next call's
        # ``previous`` is that frame, so its downscale is not done twice
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def scores(self, rgb: np.ndarray, previous: np.ndarray | None = None) -> dict[str, float]:
        """The raw scores of a frame (and motion against the previous frame when given)."""
        small, gray, half_gray = _downscaled(rgb)
        hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel() / gray.size
        ycrcb = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb)
        scores = {
            "sharpness": self.bands.sharpness(half_gray),
            "focus": focus_score(gray),
            "mean_level": float(cv2.mean(gray)[0]),
            "highlight_fraction": clipped_fraction(small),
            "shadow_fraction": float(hist[:16].sum()),
            "skin_fraction": _skin_fraction(ycrcb),
            "chroma_max": chroma_max(ycrcb),
        }
        if previous is not None:
            scores["motion"] = motion_score(gray, self._small_gray(previous))
        self._last = (rgb, gray)
        return scores

    def _small_gray(self, rgb: np.ndarray) -> np.ndarray:
        if self._last is not None and self._last[0] is rgb:
            return self._last[1]
        return downscale_gray_rgb(rgb)[1]

    def assess(self, rgb: np.ndarray, previous: np.ndarray | None = None) -> FrameQuality:
        """Score a frame (RGB uint8) and give the verdict with every failed check as a reason."""
        scores = self.scores(rgb, previous)
        failed = self._failed_checks(scores)
        verdict: Verdict = next((v for v in _PRIORITY if v in failed), "ok")
        return FrameQuality(verdict, tuple(failed.values()), scores)

    def _failed_checks(self, s: dict[str, float]) -> dict[Verdict, str]:
        failed: dict[Verdict, str] = {}
        if s["mean_level"] < DARK_FIELD_MEAN_LEVEL or s["skin_fraction"] < self.min_skin_fraction:
            failed["no_contact"] = self._no_contact_reason(s)
        if s["highlight_fraction"] > self.max_highlight_fraction:
            failed["overexposed"] = (
                f"{s['highlight_fraction']:.0%} of pixels clipped white "
                f"(> {self.max_highlight_fraction:.0%}): lower the light or exposure"
            )
        if s["mean_level"] < self.min_mean_level or s["shadow_fraction"] > self.max_shadow_fraction:
            failed["underexposed"] = (
                f"mean level {s['mean_level']:.0f} (< {self.min_mean_level:.0f}) or "
                f"{s['shadow_fraction']:.0%} near black: raise the light or exposure"
            )
        if s.get("motion", 0.0) > self.max_motion:
            failed["moving"] = (
                f"frame changed by {s['motion']:.3f} (> {self.max_motion}) since the last: "
                "hold the scope still"
            )
        if s["sharpness"] < self.min_sharpness:
            failed["blurred"] = (
                f"sharpness {s['sharpness']:.2f} < {self.min_sharpness} (fine detail lost "
                "against the frame's coarser detail): press gently to focus"
            )
        return failed

    def _no_contact_reason(self, s: dict[str, float]) -> str:
        """Why no skin is seen: a frame without colour (the camera's format, not the scope's
        place; a dark or clipped white field is grey on any camera), a dark field, else too
        little skin; only the check that failed is named."""
        lit = s["mean_level"] >= DARK_FIELD_MEAN_LEVEL
        clipped = s["highlight_fraction"] > self.max_highlight_fraction
        if lit and not clipped and s["chroma_max"] <= COLOURLESS_MAX_CHROMA:
            return (
                "the frame carries no colour (every pixel grey), so no skin can be seen: check "
                "the camera's format (a mono mode?) or that the file is a colour image; if the "
                "scope rests on something grey, press it onto the skin"
            )
        if not lit:
            return (f"dark field, mean level {s['mean_level']:.0f} < {DARK_FIELD_MEAN_LEVEL:g} "
                    "(the scope lifted, or its light off): press the scope onto the skin")
        return (f"skin fraction {s['skin_fraction']:.2f} < {self.min_skin_fraction} (too "
                "little skin in view): press the scope onto the skin")


def motion_score(gray: np.ndarray, previous_gray: np.ndarray) -> float:
    """Mean absolute change between two small grey frames, relative to their mean level."""
    if gray.shape != previous_gray.shape:
        return 1.0
    diff = cv2.absdiff(gray, previous_gray)
    level = max(float(gray.mean()) + float(previous_gray.mean()), 2.0) / 2.0
    return float(diff.mean()) / level


def best_frame(frames: Sequence[np.ndarray], qualities: Sequence[FrameQuality]) -> int:
    """Index of the best frame of a burst: an ok frame first, then the sharpest."""
    if not frames or len(frames) != len(qualities):
        raise ValueError(
            f"best_frame needs one quality per frame (got {len(frames)} frames, "
            f"{len(qualities)} qualities) and at least one frame"
        )
    ranked = range(len(qualities))
    return max(ranked, key=lambda i: (qualities[i].ok, qualities[i].scores.get("sharpness", 0.0)))
