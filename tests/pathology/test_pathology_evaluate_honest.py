"""`pathology evaluate` does not flatter: it refuses a cohort that recreates the model's own
training slides without --splits, shows "n too small" instead of CIs from a few patients, and
names the paper whose figures it prints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.shipped import PATHOLOGY_MODEL, PATHOLOGY_SPLITS, shipped_path
from appliance.synthetic.he import LABEL_COLUMNS, cohort_specs


def _cohort_and_run(folder: Path, seed: int, patients: int) -> tuple[Path, Path]:
    """labels.csv of a synthetic cohort (not painted) and a run of the shipped model on it
    that scores every slide by its true label."""
    specs = cohort_specs(patients, seed)
    labels = folder / f"labels-{seed}.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        writer.writerows([s.slide, s.patient, s.label, s.material, s.um_per_px, s.stain_batch]
                         for s in specs)
    run = folder / f"run-{seed}"
    run.mkdir()
    with (run / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "patient", "material", "path", "tile_count",
                         "mean_probability", "msi_tile_share", "score", "label", "error"])
        for s in specs:
            score = 0.9 if s.label == "MSI" else 0.1
            writer.writerow([s.slide, s.patient, s.material, "", 10, score, score, score, "", ""])
    model = shipped_path(PATHOLOGY_MODEL)
    (run / "run.json").write_text(json.dumps({"threshold": 0.5, "model": str(model)}))
    return labels, run


def test_the_training_cohort_is_refused_without_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, run = _cohort_and_run(tmp_path, seed=7, patients=20)  # the README's cohort
    args = ["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
            "--bootstrap", "20"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "slides the model msi-vgg19-w16.onnx learnt from" in err
    assert "synthetic H&E cohort seed 7" in err
    assert "--splits" in err
    splits = str(shipped_path(PATHOLOGY_SPLITS))
    assert main([*args, "--splits", splits]) == 0  # its held-out test patients only
    assert "learnt from" not in capsys.readouterr().err


def test_another_cohort_is_evaluated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, run = _cohort_and_run(tmp_path, seed=11, patients=20)
    assert main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
                 "--bootstrap", "20"]) == 0
    assert "learnt from" not in capsys.readouterr().err


def test_few_patients_get_no_confidence_interval_and_the_paper_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, run = _cohort_and_run(tmp_path, seed=11, patients=6)
    assert main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
                 "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "accuracy    1.000 [n too small]" in out
    assert "[1.000-1.000]" not in out
    assert "no CIs: 6 patients (fewer than 10)" in out
    assert "* source paper, Table 2: VGG19 transfer learning on real H&E" in out
