"""Counts in the commands' summaries read as English: "1 frame", "1 slide, 1 patient"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from appliance.pathology.report import RunData, evaluate_runs, format_group
from tests.he_slides import placeholder_slide


def test_synth_skin_says_one_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It said 'wrote 1 frames'."""
    assert main(["synth", "skin", "--out", str(tmp_path / "f"), "--count", "1"]) == 0
    assert capsys.readouterr().out.startswith("wrote 1 frame (seed ")


def test_an_evaluated_group_of_one_slide_says_one_slide_and_one_patient() -> None:
    """`pathology evaluate` on a run of one slide said '1 slides, 1 patients', and 'no CIs: 1
    patients'."""
    run = RunData("run", 0.5, truth=np.array([1]), scores=np.array([0.7]),
                  patients=np.array(["P1"]), materials=np.array(["biopsy"]))
    block = format_group("all", evaluate_runs([run], resamples=10)["all"], [run])
    assert block.splitlines()[0].startswith("all: 1 slide, 1 patient (threshold 0.500")
    # it closed with "no CIs: 1 patients (fewer than 10)"
    assert block.splitlines()[-1] == "  no CIs: 1 patient (fewer than 10)"
    two = RunData("run", 0.5, truth=np.array([1, 0]), scores=np.array([0.7, 0.2]),
                  patients=np.array(["P1", "P2"]), materials=np.array(["biopsy", "biopsy"]))
    block = format_group("all", evaluate_runs([two], resamples=10)["all"], [two])
    assert block.startswith("all: 2 slides, 2 patients (")
    assert block.splitlines()[-1] == "  no CIs: 2 patients (fewer than 10)"


def test_synth_he_of_one_patient_says_one_patient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "1 slides of 1 patients" (this seed paints one slide of the patient). The
    slide's pixels are not the point (tests/synthetic/test_synthetic_he.py paints them): its
    file is a placeholder here, not a 3072 px square painted for two CPU-seconds."""
    from appliance.synthetic import he

    monkeypatch.setattr(he, "_write_slide", placeholder_slide)
    assert main(["synth", "he", "--out", str(tmp_path / "he"), "--patients", "1",
                 "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("1 slide of 1 patient in ")
    assert [p.name for p in (tmp_path / "he").glob("*.jpg")] == ["P0000-S.jpg"]
