"""Synthetic Scalar 25x microscope skin frames with exact ground truth.

``synthetic_frame(seed, index, preset)`` builds the vector geometry of a skin patch (furrow
network, hills, pores; see ``skin_geometry``), computes its ground truth from that geometry by
the definitions of docs/measurement.md (``skin_truth``), renders it (``skin_render``) and
compresses it as the microscope saves it (JPEG q90; the "wide" preset q70-95). The same
(seed, index, preset) always gives byte-identical JPEG and sidecar JSON with the same library
versions on the same CPU type. ``write_frame`` saves ``NAME.jpg`` and its ``NAME.json`` sidecar.

Modelled: a furrow network of two primary directions and a secondary (diagonal) one that fades
with age, bent furrows whose width varies between and along them, hills as the polygons between
furrow centre lines, soft-edged pores (most on furrow junctions), melanin and redness varying
smoothly, oblique ring-light shading, uneven illumination and vignetting, specular shine on
oily hill tops, defocus, sensor noise and JPEG compression; the "wide" preset adds scales of
7-13 µm/px, elliptical pores, reddish and brownish pores, dark junctions, shallow and deep
furrows, pigment spots, freckles, hairs, dust and colour casts (``skin_extras``), and on half
its frames hill size and furrow width drawn apart (fine hills with wide furrows) with deepened
junctions no wider than their furrows, and pores from faint to dark, furrows up to as dark as
the pores, on half its frames the depth the deeper of pit and furrow (a pore a hole in the fold
it opens into, no darker than a deep furrow) rather than their sum; on three quarters of its
frames furrows that end inside a hill (``skin_dead_ends``: from the middle of a furrow into
5-30 % of the hills, as wide and deep as that furrow, some stopping a few µm short of the
furrow across the hill; they add furrow length, and one that ends within 13 µm of another furrow
meets it and splits its hill in the truth, ``skin_hill_split``), and on half its frames hairs of
near-neutral grey instead of dark brown; on 30 % of its frames junction pits darker and wider
than the furrows meeting there (0.55-0.9 of a furrow floor's darkness and fold depth added, on a
disc 1.2-1.8 furrow widths across: the fifth renderer's junctions, ``skin_params``).
Not modelled: scales and flakes, wrinkles and folds,
other lesions, make-up, sebum plugs, curvature or pressure marks of the scope, motion blur,
exposure or focus changing between frames, lens distortion and colour fringes, micro-relief on
the hill domes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from appliance.outfile import replaced_when_complete
from appliance.synthetic.skin_dead_ends import draw_dead_ends, with_dead_ends
from appliance.synthetic.skin_geometry import SkinGeometry, build_geometry
from appliance.synthetic.skin_hill_split import MEET_GAP_UM
from appliance.synthetic.skin_params import (
    FRAME_HEIGHT_PX,
    FRAME_WIDTH_PX,
    PRESETS,
    SkinParams,
    check_preset,
    sample_params,
)
from appliance.synthetic.skin_render import render_rgb
from appliance.synthetic.skin_truth import ground_truth

__all__ = [
    "PRESETS",
    "TRUTH_DEFINITION",
    "SkinParams",
    "SyntheticSkin",
    "frame_name",
    "synthetic_frame",
    "synthetic_geometry",
    "synthetic_params",
    "synthetic_scene",
    "write_frame",
]


# what the sidecar's truth counts as a hill border beyond the drawn furrow network
# (docs/measurement.md "Definitions"): a reader of an older sidecar, without it, knows its hills
# were counted on the drawn graph alone
TRUTH_DEFINITION: dict[str, float | bool] = {
    "dead_end_meets_furrow_within_um": MEET_GAP_UM,
    "meeting_bridge_is_furrow": True,  # the bridge to the furrow met counts as centre line
}


@dataclass(frozen=True)
class SyntheticSkin:
    """One synthetic frame: the decoded image, its JPEG bytes, ground truth and parameters."""

    image_rgb: npt.NDArray[np.uint8]  # (960, 1280, 3), decoded from ``jpeg``
    jpeg: bytes
    truth: dict[str, float]  # the nine TEXTURE_PORE_KEYS, exact for ``geometry``
    params: SkinParams
    um_per_px: float
    preset: str
    seed: int
    index: int
    geometry: SkinGeometry

    def sidecar(self, image_name: str) -> dict[str, Any]:
        """The sidecar JSON object for this frame saved as ``image_name``."""
        truth: dict[str, float | int] = dict(self.truth)
        truth["pore_count"] = int(self.truth["pore_count"])
        return {
            "image": image_name,
            "um_per_px": self.um_per_px,
            "seed": self.seed,
            "index": self.index,
            "preset": self.preset,
            "truth": truth,
            "truth_definition": dict(TRUTH_DEFINITION),
            "params": self.params.to_json(),
        }


def _rng(seed: int, index: int, preset: str) -> np.random.Generator:
    """The frame's own random generator, independent for every (seed, index, preset)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([seed, index, PRESETS.index(preset)]))


