"""`pathology run` and `pathology submit` refuse under their own names, as every command does."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main


def test_a_folder_without_slides_is_refused_under_the_command_s_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """It said "pathology: no slides found", naming no command of the two that score."""
    (tmp_path / "empty").mkdir()
    assert main(["pathology", "run", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        "pathology run: no slides found (JPEG, PNG or TIFF files)\n")
    assert not (tmp_path / "o").exists()
