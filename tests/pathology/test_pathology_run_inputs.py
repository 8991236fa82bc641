"""`appliance pathology run/submit` on the inputs a newcomer's files bring: labels.csv as
spreadsheets save it, slide names that clash, images in less common modes, hostile names."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from appliance.cli import main
from appliance.pathology.labels import jobs_from_folder, read_labels
from appliance.synthetic.he import SlideSpec
from tests.he_slides import painted
from tests.pathology_helpers import results_rows

HEADER = "slide,patient,label,material,um_per_px\n"
PINK = (200, 120, 170)


def test_labels_saved_with_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts the file with a byte order mark; the header is still read."""
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbf" + (HEADER + "S1,P1,MSI,biopsy,1.0\n").encode())
    rows = read_labels(labels)
    assert [(row.slide, row.patient, row.um_per_px) for row in rows] == [("S1", "P1", 1.0)]


def _run_on_labels(tmp_path: Path, data: bytes) -> tuple[int, Path]:
    """``pathology run`` of a slide folder holding only a labels.csv of ``data``; its exit
    code and the labels file."""
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "labels.csv").write_bytes(data)
    return main(["pathology", "run", str(folder), "--out", str(tmp_path / "out")]), \
        folder / "labels.csv"


def test_labels_not_in_utf8_are_exit_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A labels.csv saved in Latin-1 (a spreadsheet's plain "CSV") is refused by name, no
    traceback."""
    code, labels = _run_on_labels(
        tmp_path, (HEADER + "S1,Pé,MSI,biopsy,1.0\n").encode("latin-1"))
    assert code == 2
    err = capsys.readouterr().err
    assert f"{labels}:2: not UTF-8 text" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_a_resolution_cell_that_is_no_number_is_exit_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str,
) -> None:
    """float() takes "nan" and "inf"; the row names no resolution all the same (a NaN was
    'resolution unknown; give an um_per_px column', of a file that has one)."""
    code, labels = _run_on_labels(tmp_path, (HEADER + f"S1,P1,MSI,biopsy,{value}\n").encode())
    assert code == 2
    assert f"{labels}:2: um_per_px {value!r} is not a number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_labels_with_a_huge_field_are_exit_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A field over the csv module's limit (128 KiB) is refused by file and line, no
    traceback."""
    code, labels = _run_on_labels(tmp_path, (HEADER + "S1,P1,MSI,biopsy,1.0\n" + "S2,P2,MSS,"
                                             + "x" * 200_000 + ",1.0\n").encode())
    assert code == 2
    err = capsys.readouterr().err
    assert f"{labels}:3: not readable as CSV (field larger than field limit" in err
    assert "Traceback" not in err


def test_slide_names_cannot_drive_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slide file whose name holds an escape sequence is printed with it escaped, as the
    other commands' tables and the log print such names."""
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "a\x1b[2J\x1b[31mMSI.jpg").write_bytes(b"")  # clear screen, red
    assert main(["pathology", "run", str(folder), "--out", str(tmp_path / "out"),
                 "--um-per-px", "1"]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "a\\x1b[2J\\x1b[31mMSI: ERROR" in out


def _refused_with_one_slide(tmp_path: Path, rows: str) -> tuple[Path, Path]:
    """``pathology run`` on a folder of one slide, S1.jpg, with these labels.csv rows: it must
    refuse (exit 2); returns the folder and the --out it was given."""
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "S1.jpg").write_bytes(b"\xff\xd8")
    (folder / "labels.csv").write_text(HEADER + rows)
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out)]) == 2
    return folder, out


