"""pathology.max_tile_bytes: a slide whose tile grid would take more bytes than the setting
is refused once the grid is known, before any tile is read. A model whose tiles are finer than
the slide enlarges each tile, so the decode bound does not bound a slide's tiles; before, such
a slide went on to fill its worker (about 5 times its tiles while they crossed to the server)
until the kernel killed it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from appliance.config import config_from_mapping
from appliance.config.pathology import DEFAULT_MAX_TILE_BYTES
from appliance.pathology import prepare
from appliance.pathology.jobstore import open_pathology_store
from appliance.pathology.prepare import TileSettings
from appliance.pathology.server import PathologyServer
from appliance.pathology.slides import MAX_SLIDE_PIXELS
from appliance.pathology.slideworker import prepare_for_model
from tests.test_config import run_check, write

PREPARE = """
import json, resource, sys
from appliance.pathology.prepare import TileSettings
from appliance.pathology.slideworker import prepare_for_model
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
got = prepare_for_model("memory", 0, sys.argv[1], 4.0, TileSettings(
    tile_px=128, tile_um=256.0, normalize=False, max_tile_bytes=int(sys.argv[2])))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"error": got.error, "tiles": len(got.tiles), "grown_bytes": grown}))
"""
PINK = (200, 120, 170)
TILES = 4836  # 128 px tiles of 256 µm on a 5000 x 4000 px slide at 4 µm/px: 78 x 62
TILE_BYTES = TILES * 128 * 128 * 3  # 237,699,072


def _prepare_alone(path: Path, max_tile_bytes: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", PREPARE, str(path), str(max_tile_bytes)],
                          capture_output=True, text=True, env=env, check=True)
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


@pytest.fixture(scope="module")
def pink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 Mpx all-tissue slide: at 4 µm/px its 2 µm/px tiles are enlarged 2x."""
    path = tmp_path_factory.mktemp("tile-bytes") / "pink.png"
    Image.new("RGB", (5000, 4000), PINK).save(path, compress_level=1)
    return path


def test_a_slide_whose_tiles_exceed_the_setting_is_refused_naming_them(pink: Path) -> None:
    """Refused with its tiles, their bytes and the setting named, and the worker grew by its
    decoded image (4 bytes a pixel, 80 MB) and the mask, not by the 238 MB of tiles."""
    limit = 100_000_000
    answer = _prepare_alone(pink, limit)
    assert answer["error"] == (
        f"{pink}: its {TILES} tissue tiles of 128 px would take {TILE_BYTES} bytes, more than "
        f"the {limit} of pathology.max_tile_bytes (each tile enlarged 2x: the model's tiles "
        "are 2 µm/px, the slide 4; score it with tiles no finer than the slide (a larger "
        "--tile-um or another model), or raise it where the memory is there: the server's "
        "setting, --max-tile-bytes of `pathology run`); refused before any tile was read")
    assert answer["tiles"] == 0
    assert answer["grown_bytes"] < 4 * 5000 * 4000 + TILE_BYTES // 2


def test_the_same_slide_within_the_setting_is_prepared(pink: Path) -> None:
    answer = _prepare_alone(pink, TILE_BYTES)
    assert answer["error"] == ""
    assert answer["tiles"] == TILES


def test_the_refusal_comes_before_any_tile_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (640, 512), PINK).save(path)

    def no_tile_read(*_args: object) -> None:
        raise AssertionError("a tile was read")

    monkeypatch.setattr(prepare, "read_tiles", no_tile_read)
    got = prepare_for_model("lab/j", 0, str(path), 1.0, TileSettings(
        tile_px=64, tile_um=64.0, max_tile_bytes=500_000))
    assert got.error.startswith(f"{path}: its 80 tissue tiles of 64 px would take 983040 bytes")
    assert "enlarged" not in got.error  # 1 µm/px tiles of a 1 µm/px slide
    assert got.tiles == []


def test_the_default_passes_any_slide_of_the_decode_bound_at_its_own_resolution() -> None:
    """Tiles no finer than the slide cover at most its pixels, 3 bytes each."""
    assert DEFAULT_MAX_TILE_BYTES == 3 * MAX_SLIDE_PIXELS
    assert TileSettings(tile_px=64, tile_um=256.0).max_tile_bytes == DEFAULT_MAX_TILE_BYTES
    assert config_from_mapping({}).pathology.max_tile_bytes == DEFAULT_MAX_TILE_BYTES


def test_the_setting_is_checked_by_config_check(tmp_path: Path) -> None:
    for value in ("0", "1000", "-1", "1e13", "lots", "3.5"):
        refused = run_check(write(tmp_path, f"pathology: {{max_tile_bytes: {value}}}\n"))
        assert refused.returncode == 2, (value, refused.stdout)
        assert "pathology.max_tile_bytes" in refused.stderr, refused.stderr
    assert run_check(write(tmp_path, "pathology: {max_tile_bytes: 8000000000}\n")
                     ).returncode == 0


def test_the_server_cuts_tiles_under_its_configured_setting(tmp_path: Path) -> None:
    config = config_from_mapping({"state_dir": str(tmp_path), "pathology": {
        "slide_roots": [str(tmp_path)], "backends": ["onnx-cpu"],
        "max_tile_bytes": 5_000_000}})
    store = open_pathology_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        server = PathologyServer(config, store)
        assert server.tile_settings.max_tile_bytes == 5_000_000
    finally:
        store.close()
