"""Generator parameters for synthetic microscope skin, sampled by age from literature trends.

The age trends follow the videomicroscope literature the design cites (Arakawa et al., Shiseido,
J. Soc. Cosmet. Chem. Jpn. 41(3), 2007, and the skin-microrelief studies it builds on): with age
the hills get coarser and fewer, the furrows wider and more anisotropic as the secondary furrow
direction fades after about 50, and pore area rises into the 40s and then levels off. Each frame
draws an age from its preset's range, derives the expected value of every parameter from the
age, and scatters it log-normally so that presets overlap as real people do.

Resulting ground truth (5th-95th percentile over 25 frames per preset): hill density
17-34 /mm² (fine) to 5-10 /mm² (coarse); mean hill area 0.03-0.06 to 0.10-0.20 mm²; furrow
density 10-14 to 5-7 mm/mm²; furrow width 27-40 to 55-87 µm; anisotropy 0.03-0.21 to 0.25-0.38;
pore diameter 99-164 µm (fine) and 139-215 µm from the 40s on; 33-113 pores /cm².

The "wide" preset breaks the age model's tie of small hills to thin furrows: on half its frames
(drawn from a child of the frame's generator, so that the other frames keep their skin) the
lattice cell (0.04-0.25 mm²) and the furrow width (25-70 µm, at most 0.3 of the cell's side)
are drawn log-uniformly and apart, and the junctions deepened (darkness 0.15-0.5) but no wider
than their furrows (0.8-1.2 furrow widths across); on every frame the pores are neutral,
reddish or slightly brownish, a third each; and on every frame the pores are drawn from faint to
the other presets' darkness (their floor takes 20-50 % of the light), the furrows from the other
presets' 30 % up to as dark as the pores, and on half the frames the depth is the deeper of pit
and furrow (a pore a hole, a furrow a fold: a pore on a deep junction no darker than the
junction) rather than their sum, as the other presets draw it (pores about twice as dark as
their furrows). Last from that child: on three quarters of the frames furrows that end inside
5-30 % of the hills (``skin_dead_ends``), 30-80 % of them a few µm short of the next furrow,
and on half the frames hairs of near-neutral grey (0.55-1.15 of the skin's grey) instead of
dark brown. Last of all, on ``DARK_JUNCTION_SHARE`` of the frames, dark and large junction pits
(the meeting points of furrows, not pores): each adds 0.55-0.9 of its furrows' floor darkness
(in optical density) and as much of their fold depth to the relief, on a disc 1.2-1.8 furrow
widths across, wider than the furrows meeting there (the fifth renderer's junction pits that
main counted as pores, docs/experiments/README.md "darkjunc"); on ``DARK_JUNCTION_BOWL_SHARE``
of those frames the disc is a round Gaussian bowl (as deep in its middle, half as deep on the
same radius) rather than flat-topped, so its outline closes in light as a pore's does
(docs/experiments/README.md "junc2"). After the pores' hairs, the light (``skin_light``): the
share of one oblique source beside the LED ring (0-0.8 of the light on flat skin), its
elevation (20-50 degrees) and direction, the height of the hill domes it reads (2-15 µm) and
the amplitude of a micro-relief on the hills (0-3 µm); the other presets light with the ring
alone (docs/experiments/README.md "oblique").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from appliance.synthetic.skin_presets import PRESET_AGES_YEARS, PRESETS, check_preset

__all__ = ["PRESETS", "SkinParams", "check_preset", "sample_params"]

SCALAR_UM_PER_PX = 10.0  # Scalar 25x lens at 1280x960, before calibration
FRAME_WIDTH_PX = 1280
FRAME_HEIGHT_PX = 960
JPEG_QUALITY = 90
NO_PORE_DIAMETER_LIMIT_UM = 1e9  # the largest pore diameter of a preset that sets none
# the "wide" frames whose hill size and furrow width are drawn apart from the age model, which
# ties small hills to thin furrows; their furrows up to 70 µm, and no wider than 0.3 of the
# lattice cell's side (a 0.05 mm² cell: 67 µm), so that a hill is left between them
UNBOUND_SHARE = 0.5
FURROW_WIDTH_MAX_UM = 70.0
UNBOUND_WIDTH_PER_CELL_SIDE = 0.3
# how dark a furrow's and a pore's floor are (the share of light they take away), and the share
# of "wide" frames where the depth is the deeper of pit and fold rather than their sum (a pore
# a hole, a furrow a fold: a pore no darker than the deep furrows and junctions around it)
DEFAULT_FURROW_DARKNESS = 0.3
DEFAULT_PORE_DARKNESS = 0.5
FAINTEST_PORE_DARKNESS = 0.2
MAX_COMBINED_SHARE = 0.5
# the "wide" frames with furrows that end inside hills (skin_dead_ends), and those whose hairs
# are near-neutral grey rather than dark brown
DEAD_END_FRAME_SHARE = 0.75
NEUTRAL_HAIR_SHARE = 0.5
# the "wide" frames with dark, large junction pits: darkness added as a share of the furrow
# floor's (optical density, and the same share of the fold's depth), disc radius in furrow widths
DARK_JUNCTION_SHARE = 0.3
DARK_JUNCTION_FLOOR_SHARE = (0.55, 0.9)
DARK_JUNCTION_RADIUS_WIDTHS = (0.6, 0.9)
DARK_JUNCTION_BOWL_SHARE = 0.5  # of the dark-junction frames: a Gaussian bowl, not a flat disc
# the "wide" frames' share of pores with a hair growing out of them (a follicle opens as a pore):
# drawn per frame from this range, each such hair rooted at its pore's centre (skin_extras)
PORE_HAIR_SHARE = (0.0, 0.35)
FOLD_DEPTH_PER_WIDTH_PX = 0.35  # skin_render: a fold's depth is 0.35 x its width in px + 1
FOLD_DEPTH_BASE = 1.0
DEFAULT_JUNCTION_RELIEF = 2.0  # depth a junction's darkening adds per unit of darkness
# the "wide" frames' light (skin_light): the share of the light on flat skin that comes from one
# directional (oblique) source rather than the ring, that source's elevation above the skin, and
# the relief it reads beyond the furrows and pores: hill domes rounded over a quarter of the
# hill's side, this high, and a micro-relief of this amplitude (drawn per frame, its own seed)
OBLIQUE_LIGHT_SHARE = (0.0, 0.8)
OBLIQUE_ELEVATION_DEG = (20.0, 50.0)
HILL_DOME_UM = (2.0, 15.0)
MICRO_RELIEF_UM = (0.0, 3.0)


@dataclass(frozen=True)
class SkinParams:
    """Everything that shaped one synthetic frame; written to the sidecar as ``params``."""

    age_years: float
    lattice_cell_area_mm2: float
    lattice_aspect_ratio: float
    lattice_angle_deg: float
    primary_direction_deg: float
    lattice_jitter_frac: float
    furrow_bend_frac: float
    secondary_furrow_keep_prob: float
    furrow_width_um: float
    furrow_width_cv: float
    primary_width_factor: float
    pore_density_per_cm2: float
    pore_diameter_um: float
    pore_diameter_cv: float
    pore_junction_share: float
    melanin: float
    erythema: float
    vignetting: float
    illumination_tilt: float
    shine: float
    noise_sigma: float
    defocus_sigma_px: float
    jpeg_quality: int
    um_per_px: float
    # the "wide" preset's extra variety; these defaults leave the other presets as they were
    pore_diameter_min_um: float = 0.0
    pore_diameter_max_um: float = NO_PORE_DIAMETER_LIMIT_UM
    pore_aspect_max: float = 1.0  # elliptical pores: major / minor axis up to this
    furrow_depth_spread: float = 0.0  # log-sd of a per-furrow depth factor (shallow and deep)
    junction_darkness: float = 0.0  # extra darkening of furrow junctions (0..1)
    junction_size: float = 0.0  # radius of that darkening / the local furrow width
    junction_relief: float = DEFAULT_JUNCTION_RELIEF  # depth added per unit junction darkness
    junction_bowl: bool = False  # junction pits as round Gaussian bowls, not flat-topped discs
    pigment_spots: int = 0
    freckles: int = 0
    hairs: int = 0
    dust_specks: int = 0
    colour_cast_red: float = 1.0  # gain of the red channel (colour cast of lamp and sensor)
    colour_cast_blue: float = 1.0
    pore_erythema: float = 0.0  # extra redness inside the pores (reddish pores)
    pore_melanin: float = 0.0  # extra melanin inside the pores (brownish pores)
    furrow_darkness: float = DEFAULT_FURROW_DARKNESS  # light taken away on a furrow's floor
    pore_darkness: float = DEFAULT_PORE_DARKNESS  # on a pore's floor; its pit as much shallower
    pits_max_combined: bool = False  # depth the deeper of pit and fold, not their sum
    dead_end_share: float = 0.0  # share of hills a furrow reaches into and ends in
    dead_end_short_share: float = 0.0  # share of those stopping a few µm short of a furrow
    hair_grey_level: float = 0.0  # 0: dark brown hairs; else near-neutral, this times the skin
    pore_hair_share: float = 0.0  # share of pores with a hair rooted at their centre (0: none)
    pore_hair_seed: int = 0  # seeds those hairs' draws apart from the frame's other draws
    oblique_light_share: float = 0.0  # share of the light from one oblique source (0: ring only)
    oblique_elevation_deg: float = 90.0  # that source's elevation above the skin's plane
    oblique_azimuth_deg: float = 0.0  # and its direction in the frame (0: from +x, 90: from +y)
    hill_dome_um: float = 0.0  # how high the hills' domes rise, as that source reads them
    micro_relief_um: float = 0.0  # amplitude of the micro-relief on the hills it reads
    relief_seed: int = 0  # seeds that micro-relief apart from the frame's other draws

    def to_json(self) -> dict[str, float | int]:
        """The parameters as a JSON-ready mapping."""
        return asdict(self)


def _scatter(rng: np.random.Generator, value: float, sigma: float) -> float:
    """``value`` times a log-normal factor with log-sd ``sigma``."""
    return float(value * math.exp(rng.normal(0.0, sigma)))


def _age_fraction(age_years: float) -> float:
    """0 at 20 years, 1 at 80 years."""
    return min(max((age_years - 20.0) / 60.0, 0.0), 1.0)


def _secondary_keep_prob(age_years: float) -> float:
    """Share of secondary furrows kept: most of them until the mid-40s, fading after ~50."""
    if age_years <= 45.0:
        return 0.9
    return max(0.9 - 0.75 * (age_years - 45.0) / 35.0, 0.1)


def _pore_diameter_um(age_years: float) -> float:
    """Mean pore equivalent diameter: grows from ~110 µm at 20 to ~175 µm in the 40s, then level."""
    return (
        110.0
        + 65.0 * min(max((age_years - 20.0) / 25.0, 0.0), 1.0)
        + 0.3 * max(age_years - 45.0, 0)
    )


def _texture_params(rng: np.random.Generator, age_years: float) -> dict[str, Any]:
    """Furrow network parameters for one age."""
    t = _age_fraction(age_years)
    keep = _secondary_keep_prob(age_years) + rng.normal(0.0, 0.05)
    return {
        "lattice_cell_area_mm2": _scatter(rng, 0.06 * (1.0 + 2.6 * t), 0.15),
        "lattice_aspect_ratio": max(_scatter(rng, 1.1 + 0.9 * t**1.3, 0.08), 1.0),
        "lattice_angle_deg": float(np.clip(rng.normal(62.0 + 20.0 * t, 4.0), 50.0, 90.0)),
        "primary_direction_deg": float(rng.uniform(0.0, 180.0)),
        "lattice_jitter_frac": float(rng.uniform(0.1, 0.2)),
        "furrow_bend_frac": float(rng.uniform(0.03, 0.08)),
        "secondary_furrow_keep_prob": float(np.clip(keep, 0.05, 0.98)),
        "furrow_width_um": _scatter(rng, 28.0 + 30.0 * t, 0.12),
        "furrow_width_cv": float(rng.uniform(0.15, 0.3)),
        "primary_width_factor": 1.15 + 0.5 * t + float(rng.uniform(-0.05, 0.05)),
    }


def _pore_params(rng: np.random.Generator, age_years: float) -> dict[str, Any]:
    """Pore parameters for one age."""
    return {
        "pore_density_per_cm2": _scatter(rng, 70.0, 0.25),
        "pore_diameter_um": _scatter(rng, _pore_diameter_um(age_years), 0.12),
        "pore_diameter_cv": float(rng.uniform(0.15, 0.3)),
        "pore_junction_share": float(rng.uniform(0.55, 0.8)),
    }


def _optics_params(rng: np.random.Generator, age_years: float) -> dict[str, Any]:
    """Colour, illumination and sensor parameters (melanin rises slightly with age)."""
    return {
        "melanin": float(np.clip(rng.normal(0.35 + 0.1 * _age_fraction(age_years), 0.15), 0, 1)),
        "erythema": float(np.clip(rng.normal(0.35, 0.15), 0.0, 1.0)),
        "vignetting": float(rng.uniform(0.2, 0.45)),
        "illumination_tilt": float(rng.uniform(0.0, 0.15)),
        "shine": float(rng.uniform(0.0, 0.35)),
        "noise_sigma": float(rng.uniform(0.008, 0.02)),
        "defocus_sigma_px": float(rng.uniform(0.5, 1.1)),
    }


def _wide_params(rng: np.random.Generator, um_per_px: float) -> dict[str, Any]:
    """The "wide" preset's variety, beyond what the measurement was tuned on."""
    frame_cm2 = FRAME_WIDTH_PX * FRAME_HEIGHT_PX * um_per_px**2 / 1e8
    return {
        "um_per_px": um_per_px,
        "pore_density_per_cm2": float(rng.uniform(0.0, 60.0)) / frame_cm2,
        "pore_diameter_um": float(np.exp(rng.uniform(np.log(70.0), np.log(240.0)))),
        "pore_diameter_cv": float(rng.uniform(0.1, 0.35)),
        "pore_junction_share": float(rng.uniform(0.3, 0.8)),
        "pore_diameter_min_um": 50.0,
        "pore_diameter_max_um": 320.0,
        "pore_aspect_max": float(rng.uniform(1.0, 1.8)),
        "furrow_depth_spread": float(rng.uniform(0.1, 0.3)),
        "junction_darkness": float(rng.uniform(0.0, 0.35)),
        "junction_size": float(rng.uniform(0.4, 0.8)),
        "pigment_spots": int(rng.integers(0, 7)),
        "freckles": int(rng.integers(0, 10)),
        "hairs": int(rng.integers(0, 3)),
        "dust_specks": int(rng.integers(0, 8)),
        "colour_cast_red": float(rng.uniform(0.88, 1.12)),
        "colour_cast_blue": float(rng.uniform(0.88, 1.12)),
        "vignetting": float(rng.uniform(0.2, 0.7)),
        "illumination_tilt": float(rng.uniform(0.0, 0.3)),
        "shine": float(rng.uniform(0.0, 0.5)),
        "jpeg_quality": int(rng.integers(70, 96)),
    }


