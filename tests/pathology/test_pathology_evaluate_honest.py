"""`pathology evaluate` does not flatter: it refuses a cohort that recreates the model's own
training slides without --splits, shows "n too small" instead of CIs from a few patients, and
names the paper whose figures it prints."""

from __future__ import annotations

import csv
import json
import os
import re
import threading
from contextlib import suppress
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


def _evaluate_in_time(args: list[str], pipes: list[Path]) -> int:
    """``main(args)`` in a thread; fails the test when it waits on one of the pipes (after
    giving each a writer that closes at once, so the thread ends)."""
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(main(args)), daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        for pipe in pipes:  # a writer that closes at once: a read waiting on it ends
            with suppress(OSError):  # ENXIO: nobody waits on this one
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail(f"pathology evaluate waited on a pipe: {args}")
    return outcome[0]


def test_a_pipe_for_the_splits_file_or_run_json_does_not_hang_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, run = _cohort_and_run(tmp_path, seed=11, patients=12)
    args = ["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
            "--bootstrap", "20"]
    splits = tmp_path / "splits.csv"
    os.mkfifo(splits)
    assert _evaluate_in_time([*args, "--splits", str(splits)], [splits]) == 2
    assert f"{splits}: not a regular file" in capsys.readouterr().err
    (run / "run.json").unlink()
    os.mkfifo(run / "run.json")  # read for the model it names
    assert _evaluate_in_time(args, [run / "run.json"]) == 0


@pytest.mark.parametrize(
    ("score", "error", "message"),
    [("abc", "", r"results\.csv:2: score 'abc' of a scored slide is no finite number"),
     ("nan", "", r"results\.csv:2: score 'nan' of a scored slide is no finite number"),
     ("0.9", "x" * 200_000, r"results\.csv:2: not readable as CSV \(field larger")],
)
def test_a_results_row_evaluate_cannot_use_is_named_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], score: str, error: str, message: str
) -> None:
    labels, run = _cohort_and_run(tmp_path, seed=11, patients=12)
    rows = (run / "results.csv").read_text().splitlines()
    first = rows[1].split(",")
    first[7], first[9] = score, error
    rows[1] = ",".join(first)
    (run / "results.csv").write_text("\n".join(rows) + "\n")
    assert main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
                 "--bootstrap", "20"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_results_file_without_the_columns_evaluate_reads_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, run = _cohort_and_run(tmp_path, seed=11, patients=12)
    (run / "results.csv").write_text("slide,patient\nS1,P1\n")
    assert main(["pathology", "evaluate", "--labels", str(labels), "--results", str(run)]) == 2
    assert (f"{run / 'results.csv'}: missing column(s) label, score, error; pass the --out "
            "folder of `pathology run`") in capsys.readouterr().err


def test_a_slide_given_twice_to_evaluate_is_refused_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """labels.csv's second label of a slide silently won; a results row given twice (two
    runs' results.csv pasted together) was counted twice in every metric."""
    labels, run = _cohort_and_run(tmp_path, seed=11, patients=12)
    args = ["pathology", "evaluate", "--labels", str(labels), "--results", str(run),
            "--bootstrap", "20"]
    results = (run / "results.csv").read_text().splitlines()
    (run / "results.csv").write_text("\n".join([*results, results[1]]) + "\n")
    assert main(args) == 2
    slide = results[1].split(",")[0]
    assert (f"{run / 'results.csv'}:{len(results) + 1}: slide {slide!r} again (first on line "
            "2); one row per slide") in capsys.readouterr().err
    (run / "results.csv").write_text("\n".join(results) + "\n")
    rows = labels.read_text().splitlines()
    first = rows[1].split(",")
    first[2] = "MSS" if first[2] == "MSI" else "MSI"  # the same slide, the other label
    labels.write_text("\n".join([*rows, ",".join(first)]) + "\n")
    assert main(args) == 2
    assert (f"{labels}:{len(rows) + 1}: slide {first[0]!r} again (first on line 2); one row "
            "per slide: give each slide one label") in capsys.readouterr().err


def test_a_run_whose_labelled_slides_are_all_unsupported_or_failed_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's CRC-VAL-HE-7K tiles are all `unsupported` for the demo model: evaluate said
    "no scored slide matches the labels", which sends one checking the slide names."""
    labels, run = _cohort_and_run(tmp_path, seed=11, patients=3)
    rows = list(csv.reader((run / "results.csv").open()))
    for row in rows[1:]:
        row[7:] = ["", "unsupported", ""]
    rows[1][7:] = ["", "", "cannot read the slide"]
    with (run / "results.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    args = ["pathology", "evaluate", "--labels", str(labels), "--results", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (f"none of its {len(rows) - 1} labelled slide(s) has a score to evaluate: "
            f"{len(rows) - 2} unsupported (tissue unlike the model's training data), "
            "1 failed") in err
    other = tmp_path / "other-labels.csv"
    other.write_text("slide,patient,label,material\nX1,P1,MSI,biopsy\n")
    assert main(["pathology", "evaluate", "--labels", str(other), "--results", str(run)]) == 2
    assert "no slide in it is named in the labels (and split)" in capsys.readouterr().err
