"""`appliance analyze`: JSON lines, readable table, overlays, per-file errors, classification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.cli import main
from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.skin.analysis import analyze
from appliance.skin.overlay import draw_overlay
from appliance.transport.payloads import FEATURE_KEYS, Features, Quality
from tests.disk_helpers import fill, small_tmpfs
from tests.skin_frames import generated

DEFAULT_MODEL = shipped_path(SKIN_MODEL)


def _jpeg() -> bytes:
    return generated(21, 0, "normal").jpeg


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.jpg"
    good.write_bytes(_jpeg())
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpeg()[:5000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 100, 3), np.uint8))
    return {"good": good, "truncated": truncated, "empty": empty, "text": text, "small": small}


def test_json_line_per_image_with_quality_and_features(
    images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--json", str(images["good"])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["image"] == str(images["good"])
    assert set(record["features"]) == set(FEATURE_KEYS)
    Features.model_validate(record["features"])
    assert Quality.model_validate(record["quality"]).verdict == "ok"
    # config.yaml ships with model.path set to the default model: classified once it is built
    assert ("classification" in record) == DEFAULT_MODEL.exists()


def test_bad_files_get_errors_and_the_good_one_is_still_measured(
    images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    order = ["truncated", "good", "empty", "text", "small"]
    assert main(["analyze", "--json", *(str(images[name]) for name in order)]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [("error" in r) for r in records] == [True, False, True, True, True]
    assert records[1]["features"]["pore_count"] > 0
    for problem in ("truncated JPEG", "empty file", "not an image", "wrong size 100x100"):
        assert problem in captured.err


@pytest.mark.parametrize("folder", [".", "/"])
def test_a_folder_without_a_name_is_refused_and_the_other_files_measured(
    folder: str, images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--json", folder, str(images["good"])]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [("error" in r) for r in records] == [True, False]
    assert records[1]["features"]["pore_count"] > 0
    assert f"analyze: {folder}: a folder, not an image file" in captured.err


def test_a_folder_is_answered_with_the_glob_that_names_its_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`analyze frames` (for `analyze frames/*.jpg`) was told "pass image files"."""
    assert main(["analyze", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"analyze: {tmp_path}: a folder, not an image file; name "
                                       f"the image files in it ({tmp_path}/*.jpg, say)\n")


def test_readable_table(images: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(images["good"])]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert "kime" in header
    assert "pores" in header
    # the grade, as the legend, the overlay, the demo and the kiosk screen name it (was "class")
    assert header.split()[-1] == "grade"
    assert row.startswith("good.jpg")
    assert " ok " in row


def test_overlay_files_are_written(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "overlays"
    assert main(["analyze", "--json", "--overlay", str(folder), str(images["good"])]) == 0
    record = json.loads(capsys.readouterr().out)
    overlay = cv2.imread(record["overlay"])
    assert overlay is not None
    assert overlay.shape[1] == 1280
    assert overlay.shape[0] > 960  # the frame whole, the caption band below it


def test_overlays_drawn_beside_the_frames_are_left_out_when_the_folder_is_measured_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`analyze frames/*.jpg --overlay frames` run a second time met the first run's overlays
    among its inputs: each refused as "wrong size 1280x1070 px", exit 1. They are left out,
    named once, and the frames are measured (and drawn) as the first time."""
    frame = tmp_path / "good.jpg"
    frame.write_bytes(_jpeg())
    assert main(["analyze", "--overlay", str(tmp_path), str(frame)]) == 0
    overlay = tmp_path / "good.overlay.jpg"
    assert overlay.exists()
    capsys.readouterr()
    inputs = sorted(str(path) for path in tmp_path.glob("*.jpg"))  # the shell's frames/*.jpg
    assert inputs == [str(frame), str(overlay)]
    assert main(["analyze", "--overlay", str(tmp_path), *inputs]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"analyze: left out {overlay}: overlays `analyze --overlay` draws "
                            "(NAME.overlay.jpg), not frames\n")
    _header, row = captured.out.strip().splitlines()
    assert row.startswith("good.jpg")
    assert main(["analyze", str(overlay)]) == 1  # nothing else to measure: nothing measured
    assert capsys.readouterr().out == ""


def test_inputs_of_one_stem_get_an_overlay_each_named_in_their_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = cv2.imdecode(np.frombuffer(_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    inputs = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "c" / "X.png",
              tmp_path / "other.jpg"]
    for path, picture in zip(inputs, [frame, cv2.flip(frame, 1), frame, frame], strict=True):
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), picture)
    folder = tmp_path / "overlays"
    assert main(["analyze", "--json", "--overlay", str(folder), *map(str, inputs)]) == 0
    written = [Path(json.loads(line)["overlay"]) for line in capsys.readouterr().out.splitlines()]
    assert [path.name for path in written] == [
        "x-1.overlay.jpg", "x-2.overlay.jpg", "X-3.overlay.jpg", "other.overlay.jpg"]
    assert sorted(folder.iterdir()) == sorted(written)
    assert written[0].read_bytes() != written[1].read_bytes()  # each input's own overlay


def test_overlay_names_still_clashing_are_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "x-2.jpg"]
    for path in inputs:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_jpeg())
    folder = tmp_path / "overlays"
    assert main(["analyze", "--overlay", str(folder), *map(str, inputs)]) == 2
    assert capsys.readouterr().err == (
        f"analyze: --overlay: {inputs[1]} and {inputs[2]} would both write x-2.overlay.jpg; "
        "rename one of them\n")
    assert not folder.exists()


def test_an_overlay_path_that_is_a_file_is_refused_naming_the_option(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "overlays"
    taken.write_text("a file, not a folder")
    assert main(["analyze", "--overlay", str(taken), str(images["good"])]) == 2
    err = capsys.readouterr().err
    assert (f"analyze: --overlay {taken}: cannot make the folder ({taken} is a file, not a "
            "folder); name a folder") in err  # not "(File exists)": it names what is there
    assert taken.read_text() == "a file, not a folder"  # nothing changed


def test_an_empty_overlay_folder_name_is_refused_not_ignored(
    images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--overlay "$DIR"` with DIR unset: overlays were asked for, so none written and exit 0
    would pass for success."""
    assert main(["analyze", "--json", "--overlay", "", str(images["good"])]) == 2
    captured = capsys.readouterr()
    assert "--overlay: empty folder name; name a folder" in captured.err
    assert captured.out == ""


def test_an_overlay_that_cannot_be_written_is_said_beside_the_measurement(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "overlays"
    (folder / "good.overlay.jpg").mkdir(parents=True)  # its name is taken by a folder
    assert main(["analyze", "--json", "--overlay", str(folder), str(images["good"])]) == 1
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["overlay_error"] == (f"{folder}/good.overlay.jpg: could not write the "
                                       "overlay: Is a directory")
    assert record["features"]["pore_count"] > 0  # the frame's numbers stand
    assert "error" not in record
    assert "overlay" not in record
    assert f"analyze: {record['overlay_error']}" in captured.err
    assert sorted(p.name for p in folder.iterdir()) == ["good.overlay.jpg"]  # no part left


def test_a_full_disk_keeps_each_frame_s_row_in_the_table_beside_the_overlay_error(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_tmpfs(tmp_path / "disk", size="64k") as disk:
        fill(disk)
        status = main(["analyze", "--overlay", str(disk), str(images["good"])])
        assert not (disk / "good.overlay.jpg").exists()
    captured = capsys.readouterr()
    assert status == 1
    _header, row = captured.out.strip().splitlines()
    assert row.startswith("good.jpg")
    assert " ok " in row
    assert captured.err == (f"analyze: {disk}/good.overlay.jpg: could not write the overlay: "
                            "No space left on device\n")


def test_overlay_marks_furrows_pores_and_numbers() -> None:
    skin = generated(21, 0, "normal")
    analysis = analyze(skin.image_rgb, skin.um_per_px)
    overlay = draw_overlay(skin.image_rgb, analysis)
    changed = np.any(overlay[:960] != skin.image_rgb, axis=2)
    assert changed.mean() > 0.5  # hills tinted everywhere
    assert np.all(overlay[970:, 10:500].mean(axis=(0, 1)) < 120)  # the dark caption band
    magenta = (overlay[..., 0] > 200) & (overlay[..., 1] < 120) & (overlay[..., 2] > 150)
    centres = (analysis.pores.centres_work_px + 0.5) * analysis.frame_px_per_work_px
    for (x, y), diameter_um in zip(centres, analysis.pores.diameters_um, strict=True):
        radius = round(diameter_um / skin.um_per_px / 2) + 2
        x0, y0 = int(x) + radius, int(y)
        if x0 > 1275:  # ring off the frame
            continue
        assert magenta[max(y0 - 2, 0):y0 + 3, max(x0 - 2, 0):x0 + 3].any(), (x, y)


def test_bad_config_is_exit_2(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("skin:\n  um_per_px: -3\n")
    assert main(["analyze", "--config", str(config), str(images["good"])]) == 2
    assert "skin.um_per_px" in capsys.readouterr().err


@pytest.mark.slow
def test_classification_when_a_model_is_configured(
    images: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "inference"))
    from inference_helpers import contract, make_table, train_tiny, write_float

    model_path = DEFAULT_MODEL
    if not model_path.is_file():  # the shipped model is built separately; train a tiny one
        model_path = write_float(tmp_path / "tiny.onnx", train_tiny(make_table(), 10), contract())
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  path: {model_path}\n")
    assert main(["analyze", "--json", "--config", str(config), str(images["good"])]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["classification"]["label"] in record["classification"]["probabilities"]
    assert sum(record["classification"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_white_reference_changes_colour_only(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    white = tmp_path / "white.png"
    cv2.imwrite(str(white), np.full((240, 320, 3), (170, 230, 250), np.uint8))  # BGR: warm lamp
    assert main(["analyze", "--json", str(images["good"])]) == 0
    plain = json.loads(capsys.readouterr().out)["features"]
    assert main(["analyze", "--json", "--white", str(white), str(images["good"])]) == 0
    corrected = json.loads(capsys.readouterr().out)["features"]
    assert corrected["lab_b"] < plain["lab_b"] - 3.0  # the lamp's yellow is removed
    assert corrected["pore_count"] == plain["pore_count"]


def test_unusable_white_reference_is_exit_2(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--white", str(tmp_path / "none.png"), str(images["good"])]) == 2
    assert "--white" in capsys.readouterr().err


def test_missing_model_is_exit_2_naming_the_file(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  path: no-such-model.onnx\n")
    assert main(["analyze", "--config", str(config), str(images["good"])]) == 2
    assert "no-such-model.onnx" in capsys.readouterr().err


def test_a_rejected_frame_is_shown_with_its_verdict_never_measured(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb = generated(21, 0, "normal").image_rgb
    blurred = tmp_path / "blurred.png"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(rgb, (0, 0), 12)[:, :, ::-1])
    lifted = tmp_path / "lifted.png"
    cv2.imwrite(str(lifted), (rgb[:, :, ::-1] * 0.03).astype(np.uint8))
    paths = [str(images["good"]), str(blurred), str(lifted)]
    assert main(["analyze", "--json", *paths]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "features" in records[0]
    for record, verdict in zip(records[1:], ("blurred", "no_contact"), strict=True):
        assert record["quality"]["verdict"] == verdict
        assert "features" not in record
        assert "classification" not in record
        assert "not measured" in record["rejected"]
    assert main(["analyze", *paths]) == 1
    rows = capsys.readouterr().out.splitlines()
    assert "kime" in rows[0]
    assert rows[2].split() == ["blurred.png", "blurred", "not", "measured"]


def test_a_rejected_frame_s_reason_is_said_once_and_its_row_keeps_to_the_table(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reason went to stderr and again as a table row some 200 characters wide."""
    rgb = generated(21, 0, "normal").image_rgb
    lifted = tmp_path / "lifted.png"
    cv2.imwrite(str(lifted), (rgb[:, :, ::-1] * 0.03).astype(np.uint8))
    assert main(["analyze", str(images["good"]), str(lifted)]) == 1
    printed = capsys.readouterr()
    header, _good, row = printed.out.splitlines()
    assert row.split() == ["lifted.png", "no_contact", "not", "measured"]
    assert header.index("quality") + len("quality") == row.index("no_contact") + len("no_contact")
    assert len(row) <= len(header)
    reason = "press the scope onto the skin"
    assert (printed.out + printed.err).count(reason) == 1
    assert printed.err.startswith(f"analyze: {lifted}: frame no_contact (")


def test_a_greyscale_jpeg_is_said_to_carry_no_colour_not_to_lack_contact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grey picture of skin: the operator is told to check the image, not to press on."""
    grey = tmp_path / "grey.jpg"
    cv2.imwrite(str(grey), cv2.cvtColor(generated(21, 0, "normal").image_rgb,
                                        cv2.COLOR_RGB2GRAY))
    assert main(["analyze", "--json", str(grey)]) == 1
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["quality"]["verdict"] == "no_contact"
    assert "the frame carries no colour" in record["rejected"]
    assert "press the scope onto the skin" not in captured.out + captured.err
    assert "the frame carries no colour" in captured.err


def test_white_reference_must_be_a_white_tile(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, picture in (
        ("skin.jpg", _jpeg()),  # a skin frame, textured
        ("red.png", cv2.imencode(".png", np.full((240, 320, 3), (40, 40, 220), np.uint8))[1]),
        ("grey.png", cv2.imencode(".png", np.full((240, 320, 3), 60, np.uint8))[1]),
    ):
        path = tmp_path / name
        path.write_bytes(bytes(picture))
        assert main(["analyze", "--white", str(path), str(images["good"])]) == 2
        assert f"--white {path}: not a white tile" in capsys.readouterr().err


def test_analyze_in_a_folder_without_config_grades_and_honours_overrides(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml here
    assert main(["analyze", "--json", str(images["good"])]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["classification"]["label"] in {"fine", "normal", "coarse"}
    monkeypatch.setenv("APPLIANCE__SKIN__UM_PER_PX", "5.0")
    assert main(["analyze", "--json", str(images["good"])]) == 0
    finer = json.loads(capsys.readouterr().out)["features"]  # same pixels, smaller area
    assert finer["hill_density_per_mm2"] > 1.1 * plain["features"]["hill_density_per_mm2"]
    monkeypatch.setenv("APPLIANCE__SKIN__UM_PER_PX", "-1")
    assert main(["analyze", str(images["good"])]) == 2
    assert "APPLIANCE__SKIN__UM_PER_PX" in capsys.readouterr().err


def test_overlay_caption_leaves_the_whole_frame_visible_and_names_the_grade() -> None:
    skin = generated(21, 0, "normal")
    analysis = analyze(skin.image_rgb, skin.um_per_px)
    with_grade = draw_overlay(skin.image_rgb, analysis, "coarse")
    without = draw_overlay(skin.image_rgb, analysis)
    corner = with_grade[:160, :580].astype(int) - skin.image_rgb[:160, :580].astype(int)
    assert np.abs(corner).mean() < 40  # hills tinted there, no dark panel over the skin
    assert with_grade.shape[0] > 960
    band_differs = np.any(with_grade[960:] != without[960:], axis=2)
    assert band_differs[:40].any()  # the first caption line carries the grade
    assert not np.any(with_grade[:960] != without[:960])


def test_a_bit_flipped_jpeg_is_refused_by_name_without_libjpeg_s_raw_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A damaged JPEG still decodes (to shifted, recoloured rows) with only a libjpeg warning
    on stderr: analyze refuses it, naming the file and the damage, and prints nothing raw."""
    damaged = bytearray(_jpeg())
    for tenth in range(2, 9):  # one flipped bit in each stretch of the entropy-coded data
        damaged[len(damaged) * tenth // 10] ^= 0x10
    cv2.imdecode(np.frombuffer(bytes(damaged), np.uint8), cv2.IMREAD_COLOR)
    assert "Corrupt JPEG data" in capfd.readouterr().err  # what libjpeg prints, unasked
    frame = tmp_path / "flipped.jpg"
    frame.write_bytes(bytes(damaged))
    done = subprocess.run([sys.executable, "-m", "appliance", "analyze", str(frame)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert f"analyze: {frame}: corrupt JPEG data (Corrupt JPEG data: " in done.stderr
    for line in done.stderr.splitlines():  # the command's own verdict only
        assert line.startswith(f"analyze: {frame}: "), line


def test_a_good_frame_leaves_stderr_empty_and_v_shows_which_model_loaded(
    tmp_path: Path,
) -> None:
    """No log line per run ("model loaded") unless asked for with -v."""
    frame = tmp_path / "good.jpg"
    frame.write_bytes(_jpeg())
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    runs = {flags: subprocess.run(
        [sys.executable, "-m", "appliance", *flags, "analyze", str(frame)], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=120, check=False,
    ) for flags in ((), ("-v",))}
    plain, verbose = runs[()], runs[("-v",)]
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr == ""
    assert plain.stdout.splitlines()[1].startswith("good.jpg")
    assert f"loaded from {DEFAULT_MODEL}" in verbose.stderr


def test_a_file_name_that_is_not_utf8_is_written_as_escapes_strict_json_readers_accept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Python holds the name's undecodable bytes as lone surrogates; written raw, json.dumps
    # gives "\udcff", which strict readers (and any UTF-8 encoder) refuse
    folder = os.fsencode(tmp_path)
    good = Path(os.fsdecode(folder + b"/bad\xff\xfe.jpg"))
    good.write_bytes(_jpeg())
    missing = Path(os.fsdecode(folder + b"/gone\xff.jpg"))
    assert main(["analyze", "--json", str(good), str(missing)]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    names = [record["image"] for record in records]
    for name in names:
        name.encode("utf-8")  # strict: a lone surrogate raises
    assert names == [f"{tmp_path}/bad\\xff\\xfe.jpg", f"{tmp_path}/gone\\xff.jpg"]
    assert "features" in records[0]
    assert "error" in records[1]
    assert f"{tmp_path}/gone\\xff.jpg: " in captured.err  # the error line names it alike
    assert "udcff" not in captured.err


def test_analyze_stopped_by_ctrl_c_says_how_many_images_it_measured(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It exited 130 without a word: whether every image had its line was left to count."""
    from appliance.skin.analyze_run import AnalyzeRun

    measure, measured = AnalyzeRun.measure, list[Path]()

    def measure_then_ctrl_c(self: AnalyzeRun, image: Path) -> dict[str, object]:
        if len(measured) == 2:
            raise KeyboardInterrupt
        measured.append(image)
        return measure(self, image)

    monkeypatch.setattr(AnalyzeRun, "measure", measure_then_ctrl_c)
    overlays = tmp_path / "overlays"
    order = ["empty", "text", "small"]
    command = ["analyze", "--json", "--overlay", str(overlays), *(str(images[n]) for n in order)]
    assert main(command) == 130
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert captured.err.splitlines()[-1] == (
        f"analyze: stopped after 2 of 3 images, whose results are printed, their overlays in "
        f"{overlays}; 1 not measured")


def test_an_overlay_folder_no_file_can_be_made_in_is_refused_before_any_frame_is_measured(
    images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A read-only overlay folder had every frame measured and each overlay refused in its own
    line (500 lines for 500 frames), exit 1. The folder's permission is what access(2) says
    (root passes a mode check, so the answer for this folder is given here)."""
    shut = tmp_path / "shut"
    shut.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        Path(path) != shut and real_access(path, mode, **kw)))
    assert main(["analyze", str(images["good"]), str(images["good"]), "--overlay",
                 str(shut)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"analyze: --overlay {shut}: cannot write in the folder (permission "
                            "denied); name a folder you can write to\n")
