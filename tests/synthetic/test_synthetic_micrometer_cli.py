"""``appliance synth micrometer``: numbers outside their range are refused (exit 2), the
limits of each range are photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from appliance.synthetic import micrometer

SCALE = "must be a finite number over 0.5 and at most 30 (um per pixel, as skin.um_per_px)"
PITCH = "must be a finite number from 0.001 to 10 (mm between lines)"
ANGLE = "must be a finite number from -90 to 90 (degrees)"
DIGITS = "expected a number in ASCII digits"
WHOLE = "expected a whole number in ASCII digits"
PAINTED: dict[micrometer.MicrometerSpec, np.ndarray] = {}


@pytest.fixture(autouse=True)
def photos_painted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's photo of a spec, painted once for the module (about a CPU-second each;
    six tests write the photo at 9.6 um/px), read-only: the same pixels, and so the same file,
    as each command painting its own."""
    paint = micrometer.micrometer_frame

    def painted(spec: micrometer.MicrometerSpec) -> np.ndarray:
        if spec not in PAINTED:
            PAINTED[spec] = paint(spec)
            PAINTED[spec].flags.writeable = False
        return PAINTED[spec]

    monkeypatch.setattr(micrometer, "micrometer_frame", painted)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--um-per-px", "inf"], f"argument --um-per-px: {SCALE}, got 'inf'"),
        (["--um-per-px=-inf"], f"argument --um-per-px: {SCALE}, got '-inf'"),
        (["--um-per-px", "1e999"], f"argument --um-per-px: {SCALE}, got '1e999'"),
        (["--um-per-px", "nan"], f"argument --um-per-px: {SCALE}, got 'nan'"),
        (["--um-per-px", "0"], f"argument --um-per-px: {SCALE}, got '0'"),
        (["--um-per-px", "0.5"], f"argument --um-per-px: {SCALE}, got '0.5'"),
        (["--um-per-px", "30.01"], f"argument --um-per-px: {SCALE}, got '30.01'"),
        (["--um-per-px=-9.6"], f"argument --um-per-px: {SCALE}, got '-9.6'"),
        (["--um-per-px", "-inf"], f"argument --um-per-px: {SCALE}, got '-inf'"),  # not an option
        (["--um-per-px", "-NaN"], f"argument --um-per-px: {SCALE}, got '-NaN'"),
        (["--um-per-px", "ten"], f"argument --um-per-px: {DIGITS}, got 'ten'"),
        (["--um-per-px", "１０"], f"argument --um-per-px: {DIGITS}, got '１０'"),  # full width
        (["--um-per-px", "9_6"], f"argument --um-per-px: {DIGITS}, got '9_6'"),
        (["--mm", "-inf"], f"argument --mm: {PITCH}, got '-inf'"),
        (["--mm", "inf"], f"argument --mm: {PITCH}, got 'inf'"),
        (["--mm", "1e308"], f"argument --mm: {PITCH}, got '1e308'"),
        (["--mm", "10.5"], f"argument --mm: {PITCH}, got '10.5'"),
        (["--mm", "1e-300"], f"argument --mm: {PITCH}, got '1e-300'"),
        (["--mm", "0"], f"argument --mm: {PITCH}, got '0'"),
        (["--angle-deg", "inf"], f"argument --angle-deg: {ANGLE}, got 'inf'"),
        (["--angle-deg", "1e300"], f"argument --angle-deg: {ANGLE}, got '1e300'"),
        (["--lines", "1"], "argument --lines: must be a whole number from 2 to 10000, got '1'"),
        (["--lines=-5"], "argument --lines: must be a whole number from 2 to 10000, got '-5'"),
        (["--lines", "１０"], f"argument --lines: {WHOLE}, got '１０'"),
        (["--lines", "1e9"], f"argument --lines: {WHOLE}, got '1e9'"),
        (["--seed=-1"], "argument --seed: must be a whole number from 0 to 9223372036854775807"),
        (["--seed", f"{2**63}"], "argument --seed: must be a whole number from 0 to "),
    ],
)
def test_values_outside_their_range_exit_2_naming_the_option_and_the_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "micrometer.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "micrometer", "--out", str(out), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_finite_scale_writes_the_photo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "micrometer.png"
    assert main(["synth", "micrometer", "--out", str(out), "--um-per-px", "9.6"]) == 0
    assert out.stat().st_size > 0
    assert "at 9.6 um/px" in capsys.readouterr().out