def _unbound_params(rng: np.random.Generator) -> dict[str, Any]:
    """A share of the "wide" frames: hill size and furrow width drawn apart from the age (fine
    hills with wide furrows too), junctions deepened, no wider than their furrows."""
    cell_area_mm2 = float(np.exp(rng.uniform(np.log(0.04), np.log(0.25))))
    widest_um = min(FURROW_WIDTH_MAX_UM, UNBOUND_WIDTH_PER_CELL_SIDE * 1000.0 * cell_area_mm2**0.5)
    return {
        "lattice_cell_area_mm2": cell_area_mm2,
        "furrow_width_um": float(np.exp(rng.uniform(np.log(25.0), np.log(widest_um)))),
        "junction_darkness": float(rng.uniform(0.15, 0.5)),
        "junction_size": float(rng.uniform(0.4, 0.6)),
    }


def _pore_hue_params(rng: np.random.Generator) -> dict[str, Any]:
    """Pore hue of a "wide" frame: neutral, reddish or slightly brownish (a third each)."""
    hue, erythema, melanin = int(rng.integers(0, 3)), rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.35)
    return {"pore_erythema": float(erythema) if hue == 1 else 0.0,
            "pore_melanin": float(melanin) if hue == 2 else 0.0}


def _darkness_params(rng: np.random.Generator) -> dict[str, Any]:
    """How a "wide" frame's pits and folds combine and how dark each is: pores from faint to
    the other presets' darkness, furrows from theirs up to as dark as the pores."""
    max_combined = bool(rng.random() < MAX_COMBINED_SHARE)
    pore = float(rng.uniform(FAINTEST_PORE_DARKNESS, DEFAULT_PORE_DARKNESS))
    furrow = float(rng.uniform(DEFAULT_FURROW_DARKNESS, max(DEFAULT_FURROW_DARKNESS, pore)))
    return {"pits_max_combined": max_combined, "pore_darkness": pore, "furrow_darkness": furrow}


