"""`appliance pathology run/submit/evaluate` end to end: real tiles, bad inputs, reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from appliance.cli import main
from appliance.pathology.model import ModelError, TileModel, TileScores
from appliance.shipped import PATHOLOGY_MODEL, shipped_path
from appliance.synthetic.he import SlideSpec
from tests.disk_helpers import fill, small_tmpfs
from tests.he_slides import painted
from tests.pathology_helpers import results_rows
from tests.shared_data import SHARED_DATA

DEMO = shipped_path(PATHOLOGY_MODEL)
REAL_TILES = SHARED_DATA / "he-tiles-crc-val-7k"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One good synthetic biopsy plus every kind of bad slide, with labels.csv."""
    folder = tmp_path_factory.mktemp("cohort")
    spec = SlideSpec("good", "P1", "MSI", "biopsy", 2, 0.8, seed=5)
    Image.fromarray(painted(spec)).save(folder / "good.jpg", quality=88)
    data = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)
    Image.new("RGB", (2000, 2000), (238, 238, 238)).save(folder / "blank.png")
    (folder / "wrongres.jpg").write_bytes(data)
    (folder.parent / "escape.jpg").write_bytes(data)  # a readable slide outside the folder
    rows = [("../escape", "P7", "MSI", "biopsy", 1.0), ("/etc/passwd", "P8", "MSS", "biopsy", 1.0),
            ("good", "P1", "MSI", "biopsy", 1.0), ("truncated", "P2", "MSS", "biopsy", 1.0),
            ("corrupt", "P3", "MSS", "surgical", 1.0), ("blank", "P4", "MSI", "surgical", 1.0),
            ("wrongres", "P5", "MSS", "biopsy", 40.0), ("missing", "P6", "MSS", "biopsy", 1.0)]
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "patient", "label", "material", "um_per_px"])
        writer.writerows(rows)
    return folder


def test_bad_slides_get_their_own_error_and_the_run_finishes(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["pathology", "run", str(cohort), "--out", str(out)]) == 1
    rows = results_rows(out)
    assert rows["good"]["error"] == ""
    assert int(rows["good"]["tile_count"]) > 20
    assert 0.0 <= float(rows["good"]["mean_probability"]) <= 1.0
    assert rows["good"]["label"] in ("MSI", "MSS")
    assert "truncated" in rows["truncated"]["error"]
    assert "corrupt" in rows["corrupt"]["error"]
    assert "no tissue tile" in rows["blank"]["error"]
    assert "not a plausible slide resolution" in rows["wrongres"]["error"]
    assert "not found" in rows["missing"]["error"]
    assert (out / "heatmaps" / "good.png").is_file()
    cam = np.asarray(Image.open(out / "cams" / "good.png"))
    assert cam.shape[1] == 2 * 256 + 8  # each tile 4x enlarged, its map beside it
    assert cam.shape[0] == 34 + 4 * (256 + 24) + 28  # title, four decisive tiles, the note
    summary = json.loads((out / "run.json").read_text())
    assert (summary["slides"], summary["failed"]) == (8, 7)
    assert "is an absolute path" in rows["/etc/passwd"]["error"]
    assert "folder separator" in rows["../escape"]["error"]  # not read, nothing written outside
    assert not (out.parent / "escape.png").exists()
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["good.png"]


