"""``appliance synth micrometer``: numbers that describe no photo are refused (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--um-per-px", "inf"], "argument --um-per-px: must be a finite number, got 'inf'"),
        (["--um-per-px=-inf"], "argument --um-per-px: must be a finite number, got '-inf'"),
        (["--um-per-px", "1e999"], "argument --um-per-px: must be a finite number, got '1e999'"),
        (["--um-per-px", "nan"], "argument --um-per-px: must be a finite number, got 'nan'"),
        (["--um-per-px", "0"], "argument --um-per-px: must be more than 0, got '0'"),
        (["--um-per-px=-9.6"], "argument --um-per-px: must be more than 0, got '-9.6'"),
        (["--um-per-px", "ten"], "argument --um-per-px: expected a number, got 'ten'"),
        (["--mm", "inf"], "argument --mm: must be a finite number, got 'inf'"),
        (["--angle-deg", "inf"], "argument --angle-deg: must be a finite number, got 'inf'"),
    ],
)
def test_non_finite_or_non_positive_values_exit_2_naming_the_option(
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
