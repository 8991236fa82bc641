"""`appliance synth he` shows its progress (a large cohort takes minutes); --quiet hides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main


def test_synth_he_shows_progress_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loud = ["synth", "he", "--out", str(tmp_path / "a"), "--patients", "1", "--seed", "2"]
    assert main(loud) == 0
    err = capsys.readouterr().err
    assert "painting slides" in err
    assert "100%" in err
    quiet = ["synth", "he", "--out", str(tmp_path / "b"), "--patients", "1", "--quiet"]
    assert main(quiet) == 0
    assert "painting slides" not in capsys.readouterr().err