def test_a_palette_png_slide_is_scored_like_its_rgb_original(tmp_path: Path) -> None:
    """An indexed-colour PNG (256 colours, as some tools save to cut the size) is a slide
    like any other; its palette indices must not be averaged as if they were intensities."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).quantize(256).save(folder / "indexed.png")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1",
                 "--no-pictures"]) == 0
    rows = results_rows(out)
    assert rows["indexed"]["error"] == ""
    assert rows["indexed"]["tile_count"] == rows["rgb"]["tile_count"]
    assert float(rows["indexed"]["mean_probability"]) == pytest.approx(
        float(rows["rgb"]["mean_probability"]), abs=0.1)


def test_slides_that_would_share_a_name_are_refused_before_any_is_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """x.jpg, x.png and sub/x.jpg would all be slide "x": one heatmaps/x.png, one tiles/x.csv,
    three rows no one could tell apart. Refused (exit 2) naming the files, nothing written."""
    folder = tmp_path / "slides"
    (folder / "sub").mkdir(parents=True)
    for name in ("x.jpg", "x.png", "sub/x.jpg"):
        (folder / name).write_bytes(b"\xff\xd8")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'sub' / 'x.jpg'} and {folder / 'x.jpg'} would both be slide 'x'" in err
    assert not out.exists()
    assert main(["pathology", "submit", str(folder / "x.jpg"), str(folder / "sub" / "x.jpg"),
                 "--um-per-px", "1", "--out", str(out)]) == 2
    assert "would both be slide 'x'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["pathology", "submit", str(folder / "x.jpg"), str(folder / "sub" / ".." /
                 "x.jpg"), "--um-per-px", "1", "--out", str(out)]) == 2
    assert (f"{folder / 'x.jpg'} and {folder / 'sub' / '..' / 'x.jpg'} (one file) are listed "
            "twice as slide 'x'; list each slide once") in capsys.readouterr().err  # no rename
    assert not out.exists()


def test_a_slide_listed_twice_in_labels_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = _refused_with_one_slide(tmp_path, "S1,P1,MSI,biopsy,1.0\nS1,P1,MSS,biopsy,1.0\n")
    assert f"{folder / 'S1.jpg'} is listed twice (slide 'S1')" in capsys.readouterr().err
    assert not out.exists()


def test_a_results_folder_inside_the_slide_folder_is_not_read_as_slides(tmp_path: Path) -> None:
    """`pathology run slides --out slides/results`, twice: the second run scores the same one
    slide, not the first run's heatmaps and CAMs."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / "s.jpg", quality=88)
    out = folder / "results"
    command = ["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1"]
    assert main(command) == 0
    assert (out / "heatmaps" / "s.png").is_file()
    assert main([*command, "--force"]) == 0
    with (out / "results.csv").open(newline="") as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == [str(folder / "s.jpg")]


def test_results_written_into_the_slide_folder_itself_leave_its_slides_found(
    tmp_path: Path,
) -> None:
    """--out the slide folder itself: its slides are still scored, its pictures never."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / "s.jpg", quality=88)
    command = ["pathology", "run", str(folder), "--out", str(folder), "--um-per-px", "1"]
    assert main(command) == 0
    assert main([*command, "--force"]) == 0
    with (folder / "results.csv").open(newline="") as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == [str(folder / "s.jpg")]


def test_a_slide_smaller_than_a_tile_is_described_as_the_file_is(tmp_path: Path) -> None:
    """A real 224 px tile at 0.5 µm/px is 112 µm across: the error says so, in the file's
    pixels and scale, not in the reduced working image's (28 px at 4 µm/px)."""
    slide = tmp_path / "tile.png"
    Image.new("RGB", (224, 224), (180, 90, 160)).save(slide)
    out = tmp_path / "out"
    assert main(["pathology", "submit", str(slide), "--um-per-px", "0.5", "--out", str(out),
                 "--no-pictures"]) == 1
    error = results_rows(out)["tile"]["error"]
    assert error == (f"{slide}: the slide is 112x112 µm (224x224 px at 0.5 µm/px), smaller than "
                     "one 256 µm tile; check the slide's µm/px or --tile-um")


def test_a_one_bit_slide_is_read_and_judged_by_its_pixels(tmp_path: Path) -> None:
    """A 1-bit PNG (a scanner's line-art mode) is read, and refused for what it shows (no
    tissue), not called corrupt."""
    folder = tmp_path / "slides"
    folder.mkdir()
    Image.new("1", (2000, 2000), 1).save(folder / "bits.png")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1",
                 "--no-pictures"]) == 1
    assert "no tissue tile" in results_rows(out)["bits"]["error"]