def _dead_end_and_hair_params(rng: np.random.Generator) -> dict[str, Any]:
    """A "wide" frame's dead-end furrows (on ``DEAD_END_FRAME_SHARE`` of the frames, into
    5-30 % of the hills, 30-80 % of them stopping a few µm short of the next furrow) and the
    colour of its hairs (on ``NEUTRAL_HAIR_SHARE`` of the frames near-neutral grey, from
    darker to a little lighter than the skin, instead of dark brown)."""
    with_dead_ends = bool(rng.random() < DEAD_END_FRAME_SHARE)
    share, short = float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.3, 0.8))
    neutral = bool(rng.random() < NEUTRAL_HAIR_SHARE)
    grey = float(rng.uniform(0.55, 1.15))
    return {"dead_end_share": share if with_dead_ends else 0.0,
            "dead_end_short_share": short if with_dead_ends else 0.0,
            "hair_grey_level": grey if neutral else 0.0}


def _dark_junction_params(rng: np.random.Generator, params: SkinParams) -> dict[str, Any]:
    """A "wide" frame's dark, large junction pits (on ``DARK_JUNCTION_SHARE`` of the frames,
    else nothing): each junction's disc adds a share of 0.55-0.9 of its furrows' floor darkness
    (in optical density: the light left is the floor's raised to that share) and the same share
    of the fold's depth (at the frame's mean furrow width) to the relief, on a disc 1.2-1.8
    furrow widths across; on ``DARK_JUNCTION_BOWL_SHARE`` of them a round bowl. The numbers are
    drawn on every frame (the same count of draws), the bowl last."""
    dark = bool(rng.random() < DARK_JUNCTION_SHARE)
    share = float(rng.uniform(*DARK_JUNCTION_FLOOR_SHARE))
    radius = float(rng.uniform(*DARK_JUNCTION_RADIUS_WIDTHS))
    bowl = bool(rng.random() < DARK_JUNCTION_BOWL_SHARE)
    if not dark:
        return {}
    darkness = 1.0 - (1.0 - params.furrow_darkness) ** share
    width_px = params.furrow_width_um / params.um_per_px
    fold_depth = FOLD_DEPTH_PER_WIDTH_PX * width_px + FOLD_DEPTH_BASE
    return {"junction_darkness": darkness, "junction_size": radius,
            "junction_relief": share * fold_depth / darkness, "junction_bowl": bowl}