def test_an_existing_photo_is_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`synth micrometer --out F` wrote over F without a word (`results export` refuses and
    names --force): a calibration photo at another scale was lost to a second run."""
    out = tmp_path / "micrometer.png"
    assert main(["synth", "micrometer", "--out", str(out), "--um-per-px", "9.6"]) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main(["synth", "micrometer", "--out", str(out), "--um-per-px", "12"]) == 2
    assert capsys.readouterr() == ("", f"synth micrometer: {out} exists; pass --force to "
                                       "replace it\n")
    assert out.read_bytes() == first
    assert main(["synth", "micrometer", "--out", str(out), "--um-per-px", "12", "--force"]) == 0
    assert "at 12.0 um/px" in capsys.readouterr().out
    assert out.read_bytes() != first


@pytest.mark.parametrize(
    "extra", [["--mm", "10", "--um-per-px", "10.5"], ["--mm", "0.002", "--um-per-px", "1"],
              ["--lines", "2", "--angle-deg=-90"], ["--lines", "10000", "--angle-deg", "90"]])
def test_the_limits_of_each_range_write_a_photo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    out = tmp_path / "micrometer.png"
    assert main(["synth", "micrometer", "--out", str(out), *extra]) == 0
    assert out.stat().st_size > 0
    assert "wrote " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--mm", "0.001", "--um-per-px", "10"], "lines 0.1 px apart: closer than 2 px cannot be"),
     (["--mm", "0.01", "--um-per-px", "5.1"], "lines 1.96 px apart: closer than 2 px cannot be"),
     (["--mm", "10", "--um-per-px", "10"], "lines 1e+03 px apart: fewer than two lines fit"),
     (["--mm", "10", "--um-per-px", "10.4"], "lines 962 px apart: fewer than two lines fit")])
def test_a_pitch_no_photo_can_show_exits_2_naming_both_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "micrometer.png"
    assert main(["synth", "micrometer", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert f"--mm {extra[1]} at --um-per-px {extra[3]} puts the " in err
    assert message in err
    assert not out.exists()


def test_a_photo_that_cannot_be_written_exits_1_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "micrometer.png"
    assert main(["synth", "micrometer", "--out", str(out)]) == 1
    assert (f"synth micrometer: {out}: could not write the image: No such file or directory"
            in capsys.readouterr().err)


@pytest.mark.parametrize(("name", "why"), [("frames", "a folder"),
                                           ("scale.txt", "not an image file name")])
def test_an_out_that_names_no_image_file_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, why: str
) -> None:
    """A folder or a .txt: refused as an option, exit 2, not OpenCV's encoder message (with
    its source path) nor "cannot encode an image as 'no suffix'"."""
    (tmp_path / "frames").mkdir()
    out = tmp_path / name
    assert main(["synth", "micrometer", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"synth micrometer: --out {out}: {why}; name an image file to write, "
            ".png/.jpg/.jpeg/.bmp/.tif/.tiff (e.g. micrometer.png)") in err
    assert "OpenCV" not in err


FORMAT_MAGIC = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".bmp": b"BM", ".tif": b"II*\x00"}


def test_help_names_every_format_written_and_each_is_written_as_its_suffix_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`synth micrometer --help` said "PNG file to write" while .jpg, .bmp and .tif were
    written too, each in its own format."""
    with pytest.raises(SystemExit):
        main(["synth", "micrometer", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "PNG file" not in help_text
    for suffix, magic in FORMAT_MAGIC.items():
        assert suffix in help_text
        out = tmp_path / f"micrometer{suffix}"
        assert main(["synth", "micrometer", "--out", str(out), "--um-per-px", "9.6"]) == 0
        assert out.read_bytes().startswith(magic), suffix