def test_a_model_answering_nan_for_some_tiles_gives_the_slide_an_error_not_a_label(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tiles the model answers with NaN (a half-precision overflow, a broken export) made the
    slide's mean NaN, which is below any threshold: the slide was labelled MSS, score empty,
    no error. Now it is an error naming the file and how many tiles, and gets no label."""
    predict = TileModel.predict

    def some_nan(self: TileModel, tiles_rgb: np.ndarray) -> TileScores:
        scores = predict(self, tiles_rgb)
        probability = scores.probability.copy()
        probability[:2] = np.nan
        return TileScores(probability, scores.cam, scores.in_distribution)

    monkeypatch.setattr(TileModel, "predict", some_nan)
    out = tmp_path / "results"
    assert main(["pathology", "submit", str(cohort / "good.jpg"), "--um-per-px", "1.0",
                 "--out", str(out), "--batch-size", "16"]) == 1
    row = results_rows(out)["good"]
    assert row["label"] == ""
    assert f"{cohort / 'good.jpg'}: the model answered " in row["error"]
    assert "tiles with no probability (NaN, infinite or outside 0-1)" in row["error"]
    assert not (out / "heatmaps" / "good.png").exists()


def test_submit_scores_named_files(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "submitted"
    code = main(["pathology", "submit", str(cohort / "good.jpg"), "--um-per-px", "1.0",
                 "--out", str(out), "--no-pictures", "--score", "share"])
    assert code == 0
    row = results_rows(out)["good"]
    assert float(row["score"]) == pytest.approx(float(row["msi_tile_share"]))
    assert not (out / "heatmaps").exists()


def test_real_tiles_run_one_tile_each(tmp_path: Path) -> None:
    out = tmp_path / "real"
    main(["pathology", "run", str(REAL_TILES), "--out", str(out), "--um-per-px", "0.5",
          "--tile-um", "112", "--no-pictures"])
    rows = results_rows(out)
    assert len(rows) == 32
    scored = [row for row in rows.values() if not row["error"]]
    failed = [name for name, row in rows.items() if row["error"]]
    assert len(scored) >= 28  # 28 non-debris tiles
    assert all(int(row["tile_count"]) == 1 for row in scored)
    # Only the saturated debris tiles may fail, and only because stains cannot be estimated.
    assert all(name.startswith("DEB") and "normalise" in rows[name]["error"] for name in failed)
    # Real tissue is unlike the synthetic training slides: the guard says so for every tile.
    assert {row["label"] for row in scored} == {"unsupported"}
    assert {row["reason"] for row in scored} == {"tissue unlike the model's training data"}
    assert all(float(row["in_distribution_share"]) == 0.0 for row in scored)
    assert json.loads((out / "run.json").read_text())["unsupported"] == len(scored)


def _static_model(path: Path, size_px: int, tile_px_meta: int) -> Path:
    tiles = helper.make_tensor_value_info("tiles", TensorProto.FLOAT, [1, 3, size_px, size_px])
    pooled = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 3, 1, 1])
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["tiles"], ["pooled"])],
                              "g", [tiles], [pooled])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"labels": '["MSS", "MSI"]', "tile_px": str(tile_px_meta),
                       "tile_um": "256", "version": "1"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_model_with_wrong_input_size_is_refused(tmp_path: Path, cohort: Path) -> None:
    bad = _static_model(tmp_path / "bad.onnx", size_px=64, tile_px_meta=96)
    with pytest.raises(ModelError, match="64x64 px but its metadata says tiles are 96 px"):
        TileModel(bad)
    code = main(["pathology", "submit", str(cohort / "good.jpg"), "--um-per-px", "1",
                 "--out", str(tmp_path / "o"), "--model", str(bad)])
    assert code == 2


def test_missing_or_garbage_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        TileModel(tmp_path / "none.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        TileModel(garbage)


def test_demo_model_metadata() -> None:
    info = TileModel(DEMO).info
    assert info.labels == ("MSS", "MSI")
    assert (info.tile_px, info.tile_um) == (64, 256.0)
    assert 0.0 < info.threshold < 1.0
    assert DEMO.stat().st_size < 1_000_000


def test_cuda_without_a_cuda_runtime_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    # as on a CPU-only onnxruntime, whatever this machine's build offers
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="no CUDA provider"):
        TileModel(DEMO, provider="cuda")
    assert TileModel(DEMO, provider="auto").session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize(("option", "value"), [
    ("--threshold", "nan"), ("--threshold", "-1"), ("--threshold", "1.5"),
    ("--tile-um", "nan"), ("--tile-um", "0"), ("--tile-um", "-5"), ("--tile-um", "0.001"),
    ("--min-tissue", "nan"), ("--min-tissue", "5"),
])
def test_an_option_outside_its_range_is_refused_before_any_slide(
    option: str, value: str, cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # a NaN threshold labelled every slide MSS, -1 every one MSI; a NaN tile size crashed
    out = tmp_path / "results"
    for command in (["run", str(cohort)], ["submit", str(cohort / "good.jpg"), "--um-per-px",
                                           "1"]):
        with pytest.raises(SystemExit) as refused:
            main(["pathology", *command, "--out", str(out), f"{option}={value}"])
        assert refused.value.code == 2
        assert f"argument {option}: must be a finite number" in capsys.readouterr().err
    assert not out.exists()


def test_an_out_that_is_a_file_is_refused_before_the_model_loads(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from appliance.pathology import scoring

    def never(*_args: object) -> int:
        raise AssertionError("scored slides with --out a file")

    monkeypatch.setattr(scoring, "score_jobs", never)
    out = tmp_path / "results.txt"
    out.write_text("keep me\n")
    for command in (["run", str(cohort)], ["submit", str(cohort / "good.jpg"), "--um-per-px",
                                           "1"]):
        assert main(["pathology", *command, "--out", str(out)]) == 2
        assert f"--out {out} is a file, not a folder" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize("pictures", [True, False])
def test_a_full_disk_stops_the_run_naming_it_and_keeps_the_last_results_whole(
    tmp_path: Path, cohort: Path, capsys: pytest.CaptureFixture[str], pictures: bool,
) -> None:
    with small_tmpfs(tmp_path / "disk", size="64k") as disk:
        out = disk / "out"
        out.mkdir()
        last = "slide,label\nyesterday,MSS\n"
        (out / "results.csv").write_text(last)
        filler = fill(disk)  # the disk is full before the run starts writing
        capsys.readouterr()
        code = main(["pathology", "submit", str(cohort / "good.jpg"), "--um-per-px", "1.0",
                     "--out", str(out), "--force", *([] if pictures else ["--no-pictures"])])
        err = capsys.readouterr().err
        assert code == 1
        assert "No space left on device" in err
        assert str(out) in err
        assert "Traceback" not in err
        assert (out / "results.csv").read_text() == last
        assert not [p.name for p in out.rglob("*") if p.name.startswith(".")]  # no temporaries
        filler.unlink()
