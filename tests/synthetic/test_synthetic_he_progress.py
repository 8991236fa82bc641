"""`appliance synth he` shows its progress (a large cohort takes minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main


def test_synth_he_shows_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loud = ["synth", "he", "--out", str(tmp_path / "a"), "--patients", "1", "--seed", "2"]
    assert main(loud) == 0
    err = capsys.readouterr().err
    assert "painting slides" in err
    assert "100%" in err