def test_a_labels_file_too_large_to_be_one_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1 GB labels.csv (sparse here: no disk used) is refused by its size, not read whole."""
    folder = tmp_path / "slides"
    folder.mkdir()
    with (folder / "labels.csv").open("wb") as handle:
        handle.truncate(1 << 30)
    assert main(["pathology", "run", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'labels.csv'}: 1073741824 bytes, more than 104857600" in err


def test_a_folder_or_a_pipe_given_as_a_slide_is_called_what_it_is(tmp_path: Path) -> None:
    """Both exist, so "slide file not found" sent the user looking for a file that is there."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    out = tmp_path / "out"
    assert main(["pathology", "submit", str(folder), str(pipe), "--um-per-px", "1",
                 "--out", str(out), "--no-pictures"]) == 1
    rows = results_rows(out)
    assert rows["cohort"]["error"] == (f"{folder}: a folder, not a slide image; pass slide files, "
                                       "or score a folder with `appliance pathology run`")
    assert rows["pipe"]["error"] == (f"{pipe}: not a regular file (a pipe, socket or device); "
                                     "pass slide image files")


def test_a_missing_slide_is_named_by_what_named_it(tmp_path: Path) -> None:
    """A slide file that is not there said 'check the folder and labels.csv' also where no
    labels.csv was involved (`pathology submit FILE`, a server job naming the file); a
    labels.csv row with no image said it of the path it guessed (S2.jpg), not the row."""
    missing = tmp_path / "nothere.jpg"
    out = tmp_path / "submitted"
    assert main(["pathology", "submit", str(missing), "--um-per-px", "1", "--out", str(out),
                 "--no-pictures"]) == 1
    assert results_rows(out)["nothere"]["error"] == (f"{missing}: slide file not found; "
                                                     "check its path")
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("S1", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / "S1.jpg", quality=88)
    (folder / "labels.csv").write_text(HEADER + "S1,P1,MSI,biopsy,1.0\nS2,P2,MSS,biopsy,1.0\n"
                                       "S3.png,P3,MSS,biopsy,1.0\n")
    out = tmp_path / "run"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--no-pictures"]) == 1
    rows = results_rows(out)
    assert rows["S1"]["error"] == ""
    assert rows["S2"]["error"] == (
        f"{folder / 'labels.csv'}: slide 'S2': image not found in {folder} (looked for S2.jpg, "
        ".jpeg, .png, .tif or .tiff); check the folder and labels.csv")
    assert rows["S3.png"]["error"] == (
        f"{folder / 'labels.csv'}: slide 'S3.png': image not found in {folder} (looked for "
        "S3.png); check the folder and labels.csv")


def test_a_labels_row_finds_its_image_beside_files_of_the_same_name(tmp_path: Path) -> None:
    """S1.geojson (a QuPath annotation export) sorts before S1.jpg: the row "S1" is the image."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("S1", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / "S1.jpg", quality=88)
    (folder / "S1.geojson").write_text("{}")
    (folder / "labels.csv").write_text(HEADER + "S1,P1,MSI,biopsy,1.0\n")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--no-pictures"]) == 0
    assert results_rows(out)["S1"]["path"] == str(folder / "S1.jpg")


def test_a_slide_name_with_dots_finds_its_image(tmp_path: Path) -> None:
    """TCGA slide names hold dots ("...-DX1.8923A151-..."): the part after the last dot is
    no file suffix, so the row still finds NAME.jpg."""
    folder = tmp_path / "slides"
    folder.mkdir()
    name = "TCGA-3L-AA1B-01Z-00-DX1.8923A151-A690-40B7-9E5A-FCBEDFC2394F"
    rgb = painted(SlideSpec(name, "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / f"{name}.jpg", quality=88)
    (folder / "labels.csv").write_text(HEADER + f"{name},P1,MSI,biopsy,1.0\n")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--no-pictures"]) == 0
    assert results_rows(out)[name]["path"] == str(folder / f"{name}.jpg")


def test_slides_with_the_longest_file_names_are_scored_or_refused_alone(tmp_path: Path) -> None:
    """A slide file named with 240 bytes is scored, its pictures written (their temporaries'
    names were too long, which stopped the whole run); a labels row naming a 253-byte file
    with its suffix, whose heatmap name could not exist, fails alone."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("s", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    long_name, longest = "é" * 120, "x" * 249 + ".jpg"  # 240 bytes in UTF-8; 253 bytes
    for name in (f"{long_name}.jpg", longest, "short.jpg"):
        Image.fromarray(rgb).save(folder / name, quality=88)
    (folder / "labels.csv").write_text(
        HEADER + "".join(f"{n},P{i},MSI,biopsy,1.0\n"
                         for i, n in enumerate((long_name, longest, "short"))))
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out)]) == 1
    rows = results_rows(out)
    assert rows[long_name]["error"] == rows["short"]["error"] == ""
    assert (out / "heatmaps" / f"{long_name}.png").is_file()
    assert (out / "tiles" / f"{long_name}.csv").is_file()
    assert rows[longest]["error"] == ("slide name of 253 bytes: too long for its pictures and "
                                      "tile table (at most 251); rename it")


