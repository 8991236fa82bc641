"""`appliance analyze`'s table explains what it cannot show: n/m and a withheld grade."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.skin.analyze_run import TABLE_LEGEND
from tests.skin_frames import generated


@pytest.fixture
def frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no config.yaml: built-in defaults, the shipped grader
    path = tmp_path / "skin.jpg"
    path.write_bytes(generated(21, 0, "normal").jpeg)
    return path


def test_a_frame_outside_the_validated_scale_reads_n_m_and_not_given_with_a_legend(
    frame: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(frame), "--um-per-px", "14"]) == 0  # outside 7-13 um/px
    _header, row, legend = capsys.readouterr().out.strip().splitlines()
    assert row.split()[2:4] == ["n/m", "n/m"]  # kime, hills
    assert row.endswith(" not given")  # the grade would need them: withheld, not "-"
    assert legend == TABLE_LEGEND
    assert "n/m: not measured" in legend


def test_a_measured_frame_has_its_grade_and_no_legend(
    frame: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(frame)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2  # header and row only
    assert lines[1].split()[-1] in {"fine", "normal", "coarse"}


def test_a_table_header_comes_only_with_a_row(
    frame: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where every input failed it printed the table's header over no rows."""
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["analyze", str(tmp_path / "bad.png"), str(tmp_path / "gone.jpg")]) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert len(printed.err.splitlines()) == 2  # each input's reason
    assert main(["analyze", str(tmp_path / "bad.png"), str(frame)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:2] == ["image", "quality"]
    assert lines[1].startswith("skin.jpg ")


def test_every_row_names_its_own_file_however_long_or_shared_its_name(
    frame: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names were cut at 28 characters and shown without their folder: the two visits below
    and a/x.jpg, b/x.jpg each read as one name twice, four rows that could not be told apart."""
    visits = [tmp_path / f"subject-0042-left-cheek-visit{n}.jpg" for n in (1, 2)]
    folders = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"]
    for path in (*visits, *folders):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(frame.read_bytes())
    assert main(["analyze", *map(str, visits), "a/x.jpg", "b/x.jpg"]) == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    names = [row.split()[0] for row in rows]
    assert names == [visits[0].name, visits[1].name, "a/x.jpg", "b/x.jpg"]
    quality_ends = header.index("quality") + len("quality")
    assert [row.index(" ok ") + len(" ok") for row in rows] == [quality_ends] * 4  # aligned


@pytest.mark.parametrize("um_per_px", ["6", "14"])
def test_a_run_at_a_scale_outside_the_validated_range_says_so_once(
    frame: Path, capsys: pytest.CaptureFixture[str], um_per_px: str
) -> None:
    """Every texture and pore cell read n/m, and the legend sent the reader to --json to learn
    why; a run at one scale is told once, on stderr, naming the scale and where it came from."""
    assert main(["analyze", str(frame), str(frame), "--um-per-px", um_per_px]) == 0
    printed = capsys.readouterr()
    assert printed.err.splitlines() == [
        f"analyze: measuring at {um_per_px} um/px (--um-per-px), outside the 7-13 um/px the "
        "measurement was validated on (docs/measurement.md): the texture and pore features are "
        "not measured (n/m; --json lists them under not_validated) and no grade is given"]
    assert main(["analyze", str(frame), "--um-per-px", "13"]) == 0  # inside, at its edge
    assert capsys.readouterr().err == ""
