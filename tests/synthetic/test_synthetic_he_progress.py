"""`appliance synth he` shows its progress (a large cohort takes minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from tests.he_slides import placeholder_slide


def test_synth_he_shows_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """(The slide's pixels are not the point: tests/synthetic/test_synthetic_he.py paints
    them.)"""
    from appliance.synthetic import he

    monkeypatch.setattr(he, "_write_slide", placeholder_slide)
    loud = ["synth", "he", "--out", str(tmp_path / "a"), "--patients", "1", "--seed", "2"]
    assert main(loud) == 0
    err = capsys.readouterr().err
    assert "painting slides" in err
    assert "100%" in err
