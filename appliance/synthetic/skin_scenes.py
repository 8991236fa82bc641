"""Hand-set skin scenes of the project's generator: pores placed on furrow junctions, pigment,
hairs, dust, dark junctions or deep short furrow segments, so the truth is known exactly.

tests/skin/test_skin_pores.py checks the pore search on them; benchmarks/fit_pore_rule.py fits
the pore tests' thresholds with them (other seeds than the tests').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from appliance.synthetic.skin import decode_jpeg, encode_jpeg
from appliance.synthetic.skin_geometry import SkinGeometry, build_geometry
from appliance.synthetic.skin_params import SkinParams, sample_params
from appliance.synthetic.skin_render import render_rgb

SCENE_WIDTH_PX, SCENE_HEIGHT_PX = 640, 480


@dataclass(frozen=True)
class Scene:
    """One scene: pixels (JPEG q90), its scale and its geometry."""

    rgb: np.ndarray
    um_per_px: float
    geometry: SkinGeometry


def junctions_near_centre(geometry: SkinGeometry) -> np.ndarray:
    """Furrow meeting points (3 or more furrows) well inside the scene."""
    degree = np.bincount(geometry.edges.ravel(), minlength=len(geometry.vertices_px))
    points = geometry.vertices_px[degree >= 3]
    inside = (np.abs(points[:, 0] - 320) < 200) & (np.abs(points[:, 1] - 240) < 150)
    result: np.ndarray = points[inside]
    return result


def _normal_scene(seed: int, place: Callable[[SkinGeometry, SkinParams], SkinGeometry],
                  **extras: Any) -> Scene:
    """A scene of the "normal" preset without pores, its geometry changed by ``place`` (pores
    put somewhere, furrows deepened) before it is rendered; ``extras`` set any other parameter
    (pigment_spots=4, hairs=2, ...)."""
    rng = np.random.default_rng(seed)
    params: SkinParams = replace(sample_params(rng, "normal"), pore_density_per_cm2=0.0, **extras)
    geometry = place(build_geometry(rng, params, SCENE_WIDTH_PX, SCENE_HEIGHT_PX), params)
    rgb = decode_jpeg(encode_jpeg(render_rgb(rng, geometry, params), 90))
    return Scene(rgb, params.um_per_px, geometry)


def _round_pores(spots_of: Callable[[SkinGeometry], np.ndarray], stride: int,
                 pore_diameters_um: tuple[float, ...],
                 at_junction: bool) -> Callable[[SkinGeometry, SkinParams], SkinGeometry]:
    """Round pores of ``pore_diameters_um`` on every ``stride``-th place of ``spots_of`` the
    geometry (cycling)."""

    def place(geometry: SkinGeometry, params: SkinParams) -> SkinGeometry:
        spots = spots_of(geometry)
        count = len(pore_diameters_um)
        centres = spots[_picks(len(spots), count, stride, "a place for a pore")].astype(float)
        return replace(
            geometry,
            pore_centres_px=centres.reshape(-1, 2),
            pore_radii_px=_radii_px(pore_diameters_um, params),
            pore_at_junction=np.full(count, at_junction),
        )

    return place


def _radii_px(pore_diameters_um: tuple[float, ...], params: SkinParams) -> np.ndarray:
    """The pores' radii in pixels; ValueError naming ``pore_diameters_um`` where one is no
    size a pore can be drawn at (zero, negative, not a number)."""
    diameters = np.asarray(pore_diameters_um, dtype=float)
    if not np.all(np.isfinite(diameters) & (diameters > 0)):
        raise ValueError(f"pore_diameters_um: {tuple(pore_diameters_um)} holds a diameter that "
                         "is not a positive number of micrometres")
    radii: np.ndarray = diameters / 2.0 / params.um_per_px
    return radii


def _picks(places: int, count: int, stride: int, what: str) -> np.ndarray:
    """Indices of every ``stride``-th of ``places`` (cycling) for ``count`` pores; ValueError
    naming ``pore_diameters_um`` where the scene has no such place (the pores cannot be
    drawn)."""
    if count and not places:
        raise ValueError(f"pore_diameters_um: this scene has no {what} (near its middle); "
                         "ask for smaller pores or another seed")
    return np.asarray([k * stride % places for k in range(count)], dtype=np.intp)


def _segment_for(pore_diameters_um: tuple[float, ...]) -> str:
    """What a pore of the largest of ``pore_diameters_um`` needs: a long furrow segment."""
    return f"furrow segment long enough for a pore of {max(pore_diameters_um, default=0):g} um"


def junction_scene(seed: int, pore_diameters_um: tuple[float, ...] = (),
                   **extras: Any) -> Scene:
    """Skin of the "normal" preset without pores but ``pore_diameters_um`` placed on furrow
    junctions; ``extras`` set any other parameter (pigment_spots=4, hairs=2, ...)."""
    return _normal_scene(seed, _round_pores(junctions_near_centre, 7, pore_diameters_um, True),
                         **extras)


def faint_junction_scene(seed: int, pore_diameters_um: tuple[float, ...] = (),
                         faint: float = 0.4, **extras: Any) -> Scene:
    """Skin of the "normal" preset whose furrows near the centre are ``faint`` times as deep
    as the rest (the fifth renderer's shallow tertiary furrows among deep primaries), without
    pores but ``pore_diameters_um`` placed in the middle of hills near the centre; ``extras``
    set any other parameter: with dark junction pits (``junction_darkness``, ...), those of
    the faint furrows stand out as pits whose arms are too shallow to read as furrows
    (docs/experiments/README.md "b3over")."""
    pores = _round_pores(hill_centres_near_centre, 5, pore_diameters_um, False)

    def fade(geometry: SkinGeometry, params: SkinParams) -> SkinGeometry:
        starts, ends = (geometry.vertices_px[geometry.edges[:, k]] for k in (0, 1))
        middle = (starts + ends) / 2.0
        inside = (np.abs(middle[:, 0] - 320) < 200) & (np.abs(middle[:, 1] - 240) < 150)
        return pores(replace(geometry, edge_depth=np.where(inside, faint, 1.0)), params)

    return _normal_scene(seed, fade, **extras)


def dash_scene(seed: int, factor: float = 2.2) -> Scene:
    """Skin without pores whose short furrow segments near the centre are ``factor`` times
    deeper than the rest: dashes to tell from pores."""

    def deepen(geometry: SkinGeometry, params: SkinParams) -> SkinGeometry:
        del params
        starts, ends = (geometry.vertices_px[geometry.edges[:, k]] for k in (0, 1))
        middle = (starts + ends) / 2.0
        short = np.hypot(*(ends - starts).T) < 14.0
        inside = (np.abs(middle[:, 0] - 320) < 200) & (np.abs(middle[:, 1] - 240) < 150)
        return replace(geometry, edge_depth=np.where(short & inside, factor, 1.0))

    return _normal_scene(seed, deepen)


def hill_centres_near_centre(geometry: SkinGeometry) -> np.ndarray:
    """The middle (vertex mean) of each hill well inside the scene: as far from furrows as a
    hill allows."""
    middles = np.asarray([geometry.vertices_px[list(face)].mean(axis=0)
                          for face in geometry.faces])
    inside = (np.abs(middles[:, 0] - 320) < 200) & (np.abs(middles[:, 1] - 240) < 150)
    result: np.ndarray = middles[inside]
    return result


def hill_scene(seed: int, pore_diameters_um: tuple[float, ...] = (), **extras: Any) -> Scene:
    """Skin of the "normal" preset without pores but ``pore_diameters_um`` placed in the
    middle of hills, away from any junction; ``extras`` set any other parameter."""
    return _normal_scene(seed, _round_pores(hill_centres_near_centre, 5, pore_diameters_um, False),
                         **extras)


def oval_scene(seed: int, pore_diameters_um: tuple[float, ...] = (), aspect: float = 1.8,
               **extras: Any) -> Scene:
    """Skin of the "normal" preset without pores but oval pores (``aspect`` long over short
    axis; equivalent diameters ``pore_diameters_um``) in the middle of long furrow segments
    well inside the scene, their long axis along the furrow."""

    def place(geometry: SkinGeometry, params: SkinParams) -> SkinGeometry:
        starts, ends = (geometry.vertices_px[geometry.edges[:, k]] for k in (0, 1))
        middle = (starts + ends) / 2.0
        along = ends - starts
        inside = (np.abs(middle[:, 0] - 320) < 200) & (np.abs(middle[:, 1] - 240) < 150)
        radii = _radii_px(pore_diameters_um, params)
        # long enough that the pore's ends stay 2 px clear of the junctions at the segment's ends
        room = np.hypot(*along.T) > 2.0 * (float(radii.max(initial=0.0)) * np.sqrt(aspect) + 2.0)
        chosen = np.flatnonzero(inside & room)
        count = len(pore_diameters_um)
        picks = chosen[_picks(len(chosen), count, 5, _segment_for(pore_diameters_um))]
        return replace(
            geometry,
            pore_centres_px=middle[picks].reshape(-1, 2),
            pore_radii_px=radii,
            pore_at_junction=np.zeros(count, dtype=bool),
            pore_axis_ratio=np.full(count, 1.0 / aspect),
            pore_angle_rad=np.arctan2(along[picks, 1], along[picks, 0]),
        )

    return _normal_scene(seed, place, **extras)


def beside_scene(seed: int, pore_diameters_um: tuple[float, ...] = (), gap_um: float = 5.0,
                 **extras: Any) -> Scene:
    """Skin of the "normal" preset without pores but round pores beside the middle of long
    furrow segments well inside the scene, on one side, their edge ``gap_um`` clear of the
    furrow's edge; ``extras`` set any other parameter (wide, deep furrows: the pore reads no
    deeper than the furrow beside it)."""

    def place(geometry: SkinGeometry, params: SkinParams) -> SkinGeometry:
        starts, ends = (geometry.vertices_px[geometry.edges[:, k]] for k in (0, 1))
        middle = (starts + ends) / 2.0
        along = ends - starts
        length = np.hypot(*along.T)
        inside = (np.abs(middle[:, 0] - 320) < 200) & (np.abs(middle[:, 1] - 240) < 150)
        radii = _radii_px(pore_diameters_um, params)
        chosen = np.flatnonzero(inside & (length > 4.0 * float(radii.max(initial=0.0)) + 10.0))
        count = len(pore_diameters_um)
        picks = chosen[_picks(len(chosen), count, 5, _segment_for(pore_diameters_um))]
        normal = np.stack([-along[picks, 1], along[picks, 0]], axis=1) / length[picks, None]
        out = (params.furrow_width_um / 2.0 + gap_um) / params.um_per_px + radii
        return replace(
            geometry,
            pore_centres_px=(middle[picks] + normal * out[:, None]).reshape(-1, 2),
            pore_radii_px=radii,
            pore_at_junction=np.zeros(count, dtype=bool),
        )

    return _normal_scene(seed, place, **extras)
