"""The measurement's large steps hold few image-sized buffers at once: each result is written
over an image read last (memory traffic is most of their cost on one core). Peaks are read with
tracemalloc, which sees numpy's and OpenCV's arrays alike."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import cv2
import numpy as np

from appliance.skin.hills import LOOKUP_CHUNK_PX, grow_cells, relabelled
from appliance.skin.pore_profile import FINE_SMOOTH_PX, blobness
from appliance.skin.pores import measure_candidates
from appliance.skin.preprocess import hill_background, prepare
from appliance.skin.texture import furrow_width_um, measure_texture, tophat_response
from tests.skin_frames import generated


def _peak_bytes(call: Callable[[], object]) -> int:
    """The most memory traced at once while ``call`` runs."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _depth(shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A smooth random depth image (float32), as the work depth is."""
    noise = np.random.default_rng(0).random(shape, dtype=np.float32)
    depth: np.ndarray = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return depth


def test_blobness_holds_at_most_four_work_images() -> None:
    """Two scales of three filters each, their results written over the images they read: four
    work images at once (seven when each filter wrote a new one)."""
    depth = _depth()
    assert _peak_bytes(lambda: blobness(depth)) <= 4.5 * depth.nbytes


def test_hill_growth_holds_its_cells_and_three_scratch_images() -> None:
    """The growth's steps write over one dilation, one mask of open pixels and one of allowed
    pixels: 7 bytes a pixel with the uint16 cells (11 when each step wrote new ones)."""
    response = _depth() * np.float32(0.1)
    seeds = np.zeros(response.shape, dtype=np.uint16)
    seeds[::40, ::40] = np.arange(1, seeds[::40, ::40].size + 1).reshape(seeds[::40, ::40].shape)
    cells = grow_cells(seeds, response)
    assert cv2.countNonZero(cells) == cells.size  # every pixel given to a seed
    assert _peak_bytes(lambda: grow_cells(seeds, response)) <= 7.5 * seeds.size


def test_the_fine_depth_smoothed_in_place_is_what_the_profiles_read() -> None:
    """``prepare(..., fine_smooth_px=FINE_SMOOTH_PX)`` (as ``analyze`` calls it) smooths the
    fine depth in its own buffer, to the value the pores otherwise smooth it to, and the pores
    then read that image, not a smoothed copy of it (one 1280 x 960 float image less)."""
    frame = generated(1, 0)
    plain = prepare(frame.image_rgb, frame.um_per_px)
    smoothed = prepare(frame.image_rgb, frame.um_per_px, fine_smooth_px=FINE_SMOOTH_PX)
    assert np.array_equal(smoothed.depth_fine,
                          cv2.GaussianBlur(plain.depth_fine, (5, 5), FINE_SMOOTH_PX))
    furrows = measure_texture(smoothed).furrow_sample
    found = measure_candidates(smoothed, furrows)
    assert found.depth_fine is smoothed.depth_fine
    again = measure_candidates(plain, furrows)
    assert np.array_equal(again.centres_work_px, found.centres_work_px)
    assert np.array_equal(again.shape.radius_px, found.shape.radius_px)


def test_prepare_holds_little_beyond_what_it_returns() -> None:
    """The flattened level is written over the hill background once the fine depth has read
    it: at most 7.25 bytes a frame pixel at once at 10 µm/px, of which the four images it
    returns are 6.75 (9.0 when the level took a buffer of its own)."""
    frame = generated(1, 0)
    height, width = frame.image_rgb.shape[:2]
    assert _peak_bytes(lambda: prepare(frame.image_rgb, 10.0)) <= 7.25 * height * width


def test_the_top_hat_writes_its_steps_and_response_over_the_smoothed_level() -> None:
    """The smoothed level, its uint16 steps and the closing's own scratch image at once: at
    most 6.5 bytes a work pixel (12.1 when each took a buffer of its own)."""
    flat = np.float32(1.0) - _depth() * np.float32(0.3)
    assert _peak_bytes(lambda: tophat_response(flat)) <= 6.5 * flat.size


def test_the_furrow_width_reads_half_the_floor_over_the_floor() -> None:
    """The floor, its spread and the two masks of the half-depth test at once: at most 10.5
    bytes a work pixel (13.0 when half the spread floor took a float image of its own)."""
    depth = _depth()
    lines = np.zeros(depth.shape, dtype=bool)
    lines[::9] = True
    lines[:, ::11] = True
    assert furrow_width_um(depth, lines, float(np.count_nonzero(lines)), 20.0) > 0.0
    assert _peak_bytes(lambda: furrow_width_um(depth, lines, 1000.0, 20.0)) <= 10.5 * depth.size


def test_the_hill_background_is_enlarged_over_its_closing() -> None:
    """The closing as uint8 and as float, then the enlarged background written over the float
    one: at most 5.5 bytes a work pixel at once (9.1 when the background took its own)."""
    gray = np.clip(_depth() * np.float32(255.0), 0, 255).astype(np.uint8)
    background = hill_background(gray)
    assert background.shape == gray.shape
    assert float(background.min()) >= 1.0  # never 0: the level is divided by it
    assert _peak_bytes(lambda: hill_background(gray)) <= 5.5 * gray.size


def test_relabelling_reads_the_table_at_every_label_without_a_whole_image_index() -> None:
    rng = np.random.default_rng(5)
    for shape in ((480, 640), (7, 3), (0, 5), (1, LOOKUP_CHUNK_PX + 1)):
        labels = rng.integers(0, 3000, shape).astype(np.uint16)
        for table in (rng.integers(0, 3000, 3000).astype(np.uint16), rng.random(3000) > 0.5):
            got = relabelled(table, labels)
            assert got.dtype == table.dtype
            assert np.array_equal(got, np.take(table, labels))
    labels = rng.integers(0, 3000, (480, 640)).astype(np.uint16)
    table = rng.integers(0, 3000, 3000).astype(np.uint16)
    # the result (2 bytes a pixel) and a chunk's index, not an index of the whole image (8)
    assert _peak_bytes(lambda: relabelled(table, labels)) < 4 * labels.size
