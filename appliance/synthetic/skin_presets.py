"""Synthetic skin presets: the age range each one draws from (no heavy imports: the CLI uses it)."""

from __future__ import annotations

# "wide" draws ages like "mixed" and, on top, everything the others keep fixed (scale 7-13 µm/px,
# 0-60 round and elliptical pores of 50-320 µm, neutral, reddish or brownish, dark junctions,
# shallow and deep furrows, pigment spots, freckles, hairs, dust, JPEG q70-95, strong
# vignetting, colour casts); on half its frames hill size and furrow width apart from the age
# (fine hills with wide furrows too) and junctions deepened, no wider than their furrows; pores
# from faint to dark, furrows up to as dark as the pores, and on half its frames a pore's depth
# the deeper of pit and furrow rather than their sum (pores no darker than deep furrows); on
# three quarters of its frames furrows that end inside hills (some a few µm short of the next
# furrow), on half of them near-neutral grey hairs; on 30 % of its frames junction pits darker
# and wider than their furrows (0.55-0.9 of a furrow floor's darkness and depth added); on
# 0-35 % of the pores (drawn per frame) a near-black or grey hair growing out of the pore's
# centre, thinner than the pore; and an oblique light beside the ring, from none to strong, that
# reads domed hills and their micro-relief.
PRESETS = ("fine", "normal", "coarse", "mixed", "wide")
PRESET_AGES_YEARS: dict[str, tuple[float, float]] = {
    "fine": (20.0, 35.0),
    "normal": (35.0, 55.0),
    "coarse": (60.0, 80.0),
    "mixed": (20.0, 80.0),
    "wide": (20.0, 80.0),
}


def check_preset(preset: str) -> str:
    """Return ``preset`` if it is known; raise ValueError naming the choices otherwise."""
    if preset not in PRESETS:
        raise ValueError(f"unknown skin preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return preset


def preset_help() -> str:
    """One line describing every preset's age range (and what ``wide`` varies), for help."""
    ranges = (f"{name} {low:.0f}-{high:.0f}" for name, (low, high) in PRESET_AGES_YEARS.items())
    return ("age range in years: " + ", ".join(ranges) + " (default mixed); wide also varies the "
            "scale (7-13 um/px, in each frame's NAME.json: measure with --um-per-px), pores, "
            "their hue and darkness, furrow darkness, junctions, hill size apart from furrow "
            "width, furrow depth, dead-end furrows, pigment, hairs (brown or grey, some "
            "growing out of pores), dust, JPEG "
            "quality and lighting (an oblique light beside the ring)")