def _wide_second_stream(rng: np.random.Generator, params: SkinParams) -> SkinParams:
    """What the "wide" preset draws from a child of the frame's generator (the parent's state,
    and so the geometry of frames outside the unbound share, as before): pore hue, pore and
    furrow darkness and how pit and fold combine on every frame; on ``UNBOUND_SHARE`` of them
    hill size, furrow width and junctions of their own; then dead ends and hair colour; then,
    on ``DARK_JUNCTION_SHARE`` of them, dark and large junction pits; then the share of pores
    a hair grows out of; last, the oblique light beside the ring."""
    child = rng.spawn(1)[0]
    unbound = bool(child.random() < UNBOUND_SHARE)
    drawn = _unbound_params(child)  # drawn on every frame: the same count of draws each time
    params = replace(params, **_pore_hue_params(child), **_darkness_params(child))
    params = replace(params, **drawn) if unbound else params
    params = replace(params, **_dead_end_and_hair_params(child))
    params = replace(params, **_dark_junction_params(child, params))
    params = replace(params, **_pore_hair_params(child))
    return replace(params, **_oblique_light_params(child))


def _pore_hair_params(rng: np.random.Generator) -> dict[str, Any]:
    """A "wide" frame's share of pores with a hair growing out of them and the seed of those
    hairs' draws: drawn after everything else, so the rest of the frame is as before."""
    return {"pore_hair_share": float(rng.uniform(*PORE_HAIR_SHARE)),
            "pore_hair_seed": int(rng.integers(0, 2**31 - 1))}


