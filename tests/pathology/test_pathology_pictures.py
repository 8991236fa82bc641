"""Pathology pictures a person can read: CAMs large, each tile beside its map, maps that differ
where the tissue does; heatmaps with a title line and a legend with ticks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from appliance.cli import main
from appliance.pathology.heatmap import CAM_TILE_PX, cam_panel, tile_heatmap
from appliance.pathology.model import TileModel
from appliance.pathology.run import SlideResult, picture_titles
from appliance.pathology.tiles import Tile
from appliance.pathology.verdict import UNSUPPORTED
from appliance.shipped import PATHOLOGY_MODEL, shipped_path
from tests.pathology_helpers import results_rows

TITLE_PX, CAPTION_PX, GAP_PX = 34, 24, 8


def _tissue(seed: int) -> np.ndarray:
    """Pink stroma dense with dark nuclei, 64 px (the model's tile)."""
    tile = np.full((64, 64, 3), (230, 160, 200), np.uint8)
    tile[np.random.default_rng(seed).random((64, 64)) < 0.35] = (80, 50, 140)
    return tile


def _map_of(panel: np.ndarray, row: int) -> np.ndarray:
    top = TITLE_PX + row * (CAM_TILE_PX + CAPTION_PX) + CAPTION_PX
    return panel[top : top + CAM_TILE_PX, CAM_TILE_PX + GAP_PX :].astype(np.float32)


def _redness(picture: np.ndarray) -> float:
    return float(np.mean(picture[..., 0] - picture[..., 2]))


def test_cam_maps_differ_where_the_tissue_does_and_only_there() -> None:
    fat = np.full((64, 64, 3), (245, 240, 245), np.uint8)
    left = np.concatenate([_tissue(1)[:, :32], fat[:, 32:]], axis=1)  # tissue left, fat right
    right = np.ascontiguousarray(left[:, ::-1])  # the mirror: tissue right
    same = _tissue(2)
    tiles = np.stack([left, right, same, same])
    scores = TileModel(shipped_path(PATHOLOGY_MODEL)).predict(tiles)
    assert scores.cam is not None
    panel = cam_panel(tiles, scores.cam, scores.probability, "slide: decisive tiles")
    assert panel.shape[1] == 2 * CAM_TILE_PX + GAP_PX  # tile beside its map, 4x enlarged
    maps = [_map_of(panel, row) for row in range(4)]
    half = CAM_TILE_PX // 2
    tilt = [_redness(m[:, :half]) - _redness(m[:, half:]) for m in maps[:2]]
    assert tilt[0] * tilt[1] < 0  # the evidence moves with the tissue
    assert min(abs(t) for t in tilt) > 20.0
    assert np.abs(maps[2] - maps[3]).mean() < 1.0  # same tissue, same map


def test_heatmap_has_a_title_line_and_a_legend_with_ticks() -> None:
    thumbnail = np.full((200, 300, 3), 235, np.uint8)
    tiles = [Tile(0, 0, 0, 0, 100, 1.0),
             Tile(0, 1, 100, 0, 100, 1.0)]
    picture = tile_heatmap(thumbnail, 1.0, tiles, np.array([0.1, 0.9]),
                           "P0001-S: MSI, score 0.50")
    assert picture.shape[1] >= 480  # room for the words
    title, legend = picture[:TITLE_PX], picture[-64:]
    assert (title.min(axis=2) < 100).sum() > 100  # dark text on the white title line
    bar = legend[6:24, 40:-40].astype(int)
    assert bar[:, :10, 2].mean() > bar[:, :10, 0].mean() + 80  # blue end: MSS
    assert bar[:, -10:, 0].mean() > bar[:, -10:, 2].mean() + 80  # red end: MSI
    assert (legend[24:60].min(axis=2) < 100).sum() > 150  # ticks, numbers and the caption


def test_a_lone_tile_still_gets_a_map() -> None:
    tile = _tissue(3)
    scores = TileModel(shipped_path(PATHOLOGY_MODEL)).predict(tile[None])
    assert scores.cam is not None
    panel = cam_panel(tile[None], scores.cam, scores.probability, "one tile")
    picture = _map_of(panel, 0)
    assert picture.std(axis=(0, 1)).max() > 10.0  # cells of different colours, not one wash


def test_a_slide_named_in_japanese_gets_its_own_letters_in_the_title() -> None:
    thumbnail = np.full((200, 300, 3), 235, np.uint8)
    tiles = [Tile(0, 0, 0, 0, 100, 1.0)]

    def title(name: str) -> np.ndarray:
        picture = tile_heatmap(thumbnail, 1.0, tiles, np.array([0.9]), f"{name}: MSI")
        return picture[:TITLE_PX].astype(int)

    named = title("大腸-標本")
    assert (np.abs(named - title("大腸-組織")).max(axis=2) > 128).sum() > 30
    assert (np.abs(named - title("?????")).max(axis=2) > 128).sum() > 30
    long_name = title("スライド" * 500)  # cut to the width, inside the picture
    assert (long_name.min(axis=2) < 100).sum() > 100
    assert not (long_name[:, -4:] < 200).any()


def test_a_tile_unlike_the_training_data_is_striped_grey_not_coloured() -> None:
    thumbnail = np.full((200, 300, 3), 235, np.uint8)
    tiles = [Tile(0, 0, 0, 0, 100, 1.0), Tile(0, 1, 100, 0, 100, 1.0)]
    plain = tile_heatmap(thumbnail, 1.0, tiles, np.array([0.95, 0.95]), "slide")
    picture = tile_heatmap(thumbnail, 1.0, tiles, np.array([0.95, 0.95]), "slide",
                           unlike=np.array([False, True]))
    known = picture[TITLE_PX : TITLE_PX + 100, :100].astype(int)
    unknown = picture[TITLE_PX : TITLE_PX + 100, 100:200].astype(int)
    assert _redness(known) > 60  # p(MSI) 0.95: red
    assert abs(_redness(unknown)) < 2  # no p(MSI) colour at all
    assert unknown.std() > 20  # but striped, not left as bare tissue
    assert picture.shape[0] == plain.shape[0] + 28  # a note under the legend says what it means
    assert (picture[-28:].min(axis=2) < 100).sum() > 100


def test_an_unsupported_slide_shows_no_msi_colour_and_no_score(tmp_path: Path) -> None:
    """Noise is scored p(MSI) near 1 and is unlike the training data: its heatmap used to be
    red all over under the title 'unsupported, score 1.00'."""
    folder = tmp_path / "slides"
    folder.mkdir()
    noise = np.random.default_rng(5).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    out = tmp_path / "out"
    main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1.0"])
    row = results_rows(out)["noise"]
    assert row["label"] == UNSUPPORTED
    assert float(row["score"]) > 0.9
    heatmap = np.asarray(Image.open(out / "heatmaps" / "noise.png").convert("RGB")).astype(int)
    slide_part = heatmap[TITLE_PX : TITLE_PX + 100, :100]  # its thumbnail is 128 px (4 µm/px)
    assert abs(_redness(slide_part)) < 5  # noise and grey stripes alike: as red as blue
    result = SlideResult("noise", "", "", "noise.png", tile_count=4, score=0.99,
                         label=UNSUPPORTED, in_distribution_share=0.0, reason="unlike")
    heatmap_title, cam_title = picture_titles(result, "mean", 0.49)
    assert "score" not in heatmap_title
    assert "0% of 4 tiles" in heatmap_title
    assert "for audit only" in cam_title