def test_a_pipe_device_or_dangling_link_among_the_slides_is_reported_not_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Without labels.csv every image in the folder is a slide: one named like a slide that
    is no file was left out without a word, so a cohort came out a slide short unnoticed."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("S1", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / "S1.jpg", quality=88)
    os.mkfifo(folder / "pipe.jpg")  # opening it would wait for a writer
    (folder / "null.tif").symlink_to("/dev/null")
    (folder / "gone.png").symlink_to(folder / "moved-away.png")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1",
                 "--no-pictures"]) == 1
    rows = results_rows(out)
    assert rows["S1"]["error"] == ""
    expected = {"pipe": "a named pipe (FIFO)", "null": "a character device",
                "gone": "a link to a file that does not exist"}
    for name, problem in expected.items():
        path = next(folder.glob(f"{name}.*"))
        assert rows[name]["error"].startswith(f"{path}: {problem}"), rows[name]
        assert rows[name]["error"].endswith("; skipped, not opened")
        assert f"{path}: {problem}" in caplog.text
    assert "1 of 4 slides scored" in capsys.readouterr().out


def test_a_subfolder_that_cannot_be_read_is_reported_and_the_rest_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subfolder the user may not list (here: its listing refused as for mode 000, which
    root would not feel) was left out without a word, its slides missing from the cohort."""
    folder = tmp_path / "slides"
    for place in ("a.jpg", "locked/b.jpg", "zz/c.jpg"):
        (folder / place).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), PINK).save(folder / place)
    listing = os.scandir

    def refusing(path: Any) -> Any:
        if Path(path) == folder / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", refusing)
    jobs = {job.path: job for job in jobs_from_folder(folder, 1.0)}
    assert sorted(jobs) == [folder / "a.jpg", folder / "locked", folder / "zz" / "c.jpg"]
    assert jobs[folder / "locked"].refused == (
        f"{folder / 'locked'}: a folder that cannot be read (Permission denied); slides in it, "
        "if any, are not scored; skipped, not opened")
    assert not jobs[folder / "a.jpg"].refused


def test_one_file_listed_under_two_names_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """labels.csv rows "S1" and "S1.jpg" both find S1.jpg: it was scored twice, as two
    slides of two patients with two labels, and counted twice by evaluate."""
    folder, out = _refused_with_one_slide(tmp_path,
                                          "S1,P1,MSI,biopsy,1.0\nS1.jpg,P2,MSS,biopsy,1.0\n")
    assert (f"{folder / 'S1.jpg'} is listed twice, as slides 'S1' and 'S1.jpg'; list each "
            "slide once") in capsys.readouterr().err
    assert not out.exists()
    (folder / "labels.csv").unlink()
    (folder / "S2.jpg").symlink_to(folder / "S1.jpg")  # a link beside its target
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1"]) == 2
    assert (f"{folder / 'S1.jpg'} and {folder / 'S2.jpg'} (one file) is listed twice, as "
            "slides 'S1' and 'S2'") in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["folder", "pipe", "dangling link"])
def test_a_labels_csv_that_is_no_file_is_refused_not_passed_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """labels.csv made a folder, a pipe or a link to nothing was taken for no labels at all:
    every image was scored as unlabelled, µm/px from --um-per-px, without a word."""
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "S1.jpg").write_bytes(b"\xff\xd8")
    labels = folder / "labels.csv"
    {"folder": labels.mkdir, "pipe": lambda: os.mkfifo(labels),
     "dangling link": lambda: labels.symlink_to(tmp_path / "gone.csv")}[kind]()
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1"]) == 2
    err = capsys.readouterr().err
    assert f"pathology run: {labels}: " in err
    assert ("not a regular file" in err) if kind != "dangling link" else (
        "No such file or directory" in err)
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "submit"])
def test_an_out_that_is_a_link_loop_or_to_nothing_is_refused_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """run ended in a RuntimeError traceback (resolving its pictures' folder); submit scored
    every slide, then said only "[Errno 17] File exists" and wrote nothing."""
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "S1.jpg").write_bytes(b"\xff\xd8")
    target = str(folder) if command == "run" else str(folder / "S1.jpg")
    for name, points_to, kind in (
            ("loop", "loop", "a symbolic link loop (the link leads back to itself)"),
            ("gone", "nowhere", "a broken link")):
        out = tmp_path / name
        out.symlink_to(tmp_path / points_to)
        assert main(["pathology", command, target, "--out", str(out), "--um-per-px", "1"]) == 2
        assert (f"pathology {command}: --out {out} is {kind}, not a folder; name the folder for "
                "results") in capsys.readouterr().err
    pipe = tmp_path / "pipe"  # was "is a file, not a folder"
    os.mkfifo(pipe)
    assert main(["pathology", command, target, "--out", str(pipe), "--um-per-px", "1"]) == 2
    assert (f"pathology {command}: --out {pipe} is a named pipe (FIFO), not a folder; name the "
            "folder for results") in capsys.readouterr().err


NFC_NAME, NFD_NAME = "Müller-café", "Mu\u0308ller-cafe\u0301"  # as Linux and macOS write it


def test_a_labels_row_finds_its_image_named_on_a_mac_and_evaluate_matches_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """labels.csv written on Linux or in a spreadsheet spells the accents composed (NFC), the
    image copied from a Mac decomposed (NFD): the row found no slide file ("slide file not
    found"). Now it is that slide, kept under the row's name, and evaluate matches it."""
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("S1", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / f"{NFD_NAME}.jpg", quality=88)
    (folder / "labels.csv").write_text(HEADER + f"{NFC_NAME},P1,MSI,biopsy,1.0\n")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--no-pictures"]) == 0
    assert results_rows(out)[NFC_NAME]["path"] == str(folder / f"{NFD_NAME}.jpg")
    assert (out / "tiles" / f"{NFC_NAME}.csv").is_file()
    # the same slide in a results folder of an earlier version, under the file's spelling
    results = (out / "results.csv").read_text().replace(f"{NFC_NAME},", f"{NFD_NAME},", 1)
    (out / "results.csv").write_text(results)
    capsys.readouterr()
    assert main(["pathology", "evaluate", "--labels", str(folder / "labels.csv"),
                 "--results", str(out), "--json", "--bootstrap", "10"]) == 0
    assert "no slide in it is named in the labels" not in capsys.readouterr().err


def test_two_files_whose_names_differ_only_in_accent_encoding_are_refused_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both look like "Müller-café.jpg" (one written on a Mac): they were two slides of one
    name as people read it, one heatmap each under names that look alike. Refused, exit 2,
    naming both files in a spelling that tells them apart; nothing written."""
    folder = tmp_path / "slides"
    folder.mkdir()
    for name in (NFC_NAME, NFD_NAME):
        (folder / f"{name}.jpg").write_bytes(b"\xff\xd8")
    out = tmp_path / "out"
    for command in (["pathology", "run", str(folder)],
                    ["pathology", "submit", str(folder / f"{NFC_NAME}.jpg"),
                     str(folder / f"{NFD_NAME}.jpg")]):
        assert main([*command, "--out", str(out), "--um-per-px", "1"]) == 2
        err = capsys.readouterr().err
        assert "differ only in how their accents are encoded" in err
        assert ascii(f"{NFC_NAME}.jpg") in err
        assert ascii(f"{NFD_NAME}.jpg") in err
        assert f"both would be slide {NFC_NAME!r}" in err
        assert not out.exists()


def test_a_labels_row_finds_its_image_named_as_it_writes_it_where_nfc_changes_the_name(
    tmp_path: Path,
) -> None:
    """NFC replaces a few characters by others that read the same: U+212B ANGSTROM SIGN by
    U+00C5, a CJK compatibility ideograph by its unified one. A row naming such a file
    exactly as the file is named was looked up in NFC and NFD only, neither the file's
    name: "slide file not found". Now the name as written is tried first; the slide keeps
    its NFC name."""
    written = "\u212b-\uf900"  # Å (ANGSTROM SIGN) and 豈 (CJK COMPATIBILITY IDEOGRAPH-F900)
    folder = tmp_path / "slides"
    folder.mkdir()
    rgb = painted(SlideSpec("S1", "P1", "MSI", "biopsy", 2, 0.8, seed=5))
    Image.fromarray(rgb).save(folder / f"{written}.jpg", quality=88)
    (folder / "labels.csv").write_text(HEADER + f"{written},P1,MSI,biopsy,1.0\n")
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--no-pictures"]) == 0
    assert results_rows(out)["\u00c5-\u8c48"]["path"] == str(folder / f"{written}.jpg")


def test_um_per_px_that_labels_csv_overrides_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """labels.csv's um_per_px wins over --um-per-px, as documented, but it did so without a
    word: a person who passed --um-per-px 0.7 for slides listed at 1.0 never learnt that their
    option was not used."""
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "labels.csv").write_text("slide,patient,label,material,um_per_px\n"
                                       "S1,P1,MSI,biopsy,1.0\nS2,P2,MSS,biopsy,\n"
                                       "S3,P3,MSS,biopsy,0.5\n")
    jobs = jobs_from_folder(folder, 0.7)
    assert [job.um_per_px for job in jobs] == [1.0, 0.7, 0.5]
    assert (f"{folder / 'labels.csv'}: its um_per_px column wins over --um-per-px 0.7 for 2 of "
            "3 slides (S1 at 1 µm/px, ...); --um-per-px applies only to rows without one"
            ) in caplog.text
    caplog.clear()
    jobs_from_folder(folder, None)
    jobs_from_folder(folder, 1.0)  # S3 differs: said again
    assert caplog.text.count("wins over --um-per-px") == 1
    (folder / "labels.csv").write_text("slide,patient,label,material,um_per_px\n"
                                       "S1,P1,MSI,biopsy,1.0\n")
    caplog.clear()
    jobs_from_folder(folder, 1.0)  # the same scale: nothing to say
    assert "wins over" not in caplog.text


def test_a_slide_whose_header_is_damaged_is_called_so_without_python_s_words(
        tmp_path: Path) -> None:
    """A PNG signature followed by damaged bytes: the error says what is wrong with the file,
    not which Python object read it (on main: "cannot identify image file
    <_io.BufferedReader name=7>")."""
    slide = tmp_path / "damaged.png"
    slide.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    out = tmp_path / "out"
    assert main(["pathology", "submit", str(slide), "--um-per-px", "0.5", "--out", str(out),
                 "--no-pictures"]) == 1
    assert results_rows(out)["damaged"]["error"] == (
        f"{slide}: corrupt or truncated image: it starts as a JPEG, PNG or TIFF does, but its "
        "header cannot be read; copy or export the slide again")


def test_a_slide_smaller_than_a_micrometre_is_not_called_zero_wide(tmp_path: Path) -> None:
    """A 1 px image at 0.5 µm/px is 0.5 µm across (on main: "the slide is 0x0 µm")."""
    slide = tmp_path / "dot.png"
    Image.new("RGB", (1, 3), PINK).save(slide)
    out = tmp_path / "out"
    assert main(["pathology", "submit", str(slide), "--um-per-px", "0.5", "--out", str(out),
                 "--no-pictures"]) == 1
    assert results_rows(out)["dot"]["error"].startswith(
        f"{slide}: the slide is 0.5x1.5 µm (1x3 px at 0.5 µm/px), smaller than one 256 µm tile")


def test_a_run_refuses_a_slide_whose_tiles_exceed_its_max_tile_bytes(tmp_path: Path) -> None:
    """`--max-tile-bytes` is the server's pathology.max_tile_bytes for one run: the shipped
    model's 225 tiles of 64 px (2.8 MB) against 1 MiB are refused by name before a tile is
    read; a value under 1 MiB is no setting (exit 2)."""
    slide = tmp_path / "pink.png"
    Image.new("RGB", (4000, 4000), PINK).save(slide, compress_level=1)
    out = tmp_path / "out"
    assert main(["pathology", "submit", str(slide), "--um-per-px", "1", "--out", str(out),
                 "--no-pictures", "--max-tile-bytes", "1048576"]) == 1
    error = results_rows(out)["pink"]["error"]
    assert error.startswith(f"{slide}: its 225 tissue tiles of 64 px would take 2764800 bytes, "
                            "more than the 1048576 of pathology.max_tile_bytes"), error
    assert "--max-tile-bytes of `pathology run`" in error
    with pytest.raises(SystemExit) as refused:
        main(["pathology", "submit", str(slide), "--out", str(tmp_path / "o2"),
              "--max-tile-bytes", "1000"])
    assert refused.value.code == 2