def _oblique_light_params(rng: np.random.Generator) -> dict[str, Any]:
    """A "wide" frame's light beside the ring: the share of one oblique source, its elevation
    and direction, the height of the hill domes and of the micro-relief it reads, and the seed
    of that micro-relief; drawn last, so the rest of the frame is as before."""
    return {"oblique_light_share": float(rng.uniform(*OBLIQUE_LIGHT_SHARE)),
            "oblique_elevation_deg": float(rng.uniform(*OBLIQUE_ELEVATION_DEG)),
            "oblique_azimuth_deg": float(rng.uniform(0.0, 360.0)),
            "hill_dome_um": float(rng.uniform(*HILL_DOME_UM)),
            "micro_relief_um": float(rng.uniform(*MICRO_RELIEF_UM)),
            "relief_seed": int(rng.integers(0, 2**31 - 1))}


def sample_params(rng: np.random.Generator, preset: str) -> SkinParams:
    """Draw an age from the preset's range and the generator parameters for that age."""
    low, high = PRESET_AGES_YEARS[check_preset(preset)]
    age_years = float(rng.uniform(low, high))
    params = _age_params(rng, age_years)
    if preset != "wide":
        return params
    params = replace(params, **_wide_params(rng, float(rng.uniform(7.0, 13.0))))
    return _wide_second_stream(rng, params)


def _age_params(rng: np.random.Generator, age_years: float) -> SkinParams:
    """The parameters every preset draws for one age."""
    return SkinParams(
        age_years=age_years,
        **_texture_params(rng, age_years),
        **_pore_params(rng, age_years),
        **_optics_params(rng, age_years),
        jpeg_quality=JPEG_QUALITY,
        um_per_px=SCALAR_UM_PER_PX,
    )
