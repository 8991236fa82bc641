"""`appliance analyze --um-per-px` and frames whose sidecar names another scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.synthetic.skin import synthetic_frame, write_frame
from tests.skin_frames import generated


def _jpeg() -> bytes:
    return generated(21, 0, "normal").jpeg


def _frame(folder: Path, name: str = "good.jpg") -> Path:
    path = folder / name
    path.write_bytes(_jpeg())
    return path


def test_um_per_px_overrides_the_config_for_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _frame(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text("skin:\n  um_per_px: 10.0\n")
    assert main(["analyze", "--json", "--config", str(config), str(frame)]) == 0
    plain = json.loads(capsys.readouterr().out)["features"]
    assert main(["analyze", "--json", "--config", str(config), "--um-per-px", "5", str(frame)]) == 0
    finer = json.loads(capsys.readouterr().out)["features"]  # same pixels, a quarter the area
    assert finer["hill_density_per_mm2"] > 1.1 * plain["hill_density_per_mm2"]


def test_each_record_names_the_scale_it_was_measured_at_and_where_it_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APPLIANCE__SKIN__UM_PER_PX", raising=False)
    frame = str(_frame(tmp_path))

    def scale(*options: str) -> tuple[float, str]:
        assert main(["analyze", "--json", *options, frame]) == 0
        record = json.loads(capsys.readouterr().out)
        return record["um_per_px"], record["um_per_px_from"]

    assert scale() == (10.0, "built-in default")  # no ./config.yaml
    config = tmp_path / "site.yaml"
    config.write_text("skin:\n  um_per_px: 9.5\n")
    assert scale("--config", str(config)) == (9.5, str(config))
    monkeypatch.setenv("APPLIANCE__SKIN__UM_PER_PX", "11")
    assert scale("--config", str(config)) == (11.0, "APPLIANCE__SKIN__UM_PER_PX")
    assert scale("--config", str(config), "--um-per-px", "8") == (8.0, "--um-per-px")


@pytest.mark.parametrize("bad", ["0.5", "30.5", "nan", "inf", "-3", "ten"])
def test_a_bad_um_per_px_is_exit_2_naming_the_option(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["analyze", "--um-per-px", bad, str(_frame(tmp_path))])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --um-per-px: must be a finite number" in err
    assert repr(bad) in err


def test_a_sidecar_scale_is_named_once_per_batch_never_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml: the built-in 10 um/px
    frames = [synthetic_frame(1, index, "wide") for index in range(2)]
    paths = [write_frame(frame, tmp_path)[0] for frame in frames]
    assert all(abs(frame.um_per_px - 10.0) > 0.01 for frame in frames)
    assert main(["analyze", "--json", *map(str, paths)]) in (0, 1)  # wide frames may be rejected
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "sidecar says" in line]
    assert notes == [
        f"analyze: {paths[0].name}: sidecar says {frames[0].um_per_px:.2f} um/px (and 1 more "
        "frame), measuring at 10.00 (built-in default); use --um-per-px to measure at another scale"
    ]
    main(["analyze", "--json", "--um-per-px", "10", *map(str, paths)])
    assert "sidecar" not in capsys.readouterr().err


def test_a_sidecar_nested_too_deeply_is_ignored_and_every_frame_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml: the built-in 10 um/px
    first, second = _frame(tmp_path, "a.jpg"), _frame(tmp_path, "b.jpg")
    (tmp_path / "a.json").write_text("[" * 1000 + "]" * 1000)  # past the decoder's recursion
    assert main(["analyze", "--json", str(first), str(second)]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(record["image"]).name for record in records] == ["a.jpg", "b.jpg"]
    assert all("features" in record for record in records)
    assert "sidecar" not in err


def test_a_minimal_config_still_grades_with_the_shipped_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("skin:\n  um_per_px: 12.5\n")  # the snippet `appliance calibrate` prints
    assert shipped_path(SKIN_MODEL).is_file()
    assert main(["analyze", "--config", str(config), str(_frame(tmp_path))]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split()[-1] in {"fine", "normal", "coarse"}


def test_a_config_that_is_a_folder_is_called_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--config", str(tmp_path), str(_frame(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: a directory, not a config file" in err
    assert "not found" not in err


def test_a_terminal_escape_in_a_name_is_escaped_in_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _frame(tmp_path, "ctl\x1b[31mred.jpg")
    assert main(["analyze", str(frame)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert out.splitlines()[1].startswith("ctl\\x1b[31mred.jpg ")