def encode_jpeg(rgb: npt.NDArray[np.uint8], quality: int) -> bytes:
    """Baseline JPEG bytes of an RGB image, as the microscope software saves it."""
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode the synthetic frame as JPEG")
    return bytes(buffer.tobytes())


def decode_jpeg(jpeg: bytes) -> npt.NDArray[np.uint8]:
    """RGB pixels of JPEG bytes."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError("OpenCV could not decode the synthetic frame's JPEG")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _params_and_geometry(rng: np.random.Generator, preset: str) -> tuple[SkinParams, SkinGeometry]:
    """Draw the parameters, then the geometry, from the frame's generator (in that order)."""
    params = sample_params(rng, preset)
    geometry = build_geometry(rng, params, FRAME_WIDTH_PX, FRAME_HEIGHT_PX)
    if params.dead_end_share <= 0.0:
        return params, geometry
    # drawn last, from a child (the parent's state, and so the rendering, as without them)
    return params, with_dead_ends(geometry, draw_dead_ends(rng.spawn(1)[0], params, geometry))


def synthetic_geometry(
    seed: int, index: int, preset: str = "mixed"
) -> tuple[SkinParams, SkinGeometry]:
    """The parameters and vector geometry of a frame, without rendering it (fast)."""
    return _params_and_geometry(_rng(seed, index, check_preset(preset)), preset)


def synthetic_params(seed: int, index: int, preset: str = "mixed") -> SkinParams:
    """The parameters of a frame alone, the first draw of its generator: those
    ``synthetic_geometry`` and ``synthetic_frame`` give, without the geometry (0.05-0.5 s)."""
    return sample_params(_rng(seed, index, check_preset(preset)), preset)


def synthetic_scene(
    seed: int, index: int, preset: str = "mixed"
) -> tuple[np.random.Generator, SkinParams, SkinGeometry]:
    """The frame's parameters and geometry, and its generator where the rendering starts."""
    rng = _rng(seed, index, check_preset(preset))
    params, geometry = _params_and_geometry(rng, preset)
    return rng, params, geometry


def synthetic_frame(seed: int, index: int, preset: str = "mixed") -> SyntheticSkin:
    """Frame ``index`` of the synthetic series ``seed`` (deterministic per seed, index, preset)."""
    rng, params, geometry = synthetic_scene(seed, index, preset)
    jpeg = encode_jpeg(render_rgb(rng, geometry, params), params.jpeg_quality)
    return SyntheticSkin(
        image_rgb=decode_jpeg(jpeg),
        jpeg=jpeg,
        truth=ground_truth(geometry, params.um_per_px),
        params=params,
        um_per_px=params.um_per_px,
        preset=preset,
        seed=seed,
        index=index,
        geometry=geometry,
    )


def frame_name(seed: int, index: int) -> str:
    """File stem for frame ``index`` of series ``seed``: ``skin-S-NNNNN``."""
    return f"skin-{seed}-{index:05d}"


def write_frame(frame: SyntheticSkin, out_dir: Path) -> tuple[Path, Path]:
    """Save ``NAME.jpg`` and its ``NAME.json`` sidecar in ``out_dir``; return both paths.

    Each is written whole or not at all (a full disk leaves no cut frame under its name), an
    image whose sidecar could not be written is removed again (a frame without its truth is
    no frame of the series), and an OSError names the file.
    """
    stem = frame_name(frame.seed, frame.index)
    image_path, sidecar_path = out_dir / f"{stem}.jpg", out_dir / f"{stem}.json"
    with replaced_when_complete(image_path) as temp:
        temp.write_bytes(frame.jpeg)
    try:
        with replaced_when_complete(sidecar_path) as temp:
            temp.write_text(
                json.dumps(frame.sidecar(image_path.name), indent=2) + "\n", encoding="utf-8"
            )
    except OSError:
        image_path.unlink(missing_ok=True)
        raise
    return image_path, sidecar_path
