"""Rendering puts furrow and pore edges where the geometry (and so the ground truth) has them."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.synthetic.skin_geometry import SkinGeometry
from appliance.synthetic.skin_render import furrow_fields, pore_field
from appliance.synthetic.skin_truth import clipped_lengths_px, disc_area_in_frame_px2


def _one_furrow_one_pore() -> SkinGeometry:
    """A 64 x 48 px frame with one slanted furrow (width 4 px) and one pore (radius 6 px)."""
    return SkinGeometry(
        width_px=64,
        height_px=48,
        vertices_px=np.array([[-20.0, 10.0], [90.0, 30.0]]),
        edges=np.array([[0, 1]], dtype=np.int64),
        edge_width_px=np.array([4.0]),
        edge_family=np.array([0], dtype=np.int64),
        faces=(),
        pore_centres_px=np.array([[40.5, 40.5]]),
        pore_radii_px=np.array([6.0]),
        pore_at_junction=np.array([False]),
    )


def test_furrow_distance_is_exact_to_the_centre_line() -> None:
    geometry = _one_furrow_one_pore()
    distance, width = furrow_fields(geometry)
    ys, xs = np.mgrid[0:48, 0:64] + 0.5
    (x0, y0), (x1, y1) = geometry.vertices_px
    expected = np.abs((y1 - y0) * xs - (x1 - x0) * ys + x1 * y0 - y1 * x0) / math.hypot(
        x1 - x0, y1 - y0
    )
    assert np.allclose(distance, expected, atol=1e-3)
    assert np.all(width == 4.0)


def test_pore_depth_is_half_on_its_radius() -> None:
    field = pore_field(_one_furrow_one_pore())  # pore centre on pixel (40, 40)'s centre
    assert field[40, 40] > 0.99
    assert abs(float(field[40, 46]) - 0.5) < 1e-4  # 6 px right: exactly on the radius
    assert abs(float(field[34, 40]) - 0.5) < 1e-4  # 6 px up
    assert 0.75 < field[40, 43] < 1.0  # soft edge, not a step
    assert 0.0 < field[40, 49] < 0.25
    assert field[5, 5] == 0.0


coordinate = st.floats(-200, 400, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(coordinate, coordinate, coordinate, coordinate)
def test_clipped_length_is_bounded_and_exact_inside(
    x0: float, y0: float, x1: float, y1: float
) -> None:
    length = math.hypot(x1 - x0, y1 - y0)
    clipped = float(clipped_lengths_px(np.array([[x0, y0]]), np.array([[x1, y1]]), 200, 100)[0])
    assert -1e-9 <= clipped <= length + 1e-9
    if min(x0, x1, y0, y1) >= 0 and max(x0, x1) <= 200 and max(y0, y1) <= 100:
        assert math.isclose(clipped, length, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(-10, 110), st.floats(-10, 90), st.floats(1, 15))
def test_disc_area_in_frame_matches_a_fine_grid(cx: float, cy: float, radius: float) -> None:
    step = 0.05
    xs = np.arange(0, 100, step) + step / 2
    ys = np.arange(0, 80, step) + step / 2
    near_x = xs[np.abs(xs - cx) <= radius]
    near_y = ys[np.abs(ys - cy) <= radius]
    inside = (near_x[None, :] - cx) ** 2 + (near_y[:, None] - cy) ** 2 <= radius**2
    grid_area = float(inside.sum()) * step**2
    exact = disc_area_in_frame_px2(cx, cy, radius, 100.0, 80.0)
    assert abs(exact - grid_area) <= 2 * math.pi * radius * step  # grid error: perimeter x step


def test_a_pore_left_out_of_a_frame_changes_it_only_where_that_pore_was() -> None:
    # benchmarks/skin_pore_visibility.py reads each pore's own contrast this way: the render's
    # random draws must not depend on the pores
    from dataclasses import replace

    from appliance.synthetic.skin import synthetic_scene
    from appliance.synthetic.skin_render import render_linear

    rng, params, geometry = synthetic_scene(11, 3, "wide")
    # its pits added to the furrows at the other presets' darkness, as the frame was drawn
    # before the wide preset's darkness draws (2026-12-06): max-combined now, the core of its
    # first pore (66 µm across, 25 % dark) lies in a junction darker than itself: unchanged
    params = replace(params, pits_max_combined=False, pore_darkness=0.5, furrow_darkness=0.3)
    state = rng.bit_generator.state
    with_all = render_linear(rng, geometry, params)[0].mean(axis=2)
    keep = np.arange(len(geometry.pore_radii_px)) != 0
    rng.bit_generator.state = state
    ratio, angle = geometry.pore_axis_ratio, geometry.pore_angle_rad
    without = render_linear(rng, replace(
        geometry, pore_centres_px=geometry.pore_centres_px[keep],
        pore_radii_px=geometry.pore_radii_px[keep],
        pore_at_junction=geometry.pore_at_junction[keep],
        pore_axis_ratio=None if ratio is None else ratio[keep],
        pore_angle_rad=None if angle is None else angle[keep],
    ), params)[0].mean(axis=2)
    (cx, cy), radius = geometry.pore_centres_px[0], geometry.pore_radii_px[0]
    ys, xs = np.mgrid[0:geometry.height_px, 0:geometry.width_px] + 0.5
    rho = np.hypot(xs - cx, ys - cy)
    inside = rho < 0.5 * radius
    assert np.median(1.0 - with_all[inside] / without[inside]) > 0.3  # the pore darkens there
    far = rho > 2.0 * radius / np.sqrt(0.5) + 16  # beyond its reach and every blur
    # (the render itself repeats to ~1e-8 only: OpenCV's threads)
    assert np.abs(with_all[far] - without[far]).max() < 1e-6


def test_the_frame_renders_from_its_scene_as_synthetic_frame_delivers_it() -> None:
    from appliance.synthetic.skin import encode_jpeg, synthetic_frame, synthetic_scene
    from appliance.synthetic.skin_render import render_rgb

    rng, params, geometry = synthetic_scene(12, 5, "wide")
    jpeg = encode_jpeg(render_rgb(rng, geometry, params), params.jpeg_quality)
    assert jpeg == synthetic_frame(12, 5, "wide").jpeg
